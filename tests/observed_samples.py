"""Module-level observed callables: pickling by reference needs an importable home."""

from __future__ import annotations

from tinyllm_instrument import observe


@observe(node="square")
def square(x: int) -> int:
    return x * x


@observe
def plain(x: int) -> int:
    return x + 1
