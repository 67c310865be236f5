"""Benchmarks run against the kit configured once per process (see cases.py for the modes)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import setup_kit  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-rounds",
        type=int,
        default=5,
        help="times the whole set of cases is measured, one set after another (default 5)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_round" in metafunc.fixturenames:
        rounds = metafunc.config.getoption("--bench-rounds")
        metafunc.parametrize("bench_round", range(rounds), ids=lambda r: f"r{r}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Round-robin: every case of round 0, then every case of round 1, ... so that the cases a
    # ratio compares are measured seconds apart, not minutes, on a machine whose load drifts.
    def key(item: pytest.Item) -> tuple:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            return (-1, "", "")
        params = callspec.params
        return (params.get("bench_round", 0), params.get("kind", ""), params.get("case", ""))

    kinds = {k: i for i, k in enumerate(("sync", "async", "generator", "method"))}
    items.sort(key=lambda it: (key(it)[0], kinds.get(key(it)[1], 9)))


@pytest.fixture(scope="session", autouse=True)
def _kit() -> None:
    setup_kit()
