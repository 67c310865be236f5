"""The example graph under `tinyllm-instrument run`, end to end at a real OTLP HTTP receiver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from otlp_receivers import HttpTraceReceiver

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("tinyllm-instrument")


def test_example_graph_spans_arrive_over_otlp_http():
    with HttpTraceReceiver() as receiver:
        result = subprocess.run(
            [
                str(CLI),
                "run",
                "--otlp-endpoint",
                receiver.endpoint,
                "--otlp-protocol",
                "http/protobuf",
                "--service-name",
                "graph-app",
                str(ROOT / "examples" / "graph_app.py"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        spans = receiver.wait_for(12 * 4, timeout=10)
    roots = [s for s in spans if s.name == "rag"]
    assert len(roots) == 12
    assert all(s.parent_span_id is None for s in roots)
    assert all(s.resource["service.name"] == "graph-app" for s in spans)
    root_ids = {s.span_id for s in roots}
    for name in ("router", "retriever", "llm"):
        nodes = [s for s in spans if s.name == name]
        assert len(nodes) == 12 and all(s.parent_span_id in root_ids for s in nodes)
        assert all(s.attributes["tinyllm.graph"] == "rag" for s in nodes)
    failed = [s for s in spans if s.name == "llm" and s.status_code == "ERROR"]
    assert failed and all(e[0] == "exception" for s in failed for e in s.events)
    usage = [
        s.attributes["gen_ai.usage.input_tokens"]
        for s in spans
        if s.name == "llm" and s.status_code != "ERROR"
    ]
    assert usage and all(isinstance(n, int) and n > 0 for n in usage)
