"""A log line against structlog's own, and redaction's cost per KB (pytest-benchmark).

Run with ``make bench``; benchmarks/ratio_table.py prints the rows. Every case is measured once
per round (``--bench-rounds``), after the overhead cases of the same round, so a ratio compares
figures taken seconds apart.
"""

from __future__ import annotations

import pytest
from cases import setup_kit
from log_cases import LOG_CASES, REDACTION_CASES, cleanup, make_log_runner, make_redaction_runner

from tinyllm_instrument.logging import configure_logging

_WARMUP_CALLS = 300


def _restore() -> None:
    # The overhead cases run with the kit logging at INFO, as JSON, to os.devnull.
    import cases

    configure_logging(log_level="INFO", log_format="json", stream=cases._DEVNULL)


@pytest.fixture(scope="module", autouse=True)
def _files():
    setup_kit()
    yield
    cleanup()


@pytest.mark.parametrize("case", list(LOG_CASES))
@pytest.mark.parametrize("kind", ["log"])
def test_log_line(benchmark, kind: str, case: str, bench_round: int) -> None:
    runner = make_log_runner(case, _restore)
    with runner.context():
        for _ in range(_WARMUP_CALLS):
            runner.run()
        benchmark.group = f"log r{bench_round}"
        benchmark.extra_info.update(kind=kind, case=case, round=bench_round, per_call=1)
        benchmark(runner.run)


@pytest.mark.parametrize("case", list(REDACTION_CASES))
@pytest.mark.parametrize("kind", ["redaction"])
def test_redaction_per_kb(benchmark, kind: str, case: str, bench_round: int) -> None:
    runner = make_redaction_runner(case)
    runner.run()
    benchmark.group = f"redaction r{bench_round}"
    benchmark.extra_info.update(kind=kind, case=case, round=bench_round, per_call=runner.per_call)
    benchmark(runner.run)
