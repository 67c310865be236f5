"""How deep an observed recursion goes, beside the same recursion plain (issue 14).

    .venv/bin/python benchmarks/recursion_depth.py

Each level of an observed recursion runs the wrapper's frame and the function's own, so it may
reach at most half the plain depth (less the few frames the kit needs at the deepest level).
Sync, awaited async, a method, and a function wrapped by ``instrument()``.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Callable
from typing import Any

from tinyllm_instrument import instrument, observe, uninstrument
from tinyllm_instrument.testing import capture


def _reached(run: Callable[[list[int]], Any]) -> int:
    reached = [0]
    try:
        run(reached)
    except RecursionError:
        pass
    return reached[0]


def sync_depth(deco: Callable[[Any], Any]) -> int:
    def f(n: int, reached: list[int]) -> Any:
        reached[0] = n
        return f(n + 1, reached)

    f = deco(f)
    return _reached(lambda reached: f(0, reached))


def async_depth(deco: Callable[[Any], Any]) -> int:
    async def f(n: int, reached: list[int]) -> Any:
        reached[0] = n
        return await f(n + 1, reached)

    f = deco(f)
    return _reached(lambda reached: asyncio.run(f(0, reached)))


def method_depth(deco: Callable[[Any], Any]) -> int:
    class Walker:
        def step(self, n: int, reached: list[int]) -> Any:
            reached[0] = n
            return self.step(n + 1, reached)

    Walker.step = deco(Walker.step)  # type: ignore[method-assign]
    return _reached(lambda reached: Walker().step(0, reached))


def instrumented_depth() -> int:
    module = types.ModuleType("depth_target")
    exec("def f(n, reached):\n    reached[0] = n\n    return f(n + 1, reached)\n", module.__dict__)
    sys.modules["depth_target"] = module
    instrument("depth_target:f")
    try:
        return _reached(lambda reached: module.f(0, reached))
    finally:
        uninstrument()
        del sys.modules["depth_target"]


def main() -> None:
    def plain(f: Any) -> Any:
        return f

    with capture():
        rows = [
            ("sync", sync_depth(plain), sync_depth(observe)),
            ("async (awaited)", async_depth(plain), async_depth(observe)),
            ("method", method_depth(plain), method_depth(observe)),
            ("instrument()", sync_depth(plain), instrumented_depth()),
        ]
    print(f"recursion limit {sys.getrecursionlimit()}")
    print("| callable | plain | observed |")
    print("|---|---:|---:|")
    for label, plain_depth, observed_depth in rows:
        print(f"| {label} | {plain_depth} | {observed_depth} |")


if __name__ == "__main__":
    main()
