"""The export pipeline under load: every span is delivered to a real OTLP receiver or counted."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from otlp_receivers import GrpcTraceReceiver
from prometheus_client import CollectorRegistry

from tinyllm_instrument import observe, telemetry
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector
from tinyllm_instrument.telemetry import (
    DROP_REASONS,
    ON_QUEUE_FULL,
    TelemetryConfig,
    configure_telemetry,
    shutdown_telemetry,
    trace_span,
)

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def collector() -> MetricsCollector:
    """A process-wide collector of the test's own: the pipeline resolves it when it counts."""
    fresh = MetricsCollector(registry=CollectorRegistry())
    set_metrics_collector(fresh)
    return fresh


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcTraceReceiver]:
    with GrpcTraceReceiver() as receiver:
        yield receiver
        telemetry.reset_telemetry()  # stop exporting before the receiver goes away


@pytest.fixture(autouse=True)
def _no_otlp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    ):
        monkeypatch.delenv(name, raising=False)


def exported(collector: MetricsCollector) -> float:
    return collector.registry.get_sample_value("tinyllm_spans_exported_total") or 0.0


def dropped(collector: MetricsCollector) -> dict[str, float]:
    """Dropped spans by reason, only the reasons that have a series."""
    out = {}
    for reason in DROP_REASONS:
        value = collector.registry.get_sample_value(
            "tinyllm_spans_dropped_total", {"reason": reason}
        )
        if value is not None:
            out[reason] = value
    return out


def otlp(receiver: GrpcTraceReceiver, **fields: Any) -> TelemetryConfig:
    return TelemetryConfig(
        enable_tracing=True,
        exporter="otlp",
        otlp_endpoint=receiver.endpoint,
        service_name="load",
        **fields,
    )


class _GatedExporter(SpanExporter):
    """Holds every export until ``gate`` is set, then succeeds: a collector that hangs."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.received = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.gate.wait(30)
        with self._lock:
            self.received += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[_GatedExporter]:
    exporter = _GatedExporter()
    monkeypatch.setattr(telemetry.exporters, "_build_exporter", lambda config: exporter)
    yield exporter
    exporter.gate.set()


def _spans(n: int, name: str = "work") -> None:
    for _ in range(n):
        with trace_span(name):
            pass


def _drop_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tinyllm_instrument" and "tinyllm_spans_dropped_total" in r.getMessage()
    ]


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------


def test_defaults_bound_the_queue_schedule_by_fill_level_and_never_wait_long():
    config = TelemetryConfig()
    assert config.on_queue_full == "block"
    assert config.max_queue_size == 4096
    assert config.max_export_batch_size == 512
    assert config.schedule_delay == 1.0
    assert config.block_timeout == 0.5
    assert ON_QUEUE_FULL == ("block", "drop", "export_inline")


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("on_queue_full", "wait", "'block', 'drop', 'export_inline'"),
        ("on_queue_full", None, "'block', 'drop', 'export_inline'"),
        ("max_queue_size", 0, "whole number of spans, 1 or more"),
        ("max_queue_size", 10.5, "whole number of spans, 1 or more"),
        ("max_queue_size", True, "whole number of spans, 1 or more"),
        ("max_export_batch_size", -1, "whole number of spans, 1 or more"),
        ("schedule_delay", 0, "greater than 0"),
        ("block_timeout", float("inf"), "greater than 0"),
    ],
)
def test_pipeline_settings_are_validated_naming_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ValueError) as info:
        TelemetryConfig(**{field: value})
    assert f"TelemetryConfig.{field}={value!r}" in str(info.value)
    assert allowed in str(info.value)


def test_a_batch_larger_than_the_queue_is_refused_with_how_to_fix_it():
    with pytest.raises(ValueError, match=r"max_export_batch_size=600 is larger than max_queue_siz"):
        TelemetryConfig(max_queue_size=500, max_export_batch_size=600)


# --------------------------------------------------------------------------------------------------
# zero loss at nominal load: the loop, against a real receiver
# --------------------------------------------------------------------------------------------------

CALLS = 20_000


def _logging_hot_loop(log_file: Path, threads: int) -> None:
    """``@observe``d function logging one JSON line per call, CALLS calls over ``threads``."""
    configure_logging(log_format="json", log_file=log_file)
    log = get_logger("load")

    @observe(node="hot_step")
    def hot_step(i: int) -> int:
        log.info("step_done", i=i)
        return i + 1

    def run(n: int) -> None:
        for i in range(n):
            hot_step(i)

    if threads == 1:
        run(CALLS)
        return
    workers = [threading.Thread(target=run, args=(CALLS // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 4], ids=["1x20000", "4x5000"])
def test_every_span_of_a_logging_hot_loop_arrives_with_default_settings(
    grpc_receiver, collector, tmp_path, threads
):
    configure_telemetry(otlp(grpc_receiver))
    log_file = tmp_path / "app.log"
    _logging_hot_loop(log_file, threads)
    shutdown_telemetry()

    spans = grpc_receiver.wait_for(CALLS, timeout=30)
    assert len(spans) == CALLS
    assert {s.name for s in spans} == {"hot_step"}
    assert len({s.span_id for s in spans}) == CALLS
    assert exported(collector) == CALLS
    assert dropped(collector) == {}
    # The log burst went out whole as well, one line per call, each naming a delivered span.
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    steps = [line for line in lines if line["event"] == "step_done"]
    assert len(steps) == CALLS
    assert {line["span_id"] for line in steps} == {s.span_id for s in spans}


@pytest.mark.slow
def test_with_the_receiver_down_every_span_is_counted_dropped_and_the_app_exits_in_bound(
    tmp_path,
):
    # A subprocess, because what is measured is the app's exit, atexit hook included.
    with GrpcTraceReceiver() as receiver:
        endpoint = receiver.endpoint  # stopped on leaving: a port nobody listens on
    script = textwrap.dedent(
        f"""
        import sys
        from prometheus_client import CollectorRegistry
        from tinyllm_instrument import observe
        from tinyllm_instrument.logging import configure_logging, get_logger
        from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector
        from tinyllm_instrument.telemetry import (
            TelemetryConfig, configure_telemetry, shutdown_telemetry,
        )

        collector = MetricsCollector(registry=CollectorRegistry())
        set_metrics_collector(collector)
        configure_logging(log_format="json", log_file=sys.argv[2])
        log = get_logger("load")
        configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="otlp",
                                            otlp_endpoint=sys.argv[1], shutdown_timeout=2.0))

        @observe(node="hot_step")
        def hot_step(i):
            log.info("step_done", i=i)
            return i + 1

        for i in range({CALLS}):
            hot_step(i)
        print("loop-done", flush=True)
        shutdown_telemetry()
        get = collector.registry.get_sample_value
        print("exported", get("tinyllm_spans_exported_total"))
        for reason in ("queue_full", "export_failed", "shutdown"):
            print("dropped", reason, get("tinyllm_spans_dropped_total", {{"reason": reason}}) or 0)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", script, endpoint, str(tmp_path / "app.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks for the loop: up to a minute is a hang
        loop_done = time.monotonic()
        rest, stderr = proc.communicate(timeout=60)
        exit_after = time.monotonic() - loop_done
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert first.strip() == "loop-done", stderr
    assert proc.returncode == 0, stderr
    # Flush bound 2 s, then exit; 20 s is generous for a loaded machine, and far below the
    # 10 s per batch that export retries against a dead port would take.
    assert exit_after < 20, f"shutdown and exit took {exit_after:.1f}s"
    lines = [line.split() for line in rest.splitlines()]
    assert ["exported", "0.0"] in lines
    counts = {parts[1]: float(parts[2]) for parts in lines if parts[0] == "dropped"}
    assert sum(counts.values()) == CALLS, counts


# --------------------------------------------------------------------------------------------------
# every configuration: delivered + dropped == produced, under pressure
# --------------------------------------------------------------------------------------------------

PRESSURE_CALLS = 10_000


@pytest.mark.slow
@pytest.mark.parametrize("mode", ON_QUEUE_FULL)
@pytest.mark.parametrize("threads", [1, 4], ids=["1-thread", "4-threads"])
def test_under_pressure_every_span_is_delivered_or_counted_and_waiting_modes_lose_none(
    grpc_receiver, collector, mode, threads
):
    # No logging, a small queue: span ends outrun the export thread, which is where the SDK's
    # default processor loses spans without counting them.
    configure_telemetry(
        otlp(
            grpc_receiver,
            on_queue_full=mode,
            max_queue_size=512,
            max_export_batch_size=128,
            block_timeout=5.0,  # waiting modes: room comes with each export; 5 s is slack
        )
    )

    @observe(node="pressed")
    def pressed(i: int) -> int:
        return i

    def run(n: int) -> None:
        for i in range(n):
            pressed(i)

    workers = [
        threading.Thread(target=run, args=(PRESSURE_CALLS // threads,)) for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    shutdown_telemetry()

    delivered = len(grpc_receiver.spans)
    assert exported(collector) == delivered
    assert delivered + sum(dropped(collector).values()) == PRESSURE_CALLS
    if mode != "drop":
        assert delivered == PRESSURE_CALLS
        assert dropped(collector) == {}


# --------------------------------------------------------------------------------------------------
# each reason for dropping, counted once, warned about at most once per interval
# --------------------------------------------------------------------------------------------------


def test_a_full_queue_drops_and_counts_and_warns_once_per_interval(
    gated, collector, caplog, monkeypatch
):
    monkeypatch.setattr(telemetry.drops, "DROP_WARNING_INTERVAL", 3600.0)
    configure_telemetry(
        TelemetryConfig(
            enable_tracing=True,
            exporter="console",
            on_queue_full="drop",
            max_queue_size=10,
            max_export_batch_size=10,
        )
    )
    with caplog.at_level(logging.WARNING, logger="tinyllm_instrument"):
        _spans(10)
        assert gated.entered.wait(10)  # the export thread holds one batch; the queue is empty
        _spans(500)
        first = _drop_warnings(caplog)
        assert dropped(collector) == {"queue_full": 490.0}  # the queue is bounded at 10
        assert len(first) == 1 and "1 span(s) dropped" in first[0]
        assert "queue_full=1" in first[0]

        # Drops go on being counted, and are reported again once the interval has passed, with
        # everything since the last warning.
        monkeypatch.setattr(telemetry.drops, "DROP_WARNING_INTERVAL", 0.0)
        _spans(1)
        gated.gate.set()
        shutdown_telemetry()
    messages = _drop_warnings(caplog)
    assert len(messages) == 2
    assert "490 span(s) dropped" in messages[1] and "queue_full=490" in messages[1]
    assert dropped(collector) == {"queue_full": 491.0}
    assert exported(collector) == 20.0 == gated.received


def test_spans_the_collector_refuses_are_counted_as_export_failed(grpc_receiver, collector):
    grpc_receiver.fail_with = grpc.StatusCode.INVALID_ARGUMENT  # not retried
    configure_telemetry(otlp(grpc_receiver, max_export_batch_size=50))
    _spans(120)
    shutdown_telemetry()
    assert grpc_receiver.wait_for_requests(3) >= 3
    assert grpc_receiver.spans == []
    assert dropped(collector) == {"export_failed": 120.0}
    assert exported(collector) == 0.0


def test_spans_still_queued_when_the_flush_bound_ends_are_counted_once_as_shutdown(
    gated, collector, caplog
):
    configure_telemetry(
        TelemetryConfig(enable_tracing=True, exporter="console", max_export_batch_size=100)
    )
    _spans(250)  # one batch of 100 held by the hung export, 150 queued behind it
    assert gated.entered.wait(10)
    with caplog.at_level(logging.WARNING, logger="tinyllm_instrument"):
        started = time.monotonic()
        shutdown_telemetry(timeout=0.5)
        took = time.monotonic() - started
    assert took < 10  # bounded: the hung exporter holds nobody
    assert dropped(collector) == {"shutdown": 250.0}
    (line,) = _drop_warnings(caplog)  # one line: the count, the reason, the bound that ran out
    assert "250 span(s) dropped (shutdown=250; export did not finish within 0.5s)" in line
    # The abandoned export finishing later is not counted a second time.
    gated.gate.set()
    time.sleep(0.2)
    assert exported(collector) == 0.0
    assert dropped(collector) == {"shutdown": 250.0}


def test_a_span_still_open_at_shutdown_is_counted_not_lost(grpc_receiver, collector):
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("finished_in_time"):
        pass
    late = telemetry.get_tracer().start_span("ends_after_shutdown")
    shutdown_telemetry()
    late.end()
    with trace_span("never_recorded"):  # tracing is off now: not a span, not a drop
        pass
    assert [s.name for s in grpc_receiver.wait_for(1)] == ["finished_in_time"]
    assert exported(collector) == 1.0
    assert dropped(collector) == {"unfinished": 1.0}  # counted at shutdown, once


def test_counts_go_to_the_collector_installed_when_they_are_counted(grpc_receiver, collector):
    configure_telemetry(otlp(grpc_receiver))
    _spans(3)
    telemetry.flush_telemetry()
    later = MetricsCollector(registry=CollectorRegistry())
    set_metrics_collector(later)
    _spans(2)
    shutdown_telemetry()
    assert exported(collector) == 3.0
    assert exported(later) == 2.0


@pytest.mark.parametrize("mode", ["block", "export_inline"])
def test_waiting_modes_wait_once_for_a_hung_collector_then_drop_without_waiting(
    gated, collector, mode
):
    configure_telemetry(
        TelemetryConfig(
            enable_tracing=True,
            exporter="console",
            on_queue_full=mode,
            max_queue_size=20,
            max_export_batch_size=20,
            block_timeout=0.3,
        )
    )
    _spans(20)
    assert gated.entered.wait(10)  # the only export is hung; nothing will make room
    started = time.monotonic()
    _spans(1000)
    took = time.monotonic() - started
    # Waiting 0.3 s per span would take 5 minutes; once is a fraction of a second.
    assert took < 30
    assert dropped(collector) == {"queue_full": 980.0}
    gated.gate.set()
    shutdown_telemetry()
    assert exported(collector) == 40.0


def test_a_collector_that_comes_back_gets_the_app_waiting_for_room_again(gated, collector):
    configure_telemetry(
        TelemetryConfig(
            enable_tracing=True,
            exporter="console",
            on_queue_full="block",
            max_queue_size=10,
            max_export_batch_size=10,
            block_timeout=0.2,
        )
    )
    _spans(10)
    assert gated.entered.wait(10)
    _spans(30)  # 10 queued, 20 dropped after one timed-out wait
    gated.gate.set()
    assert telemetry.flush_telemetry(timeout=10)
    # An export succeeded: a full queue makes the app wait for room again, so nothing is lost.
    _spans(2000)
    shutdown_telemetry()
    assert dropped(collector) == {"queue_full": 20.0}
    assert exported(collector) == 2020.0 == gated.received


class _SlowExporter(SpanExporter):
    """Takes a millisecond per batch, so span ends keep finding the tiny queue full."""

    def __init__(self) -> None:
        self.received = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        time.sleep(0.001)
        with self._lock:
            self.received += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize("mode", ["block", "export_inline"])
def test_threads_racing_for_the_room_of_a_tiny_queue_lose_nothing_in_waiting_modes(
    collector, monkeypatch, mode
):
    exporter = _SlowExporter()
    monkeypatch.setattr(telemetry.exporters, "_build_exporter", lambda config: exporter)
    configure_telemetry(
        TelemetryConfig(
            enable_tracing=True,
            exporter="console",
            on_queue_full=mode,
            max_queue_size=8,
            max_export_batch_size=4,
            block_timeout=10.0,
        )
    )
    # Eight threads woken together for four free places: the ones that lose the race must wait
    # again, not drop.
    workers = [threading.Thread(target=_spans, args=(400,)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    shutdown_telemetry()
    assert dropped(collector) == {}
    assert exported(collector) == 3200.0 == exporter.received
