"""The README's quickstart and `make demo` run as users run them, and show all four pillars."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_shows_each_pillar():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    lines = out.splitlines()
    (log_line,) = [json.loads(line) for line in lines if line.startswith("{")]
    assert (log_line["node"], log_line["graph"]) == ("retrieve", "rag")
    assert "Answer: Refunds take 5 days." in lines
    # the tree: rag, the parent of retrieve and generate, in the trace of the log line
    at = lines.index(f"trace {log_line['trace_id'][:8]} · quickstart")
    assert lines[at + 1].startswith("rag ")
    assert lines[at + 2].startswith("├─ retrieve ") and lines[at + 3].startswith("└─ generate ")
    assert 'tinyllm_node_executions_total{graph="rag",node="retrieve"} 1.0' in lines
    assert 'tinyllm_requests_total{graph="rag",model="fake-model",request_type="generate"} 1.0' in (
        lines
    )
    assert lines[-6:] == [
        "graph.execution.started rag",
        "node.execution.started retrieve",
        "node.execution.completed retrieve",
        "node.execution.started generate",
        "node.execution.completed generate",
        "graph.execution.completed rag",
    ]


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
    # The endpoint closes with the demo: no URL that is dead by the time it is read.
    assert "http://" not in out and "/metrics" in out
    assert "run `make demo SERVE=1` to keep it up" in out
    spans = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    logs = [json.loads(line) for line in (tmp_path / "app.log").read_text().splitlines()]
    names = {s["name"] for s in spans}
    assert {"rag", "router", "retriever", "llm", "stream_answer"} <= names
    assert any(s["status"]["status_code"] == "ERROR" for s in spans)
    assert any(entry.get("event_type") == "node.execution.failed" for entry in logs)
    assert all("timestamp" in entry and "level" in entry for entry in logs)
    assert {entry["app"] for entry in logs} == {"tinyllm-demo"}  # the trees' service name
    # Part 2: the un-decorated app under `tinyllm-instrument run`, its default targets: run()
    # is the entry point, so each answer() is a trace of its own.
    assert "exit code 0" in out and "plain_app:answer" in out and "removed plain_app:run" in out
    run_stdout = (tmp_path / "run-stdout.txt").read_text()
    assert run_stdout.count("trace ") == 12 and '"context"' not in run_stdout
    roots = re.findall(r"^trace [0-9a-f]{8} · plain_app\n(\w+) ", run_stdout, flags=re.M)
    assert roots == ["answer"] * 12
    run_names = set(re.findall(r"^[│├└─ ]*(\w+)  ", run_stdout, flags=re.M))
    assert run_names == {"answer", "route", "retrieve", "call_model", "stream_answer"}
    assert "├─ route" in out and "... 10 more trees" in out  # the demo shows two of them
    run_logs = [json.loads(line) for line in (tmp_path / "run-app.log").read_text().splitlines()]
    assert any(entry.get("graph") == "answer" for entry in run_logs)
    assert {entry["app"] for entry in run_logs} == {"plain_app"}


#: Where docs/cli.md says `make demo SERVE=1` serves the example graph's metrics and logs.
CLI_DOC = ROOT / "docs" / "cli.md"


def _documented_port() -> int:
    text = " ".join(CLI_DOC.read_text().split())
    match = re.search(r"serving its metrics on port (\d+) and writing JSON logs to `([^`]+)`", text)
    assert match, "docs/cli.md no longer says where `make demo SERVE=1` serves"
    # where the demo writes them when make runs it: its --out folder, by default
    default_out = re.search(
        r'"--out", default="([^"]+)"', (ROOT / "examples" / "demo.py").read_text()
    )
    assert default_out and match.group(2) == f"{default_out.group(1)}/app.log"
    return int(match.group(1))


def test_make_demo_serve_runs_the_demo_with_serve():
    dry = subprocess.run(
        ["make", "-n", "demo", "SERVE=1", "PY=python"], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert "python examples/demo.py --serve" in dry.stdout.splitlines()


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """Start the demo with --serve; return it and its output up to the serving line."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--serve", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Serving "):
            return proc, lines
    proc.wait(10)
    raise AssertionError(f"the demo never served: {lines}\n{proc.stderr.read()}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _scrape(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


def test_demo_serve_serves_where_the_docs_say_with_the_logs_there(tmp_path):
    port = _documented_port()
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip(f"another process on this machine holds port {port}; the next test "
                        "covers the demo's fallback")  # fmt: skip
    proc, lines = _serve(tmp_path / "demo-output")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        log = tmp_path / "demo-output" / "app.log"
        assert lines[-1] == f"Serving {url} until Ctrl-C; the JSON logs are in {log}."
        assert f"Metrics  {url} (served until Ctrl-C)" in lines
        assert not any(line.startswith("Port ") for line in lines)
        assert "tinyllm_node_executions_total" in _scrape(url)
        logs = log.read_text().splitlines()
        assert logs and all(json.loads(line)["level"] for line in logs)
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_demo_serve_falls_back_to_a_free_port_with_a_clear_line(tmp_path):
    port = _documented_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the demo's server does
    try:
        try:
            holder.bind(("127.0.0.1", port))
            holder.listen()
        except OSError:
            pass  # held by another process already: taken either way
        proc, lines = _serve(tmp_path)
        try:
            [note] = [line for line in lines if line.startswith("Port ")]
            match = re.fullmatch(
                rf"Port {port} is taken, so the metrics are served on "
                r"(http://127\.0\.0\.1:(\d+)/metrics) instead: use that port in docs/cli\.md's "
                r"commands\.",
                note,
            )
            assert match, note
            url = match.group(1)
            assert int(match.group(2)) != port
            assert lines[-1].startswith(f"Serving {url} until Ctrl-C")
            assert "tinyllm_node_executions_total" in _scrape(url)
        finally:
            _stop(proc)
    finally:
        holder.close()
    assert proc.returncode == 0
