"""using_attributes wired through the kit: every span of its provider, log lines, events, threads.

The scope itself (nesting, validation, bounds, generators) is tested in test_genai_sessions.py;
here it meets the pillars as a user configures them: the kit's provider with spans from the kit,
from another tracer and from opentelemetry-instrumentation-httpx, JSON and console log lines read
back with ``json.loads``, events, and the kit's thread propagation.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tinyllm_instrument
from tinyllm_instrument import observe, using_attributes
from tinyllm_instrument.events import (
    BufferedEventHandler,
    Event,
    emit_error_event,
    emit_event,
    get_event_emitter,
)
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    add_span_processor,
    configure_telemetry,
    trace_span,
)
from tinyllm_instrument.testing import capture

SESSION = {
    "session.id": "chat-42",
    "gen_ai.conversation.id": "chat-42",
    "user.id": "u-7",
    "tag.tags": ("beta", "eu"),
    "metadata": '{"plan":"pro"}',
}


def scope() -> using_attributes:
    return using_attributes(
        session_id="chat-42", user_id="u-7", tags=["beta", "eu"], metadata={"plan": "pro"}
    )


def session_of(span: ReadableSpan) -> dict[str, Any]:
    attrs = dict(span.attributes or {})
    return {k: attrs[k] for k in SESSION if k in attrs}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The kit's provider, configured as a user would, with an in-memory exporter added."""
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


# --------------------------------------------------------------------------------------------
# The public name
# --------------------------------------------------------------------------------------------


def test_using_attributes_is_a_top_level_name():
    assert tinyllm_instrument.using_attributes is using_attributes
    assert "using_attributes" in tinyllm_instrument.__all__
    assert tinyllm_instrument.__all__ == sorted(tinyllm_instrument.__all__)


# --------------------------------------------------------------------------------------------
# Every span of the kit's provider
# --------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    headers_seen: list[dict[str, str]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def http_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.headers_seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def httpx_instrumented() -> Iterator[None]:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


def test_every_span_started_inside_carries_the_session_the_kits_and_any_others(
    spans, http_server, httpx_instrumented
):
    @observe(node="answer")
    def answer(url: str) -> str:
        with httpx.Client() as client:
            return client.get(url).text

    url = f"http://127.0.0.1:{http_server.server_address[1]}/"
    with scope():
        assert answer(url) == "ok"
        trace.get_tracer("some.other.library").start_span("other, not current").end()
        with trace_span("helper"):
            pass
    answer(url)  # outside: nothing
    finished = spans.get_finished_spans()
    inside = [s for s in finished if s.start_time < finished[-1].start_time]  # all but the last
    outside = [s for s in finished if s not in inside]
    names = sorted(s.name for s in inside)
    assert names == ["GET", "answer", "helper", "other, not current"], names
    for span in inside:
        assert session_of(span) == SESSION, span.name
    assert {s.name for s in outside} >= {"answer"}
    for span in outside:
        assert session_of(span) == {}, span.name
    # The httpx span is the instrumentation's own, not the kit's.
    http_span = next(s for s in inside if s.name == "GET")
    assert http_span.instrumentation_scope.name == "opentelemetry.instrumentation.httpx"


def test_the_session_is_not_sent_to_the_services_the_app_calls(
    spans, http_server, httpx_instrumented
):
    # httpx's instrumentation injects the current context's baggage into every request; the
    # session is not in it, so an LLM provider never sees the user id.
    url = f"http://127.0.0.1:{http_server.server_address[1]}/"
    with scope(), trace_span("call"):
        httpx.get(url)
    [headers] = http_server.headers_seen
    assert "traceparent" in headers
    assert "chat-42" not in json.dumps(headers) and "u-7" not in json.dumps(headers)


def test_processors_see_the_session_when_the_span_starts(spans):
    seen: list[dict[str, Any]] = []

    class Recorder:
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append(dict(span.attributes))

        def _on_ending(self, span: Any) -> None:
            pass

        def on_end(self, span: Any) -> None:
            pass

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    add_span_processor(Recorder())
    with scope():
        trace.get_tracer("x").start_span("s").end()
    assert {k: seen[0][k] for k in SESSION} == SESSION


def test_a_sampler_sees_the_scope_through_session_attributes_not_its_attributes():
    # Samplers run before any processor's on_start: the attributes they are given are those
    # passed to start_span. The scope is current, though, so a sampler can read it.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    from tinyllm_instrument.genai import SessionSpanProcessor, session_attributes

    seen: dict[str, Any] = {}

    class Looking(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                          links=None, trace_state=None):  # fmt: skip
            seen["attributes"] = dict(attributes or {})
            seen["scope"] = dict(session_attributes())
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "looking"

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=Looking())
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with scope():
        provider.get_tracer("t").start_span("s", attributes={"a": 1}).end()
    provider.shutdown()
    assert seen["attributes"] == {"a": 1}
    assert seen["scope"]["session.id"] == "chat-42"
    assert session_of(exporter.get_finished_spans()[0]) == SESSION


def test_spans_of_the_kits_provider_without_a_scope_get_nothing(spans):
    with trace_span("plain"):
        pass
    assert session_of(by_name(spans)["plain"]) == {}


# --------------------------------------------------------------------------------------------
# Threads, pools, tasks: exactly as the trace
# --------------------------------------------------------------------------------------------


def test_a_plain_thread_started_inside_a_scope_alone_gets_it(spans):
    # No span, no observed call around: only the scope. The kit's Thread.start still copies.
    seen: dict[str, Any] = {}

    def work() -> None:
        with using_attributes(user_id="in-thread"):
            with trace_span("threaded"):
                seen["fields"] = _fields()

    with using_attributes(session_id="s-thread", tags=["t"]):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    span = by_name(spans)["threaded"]
    assert span.attributes["session.id"] == "s-thread"
    assert span.attributes["user.id"] == "in-thread"
    assert seen["fields"] == {"session_id": "s-thread", "user_id": "in-thread"}


def test_a_thread_started_outside_any_scope_gets_none(spans):
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(_fields()))
    with using_attributes(session_id="not-yet"):
        pass
    thread.start()
    thread.join()
    assert seen == [{}]


def test_nested_scopes_in_a_thread_pool(spans):
    @observe(node="step")
    def step(i: int) -> dict[str, str]:
        with using_attributes(user_id=f"u{i}", tags=[f"t{i}"]):
            with trace_span(f"inner-{i}"):
                return _fields()

    with using_attributes(session_id="pooled", tags=["root"]):
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(step, range(6)))
    assert results == [{"session_id": "pooled", "user_id": f"u{i}"} for i in range(6)]
    got = by_name(spans)
    for i in range(6):
        inner = got[f"inner-{i}"].attributes
        assert inner["session.id"] == "pooled" and inner["user.id"] == f"u{i}"
        assert list(inner["tag.tags"]) == ["root", f"t{i}"]
    steps = [s for s in spans.get_finished_spans() if s.name == "step"]
    assert len(steps) == 6
    assert all(s.attributes["session.id"] == "pooled" and "user.id" not in s.attributes
               for s in steps)  # fmt: skip


def test_pool_workers_made_in_one_scope_serve_another_without_leaking(spans):
    # Pool threads outlive the scope that created them: each task runs in its submitter's.
    with ThreadPoolExecutor(max_workers=1) as pool:
        with using_attributes(session_id="first"):
            assert pool.submit(_fields).result() == {"session_id": "first"}
        assert pool.submit(_fields).result() == {}
        with using_attributes(session_id="second"):
            assert pool.submit(_fields).result() == {"session_id": "second"}


def test_asyncio_tasks_each_keep_their_own_nested_scope(spans):
    @observe(node="turn")
    async def turn(i: int) -> None:
        async with using_attributes(user_id=f"u{i}"):
            await asyncio.sleep(0.001 * (4 - i))
            with trace_span(f"turn-{i}"):
                await asyncio.sleep(0)

    async def main() -> None:
        async with using_attributes(session_id="conv"):
            await asyncio.gather(*(asyncio.create_task(turn(i)) for i in range(4)))

    asyncio.run(main())
    got = by_name(spans)
    for i in range(4):
        attrs = got[f"turn-{i}"].attributes
        assert (attrs["session.id"], attrs["user.id"]) == ("conv", f"u{i}")


def test_the_decorator_on_sync_and_async_functions(spans):
    @using_attributes(session_id="sync-s", user_id=1)
    @observe(node="sync_node")
    def sync_node(x: int) -> int:
        return x + 1

    @using_attributes(session_id="async-s", user_id=2)
    @observe(node="async_node")
    async def async_node(x: int) -> int:
        await asyncio.sleep(0)
        return x + 2

    assert sync_node(1) == 2
    assert asyncio.run(async_node(1)) == 3
    got = by_name(spans)
    assert (got["sync_node"].attributes["session.id"], got["sync_node"].attributes["user.id"]) == (
        "sync-s",
        "1",
    )
    assert got["async_node"].attributes["session.id"] == "async-s"
    assert got["async_node"].attributes["user.id"] == "2"


# --------------------------------------------------------------------------------------------
# Log lines
# --------------------------------------------------------------------------------------------


def _fields() -> dict[str, str]:
    from tinyllm_instrument.genai import session_fields

    return session_fields()


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_every_log_line_inside_carries_session_and_user(fmt):
    stream = io.StringIO()
    configure_logging(log_format=fmt, stream=stream, app="bot")
    kit_log = get_logger("kit.logger")
    std_log = logging.getLogger("some.stdlib.logger")
    with scope():
        kit_log.info("kit_inside")
        std_log.warning("stdlib inside %s", "x")
        kit_log.info("explicit", user_id="given")
    kit_log.info("kit_outside")
    std_log.warning("stdlib outside")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5, lines
    if fmt == "json":
        parsed = [json.loads(line) for line in lines]
        assert [p["event"] for p in parsed] == [
            "kit_inside", "stdlib inside x", "explicit", "kit_outside", "stdlib outside",
        ]  # fmt: skip
        for line in parsed[:2]:
            assert (line["session_id"], line["user_id"]) == ("chat-42", "u-7"), line
        assert parsed[2]["user_id"] == "given" and parsed[2]["session_id"] == "chat-42"
        for line in parsed[3:]:
            assert "session_id" not in line and "user_id" not in line, line
    else:
        for line in lines[:2]:
            assert "session_id=chat-42" in line and "user_id=u-7" in line, line
        for line in lines[3:]:
            assert "session_id" not in line and "user_id" not in line, line


def test_log_lines_in_a_thread_of_the_scope(spans):
    stream = io.StringIO()
    configure_logging(log_format="json", stream=stream)
    log = get_logger("worker")

    with using_attributes(session_id="s-log"):
        with ThreadPoolExecutor(max_workers=2) as pool:
            pool.submit(log.info, "in_pool").result()
        thread = threading.Thread(target=log.info, args=("in_thread",))
        thread.start()
        thread.join()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {line["event"]: line.get("session_id") for line in lines} == {
        "in_pool": "s-log",
        "in_thread": "s-log",
    }


def test_a_session_id_the_app_declared_secret_is_redacted_in_log_lines():
    from tinyllm_instrument.redaction import configure_redaction, reset_redaction

    configure_redaction(extra_keys=["user_id"])
    try:
        stream = io.StringIO()
        configure_logging(log_format="json", stream=stream)
        with using_attributes(session_id="s", user_id="alice@example.com"):
            get_logger("x").info("hello")
        line = json.loads(stream.getvalue())
        assert line["user_id"] == "[REDACTED]" and line["session_id"] == "s"
        assert "alice" not in stream.getvalue()
    finally:
        reset_redaction()


def test_capture_logs_and_spans_carry_the_session():
    @observe(node="captured")
    def captured() -> None:
        get_logger("c").info("inside_node")

    with capture() as cap:
        with using_attributes(session_id="cap-s", user_id="cap-u"):
            captured()
    assert cap.span("captured").attributes["session.id"] == "cap-s"
    [line] = cap.logs_with(event="inside_node")
    assert (line["session_id"], line["user_id"]) == ("cap-s", "cap-u")
    events = cap.events
    assert events and all((e.session_id, e.user_id) == ("cap-s", "cap-u") for e in events)


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


@pytest.fixture
def buffer() -> BufferedEventHandler:
    return get_event_emitter().add_handler(BufferedEventHandler())


def test_events_take_session_and_user_from_the_scope(buffer):
    with scope():
        event = emit_event("chat.turn", "user", "info", "turn")
        error = emit_error_event("failed", ValueError("x"))
    outside = emit_event("chat.turn", "user", "info", "turn")
    assert (event.session_id, event.user_id) == ("chat-42", "u-7")
    assert (error.session_id, error.user_id) == ("chat-42", "u-7")
    assert (outside.session_id, outside.user_id) == (None, None)
    assert event.data == {}  # the scope's ids are fields, not data
    out = json.loads(json.dumps(event.to_dict()))
    assert (out["session_id"], out["user_id"]) == ("chat-42", "u-7")
    assert json.loads(json.dumps(outside.to_dict()))["session_id"] is None
    assert Event.from_dict(out) == event
    assert buffer.get_events()[0] is event


def test_an_explicit_session_or_user_keyword_wins_over_the_scope(buffer):
    with scope():
        event = emit_event("x", "user", "info", "m", user_id=7, session_id="other")
    assert (event.session_id, event.user_id) == ("other", "7")
    # As documented before events had these fields, the keywords stay in data too.
    assert event.data == {"user_id": 7, "session_id": "other"}


def test_an_explicit_user_keyword_is_bounded_and_redacted(buffer):
    event = emit_event("x", "user", "info", "m", user_id="Bearer abcdefghijklmnopqrstu")
    assert event.user_id == "Bearer [REDACTED]"


def test_the_event_log_line_carries_the_events_session(buffer):
    stream = io.StringIO()
    configure_logging(log_format="json", stream=stream)
    with using_attributes(session_id="ambient"):
        emit_event("x", "user", "info", "m", session_id="the-events-own")
        emit_event("y", "user", "info", "m")
    lines = {line["event"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    assert lines["x"]["session_id"] == "the-events-own"
    assert lines["y"]["session_id"] == "ambient"


def test_an_id_whose_str_raises_in_an_event_keyword_does_not_break_the_app(buffer):
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    event = emit_event("x", "user", "info", "m", user_id=Weird())
    assert event.user_id == "<unprintable Weird>"


# --------------------------------------------------------------------------------------------
# The benchmark's cases still build and run (nothing timed here)
# --------------------------------------------------------------------------------------------


def test_the_session_benchmark_cases_run(spans):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "test_sessions.py"
    spec = importlib.util.spec_from_file_location("bench_sessions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.LOOPS = 3
    cases = module._cases()
    for run in cases.values():
        run()
    in_scope = [s for s in spans.get_finished_spans() if s.name == "s"]
    assert len(in_scope) == 3 * 5  # five span cases, three spans each
    # in a scope, in a received session, and the reference given the same attributes
    assert sum("session.id" in (s.attributes or {}) for s in in_scope) == 9
