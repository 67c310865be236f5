"""Module-level classes with observed methods, which pickling sends to other processes by name."""

from __future__ import annotations

from collections.abc import Iterator

from tinyllm_instrument import observe


class Scaler:
    """Observed by decorators, in every position a method can take."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    @observe(node="scale")
    def scale(self, x: int) -> int:
        return x * self.factor

    @observe
    @classmethod
    def doubled(cls, x: int) -> int:
        return 2 * x

    @classmethod
    @observe
    def tripled(cls, x: int) -> int:
        return 3 * x

    @observe
    @staticmethod
    def negated(x: int) -> int:
        return -x

    @observe
    def up_to(self, x: int) -> Iterator[int]:
        yield from range(x)


class Plain:
    """Left plain: tests instrument() it by pattern."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def shift(self, x: int) -> int:
        return x + self.offset

    @classmethod
    def square(cls, x: int) -> int:
        return x * x


def count(stream: Iterator[int]) -> int:
    """Consume a stream in the worker (a generator itself cannot cross a process boundary)."""
    return sum(1 for _ in stream)
