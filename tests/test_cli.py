"""The CLI: debug inspect / test-trace / emit-event, health and cache-stats, through click's
CliRunner and as real subprocesses, against real OTLP receivers, a real metrics server and a real
redis-server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
import redis
from click.testing import CliRunner
from otlp_receivers import GrpcTraceReceiver, HttpTraceReceiver
from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer

import tinyllm_instrument
from tinyllm_instrument import logging as kit_logging
from tinyllm_instrument.cache import instrument_cache
from tinyllm_instrument.cli import cli
from tinyllm_instrument.events import BufferedEventHandler, get_event_emitter
from tinyllm_instrument.logging import configure_log_sampling, configure_logging
from tinyllm_instrument.metrics import (
    MetricsCollector,
    get_metrics_collector,
    set_metrics_collector,
    start_metrics_server,
)
from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry

NOTHING_CHECKED = "Health: nothing checked; pass --otlp-endpoint / --metrics-url / --log-file"
CLI_ONLY = "  Source: this CLI process, not your app"
SECTIONS = [
    "Metrics System:",
    "Cardinality Stats:",
    "Per-Metric Cardinality:",
    "Event System:",
    "Telemetry System:",
    "Logging System:",
]


def run(*args: str, env: dict[str, str] | None = None):
    """Invoke the CLI in-process; an exception that is not a clean CLI exit fails the test."""
    return CliRunner(catch_exceptions=False, env=env).invoke(cli, list(args))


def one_clear_line(result, code: int = 1) -> str:
    """Assert a CLI error: the exit code, nothing on stdout, one line on stderr; return it."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def console_script() -> str:
    return os.path.join(os.path.dirname(sys.executable), "tinyllm-instrument")


def run_subprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.fixture
def collector(registry):
    collector = MetricsCollector(registry=registry)
    set_metrics_collector(collector)
    return collector


@pytest.fixture
def app_metrics():
    """A running app's /metrics: a collector of its own served by the kit's metrics server."""
    app = MetricsCollector()
    server, thread = start_metrics_server(port=0, collector=app)
    try:
        yield app, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def foreign_metrics():
    """A /metrics endpoint that serves Prometheus text but no tinyllm_ family."""
    registry = CollectorRegistry()
    Counter("other_app_requests", "Not ours.", registry=registry).inc()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server():
    """A socket that accepts connections and never answers (for --timeout)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


# =========================================================================== debug inspect


def test_inspect_shows_every_section_in_the_guides_order(collector):
    result = run("debug", "inspect")
    assert result.exit_code == 0
    positions = [result.stdout.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "  Collector: prometheus\n" in result.stdout
    assert "  Registry: own CollectorRegistry\n" in result.stdout
    assert f"  Total metrics: {len(collector.metrics)}\n" in result.stdout
    assert "  Max cardinality: 1000\n" in result.stdout
    assert "  Handlers: LogEventHandler (info+), MetricEventHandler (info+)\n" in result.stdout


def test_inspect_says_each_section_shows_this_cli_process_not_the_app(collector):
    blocks = run("debug", "inspect").stdout.split("\n\n")
    assert [block.splitlines()[:2] for block in blocks] == [
        ["Metrics System:", CLI_ONLY + " (pass --metrics-url to read your app's /metrics)"],
        ["Cardinality Stats:", CLI_ONLY],
        ["Per-Metric Cardinality:", CLI_ONLY],
        ["Event System:", CLI_ONLY],
        ["Telemetry System:", CLI_ONLY],
        ["Logging System:", CLI_ONLY],
    ]


def test_inspect_with_metrics_url_says_only_the_other_sections_are_this_process(
    collector, app_metrics
):
    _, url = app_metrics
    out = run("debug", "inspect", "--metrics-url", url).stdout
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in out.split("\n\n")}
    for section in ("Metrics System:", "Cardinality Stats:", "Per-Metric Cardinality:"):
        assert not any("Source:" in line for line in blocks[section]), section
    for section in ("Event System:", "Telemetry System:", "Logging System:"):
        assert blocks[section][0] == CLI_ONLY
    report = json.loads(run("debug", "inspect", "--json", "--metrics-url", url).stdout)
    assert report["metrics"]["source"] == url
    assert report["events"]["source"] == "cli process"


def test_inspect_lists_every_family_of_the_collector_with_its_cardinality(registry):
    collector = MetricsCollector(max_cardinality=1, registry=registry)
    set_metrics_collector(collector)
    for model in ("a", "b", "c"):
        collector.increment_request_count(model, "qa")
    collector.increment_cache_hit("memory")
    out = run("debug", "inspect", "--component", "metrics").stdout
    for name in collector.metrics:  # families added later appear without changes
        assert f"    {name}: " in out
    # One admitted, then "other" for the rest: 2 series, 2 refused combinations.
    assert "    tinyllm_requests_total: 2 combinations, 2 dropped\n" in out
    assert "    tinyllm_cache_hits_total: 1 combinations, 0 dropped\n" in out
    assert "  Total combinations: 3\n" in out


@pytest.mark.parametrize(
    ("component", "shown"),
    [
        ("metrics", SECTIONS[:3]),
        ("events", ["Event System:"]),
        ("telemetry", ["Telemetry System:"]),
        ("logs", ["Logging System:"]),
        ("LOGS", ["Logging System:"]),
    ],
)
def test_inspect_one_component(collector, component, shown):
    out = run("debug", "inspect", "--component", component).stdout
    assert [s for s in SECTIONS if s in out] == shown


@pytest.mark.parametrize(
    ("component", "keys"),
    [
        ("all", ["metrics", "events", "telemetry", "logs"]),
        ("metrics", ["metrics"]),
        ("events", ["events"]),
        ("telemetry", ["telemetry"]),
        ("logs", ["logs"]),
    ],
)
def test_inspect_json_is_plain_json_and_nothing_else(collector, component, keys):
    collector.increment_cache_miss("redis")
    result = run("debug", "inspect", "--json", "--component", component)
    assert result.exit_code == 0 and result.stderr == ""
    report = json.loads(result.stdout)
    assert list(report) == keys
    if "metrics" in report:
        metrics = report["metrics"]
        assert set(metrics["metrics"]) == set(collector.metrics)
        assert metrics["metrics"]["tinyllm_cache_misses_total"] == {
            "type": "counter",
            "combinations": 1,
            "dropped": 0,
        }
        assert metrics["total_combinations"] == 1


def test_inspect_reports_configured_telemetry_logging_and_events(collector, tmp_path):
    configure_telemetry(
        TelemetryConfig(
            enable_tracing=True,
            exporter="otlp",
            otlp_protocol="http/protobuf",
            otlp_endpoint="http://127.0.0.1:4318",
            sampling_rate=0.25,
            service_name="qa-bot",
        )
    )
    log_file = tmp_path / "app.log"
    configure_logging(log_level="WARNING", log_format="json", log_file=log_file)
    configure_log_sampling(sample_rate=0.5)
    get_event_emitter().add_handler(BufferedEventHandler(min_severity="debug"))
    out = run("debug", "inspect").stdout
    assert (
        f"Telemetry System:\n{CLI_ONLY}\n  Enabled: True\n  Service: qa-bot\n  Exporter: otlp\n"
        "  Endpoint: http://127.0.0.1:4318/v1/traces (http/protobuf)\n  Sampling rate: 0.25\n"
    ) in out
    processors = len(kit_logging.get_logging_info()["processors"])
    assert (
        f"Logging System:\n{CLI_ONLY}\n  Configured: True\n  Format: json\n  Level: WARNING\n"
        f"  File: {log_file}\n  Processors: {processors}\n"
        "  Sampling: 0 seen, 0 kept, 0 dropped"
    ) in out
    assert "BufferedEventHandler (debug+)" in out
    report = json.loads(run("debug", "inspect", "--json").stdout)
    assert report["telemetry"]["sampling_rate"] == 0.25
    assert report["logs"]["level"] == "WARNING"
    assert report["events"]["handlers"][-1] == {
        "name": "BufferedEventHandler",
        "min_severity": "debug",
    }


def test_inspect_shows_the_emitter_off_when_the_kit_is_off(collector):
    tinyllm_instrument.configure(enabled=False)
    out = run("debug", "inspect", "--component", "events").stdout
    assert "  Enabled: False\n" in out
    assert "Kit switched off" in out


def test_inspect_unknown_component_is_a_clear_usage_error():
    result = run("debug", "inspect", "--component", "tracing")
    assert result.exit_code == 2 and result.stdout == ""
    assert "Invalid value for '--component': 'tracing' is not one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_inspect_metrics_url_reads_a_running_apps_metrics(collector, app_metrics):
    app, url = app_metrics
    app.increment_request_count("gpt-x", "qa")
    app.increment_request_count("gpt-y", "qa")
    with app.track_request_latency("gpt-x", "qa"):
        pass
    result = run("debug", "inspect", "--component", "metrics", "--metrics-url", url)
    assert result.exit_code == 0
    assert f"  Registry: {url}\n" in result.stdout
    assert f"  Total metrics: {len(app.metrics)}\n" in result.stdout
    assert "    tinyllm_requests_total: 2 combinations, dropped n/a\n" in result.stdout
    assert "    tinyllm_request_latency_seconds: 1 combinations, dropped n/a\n" in result.stdout
    assert "    tinyllm_active_requests: 1 combinations, dropped n/a\n" in result.stdout
    report = json.loads(run("debug", "inspect", "--json", "--metrics-url", url).stdout)
    assert set(report["metrics"]["metrics"]) == set(app.metrics)


def test_inspect_unreachable_metrics_url_is_one_line(closed_port):
    url = f"http://127.0.0.1:{closed_port}/metrics"
    line = one_clear_line(run("debug", "inspect", "--metrics-url", url))
    assert line.startswith(f"Error: cannot read {url}: ")


def test_inspect_timeout_bounds_the_wait(silent_server):
    url = f"http://127.0.0.1:{silent_server}/metrics"
    line = one_clear_line(run("debug", "inspect", "--metrics-url", url, "--timeout", "0.2"))
    assert "timed out" in line


def test_inspect_timeout_must_be_positive():
    result = run("debug", "inspect", "--timeout", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--timeout'" in result.stderr


def test_inspect_as_a_subprocess_prints_json_only():
    out = run_subprocess("debug", "inspect", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["metrics"]["total_metrics"] == len(MetricsCollector().metrics)
    assert report["events"]["enabled"] is True
    assert report["telemetry"] == {"source": "cli process", "enabled": False, "configured": False}
    assert {section["source"] for section in report.values()} == {"cli process"}
    assert report["logs"]["configured"] is False


# =========================================================================== debug test-trace


def shown_id(stdout: str, label: str) -> str:
    """The id test-trace printed after ``label`` ("Trace ID:" or "Span ID:")."""
    (line,) = [line for line in stdout.splitlines() if line.startswith(f"  {label}")]
    return line.split()[-1]


def test_test_trace_shows_ids_and_correlated_logs(collector):
    result = run("debug", "test-trace")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    trace_id, span_id = shown_id(result.stdout, "Trace ID:"), shown_id(result.stdout, "Span ID:")
    assert len(trace_id) == 32 and int(trace_id, 16)
    assert len(span_id) == 16 and int(span_id, 16)
    inside = json.loads(lines[lines.index("Log inside the span:") + 1])
    outside = json.loads(lines[lines.index("Log outside the span:") + 1])
    assert (inside["event"], inside["trace_id"], inside["span_id"]) == (
        "test_trace.inside_span",
        trace_id,
        span_id,
    )
    assert outside["event"] == "test_trace.outside_span" and "trace_id" not in outside
    assert lines[-1].startswith("Correlation: OK")


def test_test_trace_console_exporter_prints_the_span(collector):
    result = run("debug", "test-trace", "--exporter", "console")
    assert result.exit_code == 0, result.output
    trace_id = shown_id(result.stdout, "Trace ID:")
    assert '"name": "tinyllm.debug.test_trace"' in result.stdout
    assert f'"trace_id": "0x{trace_id}"' in result.stdout


@pytest.mark.parametrize(
    ("receiver_type", "protocol"),
    [(GrpcTraceReceiver, "grpc"), (HttpTraceReceiver, "http/protobuf")],
)
def test_test_trace_exports_the_span_to_a_real_collector(collector, receiver_type, protocol):
    with receiver_type() as receiver:
        result = run(
            "debug", "test-trace", "--exporter", "otlp",
            "--otlp-endpoint", receiver.endpoint, "--otlp-protocol", protocol,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        (span,) = receiver.wait_for(1)
    trace_id = shown_id(result.stdout, "Trace ID:")
    assert (span.name, span.trace_id) == ("tinyllm.debug.test_trace", trace_id)
    assert span.resource["service.name"] == "tinyllm-instrument-debug"
    assert "  Exported to: " + receiver.endpoint in result.stdout


def test_test_trace_fails_when_logs_lose_the_trace(collector, monkeypatch):
    monkeypatch.setattr(kit_logging, "add_trace_context", lambda logger, name, event: event)
    result = run("debug", "test-trace")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: trace correlation is broken: the log line inside the span should carry the "
        "span's trace_id and span_id, the line outside neither"
    )


def test_test_trace_says_so_when_its_log_lines_are_dropped(collector):
    configure_log_sampling(sample_rate=0.0)
    line = one_clear_line(run("debug", "test-trace"))
    assert line == (
        "Error: the test log lines were not written; is log sampling or the log level dropping "
        "INFO?"
    )


def test_test_trace_endpoint_needs_the_otlp_exporter():
    result = run("debug", "test-trace", "--otlp-endpoint", "http://127.0.0.1:4317")
    assert result.exit_code == 2
    assert "--otlp-endpoint needs --exporter otlp" in result.stderr


def test_test_trace_bad_endpoint_is_one_line():
    result = run("debug", "test-trace", "--exporter", "otlp", "--otlp-endpoint", "collector")
    line = one_clear_line(result)
    assert "'collector' is not a valid OTLP endpoint" in line


def test_test_trace_bad_protocol_is_a_usage_error():
    result = run("debug", "test-trace", "--otlp-protocol", "udp")
    assert result.exit_code == 2
    assert "Invalid value for '--otlp-protocol'" in result.stderr


def test_test_trace_as_a_subprocess_exports_to_a_collector():
    with GrpcTraceReceiver() as receiver:
        out = run_subprocess(
            "debug", "test-trace", "--exporter", "otlp", "--otlp-endpoint", receiver.endpoint
        )
        assert out.returncode == 0, out.stderr
        (span,) = receiver.wait_for(1)
    assert span.trace_id in out.stdout
    assert "Correlation: OK" in out.stdout


# =========================================================================== debug emit-event


def test_emit_event_guide_example(collector):
    buffer = get_event_emitter().add_handler(BufferedEventHandler())
    result = run(
        "debug", "emit-event", "test.event", "This is a test event",
        "--severity", "info", "--category", "system",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (event,) = buffer.get_events()
    assert (event.event_type, event.message) == ("test.event", "This is a test event")
    out = result.stdout
    assert out.startswith("Emitted test.event (system/info)\n")
    assert "  Delivered to: LogEventHandler, MetricEventHandler, BufferedEventHandler\n" in out
    assert f"  event_id: {event.event_id}\n" in out
    assert "  message: This is a test event\n" in out
    labels = {"category": "system", "severity": "info"}
    assert collector.registry.get_sample_value("tinyllm_events_total", labels) == 1.0
    # The log line of LogEventHandler goes to stderr, so stdout stays the event.
    assert "test.event" in result.stderr and "event_id=" in result.stderr


def test_emit_event_json_with_data(collector):
    result = run(
        "debug", "emit-event", "model.call", "Called", "--severity", "WARNING",
        "--category", "Model", "--data", "model=gpt-x", "--data", "tokens=12", "--json",
    )  # fmt: skip
    assert result.exit_code == 0
    event = json.loads(result.stdout)
    assert {k: event[k] for k in ("event_type", "category", "severity", "message", "data")} == {
        "event_type": "model.call",
        "category": "model",
        "severity": "warning",
        "message": "Called",
        "data": {"model": "gpt-x", "tokens": "12"},
    }


def test_emit_event_says_when_no_handler_takes_it(collector):
    result = run("debug", "emit-event", "noise", "x", "--severity", "debug")
    assert "  Delivered to: no handler takes debug events\n" in result.stdout
    tinyllm_instrument.configure(enabled=False)
    result = run("debug", "emit-event", "noise", "x")
    assert "  Delivered to: nobody: the emitter is disabled or the kit is switched off\n" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--severity", "loud"], "Invalid value for '--severity': 'loud' is not one of"),
        (["--category", "misc"], "Invalid value for '--category': 'misc' is not one of"),
        (["--data", "novalue"], "Invalid value for '--data': 'novalue' is not KEY=VALUE"),
        ([], None),
    ],
)
def test_emit_event_bad_choices_are_clicks_clear_errors(args, message):
    if message is None:  # a missing argument
        result = run("debug", "emit-event", "only.type")
        message = "Missing argument 'MESSAGE'"
    else:
        result = run("debug", "emit-event", "t", "m", *args)
    assert result.exit_code == 2 and result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr


def test_emit_event_as_a_subprocess_prints_the_event_as_json():
    out = run_subprocess("debug", "emit-event", "test.event", "hello", "--json")
    assert out.returncode == 0, out.stderr
    event = json.loads(out.stdout)
    assert (event["event_type"], event["message"]) == ("test.event", "hello")
    assert event["event_id"] in out.stderr  # the LogEventHandler line


# =========================================================================== health


def human_statuses(stdout: str) -> dict[str, str]:
    marks = {"ok": "ok", "FAIL": "fail", "skipped": "skipped"}
    return {
        line.split()[1]: marks[line.split()[0]] for line in stdout.splitlines()[1:] if line.strip()
    }


def health_both(*args: str, env: dict[str, str] | None = None):
    """Run health human and --json; assert they agree; return (exit code, json report, human)."""
    human = run("health", *args, env=env)
    machine = run("health", "--json", *args, env=env)
    report = json.loads(machine.stdout)
    codes = {"healthy": 0, "unhealthy": 1, "nothing_checked": 2}
    assert human.exit_code == machine.exit_code == codes[report["status"]]
    assert report["healthy"] is (report["status"] == "healthy")
    assert human_statuses(human.stdout) == {n: c["status"] for n, c in report["checks"].items()}
    assert (
        human.stdout.splitlines()[0]
        == {
            "healthy": "Health: healthy",
            "unhealthy": "Health: UNHEALTHY",
            "nothing_checked": NOTHING_CHECKED,
        }[report["status"]]
    )
    return human.exit_code, report, human.stdout


def test_health_with_nothing_to_check_does_not_claim_healthy(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    code, report, human = health_both()
    assert code == 2
    assert report["status"] == "nothing_checked" and report["healthy"] is False
    assert human == (
        "Health: nothing checked; pass --otlp-endpoint / --metrics-url / --log-file\n"
        "  skipped  otlp      no endpoint: pass --otlp-endpoint or set "
        "OTEL_EXPORTER_OTLP_ENDPOINT\n"
        "  skipped  metrics   no --metrics-url given\n"
        "  skipped  log_file  no --log-file given\n"
        "  ok       events    this CLI process, not your app: emitter enabled, handlers: "
        "LogEventHandler, MetricEventHandler\n"
    )
    assert "healthy" not in human.replace("unhealthy", "")


def test_health_with_nothing_to_check_but_a_failure_is_unhealthy():
    tinyllm_instrument.configure(enabled=False)
    code, report, _ = health_both()
    assert (code, report["status"]) == (1, "unhealthy")


@pytest.mark.parametrize(
    ("receiver_type", "protocol"),
    [(GrpcTraceReceiver, "grpc"), (HttpTraceReceiver, "http/protobuf")],
)
def test_health_otlp_endpoint_that_answers(receiver_type, protocol):
    with receiver_type() as receiver:
        code, report, _ = health_both(
            "--otlp-endpoint", receiver.endpoint, "--otlp-protocol", protocol
        )
        assert receiver.requests == 2  # one empty export per run
        assert receiver.spans == []
    assert code == 0
    assert report["checks"]["otlp"]["status"] == "ok"
    assert "accepted an empty trace export" in report["checks"]["otlp"]["detail"]


def test_health_otlp_endpoint_from_the_environment():
    with HttpTraceReceiver() as receiver:
        code, report, _ = health_both(
            "--otlp-protocol", "http/protobuf",
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
        )  # fmt: skip
        assert receiver.requests == 2
    assert report["checks"]["otlp"]["status"] == "ok"


def test_health_otlp_collector_down_is_unhealthy(closed_port):
    endpoint = f"http://127.0.0.1:{closed_port}"
    code, report, human = health_both("--otlp-endpoint", endpoint, "--timeout", "2")
    assert code == 1
    assert report["checks"]["otlp"]["status"] == "fail"
    assert report["checks"]["otlp"]["detail"].startswith(
        f"grpc {endpoint}: Export failed with UNAVAILABLE"
    )
    code, report, _ = health_both(
        "--otlp-endpoint", endpoint, "--otlp-protocol", "http/protobuf", "--timeout", "2"
    )
    assert code == 1
    assert "Connection refused" in report["checks"]["otlp"]["detail"]


def test_health_otlp_collector_refusing_exports_is_unhealthy():
    with HttpTraceReceiver() as receiver:
        receiver.fail_with = 503
        code, report, _ = health_both(
            "--otlp-endpoint", receiver.endpoint, "--otlp-protocol", "http/protobuf"
        )
    assert code == 1
    assert report["checks"]["otlp"]["detail"] == (
        f"http/protobuf {receiver.traces_url}: answered HTTP 503 Service Unavailable"
    )


def test_health_otlp_bad_url_is_a_failed_check():
    code, report, _ = health_both("--otlp-endpoint", "collector:4317")
    assert code == 1
    assert (
        report["checks"]["otlp"]["detail"] == "'collector:4317' is not an http(s)://host:port URL"
    )


def test_health_otlp_timeout_is_a_failed_check(silent_server):
    endpoint = f"http://127.0.0.1:{silent_server}"
    code, report, _ = health_both(
        "--otlp-endpoint", endpoint, "--otlp-protocol", "http/protobuf", "--timeout", "0.2"
    )
    assert code == 1
    assert "timed out" in report["checks"]["otlp"]["detail"]


def test_health_metrics_endpoint_serving_tinyllm_families(app_metrics):
    app, url = app_metrics
    code, report, _ = health_both("--metrics-url", url)
    assert code == 0
    assert report["checks"]["metrics"] == {
        "status": "ok",
        "detail": f"{url} serves {len(app.metrics)} tinyllm_ families",
    }


def test_health_metrics_endpoint_without_tinyllm_families(foreign_metrics):
    code, report, _ = health_both("--metrics-url", foreign_metrics)
    assert code == 1
    assert "but no tinyllm_ family" in report["checks"]["metrics"]["detail"]


def test_health_metrics_endpoint_unreachable(closed_port):
    url = f"http://127.0.0.1:{closed_port}/metrics"
    code, report, _ = health_both("--metrics-url", url)
    assert code == 1
    assert report["checks"]["metrics"]["detail"].startswith(f"cannot read {url}: ")


def test_health_log_file(tmp_path):
    new = tmp_path / "logs" / "app.log"
    code, report, _ = health_both("--log-file", str(new))
    assert (code, report["checks"]["log_file"]["status"]) == (0, "ok")
    assert not new.exists()  # checked without creating it
    existing = tmp_path / "existing.log"
    existing.write_text("")
    code, report, _ = health_both("--log-file", str(existing))
    assert report["checks"]["log_file"] == {"status": "ok", "detail": f"{existing} is writable"}
    code, report, _ = health_both("--log-file", str(tmp_path))
    assert (code, report["checks"]["log_file"]["detail"]) == (1, f"{tmp_path} is a directory")
    under_a_file = existing / "app.log"
    code, report, _ = health_both("--log-file", str(under_a_file))
    assert code == 1
    assert report["checks"]["log_file"]["detail"] == (
        f"{under_a_file}: {existing} is not a directory"
    )


def test_health_log_file_defaults_to_the_configured_one(tmp_path):
    log_file = tmp_path / "configured.log"
    configure_logging(log_file=log_file)
    code, report, _ = health_both()
    assert report["checks"]["log_file"] == {"status": "ok", "detail": f"{log_file} is writable"}


def test_health_emitter_disabled_or_kit_off_is_unhealthy():
    get_event_emitter().disable()
    code, report, _ = health_both()
    assert code == 1
    assert report["checks"]["events"]["detail"] == (
        "this CLI process, not your app: the process-wide event emitter is disabled"
    )
    get_event_emitter().enable()
    get_event_emitter().handlers = []
    code, report, _ = health_both()
    assert report["checks"]["events"]["status"] == "fail"
    tinyllm_instrument.configure(enabled=False)
    code, report, _ = health_both()
    assert code == 1
    assert report["checks"]["events"]["detail"].startswith(
        "this CLI process, not your app: the kit is switched off"
    )


def test_health_bad_timeout_is_a_usage_error():
    result = run("health", "--timeout", "-1")
    assert result.exit_code == 2
    assert "Invalid value for '--timeout'" in result.stderr


def test_health_as_a_subprocess(app_metrics, tmp_path):
    _, url = app_metrics
    with GrpcTraceReceiver() as receiver:
        out = run_subprocess(
            "health", "--json", "--otlp-endpoint", receiver.endpoint, "--metrics-url", url,
            "--log-file", str(tmp_path / "app.log"),
        )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["healthy"] is True and report["status"] == "healthy"
    assert {c["status"] for c in report["checks"].values()} == {"ok"}
    down = run_subprocess("health", "--metrics-url", "http://127.0.0.1:1/metrics")
    assert down.returncode == 1
    assert "  FAIL     metrics" in down.stdout


# =========================================================================== cache-stats


def table(stdout: str) -> dict[str, list[str]]:
    """The rows of the kit-counter table: cache_type -> [hits, misses, hit rate]."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["cache_type"])
    return {line.split()[0]: line.split()[1:] for line in lines[start + 1 :]}


def test_cache_stats_memory_reads_the_process_collector(collector):
    cache = instrument_cache({"a": 1})
    for key in ("a", "a", "a", "b"):
        cache.get(key)
    instrument_cache({}, cache_type="embeddings").get("x")
    result = run("cache-stats", "--backend", "memory")
    assert result.exit_code == 0
    assert result.stdout == (
        "Kit counters (tinyllm_cache_hits_total / tinyllm_cache_misses_total, "
        "from this CLI process, not your app):\n"
        "  cache_type      hits    misses  hit rate\n"
        "  embeddings         0         1      0.0%\n"
        "  memory             3         1     75.0%\n"
    )
    report = json.loads(run("cache-stats", "--json").stdout)
    assert report == {
        "backend": "memory",
        "source": "cli process",
        "caches": {
            "embeddings": {"hits": 0, "misses": 1, "hit_rate": 0.0},
            "memory": {"hits": 3, "misses": 1, "hit_rate": 0.75},
        },
    }


def test_cache_stats_with_no_lookups(collector):
    assert "  no cache lookups recorded\n" in run("cache-stats").stdout
    assert json.loads(run("cache-stats", "--json").stdout)["caches"] == {}


def test_cache_stats_metrics_url_shows_a_running_apps_numbers(collector, app_metrics):
    app, url = app_metrics
    for _ in range(4):
        app.increment_cache_hit("memory")
    app.increment_cache_miss("memory")
    report = json.loads(run("cache-stats", "--metrics-url", url, "--json").stdout)
    assert report["source"] == url
    assert report["caches"] == {"memory": {"hits": 4, "misses": 1, "hit_rate": 0.8}}
    human = run("cache-stats", "--metrics-url", url).stdout
    assert f"from {url}):\n" in human
    assert table(human) == {"memory": ["4", "1", "80.0%"]}


def test_cache_stats_unreachable_metrics_url_is_one_line(closed_port):
    url = f"http://127.0.0.1:{closed_port}/metrics"
    line = one_clear_line(run("cache-stats", "--metrics-url", url))
    assert line.startswith(f"Error: cannot read {url}: ")


def test_cache_stats_metrics_url_must_be_http():
    line = one_clear_line(run("cache-stats", "--metrics-url", "ftp://127.0.0.1/metrics"))
    assert line == "Error: --metrics-url 'ftp://127.0.0.1/metrics' is not an http(s) URL"


def test_cache_stats_metrics_url_answering_an_error_status_is_one_line():
    with HttpTraceReceiver() as not_metrics:  # answers GET with 501
        url = not_metrics.endpoint + "/metrics"
        line = one_clear_line(run("cache-stats", "--metrics-url", url))
    assert line.startswith(f"Error: {url} answered HTTP 501 ")


def test_cache_stats_metrics_url_timeout(silent_server):
    url = f"http://127.0.0.1:{silent_server}/metrics"
    line = one_clear_line(run("cache-stats", "--metrics-url", url, "--timeout", "0.2"))
    assert "timed out" in line


def test_cache_stats_redis_shows_the_servers_and_the_kits_counts(collector, redis_server):
    raw = redis.Redis(host=redis_server.host, port=redis_server.port, db=1)
    try:
        client = instrument_cache(raw)
        client.set("k", "v")
        client.set("k2", "v")
        client.get("k")
        client.get("k")
        client.get("k")
        client.get("missing")
    finally:
        raw.close()
    args = [
        "cache-stats", "--backend", "redis", "--redis-host", redis_server.host,
        "--redis-port", str(redis_server.port), "--redis-db", "1",
    ]  # fmt: skip
    report = json.loads(run(*args, "--json").stdout)
    version = report["redis"].pop("redis_version")
    assert version.count(".") == 2
    assert report == {
        "backend": "redis",
        "source": "cli process",
        "redis": {
            "host": redis_server.host,
            "port": redis_server.port,
            "db": 1,
            "keyspace_hits": 3,
            "keyspace_misses": 1,
            "hit_rate": 0.75,
            "keys": 2,
        },
        "caches": {"redis": {"hits": 3, "misses": 1, "hit_rate": 0.75}},
    }
    human = run(*args).stdout
    assert human.startswith(
        f"Redis {redis_server.host}:{redis_server.port} (redis_version {version}):\n"
        "  keyspace_hits:   3\n"
        "  keyspace_misses: 1\n"
        "  hit rate:        75.0%\n"
        "  keys in db 1:    2\n"
    )
    assert table(human) == {"redis": ["3", "1", "75.0%"]}
    # db 0 holds none of those keys; the hit counts are server-wide.
    db0 = json.loads(run(*args[:-2], "--json").stdout)["redis"]
    assert (db0["keys"], db0["keyspace_hits"]) == (0, 3)


def test_cache_stats_redis_kit_counts_from_a_running_app(collector, redis_server, app_metrics):
    app, url = app_metrics
    app.increment_cache_hit("redis")
    app.increment_cache_hit("memory")
    report = json.loads(
        run(
            "cache-stats", "--backend", "redis", "--redis-host", redis_server.host,
            "--redis-port", str(redis_server.port), "--metrics-url", url, "--json",
        ).stdout
    )  # fmt: skip
    assert report["caches"] == {"redis": {"hits": 1, "misses": 0, "hit_rate": 1.0}}
    assert (report["redis"]["keyspace_hits"], report["redis"]["keyspace_misses"]) == (0, 0)


def test_cache_stats_unreachable_redis_is_one_line(closed_port):
    result = run(
        "cache-stats", "--backend", "redis", "--redis-host", "127.0.0.1",
        "--redis-port", str(closed_port), "--timeout", "2",
    )  # fmt: skip
    line = one_clear_line(result)
    assert line.startswith(f"Error: cannot read INFO from Redis at 127.0.0.1:{closed_port}: ")


@pytest.mark.parametrize("option", ["--redis-host", "--redis-port", "--redis-db"])
def test_cache_stats_redis_options_need_the_redis_backend(option):
    result = run("cache-stats", option, "1")
    assert result.exit_code == 2
    assert f"{option} only applies to --backend redis" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "memcached"], "Invalid value for '--backend'"),
        (["--backend", "redis", "--redis-port", "0"], "Invalid value for '--redis-port'"),
        (["--backend", "redis", "--redis-db", "-1"], "Invalid value for '--redis-db'"),
        (["--timeout", "0"], "Invalid value for '--timeout'"),
    ],
)
def test_cache_stats_bad_options_are_usage_errors(args, message):
    result = run("cache-stats", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_cache_stats_redis_as_a_subprocess(redis_server):
    raw = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        raw.set("k", "v")
        raw.get("k")
        raw.get("nope")
    finally:
        raw.close()
    out = run_subprocess(
        "cache-stats", "--backend", "redis", "--redis-host", redis_server.host,
        "--redis-port", str(redis_server.port), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["redis"]["keyspace_hits"], report["redis"]["keyspace_misses"]) == (1, 1)
    assert report["caches"] == {"redis": {"hits": 0, "misses": 0, "hit_rate": None}}
    down = run_subprocess("cache-stats", "--backend", "redis", "--redis-port", "1")
    assert down.returncode == 1
    assert down.stdout == ""
    assert down.stderr.startswith("Error: cannot read INFO from Redis at localhost:1: ")
    assert len(down.stderr.strip().splitlines()) == 1


def test_cache_stats_memory_as_a_subprocess(app_metrics):
    app, url = app_metrics
    app.increment_cache_miss("memory")
    out = run_subprocess("cache-stats", "--backend", "memory", "--metrics-url", url)
    assert out.returncode == 0, out.stderr
    assert table(out.stdout) == {"memory": ["0", "1", "0.0%"]}


# =========================================================================== metrics


def test_metrics_command_unresolvable_host_is_a_usage_error():
    result = run("metrics", "--port", "0", "--host", "256.1.1.1")
    assert result.exit_code == 2
    assert "Invalid value for '--host': cannot resolve '256.1.1.1'" in result.stderr


def test_metrics_command_port_in_use_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        line = one_clear_line(run("metrics", "--port", str(port)), code=2)
    assert line == (
        f"Error: cannot serve metrics on 127.0.0.1:{port}: the port is in use; pass another "
        f"(--port {port + 1}, or --port 0 for any free one) or stop the process that holds it"
    )


def test_metrics_command_port_out_of_range_is_a_usage_error():
    result = run("metrics", "--port", "70000")
    assert result.exit_code == 2
    assert "Invalid value for '--port'" in result.stderr


def test_metrics_command_as_a_subprocess_on_a_chosen_host():
    with subprocess.Popen(
        [console_script(), "metrics", "--port", "0", "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            url = proc.stdout.readline().split()[3]
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(url, timeout=5) as response:
                names = {f.name for f in text_string_to_metric_families(response.read().decode())}
            assert "tinyllm_cache_hits" in names
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    bad = run_subprocess("metrics", "--host", "no such host!")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "Invalid value for '--host'" in bad.stderr


def test_process_collector_is_untouched_by_read_only_commands(collector):
    run("debug", "inspect")
    run("cache-stats")
    run("health")
    assert get_metrics_collector() is collector
    assert collector.get_cardinality_stats()["total_label_combinations"] == 0


# =========================================================================== a bad global switch

BAD_SWITCH_LINE = (
    "tinyllm_instrument: TINYLLM_INSTRUMENT_ENABLED='maybe' is not a boolean; "
    "use one of 1/0, true/false, yes/no, on/off (until then the kit stays on)"
)


@pytest.mark.parametrize(
    "args",
    [
        ("debug", "inspect", "--json", "--component", "events"),
        ("cache-stats", "--json"),
        ("health", "--json", "--log-file", "app.log"),
    ],
    ids=["inspect", "cache-stats", "health"],
)
def test_a_bad_switch_is_one_warning_line_for_commands_other_than_run(args, tmp_path):
    out = subprocess.run(
        [console_script(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "TINYLLM_INSTRUMENT_ENABLED": "maybe"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [BAD_SWITCH_LINE]
    json.loads(out.stdout)  # stdout is still the JSON alone
