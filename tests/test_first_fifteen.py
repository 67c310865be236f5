"""Issue 17, the first fifteen minutes: what a new user runs first does what the pages say.

A user's own app (tests/apps/first_app.py: router, retriever, model call with usage, streaming
generator, tool, an occasional failure, a main() that calls the graph three times) under
``tinyllm-instrument run`` with no flag prints three trees; with ``--graph`` and a wrapped
``main()``, each graph call is still a trace of its own, linked to main's span.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receivers import GrpcTraceReceiver

CLI = str(Path(sys.executable).parent / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_"))
        and k not in ("TRACEPARENT", "BAGGAGE", "PYTHONPATH", "NO_COLOR")
    }


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "run", *args], capture_output=True, text=True, cwd=APPS, env=_env(), timeout=60
    )


@pytest.fixture
def receiver():
    with GrpcTraceReceiver() as rec:
        yield rec


# A tree as `run` prints it: the header, then one line per span; durations and bars are free.
_ROW = (
    r"(?P<indent>(?:│  |   )*(?:├─ |└─ )?)(?P<name>\S+) +[\d.]+ (?:µs|ms|s) +[█·]{20}  (?P<rest>.*)"
)


def _trees(stderr: str) -> list[list[tuple[str, str]]]:
    """Each tree as (indented name, outcome and figures) rows."""
    trees: list[list[tuple[str, str]]] = []
    for line in stderr.splitlines():
        if re.fullmatch(r"trace [0-9a-f]{8} · first_app", line):
            trees.append([])
            continue
        match = re.fullmatch(_ROW, line)
        if match and trees:
            rest = re.sub(r" {2,}", "  ", match["rest"])
            trees[-1].append((match["indent"] + match["name"], rest))
    return trees


_CALLS = [
    [
        ("ask", "ok"),
        ("├─ search_docs", "ok"),
        ("├─ classify", "ok"),
        ("├─ chat_completion", "ok  in 33 / out 9 tok, $0.000173"),
        ("└─ stream_reply", "ok  ttfi <t>"),
    ],
    [
        ("ask", "ok"),
        ("├─ search_docs", "ok"),
        ("├─ classify", "ok"),
        ("├─ check_weather", "error WeatherServiceDown"),
        ("├─ chat_completion", "ok  in 31 / out 9 tok, $0.000168"),
        ("└─ stream_reply", "ok  ttfi <t>"),
    ],
    [
        ("ask", "ok"),
        ("├─ search_docs", "ok"),
        ("├─ classify", "ok"),
        ("├─ check_weather", "ok"),
        ("├─ chat_completion", "ok  in 31 / out 9 tok, $0.000168"),
        ("└─ stream_reply", "ok  ttfi <t>"),
    ],
]


def _free_ttfi(tree: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, re.sub(r"ttfi [\d.]+ (?:µs|ms|s)", "ttfi <t>", rest)) for name, rest in tree]


def test_a_new_users_app_with_no_flag_prints_one_tree_per_graph_call():
    result = run_cli("first_app.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Q: what is the refund policy? -> Refunds are accepted within 30 days.",
        "Q: weather in Paris? -> Weather data is unavailable right now.",
        "Q: weather in Oslo? -> Oslo: 3 C and snowing.",
    ]
    assert [_free_ttfi(t) for t in _trees(result.stderr)] == _CALLS
    assert not any(line.startswith("tinyllm-instrument: ") for line in result.stderr.splitlines())


def test_with_graph_named_each_call_is_its_own_trace_even_under_a_wrapped_main(receiver):
    result = run_cli(
        "--instrument",
        "first_app:*",
        "--graph",
        "ask",
        "--otlp-endpoint",
        receiver.endpoint,
        "first_app.py",
    )
    assert result.returncode == 0, result.stderr
    spans = receiver.wait_for(1 + 3 + 4 + 5 + 5)
    [main] = [s for s in spans if s.name == "main"]
    asks = [s for s in spans if s.name == "ask"]
    assert len(asks) == 3
    assert main.parent_span_id is None
    assert len({main.trace_id, *(a.trace_id for a in asks)}) == 4  # four traces
    for ask in asks:
        assert ask.parent_span_id is None  # a root, not main's child
        assert ask.links == [(main.trace_id, main.span_id)]
        nodes = [s for s in spans if s.trace_id == ask.trace_id and s is not ask]
        assert nodes and all(s.parent_span_id == ask.span_id for s in nodes)
    assert sorted(main.links) == sorted((a.trace_id, a.span_id) for a in asks)


# --- point 15: installing the kit says nothing deprecated --------------------------------------


def _metadata_warnings(project: Path, setuptools_dir: Path) -> list[str]:
    """What setuptools prints while it reads ``project``'s pyproject.toml for an install."""
    out = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            "import tempfile; from setuptools import build_meta; "
            "build_meta.prepare_metadata_for_build_editable(tempfile.mkdtemp())",
        ],
        cwd=project,
        env={**_env(), "PYTHONPATH": str(setuptools_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [line for line in out.stderr.splitlines() if "Warning" in line]


@pytest.fixture(scope="module")
def new_setuptools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The setuptools pyproject.toml asks for (>=77, which reads SPDX license strings), as pip's
    build isolation installs it; the test venv may hold an older one."""
    target = tmp_path_factory.mktemp("setuptools")
    got = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        + ["setuptools>=77"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if got.returncode != 0:
        reason = got.stderr.strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"no setuptools>=77 from PyPI (what pip builds with): {reason[0]}")
    return target


@pytest.mark.slow
def test_installing_the_kit_prints_no_setuptools_deprecation(tmp_path, new_setuptools):
    root = Path(__file__).resolve().parents[1]
    for name in ("pyproject.toml", "README.md"):
        (tmp_path / name).write_text((root / name).read_text())
    (tmp_path / "tinyllm_instrument").mkdir()
    (tmp_path / "tinyllm_instrument" / "__init__.py").write_text("")
    assert _metadata_warnings(tmp_path, new_setuptools) == []
    # The same check sees the table form setuptools deprecates (the ~50 lines of issue 17)
    text = (tmp_path / "pyproject.toml").read_text()
    old = text.replace('license = "Apache-2.0"', 'license = {text = "Apache-2.0"}')
    assert old != text
    (tmp_path / "pyproject.toml").write_text(old)
    assert any("project.license" in w for w in _metadata_warnings(tmp_path, new_setuptools))


# --- messages matched exactly (points 5, 6, 8), where other tests match a part ---------------


def test_a_bad_endpoint_in_code_names_the_field_and_under_run_the_flag():
    from tinyllm_instrument.telemetry import TelemetryConfig

    with pytest.raises(ValueError) as info:
        TelemetryConfig(otlp_endpoint="notaurl")
    assert str(info.value) == (
        "TelemetryConfig.otlp_endpoint='notaurl' is not a valid OTLP endpoint; allowed: a base "
        "URL such as 'http://localhost:4317' (grpc) or 'http://localhost:4318' (http/protobuf)"
    )
    result = run_cli("--otlp-endpoint", "notaurl", "first_app.py")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        "Error: --otlp-endpoint notaurl: must be a collector's base URL such as "
        "http://localhost:4317 (grpc) or http://localhost:4318 (http/protobuf)"
    ]


def test_a_metrics_port_in_use_under_the_metrics_command_names_port_and_exits_2():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [CLI, "metrics", "--port", str(port)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: cannot serve metrics on 127.0.0.1:{port}: the port is in use; pass another "
        f"(--port {port + 1}, or --port 0 for any free one) or stop the process that holds it"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_collector_down_at_the_end_of_a_run_is_one_exact_line(protocol):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    result = run_cli("--otlp-endpoint", endpoint, "--otlp-protocol", protocol, "first_app.py")
    assert result.returncode == 0, result.stderr
    lines = [
        line
        for line in result.stderr.splitlines()
        if line != "node.execution.failed: check_weather failed"  # the app's failing tool
    ]
    check = f"tinyllm-instrument health --otlp-endpoint {endpoint}"
    if protocol != "grpc":
        check += " --otlp-protocol http/protobuf"
    # 17 spans: main is not wrapped; the exporter's own words (gRPC's or urllib3's) are free
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        r"tinyllm_instrument: 17 span\(s\) dropped \(shutdown=17; export did not finish within "
        r"5\.0s\): span export failed: [^\n]+; counted in tinyllm_spans_dropped_total\{reason\}; "
        rf"check the collector with: {re.escape(check)}",
        lines[0],
    ), lines[0]
