"""The kit's provider: reconfigured through public SDK calls only, every open span accounted for at
shutdown, and trace ids drawn from the kit's own entropy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receivers import GrpcTraceReceiver
from prometheus_client import CollectorRegistry

from tinyllm_instrument import observe, telemetry
from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector
from tinyllm_instrument.telemetry import (
    DROP_REASONS,
    TelemetryConfig,
    configure_telemetry,
    get_tracer,
    shutdown_telemetry,
    trace_span,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def collector() -> MetricsCollector:
    fresh = MetricsCollector(registry=CollectorRegistry())
    set_metrics_collector(fresh)
    return fresh


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcTraceReceiver]:
    with GrpcTraceReceiver() as receiver:
        yield receiver
        telemetry.reset_telemetry()


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def otlp(receiver: GrpcTraceReceiver, **fields: object) -> TelemetryConfig:
    return TelemetryConfig(
        enable_tracing=True,
        exporter="otlp",
        otlp_endpoint=receiver.endpoint,
        export_timeout=5.0,
        **fields,  # type: ignore[arg-type]
    )


def dropped(collector: MetricsCollector) -> dict[str, float]:
    out = {}
    for reason in DROP_REASONS:
        value = collector.registry.get_sample_value(
            "tinyllm_spans_dropped_total", {"reason": reason}
        )
        if value:
            out[reason] = value
    return out


def exported(collector: MetricsCollector) -> float:
    return collector.registry.get_sample_value("tinyllm_spans_exported_total") or 0.0


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )


# --------------------------------------------------------------------------------------------------
# reconfiguration through public SDK calls only
# --------------------------------------------------------------------------------------------------


def test_reconfigure_reaches_earlier_tracers_without_writing_into_sdk_objects(monkeypatch):
    """The resource moves to tracers obtained before, and the SDK's tracers and providers are only
    built and called, never written into (their private attributes differ between versions)."""
    from opentelemetry.sdk import trace as sdk_trace

    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none", service_name="a"))
    kit_tracer = get_tracer()
    lib_tracer = trace.get_tracer("early.lib")
    private_calls: list[str] = []
    monkeypatch.setattr(
        sdk_trace.Tracer, "_set_resource", lambda self, resource: private_calls.append("tracer")
    )
    monkeypatch.setattr(
        sdk_trace.TracerProvider,
        "_update_resource",
        lambda self, resource: private_calls.append("provider"),
    )
    real_setattr = sdk_trace.TracerProvider.__setattr__

    def audited_setattr(self: object, name: str, value: object) -> None:
        if name == "_resource" and "_resource" in vars(self):
            private_calls.append("provider._resource")
        real_setattr(self, name, value)

    monkeypatch.setattr(sdk_trace.TracerProvider, "__setattr__", audited_setattr)

    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none", service_name="b"))
    memory = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(memory))
    with kit_tracer.start_as_current_span("kit"):
        pass
    with lib_tracer.start_as_current_span("lib"):
        pass
    assert private_calls == []
    assert {s.name: s.resource.attributes["service.name"] for s in memory.get_finished_spans()} == {
        "kit": "b",
        "lib": "b",
    }


def test_the_global_provider_answers_like_an_sdk_provider():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none", service_name="one"))
    provider = trace.get_tracer_provider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))  # type: ignore[attr-defined]
    with trace_span("seen"):
        pass
    assert [s.name for s in memory.get_finished_spans()] == ["seen"]
    assert provider.resource.attributes["service.name"] == "one"  # type: ignore[attr-defined]
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none", service_name="two"))
    assert provider.resource.attributes["service.name"] == "two"  # type: ignore[attr-defined]
    assert provider.force_flush() is True  # type: ignore[attr-defined]
    assert "AlwaysOnSampler" in provider.sampler.get_description()  # type: ignore[attr-defined]
    configure_telemetry(TelemetryConfig(enable_tracing=False))
    assert provider.sampler.get_description() == "AlwaysOffSampler"  # type: ignore[attr-defined]


def test_a_decorator_made_from_an_early_tracer_follows_reconfiguration():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none", service_name="a"))

    @get_tracer().start_as_current_span("decorated")
    def work() -> int:
        return 7

    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none", service_name="b"))
    memory = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(memory))
    assert work() == 7
    (span,) = memory.get_finished_spans()
    assert span.resource.attributes["service.name"] == "b"


# --------------------------------------------------------------------------------------------------
# spans still open when telemetry shuts down
# --------------------------------------------------------------------------------------------------


@observe(node="stream")
def stream(n: int) -> Iterator[int]:
    yield from range(n)


def test_spans_open_at_shutdown_are_counted_once_as_unfinished(grpc_receiver, collector):
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("finished"):
        pass
    open_spans = [get_tracer().start_span(f"open-{i}") for i in range(20)]
    streams = [stream(3) for _ in range(30)]
    for s in streams:
        next(s)  # each stream's span is open now
    shutdown_telemetry()
    assert dropped(collector) == {"unfinished": 50.0}
    # Ending them later neither exports them nor counts them again.
    for span in open_spans:
        span.end()
    for s in streams:
        s.close()
    assert [s.name for s in grpc_receiver.wait_for(1)] == ["finished"]
    assert exported(collector) == 1.0
    assert dropped(collector) == {"unfinished": 50.0}


def test_a_span_open_across_a_reconfiguration_is_exported_by_the_new_exporter(collector):
    with GrpcTraceReceiver() as first, GrpcTraceReceiver() as second:
        configure_telemetry(otlp(first))
        span = get_tracer().start_span("spans_the_switch")
        configure_telemetry(otlp(second))
        span.end()
        shutdown_telemetry()
        assert [s.name for s in second.wait_for(1)] == ["spans_the_switch"]
        assert first.spans == []
    assert dropped(collector) == {}
    assert exported(collector) == 1.0


def test_turning_tracing_off_counts_the_spans_it_leaves_open(collector, grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    span = get_tracer().start_span("cut_short")
    configure_telemetry(TelemetryConfig(enable_tracing=False))
    span.end()
    assert dropped(collector) == {"unfinished": 1.0}
    # A second session starts clean: its spans are its own.
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("next_session"):
        pass
    shutdown_telemetry()
    assert [s.name for s in grpc_receiver.wait_for(1)] == ["next_session"]
    assert dropped(collector) == {"unfinished": 1.0}


def test_exporter_none_counts_nothing_when_spans_stay_open(collector):
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    get_tracer().start_span("never_meant_for_export")
    shutdown_telemetry()
    assert dropped(collector) == {}


def test_thousands_of_streams_open_at_exit_are_counted_and_named_in_one_line(grpc_receiver):
    result = _python(
        """
        import atexit, sys
        from prometheus_client import CollectorRegistry
        from tinyllm_instrument import observe
        from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector
        from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry

        collector = MetricsCollector(registry=CollectorRegistry())
        set_metrics_collector(collector)
        streams = []

        def report():  # registered first, so it runs after the kit's own exit hook
            for s in streams:
                s.close()  # their spans end now: too late, and not counted twice
            get = collector.registry.get_sample_value
            print("unfinished", get("tinyllm_spans_dropped_total", {"reason": "unfinished"}))
            print("exported", get("tinyllm_spans_exported_total"))

        atexit.register(report)
        configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="otlp",
                                            otlp_endpoint=sys.argv[1]))

        @observe(node="token_stream")
        def token_stream():
            yield "token"
            yield "more"

        @observe(node="done")
        def done():
            return 1

        done()
        for _ in range(5000):
            s = token_stream()
            next(s)
            streams.append(s)
        """,
        grpc_receiver.endpoint,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["unfinished 5000.0", "exported 1.0"]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "5000 span(s) dropped" in lines[0] and "unfinished=5000" in lines[0]
    assert [s.name for s in grpc_receiver.wait_for(1)] == ["done"]


# --------------------------------------------------------------------------------------------------
# trace and span ids
# --------------------------------------------------------------------------------------------------

SEEDED_APP = """
import random
random.seed(42)  # the app's own reproducibility: must not make trace ids repeat
from tinyllm_instrument.telemetry import configure_telemetry, trace_span, get_current_trace_id
from tinyllm_instrument.telemetry import get_current_span_id
configure_telemetry(enable_tracing=True, exporter="none")
with trace_span("run"):
    print(get_current_trace_id(), get_current_span_id())
"""


def test_runs_of_a_program_that_seeds_random_get_different_trace_ids():
    first, second = _python(SEEDED_APP), _python(SEEDED_APP)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    first_ids, second_ids = first.stdout.split(), second.stdout.split()
    assert len(first_ids) == 2 and len(second_ids) == 2
    assert first_ids[0] != second_ids[0]
    assert first_ids[1] != second_ids[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork exists only on POSIX")
def test_a_forked_child_does_not_repeat_the_parent_ids():
    result = _python(
        """
        import os, random
        from tinyllm_instrument.telemetry import configure_telemetry, get_tracer
        configure_telemetry(enable_tracing=True, exporter="none")

        def ids():
            random.seed(7)  # both sides re-seed the global random the same way after the fork
            out = []
            for _ in range(5):
                ctx = get_tracer().start_span("x").get_span_context()
                out += [f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"]
            return out

        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write_end, " ".join(ids()).encode())
            os._exit(0)
        os.close(write_end)
        mine = ids()
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.waitpid(pid, 0)
        child = b"".join(chunks).decode().split()
        assert len(child) == 10, child
        print(len(set(mine) & set(child)))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork exists only on POSIX")
def test_a_child_forked_inside_an_open_span_neither_exports_nor_counts_the_parents_span(
    grpc_receiver,
):
    result = _python(
        """
        import os, sys
        from prometheus_client import CollectorRegistry
        from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector
        from tinyllm_instrument.telemetry import (
            TelemetryConfig, configure_telemetry, shutdown_telemetry, trace_span,
        )

        collector = MetricsCollector(registry=CollectorRegistry())
        set_metrics_collector(collector)
        configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="otlp",
                                            otlp_endpoint=sys.argv[1]))
        with trace_span("parent_work"):
            pid = os.fork()
            if pid == 0:
                with trace_span("child_work"):
                    pass
        # Both processes end the span here; each shuts down and reports its own counts.
        shutdown_telemetry()
        get = collector.registry.get_sample_value
        side = "child" if pid == 0 else "parent"
        line = f"{side} {get('tinyllm_spans_exported_total')} "
        line += f"{get('tinyllm_spans_dropped_total', {'reason': 'unfinished'})}\\n"
        os.write(1, line.encode())  # one write: the two processes share the pipe
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        """,
        grpc_receiver.endpoint,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["child 1.0 None", "parent 1.0 None"]
    spans = grpc_receiver.wait_for(2)
    assert sorted(s.name for s in spans) == ["child_work", "parent_work"]  # no duplicate
