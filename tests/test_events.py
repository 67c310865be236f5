"""Events: categories, severities, the Event, the emitter, its handlers and the guide's snippets."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

import tinyllm_instrument
from tinyllm_instrument import events as events_module
from tinyllm_instrument.events import (
    BufferedEventHandler,
    Event,
    EventCategory,
    EventEmitter,
    EventHandler,
    EventSeverity,
    LogEventHandler,
    MetricEventHandler,
    emit_error_event,
    emit_event,
    get_event_emitter,
    reset_event_emitter,
    set_event_emitter,
)
from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector

# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def collector():
    """A fresh process-wide collector, so counts start at zero and never leak between tests."""
    fresh = MetricsCollector()
    set_metrics_collector(fresh)
    return fresh


@pytest.fixture
def buffer():
    """A buffer installed in the process-wide emitter (next to its Log and Metric handlers)."""
    handler = BufferedEventHandler(max_size=1000)
    get_event_emitter().add_handler(handler)
    return handler


@pytest.fixture
def tracer():
    """A tracer on a provider of the test's own, never the global one."""
    return TracerProvider().get_tracer("test_events")


def events_count(collector, category, severity):
    value = collector.registry.get_sample_value(
        "tinyllm_events_total", {"category": category, "severity": severity}
    )
    return 0.0 if value is None else value


def internal_errors(collector, stage):
    value = collector.registry.get_sample_value(
        "tinyllm_instrumentation_errors_total", {"stage": stage}
    )
    return 0.0 if value is None else value


def make_event(event_type="t.e", category="system", severity="info", message="m", **kw):
    return Event(event_type, category, severity, message, **kw)


class Recorder(EventHandler):
    def __init__(self, min_severity=None):
        super().__init__(min_severity)
        self.seen = []

    def handle(self, event):
        self.seen.append(event)


# --- categories and severities ---------------------------------------------------------------


def test_the_nine_categories_have_lowercase_word_values():
    assert [c.value for c in EventCategory] == [
        "system",
        "execution",
        "model",
        "cache",
        "security",
        "performance",
        "user",
        "integration",
        "data",
    ]
    assert EventCategory.EXECUTION == "execution"


def test_severities_are_ordered_and_carry_stdlib_logging_levels():
    ordered = [
        EventSeverity.DEBUG,
        EventSeverity.INFO,
        EventSeverity.WARNING,
        EventSeverity.ERROR,
        EventSeverity.CRITICAL,
    ]
    assert [s.value for s in ordered] == ["debug", "info", "warning", "error", "critical"]
    assert [s.level for s in ordered] == [
        logging.DEBUG,
        logging.INFO,
        logging.WARNING,
        logging.ERROR,
        logging.CRITICAL,
    ]
    # Lexicographic str order would put "critical" first; the order must be by level.
    assert sorted(reversed(ordered)) == ordered
    assert EventSeverity.DEBUG < EventSeverity.INFO <= EventSeverity.INFO < EventSeverity.CRITICAL
    assert EventSeverity.ERROR > "warning" and EventSeverity.WARNING >= "WARNING"
    assert max(ordered) is EventSeverity.CRITICAL


def test_enum_members_render_as_their_words():
    assert str(EventSeverity.INFO) == "info"
    assert f"{EventCategory.CACHE}" == "cache"
    assert format(EventCategory.DATA, ">6") == "  data"
    assert "-".join([EventSeverity.ERROR, EventCategory.USER]) == "error-user"


@pytest.mark.parametrize("word", ["info", "INFO", "Info", " info "])
def test_severity_words_are_accepted_in_any_case(word):
    assert EventSeverity.coerce(word) is EventSeverity.INFO
    assert EventSeverity(word) is EventSeverity.INFO


def test_unknown_category_or_severity_is_a_value_error_listing_the_allowed_words():
    with pytest.raises(ValueError, match="system, execution, model, cache, security"):
        emit_event("x", "bogus", "info", "m")
    with pytest.raises(ValueError, match="debug, info, warning, error, critical"):
        emit_event("x", "system", "loud", "m")
    with pytest.raises(ValueError, match="debug, info, warning, error, critical"):
        Event("x", "system", "loud", "m")
    with pytest.raises(ValueError, match="debug, info"):
        BufferedEventHandler().get_events(severity="loud")
    with pytest.raises(ValueError, match="debug, info"):
        get_event_emitter().wants("loud")


# --- the Event -------------------------------------------------------------------------------


def test_event_coerces_words_and_fills_id_and_utc_timestamp():
    before = datetime.now(timezone.utc)
    event = Event("cache.miss", "CACHE", "warning", "Cache miss")
    assert event.category is EventCategory.CACHE
    assert event.severity is EventSeverity.WARNING
    assert uuid.UUID(event.event_id).version == 4 and len(event.event_id) == 32
    assert event.timestamp.tzinfo is timezone.utc
    assert before <= event.timestamp <= datetime.now(timezone.utc)
    assert event.data == {} and event.tags == []
    assert Event("a", "system", "info", "m").event_id != event.event_id


def test_event_uses_slots():
    event = make_event()
    assert not hasattr(event, "__dict__")


def test_to_dict_is_json_with_enum_words_and_iso_utc_timestamp():
    class Opaque:
        def __str__(self):
            return "opaque!"

    event = make_event(
        category=EventCategory.MODEL,
        severity=EventSeverity.ERROR,
        data={
            "n": 1,
            "when": datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
            "sev": EventSeverity.DEBUG,
            "obj": Opaque(),
            "nested": {"t": (1, 2)},
        },
        tags=["a", "b"],
        timestamp=datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=timezone(timedelta(hours=2))),
    )
    out = json.loads(json.dumps(event.to_dict()))
    assert out["category"] == "model" and out["severity"] == "error"
    assert out["timestamp"] == "2025-01-02T01:04:05.006000Z"  # converted to UTC
    assert out["data"] == {
        "n": 1,
        "when": "2025-01-02T03:04:05Z",
        "sev": "debug",
        "obj": "opaque!",
        "nested": {"t": [1, 2]},
    }
    assert out["tags"] == ["a", "b"]
    assert set(out) == {
        "event_id",
        "event_type",
        "category",
        "severity",
        "message",
        "timestamp",
        "data",
        "tags",
        "trace_id",
        "span_id",
        "error_type",
        "error_message",
        "stack_trace",
        "session_id",
        "user_id",
    }


def test_timestamp_accepts_iso_strings_and_naive_datetimes_as_utc():
    assert make_event(timestamp="2025-06-01T12:00:00Z").timestamp == datetime(
        2025, 6, 1, 12, tzinfo=timezone.utc
    )
    assert make_event(timestamp=datetime(2025, 6, 1, 12)).timestamp.tzinfo is timezone.utc
    with pytest.raises(ValueError, match="ISO 8601"):
        make_event(timestamp="yesterday")


def test_to_dict_round_trips_through_from_dict():
    event = make_event(data={"k": "v"}, tags=["x"], trace_id="ab" * 16, error_type="E")
    again = Event.from_dict(json.loads(json.dumps(event.to_dict())))
    assert again == event


# --- guide: Emitting Events ------------------------------------------------------------------


def test_guide_basic_event(buffer, collector):
    event = emit_event(
        event_type="node.execution.completed",
        category=EventCategory.EXECUTION,
        severity=EventSeverity.INFO,
        message="Node execution completed successfully",
        data={"node_id": "entry", "duration_ms": 123},
        tags=["execution", "success"],
    )
    assert buffer.get_events() == [event]
    assert event.event_type == "node.execution.completed"
    assert event.data == {"node_id": "entry", "duration_ms": 123}
    assert event.tags == ["execution", "success"]
    assert events_count(collector, "execution", "info") == 1


def test_guide_error_event_with_exception(buffer, collector):
    def risky_operation():
        raise RuntimeError("backend down")

    try:
        risky_operation()
    except Exception as e:
        emit_error_event(
            message="Operation failed",
            error=e,
            category=EventCategory.EXECUTION,
            data={"node_id": "entry"},
        )

    (event,) = buffer.get_events()
    assert event.severity is EventSeverity.ERROR
    assert event.category is EventCategory.EXECUTION
    assert event.event_type == "execution.error"
    assert event.message == "Operation failed"
    assert event.data == {"node_id": "entry"}
    assert event.error_type == "RuntimeError"
    assert event.error_message == "backend down"
    assert event.stack_trace.startswith("Traceback")
    assert "risky_operation" in event.stack_trace
    assert events_count(collector, "execution", "error") == 1


# --- guide: Event Handlers -------------------------------------------------------------------


def test_guide_handlers_snippet():
    sent = []

    def send_to_slack(event):
        sent.append(event)

    emitter = get_event_emitter()

    # Add custom handler
    class CustomEventHandler(EventHandler):
        def handle(self, event: Event):
            # Send to external system
            send_to_slack(event)

    emitter.add_handler(CustomEventHandler())

    # Add buffered handler for testing
    buffer = BufferedEventHandler(max_size=1000)
    emitter.add_handler(buffer)

    for i in range(15):
        emit_event(f"node.failed.{i}", EventCategory.EXECUTION, EventSeverity.ERROR, "failed")
    emit_event("node.ok", EventCategory.EXECUTION, EventSeverity.INFO, "ok")
    emit_event("cache.broken", EventCategory.CACHE, EventSeverity.ERROR, "broken")

    # Get buffered events
    events = buffer.get_events(
        category=EventCategory.EXECUTION,
        severity=EventSeverity.ERROR,
        limit=10,
    )
    assert [e.event_type for e in events] == [f"node.failed.{i}" for i in range(5, 15)]
    assert len(sent) == 17  # the custom handler's default min_severity is DEBUG: it gets all


# --- guide: Troubleshooting "Events Not Being Recorded" --------------------------------------


def test_guide_troubleshooting_snippet(capsys):
    emitter = get_event_emitter()
    print(emitter._enabled)  # Should be True
    print([h.__class__.__name__ for h in emitter.handlers])
    assert capsys.readouterr().out.splitlines() == [
        "True",
        "['LogEventHandler', 'MetricEventHandler']",
    ]
    emitter.disable()
    assert emitter._enabled is False and emitter.enabled is False
    emitter.enable()
    assert emitter._enabled is True


def test_get_event_emitter_is_process_wide_and_resettable():
    first = get_event_emitter()
    assert get_event_emitter() is first
    reset_event_emitter()
    second = get_event_emitter()
    assert second is not first
    mine = EventEmitter()
    assert set_event_emitter(mine) is second
    assert get_event_emitter() is mine
    assert set_event_emitter(None) is mine
    assert get_event_emitter() is not mine
    with pytest.raises(TypeError, match="EventEmitter"):
        set_event_emitter(BufferedEventHandler())


# --- guide: Best Practices #3 and #7 ---------------------------------------------------------


def test_guide_best_practice_3_events_for_business_metrics(buffer, collector):
    from tinyllm_instrument.logging import get_logger

    logger = get_logger("app")
    task = SimpleNamespace(id="t-42")
    user = SimpleNamespace(id="u-7")

    # Log: Technical details
    logger.info("task_completed", task_id=task.id)

    # Event: Business significance
    emit_event(
        "task.completed",
        category=EventCategory.EXECUTION,
        severity=EventSeverity.INFO,
        message=f"Task {task.id} completed successfully",
        data={"user_id": user.id, "completion_time": time.time()},
    )

    (event,) = buffer.get_events(event_type="task.completed")
    assert event.message == "Task t-42 completed successfully"
    assert event.data["user_id"] == "u-7"
    assert isinstance(event.data["completion_time"], float)
    assert events_count(collector, "execution", "info") == 1


def test_guide_best_practice_7_correlate_across_systems(buffer):
    from tinyllm_instrument.logging import get_logger
    from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry, trace_span

    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    logger = get_logger("app")

    with trace_span("operation") as span:
        trace_id = span.get_span_context().trace_id

        # Logs include trace_id automatically
        logger.info("step_1")

        # Add trace_id to events
        emit_event(
            "step.completed",
            category=EventCategory.EXECUTION,
            severity=EventSeverity.INFO,
            message="Step completed",
            trace_id=format(trace_id, "032x"),
        )
        span_id = format(span.get_span_context().span_id, "016x")

    (event,) = buffer.get_events(event_type="step.completed")
    assert trace_id != 0
    assert event.trace_id == format(trace_id, "032x")
    # The given trace id is the current span's, so the span id is filled in as well.
    assert event.span_id == span_id


# --- defects of the original -----------------------------------------------------------------


def _raise_value_error():
    raise ValueError("boom")


def test_defect_error_event_after_the_except_block_has_ended(buffer):
    try:
        _raise_value_error()
    except ValueError as e:
        saved = e
    # Outside any except block: sys.exc_info() is empty, the exception object is not.
    event = emit_error_event("later", saved)
    assert "NoneType: None" not in event.stack_trace
    assert event.stack_trace.startswith("Traceback (most recent call last):")
    assert "_raise_value_error" in event.stack_trace
    assert event.stack_trace.rstrip().endswith("ValueError: boom")
    assert event.error_type == "ValueError" and event.error_message == "boom"
    assert buffer.get_events() == [event]


def test_defect_error_event_for_an_exception_never_raised(buffer):
    event = emit_error_event("never raised", ValueError("boom"))
    assert "NoneType: None" not in event.stack_trace
    assert event.stack_trace == "ValueError: boom\n"
    assert event.error_type == "ValueError" and event.error_message == "boom"
    assert event.category is EventCategory.SYSTEM


def test_error_event_describes_the_given_exception_not_the_one_being_handled(buffer):
    other = ValueError("the one reported")
    try:
        raise KeyError("the one being handled")
    except KeyError:
        event = emit_error_event("mismatch", other)
    assert event.error_type == "ValueError"
    assert "KeyError" not in event.stack_trace
    assert event.stack_trace == "ValueError: the one reported\n"


def test_error_event_keeps_the_exception_chain():
    try:
        try:
            _raise_value_error()
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as e:
        saved = e
    event = emit_error_event("chained", saved)
    assert "ValueError: boom" in event.stack_trace
    assert "direct cause" in event.stack_trace
    assert event.stack_trace == "".join(traceback.format_exception(saved))


def test_error_event_with_an_unprintable_exception_still_emits(buffer):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    event = emit_error_event("odd", Unprintable())
    assert event.error_type == "Unprintable"
    assert event.error_message == "<unprintable Unprintable>"
    assert buffer.get_events() == [event]


def test_error_event_requires_an_exception():
    with pytest.raises(TypeError, match="exception instance"):
        emit_error_event("x", "not an exception")


def test_defect_two_metric_event_handlers_can_coexist(collector):
    families_before = sorted(m.name for m in collector.registry.collect())
    first = MetricEventHandler()
    second = MetricEventHandler()
    emitter = EventEmitter([first, second])
    emitter.emit(make_event(category="cache", severity="warning"))
    # Each handler counts once, in the same family that the collector owns.
    assert events_count(collector, "cache", "warning") == 2
    assert sorted(m.name for m in collector.registry.collect()) == families_before


# --- handler isolation -----------------------------------------------------------------------


def test_a_raising_handler_is_isolated_counted_and_logged_once(collector, caplog):
    class Exploding(EventHandler):
        def handle(self, event):
            raise RuntimeError("handler bug")

    emitter = get_event_emitter()
    after = Recorder()
    emitter.handlers.insert(0, Exploding())
    emitter.add_handler(after)

    with caplog.at_level(logging.WARNING, logger="tinyllm_instrument"):
        returned = [emit_event(f"e{i}", "system", "info", "m") for i in range(3)]

    assert after.seen == returned  # later handlers still ran, every time
    assert events_count(collector, "system", "info") == 3  # so did the earlier-installed ones
    assert internal_errors(collector, "event_handler") == 3
    reports = [r for r in caplog.records if r.name == "tinyllm_instrument"]
    assert len(reports) == 1
    assert "event_handler" in reports[0].getMessage()
    assert "handler bug" in reports[0].getMessage()


def test_handle_of_the_base_class_is_not_implemented_and_isolated(collector):
    emitter = EventEmitter([EventHandler()])
    emitter.emit(make_event())
    assert internal_errors(collector, "event_handler") == 1


def test_base_exceptions_from_handlers_are_not_swallowed():
    class Interrupting(EventHandler):
        def handle(self, event):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        EventEmitter([Interrupting()]).emit(make_event())


# --- LogEventHandler -------------------------------------------------------------------------


def _json_lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_log_event_handler_writes_json_lines_at_the_events_severity(tracer):
    from tinyllm_instrument.logging import configure_logging

    stream = io.StringIO()
    configure_logging(log_level="DEBUG", log_format="json", stream=stream)

    with tracer.start_as_current_span("op") as span:
        emit_event(
            "model.slow",
            "performance",
            "warning",
            "Model slow",
            data={"latency_ms": 900},
            tags=["slow"],
        )
        ctx = span.get_span_context()
    emit_error_event("it failed", ValueError("bad"), category="model")

    lines = [
        line for line in _json_lines(stream) if line.get("logger") == "tinyllm_instrument.events"
    ]
    assert [line["event"] for line in lines] == ["model.slow", "model.error"]
    warning, error = lines
    assert warning["event"] == "model.slow" and warning["event_type"] == "model.slow"
    assert warning["level"] == "warning"
    assert warning["category"] == "performance"
    assert warning["message"] == "Model slow"
    assert warning["data"] == {"latency_ms": 900}
    assert warning["tags"] == ["slow"]
    assert warning["trace_id"] == format(ctx.trace_id, "032x")
    assert warning["span_id"] == format(ctx.span_id, "016x")
    assert len(warning["event_id"]) == 32
    assert error["event"] == "model.error" and error["level"] == "error"
    assert error["error_type"] == "ValueError" and error["error_message"] == "bad"
    assert error["stack_trace"] == "ValueError: bad\n"


def test_log_line_of_an_event_from_another_trace_keeps_both_ids(tracer):
    from tinyllm_instrument.logging import configure_logging

    stream = io.StringIO()
    configure_logging(log_level="INFO", log_format="json", stream=stream)
    with tracer.start_as_current_span("here") as span:
        emit_event("remote.done", "integration", "info", "m", trace_id="1" * 32, span_id="2" * 16)
        here = span.get_span_context()
    outside = emit_event("remote.late", "integration", "info", "m", trace_id="3" * 32)

    inside_line, outside_line = [
        line for line in _json_lines(stream) if line.get("logger") == "tinyllm_instrument.events"
    ]
    assert inside_line["trace_id"] == format(here.trace_id, "032x")  # the line's own span
    assert inside_line["event_trace_id"] == "1" * 32
    assert inside_line["event_span_id"] == "2" * 16
    assert outside_line["trace_id"] == outside.trace_id == "3" * 32
    assert "event_trace_id" not in outside_line


def test_log_event_handler_skips_debug_events_by_default_and_can_be_asked_for_them():
    from tinyllm_instrument.logging import configure_logging

    stream = io.StringIO()
    configure_logging(log_level="DEBUG", log_format="json", stream=stream)
    assert LogEventHandler().min_severity is EventSeverity.INFO

    emit_event("quiet", "system", "debug", "not logged by default")
    get_event_emitter().add_handler(LogEventHandler(min_severity="debug"))
    emit_event("loud", "system", "debug", "logged once, by the second handler")

    events = [
        line["event"]
        for line in _json_lines(stream)
        if line.get("logger") == "tinyllm_instrument.events"
    ]
    assert events == ["loud"]


def test_log_event_handler_with_an_injected_logger():
    logger = structlog.get_logger("mine")
    with structlog.testing.capture_logs() as logs:
        EventEmitter([LogEventHandler(logger)]).emit(
            make_event("a.b", severity="critical", message="down", data={"x": 1})
        )
    (line,) = logs
    assert line["event"] == "a.b" and line["log_level"] == "critical"
    assert line["message"] == "down" and line["data"] == {"x": 1}


# --- MetricEventHandler ----------------------------------------------------------------------


def test_metric_event_handler_counts_by_category_and_severity(collector):
    emitter = EventEmitter([MetricEventHandler(min_severity="debug")])
    for severity in ("debug", "info", "info", "critical"):
        emitter.emit(make_event(category="security", severity=severity))
    assert events_count(collector, "security", "debug") == 1
    assert events_count(collector, "security", "info") == 2
    assert events_count(collector, "security", "critical") == 1
    assert events_count(collector, "system", "info") == 0


def test_metric_event_handler_uses_the_collector_current_at_each_event(collector):
    emitter = EventEmitter([MetricEventHandler()])
    emitter.emit(make_event())
    swapped = MetricsCollector()
    set_metrics_collector(swapped)
    emitter.emit(make_event())
    emitter.emit(make_event())
    assert events_count(collector, "system", "info") == 1
    assert events_count(swapped, "system", "info") == 2


def test_metric_event_handler_with_an_explicit_collector(collector):
    own = MetricsCollector()
    EventEmitter([MetricEventHandler(own)]).emit(make_event(category="data"))
    assert events_count(own, "data", "info") == 1
    assert events_count(collector, "data", "info") == 0


def test_default_handlers_do_not_take_debug_events(collector):
    emit_event("hot.path", "execution", "debug", "per call")
    assert events_count(collector, "execution", "debug") == 0
    assert MetricEventHandler().min_severity is EventSeverity.INFO


# --- wants() and dispatch by min_severity ----------------------------------------------------


def test_default_emitter_wants_info_and_above_but_not_debug():
    emitter = get_event_emitter()
    assert not emitter.wants(EventSeverity.DEBUG)
    assert all(emitter.wants(s) for s in ("info", "warning", "error", "critical"))


def test_wants_is_false_when_disabled_or_the_kit_is_off_or_no_handler():
    emitter = get_event_emitter()
    emitter.disable()
    assert not emitter.wants(EventSeverity.CRITICAL)
    emitter.enable()
    assert emitter.wants(EventSeverity.CRITICAL)
    tinyllm_instrument.configure(enabled=False)
    assert not emitter.wants(EventSeverity.CRITICAL)
    tinyllm_instrument.configure(enabled=True)
    assert not EventEmitter().wants(EventSeverity.CRITICAL)


def _append(emitter, handler):
    emitter.handlers.append(handler)


def _extend(emitter, handler):
    emitter.handlers.extend([handler])


def _insert(emitter, handler):
    emitter.handlers.insert(0, handler)


def _iadd(emitter, handler):
    emitter.handlers += [handler]


def _setitem(emitter, handler):
    emitter.handlers[0] = handler  # replaces the LogEventHandler


def _slice(emitter, handler):
    emitter.handlers[:] = [handler]


def _assign(emitter, handler):
    emitter.handlers = [handler]


@pytest.mark.parametrize(
    "install",
    [_append, _extend, _insert, _iadd, _setitem, _slice, _assign],
    ids=lambda f: f.__name__.strip("_"),
)
def test_wants_sees_handlers_installed_by_editing_the_list_directly(install):
    emitter = get_event_emitter()
    assert emitter.wants("info")
    assert not emitter.wants("debug")
    buffer = BufferedEventHandler()
    install(emitter, buffer)
    assert emitter.wants("debug")
    emitter.emit(make_event(severity="debug"))
    assert len(buffer) == 1


@pytest.mark.parametrize(
    "uninstall",
    [
        lambda em, h: em.handlers.remove(h),
        lambda em, h: em.handlers.pop(),
        lambda em, h: em.handlers.__delitem__(-1),
        lambda em, h: em.handlers.clear(),
        lambda em, h: em.remove_handler(h),
    ],
    ids=["remove", "pop", "del", "clear", "remove_handler"],
)
def test_wants_sees_handlers_removed_directly(uninstall):
    emitter = get_event_emitter()
    buffer = emitter.add_handler(BufferedEventHandler())
    assert emitter.wants("debug")
    uninstall(emitter, buffer)
    assert not emitter.wants("debug")
    emitter.emit(make_event(severity="debug"))
    assert len(buffer) == 0


def test_wants_follows_a_changed_min_severity():
    emitter = EventEmitter()
    handler = emitter.add_handler(Recorder(min_severity="error"))
    assert not emitter.wants("warning")
    handler.min_severity = "warning"
    assert handler.min_severity is EventSeverity.WARNING
    assert emitter.wants("warning")
    assert not emitter.wants("info")


def test_one_handler_in_two_emitters_changes_its_min_severity_for_both():
    shared = Recorder(min_severity="error")
    first, second = EventEmitter([shared]), EventEmitter([shared])
    assert not first.wants("info") and not second.wants("info")
    shared.min_severity = EventSeverity.INFO
    assert first.wants("info") and second.wants("info")
    with pytest.raises(ValueError, match="debug, info"):
        shared.min_severity = "loud"
    assert shared.min_severity is EventSeverity.INFO  # a refused value changes nothing


def test_the_handler_list_is_the_dispatch_order_and_reads_as_a_list():
    order = []

    class Named(EventHandler):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def handle(self, event):
            order.append(self.name)

    a, b = Named("a"), Named("b")
    emitter = EventEmitter([a, b])
    assert emitter.handlers == [a, b] and len(emitter.handlers) == 2
    assert emitter.handlers[:1] == [a] and b in emitter.handlers
    assert repr(emitter.handlers) == repr([a, b])
    emitter.handlers.reverse()
    emitter.emit(make_event())
    assert order == ["b", "a"]


def test_each_handler_gets_only_events_at_or_above_its_min_severity():
    low, high = Recorder(), Recorder(min_severity=EventSeverity.ERROR)
    emitter = EventEmitter([low, high])
    for severity in EventSeverity:
        emitter.emit(make_event(severity=severity))
    assert [e.severity.value for e in low.seen] == ["debug", "info", "warning", "error", "critical"]
    assert [e.severity.value for e in high.seen] == ["error", "critical"]


def test_min_severity_as_a_class_attribute_is_validated_and_tracked():
    class WarnOnly(EventHandler):
        min_severity = "warning"

        def handle(self, event):
            pass

    assert WarnOnly.min_severity is EventSeverity.WARNING
    emitter = EventEmitter([WarnOnly()])
    assert not emitter.wants("info") and emitter.wants("warning")
    emitter.handlers[0].min_severity = "info"
    assert emitter.wants("info")

    with pytest.raises(ValueError, match="debug, info"):

        class Broken(EventHandler):
            min_severity = "loud"


def test_subclasses_of_the_built_in_handlers_keep_their_class_min_severity():
    class ErrorsOnlyLog(LogEventHandler):
        min_severity = EventSeverity.ERROR

    class EverythingCounted(MetricEventHandler):
        min_severity = "debug"

    assert ErrorsOnlyLog().min_severity is EventSeverity.ERROR
    assert ErrorsOnlyLog(min_severity="info").min_severity is EventSeverity.INFO
    assert EverythingCounted().min_severity is EventSeverity.DEBUG
    assert BufferedEventHandler().min_severity is EventSeverity.DEBUG


def test_a_duck_typed_handler_without_min_severity_gets_everything():
    seen = []
    emitter = EventEmitter([SimpleNamespace(handle=seen.append)])
    assert emitter.wants("debug")
    emitter.emit(make_event(severity="debug"))
    assert len(seen) == 1


def test_add_handler_rejects_non_handlers_and_ignores_duplicates():
    emitter = EventEmitter()
    with pytest.raises(TypeError, match="handle"):
        emitter.add_handler(object())
    handler = Recorder()
    assert emitter.add_handler(handler) is handler
    emitter.add_handler(handler)
    assert emitter.handlers == [handler]
    assert emitter.remove_handler(handler) is True
    assert emitter.remove_handler(handler) is False


def test_disabled_emitter_or_kit_dispatches_nothing_but_emit_event_still_returns_the_event(buffer):
    get_event_emitter().disable()
    event = emit_event("a", "system", "critical", "m")
    assert isinstance(event, Event) and len(buffer) == 0
    get_event_emitter().enable()
    tinyllm_instrument.configure(enabled=False)
    emit_event("b", "system", "critical", "m")
    assert len(buffer) == 0
    tinyllm_instrument.configure(enabled=True)
    emit_event("c", "system", "critical", "m")
    assert [e.event_type for e in buffer.get_events()] == ["c"]


# --- emit_event: **extra, copies, redaction --------------------------------------------------


def test_unknown_extra_keywords_go_into_data_and_known_ones_set_fields(buffer):
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    event = emit_event(
        "x",
        "user",
        "info",
        "m",
        data={"a": 1, "user_id": 0},
        user_id=7,
        region="eu",
        error_type="Timeout",
        timestamp=when,
        event_id="f" * 32,
    )
    assert event.data == {"a": 1, "user_id": 7, "region": "eu"}
    assert event.error_type == "Timeout"
    assert event.timestamp == when and event.event_id == "f" * 32


def test_the_callers_data_is_copied_not_kept(buffer):
    data = {"k": "v"}
    event = emit_event("x", "data", "info", "m", data=data)
    data["k"] = "changed"
    assert event.data == {"k": "v"}


def test_data_must_be_a_mapping():
    with pytest.raises(TypeError, match="mapping"):
        emit_event("x", "data", "info", "m", data=["not", "a", "dict"])


def test_a_single_string_tag_is_one_tag(buffer):
    assert emit_event("x", "data", "info", "m", tags="solo").tags == ["solo"]


def test_event_data_message_and_error_fields_are_redacted(buffer):
    event = emit_event(
        "login",
        "security",
        "warning",
        "retry with password=hunter2",
        data={"api_key": "abc123", "user": "ann", "nested": {"note": "Bearer abcdefghijkl"}},
        max_tokens=256,
    )
    assert event.data["api_key"] == "[REDACTED]"
    assert event.data["user"] == "ann" and event.data["max_tokens"] == 256
    assert "abcdefghijkl" not in event.data["nested"]["note"]
    assert "hunter2" not in event.message
    err = emit_error_event("auth failed", PermissionError("token sk-abcdefghijklmnop rejected"))
    assert "sk-abcdefghijklmnop" not in err.error_message
    assert "sk-abcdefghijklmnop" not in err.stack_trace
    assert buffer.get_events(event_type="login")[0] is event


# --- trace context ---------------------------------------------------------------------------


def test_trace_and_span_ids_come_from_the_current_span(buffer, tracer):
    with tracer.start_as_current_span("outer"):
        with tracer.start_as_current_span("inner") as inner:
            inside = emit_event("in", "execution", "info", "m")
            ctx = inner.get_span_context()
    outside = emit_event("out", "execution", "info", "m")
    assert inside.trace_id == format(ctx.trace_id, "032x")
    assert inside.span_id == format(ctx.span_id, "016x")
    assert outside.trace_id is None and outside.span_id is None


def test_error_event_inside_a_span_carries_its_ids(buffer, tracer):
    with tracer.start_as_current_span("op") as span:
        event = emit_error_event("failed", ValueError("x"))
    assert event.trace_id == format(span.get_span_context().trace_id, "032x")


def test_a_foreign_trace_id_gets_no_span_id_and_ints_are_formatted(buffer, tracer):
    with tracer.start_as_current_span("op") as span:
        foreign = emit_event("f", "integration", "info", "m", trace_id="1" * 32)
        as_int = emit_event(
            "i", "integration", "info", "m", trace_id=span.get_span_context().trace_id
        )
        explicit = emit_event("e", "integration", "info", "m", trace_id="2" * 32, span_id="3" * 16)
    assert foreign.trace_id == "1" * 32 and foreign.span_id is None
    assert as_int.trace_id == format(span.get_span_context().trace_id, "032x")
    assert as_int.span_id == format(span.get_span_context().span_id, "016x")
    assert (explicit.trace_id, explicit.span_id) == ("2" * 32, "3" * 16)


# --- BufferedEventHandler --------------------------------------------------------------------


def test_ring_buffer_keeps_the_newest_oldest_first():
    buffer = BufferedEventHandler(max_size=3)
    emitter = EventEmitter([buffer])
    for i in range(5):
        emitter.emit(make_event(f"e{i}"))
    assert [e.event_type for e in buffer.get_events()] == ["e2", "e3", "e4"]
    assert len(buffer) == 3


def test_get_events_filters_then_takes_the_last_limit():
    buffer = BufferedEventHandler()
    emitter = EventEmitter([buffer])
    for i in range(6):
        emitter.emit(
            make_event(
                f"e{i}",
                category="cache" if i % 2 else "model",
                severity="error" if i < 4 else "info",
            )
        )
    assert [e.event_type for e in buffer.get_events(category="cache")] == ["e1", "e3", "e5"]
    assert [e.event_type for e in buffer.get_events(category="cache", limit=2)] == ["e3", "e5"]
    assert [e.event_type for e in buffer.get_events(severity="ERROR", limit=1)] == ["e3"]
    assert [e.event_type for e in buffer.get_events(event_type="e4")] == ["e4"]
    assert buffer.get_events(limit=0) == []
    assert len(buffer.get_events(limit=100)) == 6
    with pytest.raises(ValueError, match="limit"):
        buffer.get_events(limit=-1)
    buffer.clear()
    assert buffer.get_events() == [] and len(buffer) == 0


@pytest.mark.parametrize("bad", [0, -5])
def test_buffer_size_below_one_is_a_value_error(bad):
    with pytest.raises(ValueError, match="at least 1"):
        BufferedEventHandler(max_size=bad)


def test_eight_threads_emitting_into_a_buffer_lose_nothing():
    buffer = BufferedEventHandler(max_size=100_000)
    get_event_emitter().add_handler(buffer)
    per_thread, threads = 2_000, 8
    start = threading.Barrier(threads)

    def work(n):
        start.wait()
        for i in range(per_thread):
            emit_event("t", "system", "debug", f"{n}-{i}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    events = buffer.get_events()
    assert len(events) == per_thread * threads
    assert len({e.event_id for e in events}) == per_thread * threads
    for n in range(threads):  # each thread's events keep their order
        mine = [e.message for e in events if e.message.startswith(f"{n}-")]
        assert mine == [f"{n}-{i}" for i in range(per_thread)]


def test_module_exports_are_sorted_and_resolvable():
    assert events_module.__all__ == sorted(events_module.__all__)
    for name in events_module.__all__:
        assert hasattr(events_module, name)
