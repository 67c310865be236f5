"""Overhead of @observe side by side with its peers, per callable kind (pytest-benchmark).

Run with ``make bench``, which prints the ratio table (benchmarks/ratio_table.py). Every case is
measured once per round (``--bench-rounds``), rounds one after another; ``extra_info`` carries
what the table needs (kind, case, round, units per call).
"""

from __future__ import annotations

import pytest
from cases import CASES, KINDS, make_runner, set_mode

_WARMUP_CALLS = 300


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_overhead(benchmark, kind: str, case: str, bench_round: int) -> None:
    runner = make_runner(kind, case)
    set_mode(runner.mode)
    for _ in range(_WARMUP_CALLS):
        runner.run()
    benchmark.group = f"{kind} r{bench_round}"
    benchmark.extra_info.update(
        kind=kind, case=case, round=bench_round, per_call=runner.per_call, mode=runner.mode
    )
    benchmark(runner.run)
