"""``tinyllm-instrument run``: real programs through the real command, seen by a real receiver."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from otlp_receivers import GrpcTraceReceiver, HttpTraceReceiver, ReceivedSpan
from prometheus_client.parser import text_string_to_metric_families

BIN = Path(sys.executable).parent
CLI = str(BIN / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"
SAMPLE = APPS / "sample_app.py"
#: Generous: a run that waits for a dead collector must still end well within this.
EXIT_BOUND_S = 15.0

SAMPLE_SPANS = {
    "main",
    "pipeline",
    "tokenize",
    "Agent.make",
    "Agent.step",
    "Agent.static_tool",
    "shout",
    "stream",
    "fetch",
    "explode",
}


def _env(**extra: str) -> dict[str, str]:
    """This interpreter's environment without any TINYLLM_INSTRUMENT_* / trace context of ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TINYLLM_INSTRUMENT_")
        and k not in ("TRACEPARENT", "TRACESTATE", "BAGGAGE", "PYTHONPATH")
    }
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [CLI, "run", *args],
        capture_output=True,
        text=True,
        cwd=APPS,
        env=env if env is not None else _env(),
        timeout=timeout,
    )


def _by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receiver():
    with GrpcTraceReceiver() as rec:
        yield rec


# --- the program runs as __main__, wrapped, and its spans arrive ----------------------------------


@pytest.mark.parametrize("mode", ["script", "module"])
def test_every_kind_of_callable_of_the_program_is_traced_in_one_graph(receiver, mode):
    target = ["sample_app.py"] if mode == "script" else ["-m", "sample_app"]
    result = run_cli(
        "--instrument",
        "sample_app:*",
        "--instrument",
        "helpers:shout",
        "--otlp-endpoint",
        receiver.endpoint,
        *target,
        "7",
        "--not-ours",
    )
    assert result.returncode == 7, result.stderr
    assert "argv=['7', '--not-ours'] main=__main__ path0_ok=True" in result.stdout
    spans = receiver.wait_for(len(SAMPLE_SPANS) + 2)  # shout runs three times
    by_name = _by_name(spans)
    assert set(by_name) == SAMPLE_SPANS  # Agent.__init__: special methods are skipped by "*"
    main = by_name["main"]
    assert main.parent_span_id is None
    assert main.attributes["tinyllm.graph"] == "main"
    assert {s.trace_id for s in spans} == {main.trace_id}
    pipeline = by_name["pipeline"]
    assert pipeline.parent_span_id == main.span_id
    assert pipeline.attributes["tinyllm.node"] == "pipeline"
    assert pipeline.attributes["tinyllm.graph"] == "main"
    for name in ("tokenize", "Agent.make", "Agent.step", "stream", "fetch", "explode"):
        assert by_name[name].parent_span_id == pipeline.span_id, name
    assert all(
        s.parent_span_id == by_name["Agent.step"].span_id for s in spans if s.name == "shout"
    )
    assert by_name["stream"].attributes["tinyllm.generator.items"] == 3
    assert by_name["explode"].status_code == "ERROR"
    assert [name for name, _ in by_name["explode"].events] == ["exception"]
    assert by_name["pipeline"].status_code != "ERROR"  # caught inside: not a failure of pipeline
    assert main.resource["service.name"] == "sample_app"


def test_a_package_run_with_dash_m_is_matched_by_its_package_pattern(receiver):
    result = run_cli(
        "--instrument", "shop.*:*", "--otlp-endpoint", receiver.endpoint, "-m", "shop", "a", "b"
    )
    assert result.returncode == 0, result.stderr
    assert "items=2" in result.stdout
    spans = receiver.wait_for(4)
    names = sorted(s.name for s in spans)
    assert names == ["Cart.add", "Cart.add", "checkout", "total"]
    checkout = _by_name(spans)["checkout"]
    assert checkout.attributes["tinyllm.graph"] == "checkout"
    assert all(s.parent_span_id == checkout.span_id for s in spans if s is not checkout)


def test_graph_option_names_the_graph_callable(receiver):
    result = run_cli(
        "--instrument",
        "sample_app:*",
        "--graph",
        "Agent.step",
        "--otlp-endpoint",
        receiver.endpoint,
        "sample_app.py",
    )
    assert result.returncode == 0, result.stderr
    by_name = _by_name(receiver.wait_for(len(SAMPLE_SPANS) - 1))
    assert by_name["Agent.step"].attributes["tinyllm.graph"] == "Agent.step"
    assert "tinyllm.node" not in by_name["Agent.step"].attributes
    assert by_name["main"].attributes["tinyllm.node"] == "main"  # not a graph any more
    assert "tinyllm.graph" not in by_name["main"].attributes


def test_uncaught_exception_exits_1_with_a_true_traceback(receiver):
    result = run_cli(
        "--instrument",
        "sample_app:*",
        "--otlp-endpoint",
        receiver.endpoint,
        "sample_app.py",
        "--fail",
    )
    assert result.returncode == 1
    lines = SAMPLE.read_text().splitlines()
    raise_line = next(i for i, line in enumerate(lines, 1) if "raise ValueError" in line)
    main_call = next(i for i, line in enumerate(lines, 1) if "sys.exit(main(" in line)
    # Before the traceback, only the kit's failure events (logging is not configured, so they
    # go to stderr through stdlib's last resort); the traceback itself starts at the program.
    head, sep, err = result.stderr.partition("Traceback (most recent call last):")
    assert sep, result.stderr
    assert all(
        line.startswith(("node.execution.failed:", "graph.execution.failed:"))
        for line in head.splitlines()
    ), head
    assert f'sample_app.py", line {main_call}, in <module>' in err
    assert f'sample_app.py", line {raise_line}, in explode' in err
    assert err.rstrip().endswith("ValueError: boom from explode")
    assert "_runner.py" not in err and "_program.py" not in err and "click" not in err
    spans = receiver.wait_for(len(SAMPLE_SPANS))  # no shout here; explode runs twice
    assert [s.name for s in spans].count("explode") == 2
    assert _by_name(spans)["main"].status_code == "ERROR"


@pytest.mark.parametrize("patterns", [[], ["--instrument", "bad:*"]], ids=["plain", "wrapped"])
def test_a_program_that_does_not_compile_is_reported_as_python_reports_it(tmp_path, patterns):
    script = tmp_path / "bad.py"
    script.write_text("x = 1\ndef broken(:\n    pass\n")
    plain = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=_env(), timeout=60
    )
    result = run_cli(*patterns, str(script))
    assert (result.returncode, result.stderr) == (plain.returncode, plain.stderr)
    assert "Traceback" not in result.stderr


# --- patterns, the plan, environment twins -----------------------------------------------------


def test_print_plan_shows_what_each_pattern_matched():
    result = run_cli(
        "--instrument",
        "sample_app:Agent.*",
        "--instrument",
        "helpers:*",
        "--instrument",
        "never_imported:*",
        "--print-plan",
        "sample_app.py",
    )
    assert result.returncode == 0, result.stderr
    plan = result.stderr[result.stderr.index("tinyllm-instrument plan:") :].splitlines()
    assert plan == [
        "tinyllm-instrument plan:",
        "  sample_app:Agent.*",
        "    sample_app:Agent.step",
        "    sample_app:Agent.static_tool",
        "    sample_app:Agent.make",
        "  helpers:*",
        "    helpers:shout",
        "    helpers:unused",
        "  never_imported:*",
        "    matched nothing (its module was never imported, or has no such name)",
        "tinyllm-instrument: pattern 'never_imported:*' matched nothing: module 'never_imported' "
        "was never imported",
    ]


def test_environment_twins_configure_the_run_and_flags_beat_them(receiver):
    with GrpcTraceReceiver() as other:
        env = _env(
            TINYLLM_INSTRUMENT_TARGETS="sample_app:tokenize, helpers:shout,",
            TINYLLM_INSTRUMENT_OTLP_ENDPOINT=other.endpoint,
            TINYLLM_INSTRUMENT_SERVICE_NAME="from-env",
        )
        result = run_cli("--otlp-endpoint", receiver.endpoint, "sample_app.py", env=env)
        assert result.returncode == 0, result.stderr
        spans = receiver.wait_for(4)
        assert sorted(s.name for s in spans) == ["shout", "shout", "shout", "tokenize"]
        assert spans[0].resource["service.name"] == "from-env"
        assert other.spans == []


def test_http_protobuf_protocol_is_honoured():
    with HttpTraceReceiver() as rec:
        result = run_cli(
            "--instrument",
            "sample_app:tokenize",
            "--otlp-endpoint",
            rec.endpoint,
            "--otlp-protocol",
            "http/protobuf",
            "sample_app.py",
        )
        assert result.returncode == 0, result.stderr
        assert [s.name for s in rec.wait_for(1)] == ["tokenize"]


# --- errors of the command itself ----------------------------------------------------------------


_PATTERN_FORMS = (
    "use module:function, module:Class.method, module:*, module:Class.* or package.*:*, "
    "with ! in front to exclude"
)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["missing_app.py"], "Error: cannot run 'missing_app.py': no such file"),
        (
            ["-m", "no_such_module_here"],
            f"Error: no module named 'no_such_module_here' (looked on sys.path from {APPS})",
        ),
        (
            ["--exporter", "bogus", "sample_app.py"],
            "Error: --exporter bogus: must be one of console, otlp, none, tree",
        ),
        (
            ["--instrument", "not a pattern", "sample_app.py"],
            f"Error: --instrument 'not a pattern': not a valid pattern; {_PATTERN_FORMS}",
        ),
        (
            ["--sampling-rate", "2", "sample_app.py"],
            "Error: --sampling-rate 2: must be between 0 and 1",
        ),
        (
            ["--exporter", "console", "--otlp-endpoint", "http://127.0.0.1:1", "sample_app.py"],
            "Error: --otlp-endpoint needs --exporter otlp, not --exporter console; drop one "
            "of them",
        ),
        (
            ["--otlp-endpoint", "notaurl", "sample_app.py"],
            "Error: --otlp-endpoint notaurl: must be a collector's base URL such as "
            "http://localhost:4317 (grpc) or http://localhost:4318 (http/protobuf)",
        ),
        (
            ["--otlp-endpoint", "http://ann:s3cret@:4317", "sample_app.py"],
            "Error: --otlp-endpoint http://ann:[REDACTED]@:4317: must be a collector's base URL "
            "such as http://localhost:4317 (grpc) or http://localhost:4318 (http/protobuf)",
        ),
        (
            ["--metrics-port", "70000", "sample_app.py"],
            "Error: --metrics-port 70000: must be a port number from 0 to 65535 (0: any free port)",
        ),
        (
            ["--log-level", "loud", "sample_app.py"],
            "Error: --log-level loud: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (["--service-name", "", "sample_app.py"], "Error: --service-name '': must not be empty"),
        (
            ["--model", "gpt-4o", "sample_app.py"],
            "Error: --model gpt-4o: must be PATTERN=NAME, such as 'app:call_model=gpt-4o-mini'",
        ),
        (
            ["--model", "!sample_app:main=gpt-4o", "sample_app.py"],
            "Error: --model '!sample_app:main=gpt-4o': '!sample_app:main' is an exclusion; a "
            "model is named for what is wrapped",
        ),
        (
            ["--model", "sample_app:*=gpt 4", "sample_app.py"],
            "Error: --model 'sample_app:*=gpt 4': model name 'gpt 4' must not hold spaces, "
            "commas or control characters",
        ),
        (
            ["--model", "a:*=x", "--model", "a:*=y", "sample_app.py"],
            "Error: --model 'a:*=y': a:* already has model 'x'; give each pattern one model",
        ),
        (
            ["--log-file", "/proc/nope/x.log", "sample_app.py"],
            "Error: --log-file /proc/nope/x.log: cannot open it for writing (No such file or "
            "directory); check that its directory exists and is writable",
        ),
        ([], "Error: give the program to run: SCRIPT [ARGS]... or -m MODULE [ARGS]..."),
    ],
)
def test_a_bad_invocation_is_one_line_on_stderr_and_exit_code_2(args, line):
    result = run_cli(*args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [line]


# --- exit: signals, a dead collector, metrics for the program's life ---------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)])
def test_a_signal_ends_the_run_with_its_spans_flushed(receiver, sig, code):
    # SIGINT back to its default first: a shell starts background jobs with it ignored
    reset_sigint = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    reset_sigint += "os.execv(sys.argv[1], sys.argv[1:])"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            reset_sigint,
            CLI,
            "run",
            "--instrument",
            "waiter:*",
            "--otlp-endpoint",
            receiver.endpoint,
            "waiter.py",
        ],
        cwd=APPS,
        env=_env(PYTHONFAULTHANDLER="1"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(sig)
        try:
            proc.wait(EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
    assert proc.returncode == code, err
    by_name = _by_name(receiver.wait_for(5))
    assert set(by_name) == {"main", "work", "wait_for_line"}
    interrupted = "SystemExit" if sig == signal.SIGTERM else "KeyboardInterrupt"
    assert by_name["wait_for_line"].attributes["tinyllm.interrupted"] == interrupted
    assert by_name["main"].attributes["tinyllm.interrupted"] == interrupted


@pytest.mark.slow
def test_a_dead_collector_does_not_hold_the_exit_beyond_the_bound():
    dead = GrpcTraceReceiver().start()
    endpoint = dead.endpoint
    dead.stop()  # nobody listens on that port any more
    start = time.monotonic()
    result = run_cli(
        "--instrument",
        "sample_app:*",
        "--otlp-endpoint",
        endpoint,
        "sample_app.py",
        "3",
        timeout=EXIT_BOUND_S * 2,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 3, result.stderr
    assert elapsed < EXIT_BOUND_S, f"exit took {elapsed:.1f}s"


def test_the_guides_form_serves_metrics_for_the_programs_life_and_logs_json(receiver):
    port = _free_port()
    proc = subprocess.Popen(
        [
            CLI,
            "run",
            "--instrument",
            "waiter:*",
            "--tracing",
            "--otlp-endpoint",
            receiver.endpoint,
            "--metrics-port",
            str(port),
            "--log-format",
            "json",
            "waiter.py",
        ],
        cwd=APPS,
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        log_line = json.loads(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "ready"
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples
        }
        key = ("tinyllm_node_executions_total", (("graph", "main"), ("node", "work")))
        assert samples[key] == 3
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.wait(EXIT_BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "done 6" in out
    # the program's own log line, as JSON, carrying the trace of the call it was logged in
    by_name = _by_name(receiver.wait_for(5))
    assert log_line["event"] == "waiting for a line" and log_line["level"] == "warning"
    assert log_line["trace_id"] == by_name["wait_for_line"].trace_id
    assert log_line["span_id"] == by_name["wait_for_line"].span_id


def test_metrics_port_0_says_which_port_it_took():
    result = run_cli("--metrics-port", "0", "sample_app.py")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if "/metrics" in x)
    assert line.startswith("tinyllm-instrument: metrics on http://127.0.0.1:")
    assert int(line.rsplit(":", 1)[1].split("/")[0]) > 0


# --- child processes and the OpenTelemetry instrumentor -------------------------------------------


def test_python_children_join_the_trace_of_the_call_that_started_them(receiver):
    result = run_cli(
        "--instrument",
        "spawner:*",
        "--instrument",
        "child_worker:*",
        "--instrument",
        "helpers:shout",
        "--otlp-endpoint",
        receiver.endpoint,
        "spawner.py",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "subprocess said FROM-SUBPROCESS" in result.stdout
    assert "spawn exit code 0" in result.stdout
    spans = receiver.wait_for(7)
    by_name = _by_name(spans)
    main = by_name["main"]
    assert {s.trace_id for s in spans} == {main.trace_id}
    assert {s.resource["service.name"] for s in spans} == {"spawner"}
    shouts = {s.parent_span_id: s for s in spans if s.name == "shout"}
    # subprocess: the child's own script is wrapped too; its first call is a child of the
    # launching call and a node of the parent's graph
    work = by_name["work"]
    assert work.parent_span_id == by_name["launch_subprocess"].span_id
    assert work.attributes["tinyllm.graph"] == "main"
    assert shouts[work.span_id].attributes["tinyllm.graph"] == "main"
    # spawn: the child re-runs the script's definitions wrapped, under the launching call
    spawned = by_name["spawned_work"]
    assert spawned.parent_span_id == by_name["launch_spawn"].span_id
    assert spawned.attributes["tinyllm.graph"] == "main"
    assert spawned.span_id in shouts


def test_a_child_not_named_by_any_pattern_runs_untouched(receiver):
    result = run_cli(
        "--instrument",
        "spawner:launch_subprocess",
        "--otlp-endpoint",
        receiver.endpoint,
        "spawner.py",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "subprocess said FROM-SUBPROCESS" in result.stdout
    assert [s.name for s in receiver.wait_for(1)] == ["launch_subprocess"]


def test_the_childs_sitecustomize_chains_to_the_one_it_shadows():
    env = _env(PYTHONPATH=str(APPS / "othersite"))
    result = run_cli("site_probe.py", env=env)
    assert result.returncode == 0, result.stderr
    # the other sitecustomize ran at start-up and again on the reload; ours set the kit up
    assert result.stdout.strip() == "2 True"


def test_opentelemetry_instrument_applies_the_targets(receiver):
    env = _env(
        TINYLLM_INSTRUMENT_TARGETS="helpers:shout",
        RECEIVER_ENDPOINT=receiver.endpoint,
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        PYTHONPATH=str(APPS),
    )
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, "otel_app.py"],
        capture_output=True,
        text=True,
        cwd=APPS,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OTEL"
    [span] = receiver.wait_for(1)
    assert span.name == "shout"
    assert span.attributes["tinyllm.graph"] == "shout"


def test_a_bad_global_switch_is_one_clear_error(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("print('hello')\n")
    env = dict(os.environ, TINYLLM_INSTRUMENT_ENABLED="maybe")
    result = subprocess.run(
        [str(CLI), "run", str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: TINYLLM_INSTRUMENT_ENABLED='maybe' is not a boolean; "
        "use one of 1/0, true/false, yes/no, on/off"
    ]


_HELLO_RAN = "hello"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TINYLLM_INSTRUMENT_SAMPLING_RATE", "2", "must be between 0 and 1"),
        ("TINYLLM_INSTRUMENT_SAMPLING_RATE", "abc", "must be a number between 0 and 1"),
        ("TINYLLM_INSTRUMENT_SAMPLING_RATE", "nan", "must be between 0 and 1"),
        (
            "TINYLLM_INSTRUMENT_METRICS_PORT",
            "http",
            "must be a port number from 0 to 65535 (0: any free port)",
        ),
        ("TINYLLM_INSTRUMENT_EXPORTER", "zipkin", "must be one of console, otlp, none, tree"),
        (
            "TINYLLM_INSTRUMENT_LOG_LEVEL",
            "loud",
            "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        ("TINYLLM_INSTRUMENT_LOG_FORMAT", "xml", "must be one of console, json"),
        ("TINYLLM_INSTRUMENT_OTLP_PROTOCOL", "http", "must be one of grpc, http/protobuf"),
        (
            "TINYLLM_INSTRUMENT_OTLP_ENDPOINT",
            "notaurl",
            "must be a collector's base URL such as http://localhost:4317 (grpc) or "
            "http://localhost:4318 (http/protobuf)",
        ),
        ("TINYLLM_INSTRUMENT_TRACING", "maybe", "must be one of 1/0, true/false, yes/no, on/off"),
        ("TINYLLM_INSTRUMENT_PRINT_PLAN", "2", "must be one of 1/0, true/false, yes/no, on/off"),
        (
            "TINYLLM_INSTRUMENT_DEFAULT_TARGETS",
            "none",
            "must be one of 1/0, true/false, yes/no, on/off",
        ),
        (
            "TINYLLM_INSTRUMENT_TARGETS",
            "hello:*, not a pattern",
            f"'not a pattern' is not a valid pattern; {_PATTERN_FORMS}",
        ),
        (
            "TINYLLM_INSTRUMENT_MODELS",
            "hello:*=gpt-4o,gpt-4o",
            "'gpt-4o' must be PATTERN=NAME, such as 'app:call_model=gpt-4o-mini'",
        ),
        (
            "TINYLLM_INSTRUMENT_LOG_FILE",
            "/proc/nope/x.log",
            "cannot open it for writing (No such file or directory); check that its directory "
            "exists and is writable",
        ),
    ],
)
def test_a_bad_environment_value_names_the_variable_not_the_flag(
    tmp_path, variable, value, message
):
    script = tmp_path / "hello.py"
    script.write_text(f"print({_HELLO_RAN!r})\n")
    env = dict(os.environ, **{variable: value})
    result = subprocess.run(
        [str(CLI), "run", str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"Error: {variable}={shlex.quote(value)}: {message}"]
    assert _HELLO_RAN not in result.stdout  # the program never ran


# --- a metrics port in use: the option the user gave, exit code 2 as `metrics` ------------------


@pytest.mark.parametrize("given", ["flag", "env"])
def test_a_metrics_port_in_use_names_the_option_it_came_from(given):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        if given == "flag":
            result = run_cli("--metrics-port", str(port), "sample_app.py")
            name = "--metrics-port "
        else:
            result = run_cli("sample_app.py", env=_env(TINYLLM_INSTRUMENT_METRICS_PORT=str(port)))
            name = "TINYLLM_INSTRUMENT_METRICS_PORT="
        metrics = subprocess.run(
            [CLI, "metrics", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == metrics.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: cannot serve metrics on 127.0.0.1:{port}: the port is in use; pass another "
        f"({name}{port + 1}, or {name}0 for any free one) or stop the process that holds it"
    ]
    assert "Errno" not in metrics.stderr and "--port " in metrics.stderr
