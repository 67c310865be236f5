"""Checked by mypy in tests/test_typing.py: @observe keeps the decorated callable's type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, assert_type

from tinyllm_instrument import observe


@observe
def bare(x: int, y: str = "a") -> float:
    return 1.0


@observe(node="entry", model="m")
def with_options(question: str) -> list[str]:
    return [question]


@observe(graph="rag")
async def graph(question: str) -> str:
    return question


@observe
def stream(n: int) -> Iterator[int]:
    yield n


@observe
async def astream(n: int) -> AsyncIterator[int]:
    yield n


class Node:
    @observe
    def method(self, k: int) -> bytes:
        return b""


assert_type(bare(1), float)
assert_type(bare(1, y="b"), float)
assert_type(with_options("q"), list[str])
assert_type(graph("q"), Coroutine[Any, Any, str]).close()
assert_type(stream(3), Iterator[int])
assert_type(astream(3), AsyncIterator[int])
assert_type(Node().method(1), bytes)

bare("not an int")  # expected error: arg-type
with_options(question=3)  # expected error: arg-type
