"""The log-line and redaction benchmark cases still run and write what they claim; nothing timed."""

from __future__ import annotations

import json
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture
def log_cases():
    sys.path.insert(0, BENCHMARKS)
    try:
        import cases
        import log_cases as module

        cases.setup_kit()
        yield module
    finally:
        if "log_cases" in sys.modules:
            sys.modules["log_cases"].cleanup()
        if "cases" in sys.modules:
            sys.modules["cases"].teardown_kit()
        for name in ("cases", "log_cases", "ratio_table"):
            sys.modules.pop(name, None)
        sys.path.remove(BENCHMARKS)


def test_each_log_case_writes_one_json_line_per_call(log_cases):
    restored = []
    for case in log_cases.LOG_CASES:
        runner = log_cases.make_log_runner(case, lambda: restored.append(True))
        with runner.context():
            for _ in range(3):
                runner.run()
        (path,) = runner.files
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f.read().splitlines()]
        assert [line["event"] for line in lines] == ["node_executed"] * 3, case
        if case != "structlog_native":  # the kit's line carries what the row says it carries
            assert {"trace_id", "span_id", "node", "graph", "app", "logger"} <= set(lines[0])
            assert (lines[0]["node"], lines[0]["graph"]) == ("retrieve", "rag")
    assert len(restored) == 2, "the kit's cases put the session's logging back"


def test_each_redaction_case_redacts_its_text(log_cases):
    for case, kb in log_cases.REDACTION_CASES.items():
        text = log_cases.signed_url_text(kb)
        assert abs(len(text) - kb * 1024) <= 1
        out = log_cases.make_redaction_runner(case).run()
        assert "pw-1234" not in out and "abc123" not in out


def test_the_ratio_table_prints_the_log_rows(log_cases, tmp_path):
    import ratio_table

    benchmarks = [
        {
            "extra_info": {"kind": "log", "case": c, "per_call": 1},
            "stats": {"median": ns / 1e9, "min": ns / 1e9},
        }
        for c, ns in (("structlog_native", 10_000), ("kit_line", 12_000), ("kit_line_json", 16_000))
    ] + [
        {
            "extra_info": {"kind": "redaction", "case": "redact_100kb", "per_call": 100},
            "stats": {"median": 0.005, "min": 0.005},
        }
    ]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    text = ratio_table.log_table(ratio_table.load([str(path)]))
    assert (
        "| kit JSON line to a file: trace ids, node/graph, redaction | 12,000 | "
        "1.20 of structlog_native | ≤ 1.5 | yes |"
    ) in text
    assert "| 100 KB | 50.0 | 5.0 |" in text
