"""The benchmark cases still build and run: each is called a few times, nothing is timed."""

from __future__ import annotations

import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture
def cases():
    sys.path.insert(0, BENCHMARKS)
    try:
        import cases as module

        module.setup_kit()
        yield module
    finally:
        if "cases" in sys.modules:
            sys.modules["cases"].teardown_kit()
        for name in ("cases", "ratio_table"):
            sys.modules.pop(name, None)
        sys.path.remove(BENCHMARKS)


def test_every_benchmark_case_runs_and_observes_what_it_should(cases):
    exporter = cases.setup_kit()
    from tinyllm_instrument.metrics import get_metrics_collector
    from tinyllm_instrument.telemetry import flush_telemetry

    for kind in cases.KINDS:
        for case in cases.CASES:
            runner = cases.make_runner(kind, case)
            cases.set_mode(runner.mode)
            flush_telemetry()
            before = exporter.exported
            for _ in range(3):
                result = runner.run()
            if kind in ("sync", "async", "method"):
                assert result == 2, (kind, case)
            flush_telemetry()
            cases.flush_stock()
            spans = exporter.exported - before
            if runner.mode == "full" and case not in ("bare", "wrapt"):
                assert spans == 3, (kind, case, spans)  # one span per call, exported
            else:
                assert spans == 0, (kind, case, spans)
    collector = get_metrics_collector()
    for kind in cases.KINDS:
        # full and sampled-out calls are counted; disabled ones are not
        count = collector.registry.get_sample_value(
            "tinyllm_node_executions_total", {"node": f"bench_{kind}", "graph": "none"}
        )
        assert count == 6, (kind, count)


def test_the_ratio_table_reads_pytest_benchmark_json(cases, tmp_path):
    import json

    import ratio_table

    benchmarks = []
    for kind in cases.KINDS:
        for case in cases.CASES:
            ns = {"otel": 1000, "otel_off": 500, "wrapt": 100}.get(case, 900)
            benchmarks.append(
                {
                    "extra_info": {"kind": kind, "case": case, "per_call": 1},
                    "stats": {"median": ns / 1e9, "min": ns / 1e9},
                }
            )
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    text = ratio_table.table(ratio_table.load([str(path)]))
    assert "| sync | @observe, four pillars | 900 | 0.90 of otel | ≤ 1.0 | yes |" in text
    assert "| method | @observe, sampled out | 900 | 1.80 of otel_off | ≤ 1.0 | no |" in text
