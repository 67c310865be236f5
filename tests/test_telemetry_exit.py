"""A collector that cannot be reached costs one line at exit and one line per kind of failure
while running; the exporter's own retry chatter stays off stderr, and nothing is counted twice.

Every test runs the app in a subprocess aimed at a port nobody listens on and counts its stderr
lines exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from otlp_receivers import GrpcTraceReceiver, HttpTraceReceiver

REPO = Path(__file__).resolve().parent.parent

APP = textwrap.dedent(
    """
    import sys, time
    from prometheus_client import CollectorRegistry
    from tinyllm_instrument import observe
    from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector
    from tinyllm_instrument.telemetry import (
        TelemetryConfig, configure_telemetry, shutdown_telemetry,
    )

    endpoint, protocol = sys.argv[1], sys.argv[2]
    calls, pause = int(sys.argv[3]), float(sys.argv[4])
    collector = MetricsCollector(registry=CollectorRegistry())
    set_metrics_collector(collector)
    configure_telemetry(TelemetryConfig(
        enable_tracing=True, exporter="otlp", otlp_endpoint=endpoint, otlp_protocol=protocol,
        export_timeout=3.0, shutdown_timeout=2.0, schedule_delay=0.1, max_export_batch_size=8))

    @observe(node="step")
    def step(i):
        return i

    for i in range(calls):
        step(i)
        time.sleep(pause)
    shutdown_telemetry()  # what the exit hook does; the counts are read after it
    get = collector.registry.get_sample_value
    print("exported", get("tinyllm_spans_exported_total") or 0)
    for reason in ("queue_full", "export_failed", "shutdown", "unfinished"):
        print("dropped", reason, get("tinyllm_spans_dropped_total", {"reason": reason}) or 0)
    """
)


def _dead_endpoint(protocol: str) -> str:
    receiver_class = GrpcTraceReceiver if protocol == "grpc" else HttpTraceReceiver
    with receiver_class() as receiver:
        endpoint = receiver.endpoint
    return endpoint  # stopped on leaving: nothing listens there now


def _run(protocol: str, calls: int, pause: float) -> tuple[subprocess.CompletedProcess[str], str]:
    endpoint = _dead_endpoint(protocol)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", APP, endpoint, protocol, str(calls), str(pause)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )
    return result, endpoint


def _counts(stdout: str) -> tuple[float, dict[str, float]]:
    exported, dropped = 0.0, {}
    for parts in (line.split() for line in stdout.splitlines()):
        if parts[0] == "exported":
            exported = float(parts[1])
        elif parts[0] == "dropped":
            dropped[parts[1]] = float(parts[2])
    return exported, dropped


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_unreachable_collector_at_exit_is_one_line_with_the_count_and_the_check(protocol):
    result, endpoint = _run(protocol, calls=5, pause=0.0)
    assert result.returncode == 0, result.stderr
    exported, dropped = _counts(result.stdout)
    assert exported == 0 and sum(dropped.values()) == 5, (dropped, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("tinyllm_instrument: 5 span(s) dropped"), line
    assert "export_failed=" in line or "shutdown=" in line
    check = f"tinyllm-instrument health --otlp-endpoint {endpoint}"
    if protocol != "grpc":
        check += " --otlp-protocol http/protobuf"
    assert check in line
    assert "retrying" not in line and "Transient" not in line


def _reported_total(lines: list[str]) -> int:
    """The sum of the ``reason=count`` figures in the kit's lines."""
    total = 0
    for line in lines:
        for part in line.replace("(", " ").replace(")", " ").replace(";", " ").split():
            name, _, value = part.partition("=")
            value = value.rstrip(",:")
            if (
                name in ("export_failed", "shutdown", "queue_full", "unfinished")
                and value.isdigit()
            ):
                total += int(value)
    return total


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_unreachable_collector_while_running_is_one_line_then_one_at_exit(protocol):
    # About 4 s of calls: the first export gives up (after its retries, within export_timeout)
    # while the app still runs.
    result, endpoint = _run(protocol, calls=200, pause=0.02)
    assert result.returncode == 0, result.stderr
    exported, dropped = _counts(result.stdout)
    assert exported == 0 and sum(dropped.values()) == 200, (dropped, result.stderr)
    lines = result.stderr.splitlines()
    # One line when the first batch failed (its kind, with the count so far), one at shutdown
    # with the rest; the periodic summary (every 10 s) does not come round in 4 s.
    assert len(lines) == 2, result.stderr
    first, last = lines
    assert first.startswith("tinyllm_instrument: ") and "span(s) dropped (export_failed=" in first
    assert "span export failed: " in first
    assert last.startswith("tinyllm_instrument: ")
    assert "span(s) dropped since the last report" in last
    assert _reported_total(lines) == 200, lines  # every dropped span reported once, none twice
    assert f"--otlp-endpoint {endpoint}" in last
    assert "retrying" not in result.stderr and "Transient" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_dozens_of_refused_batches_are_reported_once(protocol):
    import grpc

    receiver_class = GrpcTraceReceiver if protocol == "grpc" else HttpTraceReceiver
    with receiver_class() as receiver:
        # Not retryable: every batch fails at once, so dozens fail while the app runs.
        receiver.fail_with = grpc.StatusCode.INVALID_ARGUMENT if protocol == "grpc" else 400
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", APP, receiver.endpoint, protocol, "200", "0.01"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env=env,
            check=False,
        )
        requests = receiver.requests
    assert result.returncode == 0, result.stderr
    assert requests >= 10, requests  # that many batches were refused
    exported, dropped = _counts(result.stdout)
    assert exported == 0 and dropped["export_failed"] == 200, (dropped, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert "INVALID_ARGUMENT" in lines[0] if protocol == "grpc" else "400" in lines[0]
    assert _reported_total(lines) == 200, lines


def test_the_exit_line_does_not_echo_credentials_of_the_endpoint():
    endpoint = _dead_endpoint("http/protobuf").replace("http://", "http://tracer:hunter2-pass@")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", APP, endpoint, "http/protobuf", "3", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert "hunter2" not in line
    assert "--otlp-endpoint http://tracer:[REDACTED]@127.0.0.1:" in line
