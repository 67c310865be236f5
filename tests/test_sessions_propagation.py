"""using_attributes across a hop: inject_context / extract_context carry it in W3C baggage.

The sending side writes the scope into the ``baggage`` header it injects; the receiving side
takes it out of the baggage and into the context it extracts, so that the session applies
wherever that context is attached and is not forwarded by HTTP instrumentations to services the
receiver calls. Everything the receiver reads is bounded, validated and redacted again.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tinyllm_instrument import observe, using_attributes
from tinyllm_instrument.events import BufferedEventHandler, emit_event, get_event_emitter
from tinyllm_instrument.genai import session_attributes, session_fields
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.redaction import configure_redaction, reset_redaction
from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    add_span_processor,
    configure_telemetry,
    extract_context,
    inject_context,
    trace_span,
)

TRACEPARENT = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter


@pytest.fixture
def all_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def members(header: str) -> dict[str, str]:
    """A baggage header as a plain reader splits it."""
    out = {}
    for member in header.split(","):
        key, _, value = member.partition("=")
        out[unquote_plus(key)] = unquote_plus(value)
    return out


@pytest.fixture
def sent(spans) -> dict[str, str]:
    """Headers a caller inside a scope and a span sends, with baggage of the app's own."""
    ctx = baggage.set_baggage("tenant", "acme")
    token = otel_context.attach(ctx)
    try:
        with using_attributes(
            session_id="chat-9", user_id="u 9", tags=["beta"], metadata={"plan": "pro"}
        ):
            with trace_span("client_call"):
                return inject_context({})
    finally:
        otel_context.detach(token)


def test_inject_context_writes_the_scope_into_w3c_baggage(sent):
    assert sent["traceparent"].startswith("00-")
    assert members(sent["baggage"]) == {
        "session.id": "chat-9",
        "user.id": "u 9",
        "tag.tags": '["beta"]',
        "metadata": '{"plan":"pro"}',
        "tenant": "acme",  # the app's own baggage goes on, after the session
    }
    # any W3C reader takes it
    ctx = W3CBaggagePropagator().extract(sent, context=otel_context.Context())
    assert baggage.get_baggage("session.id", ctx) == "chat-9"


def test_inject_context_without_the_session_when_asked(spans):
    with using_attributes(session_id="s"), trace_span("c"):
        headers = inject_context({}, session=False)
    assert "baggage" not in headers


def test_outside_any_scope_inject_context_writes_what_it_did_before(spans):
    with trace_span("c"):
        headers = inject_context({})
    assert set(headers) == {"traceparent"}


def test_the_receiving_service_gets_the_session_on_every_span_log_line_and_event(sent, spans):
    buffer = get_event_emitter().add_handler(BufferedEventHandler())
    stream = io.StringIO()
    configure_logging(log_format="json", stream=stream)

    @observe(node="handle_request")
    def handle() -> None:
        trace.get_tracer("a.web.framework").start_span("framework span").end()
        get_logger("svc").info("handling")
        emit_event("request.handled", "user", "info", "done")

    token = otel_context.attach(extract_context(sent))
    try:
        handle()
        # the app's own baggage is there; the session is not forwarded as baggage
        assert baggage.get_all() == {"tenant": "acme"}
    finally:
        otel_context.detach(token)
    got = {s.name: dict(s.attributes or {}) for s in spans.get_finished_spans()}
    for name in ("handle_request", "framework span"):
        assert got[name]["session.id"] == "chat-9", name
        assert got[name]["gen_ai.conversation.id"] == "chat-9", name
        assert got[name]["user.id"] == "u 9", name
        assert list(got[name]["tag.tags"]) == ["beta"], name
        assert json.loads(got[name]["metadata"]) == {"plan": "pro"}, name
    line = json.loads(stream.getvalue().splitlines()[0])
    assert (line["session_id"], line["user_id"]) == ("chat-9", "u 9")
    [event] = buffer.get_events(event_type="request.handled")
    assert (event.session_id, event.user_id) == ("chat-9", "u 9")
    # after the request: nothing left behind in this thread
    assert session_fields() == {}


def test_the_receiver_does_not_forward_it_but_the_kits_inject_context_does(sent, spans):
    token = otel_context.attach(extract_context(sent))
    try:
        forwarded: dict[str, str] = {}
        propagate.inject(forwarded)  # what HTTP instrumentations send to every service called
        onward = inject_context({})  # what the app sends on, on purpose, to its next service
    finally:
        otel_context.detach(token)
    assert members(forwarded["baggage"]) == {"tenant": "acme"}
    assert members(onward["baggage"])["session.id"] == "chat-9"
    assert members(onward["baggage"])["tenant"] == "acme"


def test_a_span_started_in_the_extracted_context_without_attaching_it(sent, spans):
    ctx = extract_context(sent)
    spans.clear()
    trace.get_tracer("x").start_span("child of remote", context=ctx).end()
    [span] = spans.get_finished_spans()
    assert span.attributes["session.id"] == "chat-9"
    assert span.parent is not None and span.parent.is_remote


def test_scopes_nest_inside_a_received_session_and_leave_nothing_behind(sent, spans):
    seen: list[dict[str, str]] = []

    def request(headers: dict[str, str] | None) -> None:
        token = otel_context.attach(extract_context(headers or {}))
        try:
            with using_attributes(user_id="local-user", tags=["local"]):
                seen.append(session_fields())
                with trace_span("nested"):
                    pass
            seen.append(session_fields())
        finally:
            otel_context.detach(token)

    # One worker thread serves both requests, as a server's pool does.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(request, sent).result()
        pool.submit(request, None).result()
    assert seen == [
        {"session_id": "chat-9", "user_id": "local-user"},
        {"session_id": "chat-9", "user_id": "u 9"},
        {"user_id": "local-user"},
        {},
    ]
    nested = [dict(s.attributes or {}) for s in spans.get_finished_spans() if s.name == "nested"]
    assert list(nested[0]["tag.tags"]) == ["beta", "local"]
    assert "session.id" not in nested[1]


def test_threads_started_in_a_received_session_carry_it(spans):
    ctx = extract_context({"baggage": "session.id=from-far"})  # no traceparent: the scope alone
    seen: list[Any] = []
    token = otel_context.attach(ctx)
    try:
        thread = threading.Thread(target=lambda: seen.append(dict(session_attributes())))
        thread.start()
        thread.join()
    finally:
        otel_context.detach(token)
    assert seen[0]["session.id"] == "from-far"


def test_a_session_from_a_service_without_the_kit(spans):
    # A service that sets session.id / user.id baggage itself (as some SDKs do) is understood.
    ctx = extract_context({"traceparent": TRACEPARENT, "baggage": "session.id=s1,user.id=u1"})
    trace.get_tracer("x").start_span("s", context=ctx).end()
    attrs = spans.get_finished_spans()[0].attributes
    assert (attrs["session.id"], attrs["user.id"]) == ("s1", "u1")


def test_members_the_kit_does_not_write_are_left_alone_and_reported_once(spans, all_records):
    headers = {"baggage": "session.id=s1,metadata=hello,tag.tags=%7B%7D"}
    for _ in range(3):
        ctx = extract_context(headers)
    assert baggage.get_all(ctx) == {"metadata": "hello", "tag.tags": "{}"}
    trace.get_tracer("x").start_span("s", context=ctx).end()
    attrs = spans.get_finished_spans()[0].attributes
    assert attrs["session.id"] == "s1" and "metadata" not in attrs and "tag.tags" not in attrs
    warnings = [r.getMessage() for r in all_records.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # one per kind, not one per request
    assert all(len(w) <= 400 for w in warnings)


def test_what_a_hostile_sender_puts_in_is_bounded_and_redacted_again(spans):
    huge = "x" * 4000
    ctx = extract_context(
        {
            "baggage": f"session.id={huge},user.id=Bearer+abcdefghijklmnopqrstuvwxyz,"
            "tag.tags=" + "%5B" + "%2C".join(["%22t%22"] * 300) + "%5D"
        }
    )
    trace.get_tracer("x").start_span("s", context=ctx).end()
    attrs = spans.get_finished_spans()[0].attributes
    assert len(attrs["session.id"].encode()) <= 256
    assert attrs["user.id"] == "Bearer [REDACTED]"
    assert list(attrs["tag.tags"]) == ["t"]  # united, as any scope's tags


def test_a_secret_the_app_declared_never_leaves_in_baggage(spans):
    configure_redaction(extra_keys=["user_id"])
    try:
        with using_attributes(session_id="s", user_id="alice@example.com"), trace_span("c"):
            headers = inject_context({})
    finally:
        reset_redaction()
    assert "alice" not in headers["baggage"]
    assert members(headers["baggage"])["user.id"] == "[REDACTED]"


def test_big_tags_and_metadata_are_cut_to_fit_beside_the_apps_baggage(spans):
    tags = [f"tag-{i}-" + "é" * 40 for i in range(64)]
    metadata = {f"k{i}": "ü" * 500 for i in range(20)}
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with using_attributes(session_id="s" * 256, user_id="u" * 256, tags=tags,
                              metadata=metadata):  # fmt: skip
            with trace_span("c"):
                headers = inject_context({})
    finally:
        otel_context.detach(token)
    header = headers["baggage"]
    session_part = header[: header.index(",tenant=")]
    assert len(session_part) <= 4096
    assert all(len(m) <= 4096 for m in header.split(","))
    got = members(header)
    assert got["tenant"] == "acme"
    sent_tags = json.loads(got["tag.tags"])
    assert sent_tags[-1] == "...[truncated]" and sent_tags[:-1] == tags[: len(sent_tags) - 1]
    sent_metadata = json.loads(got["metadata"])
    assert isinstance(sent_metadata, dict) and "k0" in sent_metadata
    assert "...[truncated]" in got["metadata"]  # cut, and visibly so
    # the plain OpenTelemetry reader keeps every member
    ctx = W3CBaggagePropagator().extract(headers, context=otel_context.Context())
    assert set(baggage.get_all(ctx)) == {"session.id", "user.id", "tag.tags", "metadata", "tenant"}


def test_non_ascii_ids_survive_the_hop(spans):
    with using_attributes(session_id="чат-1", user_id="José"), trace_span("c"):
        headers = inject_context({})
    headers["baggage"].encode("ascii")  # a header is ASCII
    ctx = extract_context(headers)
    trace.get_tracer("x").start_span("s", context=ctx).end()
    attrs = [s for s in spans.get_finished_spans() if s.name == "s"][0].attributes
    assert (attrs["session.id"], attrs["user.id"]) == ("чат-1", "José")
