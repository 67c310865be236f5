"""Faults stay inside the kit: results and exceptions are exactly as without it, faults counted.

Each fault is injected around the same decorated function. The function's results and its own
exceptions must be identical with and without the fault, the fault must be counted in
tinyllm_instrumentation_errors_total{stage}, and the kit's logger must report it once, not
once per call.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import tracemalloc

import pytest

from tinyllm_instrument import observe
from tinyllm_instrument._errors import KIT_LOGGER_NAME
from tinyllm_instrument.events import EventHandler, EventSeverity, get_event_emitter
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.metrics import MetricsCollector

CALLS = 5


class UserError(Exception):
    pass


def _user_function():
    """Returns its argument doubled, raises UserError for negatives: the app's own behaviour."""

    def compute(x):
        if x < 0:
            raise UserError(f"negative: {x}")
        return {"value": 2 * x}

    return compute


def _outcomes(func) -> list:
    out = []
    for x in [1, -1, 2, -2, 3]:
        try:
            out.append(("ok", func(x)))
        except UserError as exc:
            out.append(("raised", type(exc), str(exc)))
    return out


EXPECTED = _outcomes(_user_function())


def _kit_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == KIT_LOGGER_NAME]


def _errors(cap, stage):
    return cap.sample("tinyllm_instrumentation_errors_total", {"stage": stage}) or 0


def test_raising_event_handler(tinyllm_capture, caplog):
    class Broken(EventHandler):
        min_severity = EventSeverity.DEBUG

        def handle(self, event):
            raise RuntimeError("handler down")

    get_event_emitter().add_handler(Broken())
    observed = observe(node="n")(_user_function())
    assert _outcomes(observed) == EXPECTED
    # started + (completed | failed) per call, each reaching the broken handler
    assert _errors(tinyllm_capture, "event_handler") == 2 * CALLS
    assert len([r for r in _kit_warnings(caplog) if "event_handler" in r.getMessage()]) == 1


def test_raising_log_processor(caplog):
    stream = io.StringIO()

    def broken_processor(logger, method, event_dict):
        raise RuntimeError("processor down")

    configure_logging(log_format="json", stream=stream, processors=[broken_processor])
    log = get_logger("app")
    collector = MetricsCollector()
    from tinyllm_instrument.metrics import set_metrics_collector

    set_metrics_collector(collector)

    def logging_function(x):
        log.info("computing", x=x)
        return _user_function()(x)

    observed = observe(node="n")(logging_function)
    assert _outcomes(observed) == EXPECTED
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # The line still goes out without the broken processor's contribution.
    assert [line["x"] for line in lines if line["event"] == "computing"] == [1, -1, 2, -2, 3]
    counted = collector.registry.get_sample_value(
        "tinyllm_instrumentation_errors_total", {"stage": "log_processor"}
    )
    # five "computing" lines, the two failure event lines, and the kit's own one-time warning,
    # which goes through the same chain: counted again, but not logged again (no recursion).
    assert counted == CALLS + 2 + 1
    assert len([r for r in _kit_warnings(caplog) if "log_processor" in r.getMessage()]) == 1


def test_attribute_whose_str_and_repr_raise(tinyllm_capture, caplog):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no str")

        __repr__ = __str__

    observed = observe(node="n", attributes={"weird": Unprintable()}, capture_input=True)(
        _user_function()
    )
    assert _outcomes(observed) == EXPECTED
    assert len(tinyllm_capture.spans_named("n")) == CALLS


def test_malformed_usage_field(tinyllm_capture):
    def with_usage(x):
        result = _user_function()(x)
        result["usage"] = {"prompt_tokens": "many", "completion_tokens": object()}
        return result

    observed = observe(node="llm", model="m")(with_usage)
    outcomes = _outcomes(observed)
    assert [o[0] for o in outcomes] == [o[0] for o in EXPECTED]
    assert _errors(tinyllm_capture, "usage") == 3  # the three successful calls
    assert (
        tinyllm_capture.sample("tinyllm_tokens_input_total", {"model": "m", "graph": "none"})
        is None
    )


def test_a_kit_failure_in_the_span_machinery_is_isolated(tinyllm_capture, monkeypatch):
    observe_module = __import__("importlib").import_module("tinyllm_instrument._observer")

    def broken_tracer():
        raise RuntimeError("tracer down")

    monkeypatch.setattr(observe_module, "get_tracer", broken_tracer)
    observed = observe(node="n")(_user_function())
    assert _outcomes(observed) == EXPECTED
    assert _errors(tinyllm_capture, "observe_begin") == CALLS


def test_user_exception_keeps_identity_and_traceback_through_every_kind(tinyllm_capture):
    error = UserError("same object")

    @observe
    def sync_fn():
        raise error

    @observe
    async def async_fn():
        raise error

    @observe
    def gen_fn():
        yield 1
        raise error

    with pytest.raises(UserError) as info:
        sync_fn()
    assert info.value is error
    with pytest.raises(UserError) as info:
        asyncio.run(async_fn())
    assert info.value is error
    with pytest.raises(UserError) as info:
        list(gen_fn())
    assert info.value is error


# --- concurrency ------------------------------------------------------------------------------


def test_exact_counts_across_8_threads_times_10000_calls(tinyllm_capture):
    @observe(node="hot")
    def hot(x):
        return x

    def work():
        for i in range(10_000):
            hot(i)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels = {"node": "hot", "graph": "none"}
    assert tinyllm_capture.sample("tinyllm_node_executions_total", labels) == 80_000
    assert tinyllm_capture.sample("tinyllm_node_execution_duration_seconds_count", labels) == 80_000
    assert len(tinyllm_capture.spans) == 80_000


def test_1000_concurrent_tasks_keep_their_own_context(tinyllm_capture):
    log = get_logger("tasks")

    @observe(node="task")
    async def task(i):
        await asyncio.sleep(0)
        log.info("step", i=i)
        await asyncio.sleep(0)
        return i

    @observe(graph="fan")
    async def fan():
        return await asyncio.gather(*(task(i) for i in range(1000)))

    assert asyncio.run(fan()) == list(range(1000))
    cap = tinyllm_capture
    spans = cap.spans_named("task")
    assert len(spans) == 1000
    root = cap.span("fan")
    assert all(s.parent.span_id == root.context.span_id for s in spans)
    by_span = {format(s.context.span_id, "016x") for s in spans}
    steps = cap.logs_with(event="step")
    assert len(steps) == 1000 and {e["span_id"] for e in steps} == by_span
    assert cap.sample("tinyllm_node_executions_total", {"node": "task", "graph": "fan"}) == 1000


def test_stress_mixing_threads_tasks_and_generators(tinyllm_capture):
    @observe(node="item_source")
    def items(n):
        yield from range(n)

    @observe(node="async_leaf")
    async def leaf(i):
        await asyncio.sleep(0)
        return i

    @observe(graph="mixed")
    def graph(tid):
        total = sum(items(10))

        async def run_tasks():
            return await asyncio.gather(*(leaf(i) for i in range(10)))

        total += sum(asyncio.run(run_tasks()))
        return tid, total

    results: list = []
    lock = threading.Lock()

    def work(tid):
        for _ in range(20):
            r = graph(tid)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 120 and all(total == 90 for _, total in results)
    cap = tinyllm_capture
    roots = {s.context.span_id: s for s in cap.spans_named("mixed")}
    assert len(roots) == 120
    for name in ("item_source", "async_leaf"):
        for span in cap.spans_named(name):
            assert span.parent.span_id in roots  # never attached to another graph's run
            assert roots[span.parent.span_id].context.trace_id == span.context.trace_id
    assert (
        cap.sample("tinyllm_node_executions_total", {"node": "async_leaf", "graph": "mixed"})
        == 1200
    )


# --- bad input: labels, cardinality attack, payloads -------------------------------------------


def test_non_string_and_huge_label_values_are_converted_predictably():
    collector = MetricsCollector()
    collector.increment_cache_hit(None)
    collector.increment_cache_hit(42)
    collector.increment_cache_hit("x" * 10_000)
    get = collector.registry.get_sample_value
    assert get("tinyllm_cache_hits_total", {"cache_type": "none"}) == 1
    assert get("tinyllm_cache_hits_total", {"cache_type": "42"}) == 1
    assert get("tinyllm_cache_hits_total", {"cache_type": "x" * 128}) == 1


def test_cardinality_attack_of_100000_node_names_keeps_memory_bounded(tinyllm_capture):
    observed = [observe(node=f"node-{i}")(lambda: None) for i in range(5)]
    del observed
    collector = tinyllm_capture.collector
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(100_000):
            collector.node_executions.labels(f"attacker-{i}", "g").inc()
        current, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    retained = sum(s.size_diff for s in after.compare_to(before, "filename"))
    stats = collector.get_cardinality_stats()["metrics"]["tinyllm_node_executions_total"]
    assert stats["cardinality"] <= collector.max_cardinality + 1
    assert stats["dropped"] > 0
    total = sum(
        s.value
        for fam in collector.registry.collect()
        if fam.name == "tinyllm_node_executions"
        for s in fam.samples
        if s.name.endswith("_total")
    )
    assert total == 100_000  # folded into "other", not lost
    # 1,001 series and bounded caches: a few MB at most, whatever the number of names.
    assert retained < 8 * 1024 * 1024, f"retained {retained} bytes"
    print(f"cardinality attack: peak {peak / 1e6:.1f} MB, retained {retained / 1e6:.2f} MB")


def test_huge_captured_payloads_respect_the_byte_budget(tinyllm_capture):
    @observe(node="big", capture_input=True, capture_output=True)
    def big(prompt):
        return {"text": prompt * 3, "items": list(range(100_000))}

    big("x" * 5_000_000)
    attrs = tinyllm_capture.span("big").attributes
    for key in ("input.value", "output.value"):
        value = attrs[key]
        assert len(value.encode()) <= 4096
        json.loads(value)  # still valid JSON


# --- exporter faults: raising, hanging, a full queue ---------------------------------------------


class _FaultyExporter:
    """A SpanExporter that raises, or hangs until released."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans):
        if self.mode == "raise":
            raise ConnectionError("collector exploded")
        self.release.wait(30)  # "hang": until the test lets go
        self.exported += len(spans)
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.release.set()

    def force_flush(self, timeout_millis=30000):
        return True


def _pipeline_with(monkeypatch, exporter, **config):
    from tinyllm_instrument import telemetry
    from tinyllm_instrument.metrics import set_metrics_collector

    collector = MetricsCollector()
    set_metrics_collector(collector)
    monkeypatch.setattr(telemetry.exporters, "_build_exporter", lambda cfg: exporter)
    telemetry.configure_telemetry(
        telemetry.TelemetryConfig(enable_tracing=True, exporter="console", **config)
    )
    return telemetry, collector


def _dropped(collector, reason):
    value = collector.registry.get_sample_value("tinyllm_spans_dropped_total", {"reason": reason})
    return value or 0


def test_raising_exporter(monkeypatch, caplog):
    exporter = _FaultyExporter("raise")
    telemetry, collector = _pipeline_with(monkeypatch, exporter, schedule_delay=0.05)
    observed = observe(node="n")(_user_function())
    assert _outcomes(observed) == EXPECTED
    telemetry.shutdown_telemetry(timeout=5)
    errors = collector.registry.get_sample_value(
        "tinyllm_instrumentation_errors_total", {"stage": "span_export"}
    )
    assert errors and errors >= 1
    assert _dropped(collector, "export_failed") == CALLS  # every span counted, none silently lost
    assert len([r for r in _kit_warnings(caplog) if "span_export" in r.getMessage()]) == 1


@pytest.mark.parametrize("on_queue_full", ["block", "drop"])
def test_hanging_exporter_and_full_queue_never_stall_the_app(monkeypatch, on_queue_full):
    exporter = _FaultyExporter("hang")
    telemetry, collector = _pipeline_with(
        monkeypatch,
        exporter,
        max_queue_size=32,
        max_export_batch_size=8,
        schedule_delay=0.05,
        on_queue_full=on_queue_full,
        block_timeout=0.2,
        shutdown_timeout=1,
    )
    compute = _user_function()
    observed = observe(node="n")(compute)
    calls = 500
    results = [observed(i) for i in range(calls)]  # completes although nothing gets exported
    assert results == [compute(i) for i in range(calls)]
    assert _dropped(collector, "queue_full") > 0
    exporter.release.set()
    telemetry.shutdown_telemetry(timeout=5)
    exported = collector.registry.get_sample_value("tinyllm_spans_exported_total", {}) or 0
    dropped = sum(_dropped(collector, r) for r in ("queue_full", "export_failed", "shutdown"))
    assert exported + dropped == calls  # delivered or counted, each span exactly once


def test_huge_captured_payloads_are_never_rejected_by_the_collector():
    from otlp_receivers import GrpcTraceReceiver

    from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry, flush_telemetry

    @observe(node="huge", capture_input=True, capture_output=True)
    def huge(prompt):
        return {"text": prompt * 2}

    with GrpcTraceReceiver() as receiver:
        configure_telemetry(
            TelemetryConfig(enable_tracing=True, exporter="otlp", otlp_endpoint=receiver.endpoint)
        )
        for _ in range(3):
            huge("y" * 8_000_000)  # 8 MB in, 16 MB out: far over gRPC's 4 MB message limit
        assert flush_telemetry(10)
        spans = receiver.wait_for(3, timeout=10)
    assert len(spans) == 3
    for span in spans:
        for key in ("input.value", "output.value"):
            assert len(span.attributes[key].encode()) <= 4096
