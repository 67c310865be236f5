"""What ``@langgraph`` costs per graph run (pytest-benchmark).

    .venv/bin/python -m pytest -q benchmarks/test_langgraph.py --benchmark-only \\
        --benchmark-columns=median --bench-rounds=5

A three-node ``StateGraph`` (sync nodes) invoked ``LOOPS`` times per measurement; divide the
figure by ``extra_info["per_call"]``. Four cases, measured side by side in each round, each
setting the preset's state it needs before it is timed:

- ``plain``: the preset not installed, LangGraph's classes as shipped: the reference.
- ``observed``: installed, the graph built with it: one graph span and three node spans a run.
- ``built_before``: installed, the graph built before it was: the graph span only.
- ``uninstalled``: the graph built while installed, run after ``uninstall``: what the
  switched-off node wrappers left in that graph cost (the run methods are put back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from tinyllm_instrument.presets.langgraph import PRESET

LOOPS = 20
CASES = ["plain", "observed", "built_before", "uninstalled"]


class State(TypedDict, total=False):
    x: int


def _step(state: State) -> State:
    return {"x": state["x"] + 1}


def _graph() -> object:
    builder = StateGraph(State)
    builder.add_node("a", _step)
    builder.add_node("b", _step)
    builder.add_node("c", _step)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile(name="bench")


Case = tuple[bool, Callable[[], None]]  # (installed while timed, the runner)


def _runner(graph: Any) -> Callable[[], None]:
    def run() -> None:
        # graph.invoke looked up per call, as an app does: a bound method taken before install
        # would miss the invoke wrapper (its run is then observed through its inner stream).
        for i in range(LOOPS):
            graph.invoke({"x": i})

    return run


def _cases() -> dict[str, Case]:
    PRESET.uninstall()
    plain = _graph()
    PRESET.install(lambda label: None)
    observed = _graph()
    PRESET.uninstall()
    return {
        "plain": (False, _runner(plain)),
        "observed": (True, _runner(observed)),
        "built_before": (True, _runner(plain)),
        "uninstalled": (False, _runner(observed)),
    }


@pytest.fixture(scope="module")
def cases() -> Iterator[dict[str, Case]]:
    yield _cases()
    PRESET.uninstall()


@pytest.mark.parametrize("langgraph_case", CASES)
def test_langgraph(benchmark, cases, langgraph_case: str, bench_round: int) -> None:
    installed, run = cases[langgraph_case]
    if installed:
        PRESET.install(lambda label: None)
    else:
        PRESET.uninstall()
    run()  # warm up
    benchmark.group = f"langgraph r{bench_round}"
    benchmark.extra_info.update(langgraph_case=langgraph_case, round=bench_round, per_call=LOOPS)
    benchmark(run)


def interleaved(rounds: int = 40) -> dict[str, float]:
    """Median µs per invoke of each case, the cases taking turns round by round (less exposed
    to a machine whose load drifts than the pytest-benchmark table).

        .venv/bin/python benchmarks/test_langgraph.py [ROUNDS]
    """
    import statistics
    import time

    from cases import setup_kit

    setup_kit()
    made = _cases()
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    try:
        for _ in range(rounds):
            for name in CASES:
                installed, run = made[name]
                if installed:
                    PRESET.install(lambda label: None)
                else:
                    PRESET.uninstall()
                run()
                start = time.perf_counter_ns()
                run()
                samples[name].append((time.perf_counter_ns() - start) / LOOPS / 1e3)
    finally:
        PRESET.uninstall()
    return {name: statistics.median(values) for name, values in samples.items()}


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    medians = interleaved(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
    for name, value in medians.items():
        print(f"{name:14} {value:8.1f} µs/invoke  {value / medians['plain']:.2f}x plain")
