"""using_attributes follows ``tinyllm-instrument run`` into child processes, as the trace does.

The parent (tests/apps/session_spawner.py) enters a scope and starts two Python children, one
with ``subprocess.run([sys.executable, ...])`` and one with multiprocessing's spawn. Their spans
(the kit's, and another tracer's) arrive at a real OTLP receiver carrying the parent's session,
and their log lines and events (JSON, in the shared log file) carry it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from otlp_receivers import GrpcTraceReceiver

BIN = Path(sys.executable).parent
CLI = str(BIN / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"

SESSION = {
    "session.id": "parent-session",
    "gen_ai.conversation.id": "parent-session",
    "user.id": "parent-user",
    "tag.tags": ["p"],
    "metadata": '{"k":1}',
}


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_"))
        and k not in ("TRACEPARENT", "TRACESTATE", "BAGGAGE", "PYTHONPATH", "NO_COLOR")
    }


def test_children_spans_log_lines_and_events_carry_the_parents_session(tmp_path):
    log_file = tmp_path / "app.jsonl"
    with GrpcTraceReceiver() as receiver:
        result = subprocess.run(
            [
                CLI, "run",
                "--instrument", "session_spawner:*",
                "--instrument", "session_child:*",
                "--otlp-endpoint", receiver.endpoint,
                "--log-format", "json", "--log-file", str(log_file),
                "session_spawner.py",
            ],
            capture_output=True, text=True, cwd=APPS, env=_env(), timeout=180,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "subprocess said FROM-SUBPROCESS" in result.stdout
        assert "spawn exit code 0" in result.stdout
        spans = receiver.wait_for(8)
    by_name = {s.name: s for s in spans}
    assert {s.trace_id for s in spans} == {by_name["main"].trace_id}
    # main started before its own scope: it has none. Everything started inside has it, in
    # the parent and in both children, from the kit's tracer and from another one.
    assert not any(k in by_name["main"].attributes for k in SESSION)
    inside = [
        "launch_subprocess",
        "launch_spawn",
        "work",  # the subprocess child's own function, wrapped by the kit there
        "other library span from-subprocess",
        "spawned_work",
        "other library span from-spawn",
    ]
    assert set(inside) <= set(by_name)
    for span in spans:
        if span.name != "main":
            assert {k: span.attributes.get(k) for k in SESSION} == SESSION, span.name
    assert by_name["other library span from-spawn"].scope_name == "child.other.library"
    works = [s for s in spans if s.name == "work"]  # one in each child
    assert {s.parent_span_id for s in works} == {
        by_name["launch_subprocess"].span_id,
        by_name["spawned_work"].span_id,
    }

    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    for word in ("from-subprocess", "from-spawn"):
        [stdlib] = [x for x in lines if x["event"] == f"child stdlib line {word}"]
        [event] = [x for x in lines if x["event"] == "child.event" and word in x["message"]]
        for line in (stdlib, event):
            assert (line["session_id"], line["user_id"]) == ("parent-session", "parent-user")
