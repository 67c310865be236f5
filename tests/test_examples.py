"""The README's quickstart and `make demo` run as users run them, and show all four pillars."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _json_objects(text: str) -> list[dict]:
    """Every JSON object in a stream of one-line logs and pretty-printed console spans."""
    decoder = json.JSONDecoder()
    objects, i = [], 0
    while (start := text.find("{", i)) != -1:
        try:
            obj, i = decoder.raw_decode(text, start)
        except json.JSONDecodeError:  # a metric's label set, not JSON
            i = start + 1
            continue
        objects.append(obj)
    return objects


def test_quickstart_shows_each_pillar():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "Answer: Refunds take 5 days." in out
    assert 'tinyllm_node_executions_total{graph="rag",node="retrieve"} 1.0' in out
    assert 'tinyllm_graph_execution_duration_seconds_count{graph="rag"} 1.0' in out
    objects = _json_objects(out)
    (log_line,) = [o for o in objects if o.get("event") == "retrieving"]
    spans = {o["name"]: o for o in objects if "context" in o}
    assert sorted(spans) == ["generate", "rag", "retrieve"]
    root_id = spans["rag"]["context"]["span_id"]
    assert spans["retrieve"]["parent_id"] == root_id == spans["generate"]["parent_id"]
    assert log_line["span_id"] == spans["retrieve"]["context"]["span_id"].removeprefix("0x")
    assert (log_line["node"], log_line["graph"]) == ("retrieve", "rag")
    assert spans["generate"]["attributes"]["tinyllm.generator.items"] == 5


def test_demo_runs_the_example_graph_and_says_where_to_look(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "Answered 12 questions" in out
    # Part 1 prints the first graph run as a tree, before the summary.
    tree = out[out.index("trace ") : out.index("Answered")].splitlines()
    assert re.fullmatch(r"trace [0-9a-f]{8} · tinyllm-demo", tree[0])
    assert re.match(r"rag +\d", tree[1])
    assert [line.split()[1] for line in tree[2:5]] == ["router", "retriever", "llm"]
    assert "http://127.0.0.1:" in out and "/metrics" in out
    spans = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    logs = [json.loads(line) for line in (tmp_path / "app.log").read_text().splitlines()]
    names = {s["name"] for s in spans}
    assert {"rag", "router", "retriever", "llm", "stream_answer"} <= names
    assert any(s["status"]["status_code"] == "ERROR" for s in spans)
    assert any(entry.get("event_type") == "node.execution.failed" for entry in logs)
    assert all("timestamp" in entry and "level" in entry for entry in logs)
    # Part 2: the un-decorated app under `tinyllm-instrument run`.
    assert "exit code 0" in out and "plain_app:answer" in out
    # `run --tracing` without an endpoint prints trees: one here, as plain_app:* wraps run().
    run_stdout = (tmp_path / "run-stdout.txt").read_text()
    assert run_stdout.count("trace ") == 1 and '"context"' not in run_stdout
    tree = run_stdout[run_stdout.index("trace ") :]
    run_names = set(re.findall(r"^[│├└─ ]*(\w+)  ", tree, flags=re.M))
    assert {"run", "answer", "route", "retrieve", "call_model", "stream_answer"} <= run_names
    assert "├─ answer" in out and "... " in out  # the demo shows the top of that tree
    run_logs = [json.loads(line) for line in (tmp_path / "run-app.log").read_text().splitlines()]
    assert any(entry.get("graph") == "answer" for entry in run_logs)
