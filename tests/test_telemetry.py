"""Tracing pillar: configuration, reconfiguration, spans and propagation, seen by real receivers."""

from __future__ import annotations

import asyncio
import enum
import gzip
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from otlp_receivers import GrpcTraceReceiver, HttpTraceReceiver, ReceivedSpan

from tinyllm_instrument import telemetry
from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    configure_telemetry,
    extract_context,
    get_current_span_id,
    get_current_trace_id,
    get_telemetry_config,
    get_tracer,
    inject_context,
    is_telemetry_enabled,
    record_span_event,
    set_span_attribute,
    set_span_error,
    shutdown_telemetry,
    trace_span,
    traced,
)

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def grpc_receiver():
    with GrpcTraceReceiver() as receiver:
        yield receiver
        # Stop exporting before the receiver goes away, so a failed test does not retry into a
        # closed port.
        telemetry.reset_telemetry()


@pytest.fixture
def http_receiver():
    with HttpTraceReceiver() as receiver:
        yield receiver
        telemetry.reset_telemetry()


@pytest.fixture(autouse=True)
def _no_otlp_env(monkeypatch):
    """Endpoint defaults must come from the test, not from the machine running it."""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


def otlp(receiver: GrpcTraceReceiver | HttpTraceReceiver, **fields: Any) -> TelemetryConfig:
    """An OTLP config aimed at ``receiver``."""
    protocol = "http/protobuf" if isinstance(receiver, HttpTraceReceiver) else "grpc"
    fields.setdefault("service_name", "test-svc")
    return TelemetryConfig(
        enable_tracing=True,
        exporter="otlp",
        otlp_endpoint=receiver.endpoint,
        otlp_protocol=protocol,
        export_timeout=5.0,
        **fields,
    )


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


def parse_console_spans(text: str) -> list[dict[str, Any]]:
    """The console exporter prints one pretty JSON object per span, back to back."""
    decoder = json.JSONDecoder()
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        out.append(obj)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def process_task() -> int:
    return 42


def execute_node() -> str:
    return "routed"


def fetch_from_db() -> dict[str, int]:
    return {"rows": 1}


def dangerous_code() -> None:
    raise RuntimeError("disk on fire")


class Color(enum.Enum):
    RED = "red"


class Opaque:
    def __str__(self) -> str:
        return "opaque-object"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


# --------------------------------------------------------------------------------------------------
# the receivers themselves (they are the peers every other test trusts)
# --------------------------------------------------------------------------------------------------


def _request_bytes() -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    kv = resource_spans.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "hand-made"
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "manual"
    span = scope_spans.spans.add()
    span.name = "raw"
    span.trace_id = bytes.fromhex("11" * 16)
    span.span_id = bytes.fromhex("22" * 8)
    span.kind = trace_pb2.Span.SPAN_KIND_SERVER
    attr = span.attributes.add()
    attr.key = "n"
    attr.value.int_value = 7
    arr = span.attributes.add()
    arr.key = "xs"
    arr.value.array_value.values.extend([common_pb2.AnyValue(double_value=1.5)])
    span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    span.status.message = "bad"
    return request.SerializeToString()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read(), err.headers.get("Content-Type", "")


def test_http_receiver_decodes_gzip_protobuf_and_answers_with_protobuf(http_receiver):
    status, body, ctype = _post(
        http_receiver.traces_url,
        gzip.compress(_request_bytes()),
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert status == 200
    assert ctype == "application/x-protobuf"
    trace_service_pb2.ExportTraceServiceResponse().ParseFromString(body)
    (span,) = http_receiver.wait_for(1)
    assert span.name == "raw"
    assert span.trace_id == "11" * 16 and span.span_id == "22" * 8 and span.parent_span_id is None
    assert span.kind == "SERVER"
    assert span.attributes == {"n": 7, "xs": [1.5]}
    assert span.status_code == "ERROR" and span.status_message == "bad"
    assert span.resource == {"service.name": "hand-made"}
    assert span.scope_name == "manual"


def test_http_receiver_refuses_other_paths_and_can_play_a_failing_collector(http_receiver):
    status, _, _ = _post(http_receiver.endpoint + "/v1/logs", _request_bytes(), {})
    assert status == 404
    http_receiver.fail_with = 503
    status, _, _ = _post(http_receiver.traces_url, _request_bytes(), {})
    assert status == 503
    assert http_receiver.requests == 1
    assert http_receiver.spans == []


def test_grpc_receiver_can_play_a_failing_collector(grpc_receiver):
    grpc_receiver.fail_with = grpc.StatusCode.RESOURCE_EXHAUSTED
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_receiver.port}")
    try:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda b: b,
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            export(_request_bytes(), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        grpc_receiver.fail_with = None
        export(_request_bytes(), timeout=10)
    finally:
        channel.close()
    assert grpc_receiver.requests == 2
    assert [s.name for s in grpc_receiver.wait_for(1)] == ["raw"]


def test_receiver_wait_for_fails_loudly_when_spans_do_not_come(grpc_receiver):
    with pytest.raises(AssertionError, match="expected at least 1 span"):
        grpc_receiver.wait_for(1, timeout=0.05)


# --------------------------------------------------------------------------------------------------
# the guide's Tracing snippets, package renamed
# --------------------------------------------------------------------------------------------------


def test_guide_console_exporter_snippet_prints_spans_to_stdout(capsys):
    config = TelemetryConfig(
        enable_tracing=True,
        service_name="tinyllm",
        exporter="console",
        sampling_rate=1.0,
    )
    configure_telemetry(config)
    with trace_span("my_operation", attributes={"attempt": 2}):
        process_task()
    shutdown_telemetry()
    (printed,) = parse_console_spans(capsys.readouterr().out)
    assert printed["name"] == "my_operation"
    assert printed["attributes"] == {"attempt": 2}
    assert printed["resource"]["attributes"]["service.name"] == "tinyllm"


def test_guide_otlp_snippet_samples_ten_percent_of_traces_by_trace_id(grpc_receiver):
    # The guide's production config, pointed at the local receiver instead of localhost:4317.
    config = TelemetryConfig(
        enable_tracing=True,
        service_name="tinyllm",
        exporter="otlp",
        otlp_endpoint=grpc_receiver.endpoint,
        sampling_rate=0.1,  # Sample 10% of traces
    )
    configure_telemetry(config)
    trace_ids = []
    for _ in range(300):
        with trace_span("request") as span:
            with trace_span("child"):
                pass
            trace_ids.append(span.get_span_context().trace_id)
    shutdown_telemetry()
    # TraceIdRatioBased is deterministic: a trace is kept when its low 64 bits are under the bound.
    bound = TraceIdRatioBased.get_bound_for_rate(0.1)
    expected = {
        format(t, "032x") for t in trace_ids if t & TraceIdRatioBased.TRACE_ID_LIMIT < bound
    }
    assert 0 < len(expected) < 300
    received = grpc_receiver.wait_for(2 * len(expected))
    assert {s.trace_id for s in received} == expected
    # Children follow their parent's decision: each kept trace arrives whole.
    assert sorted(s.name for s in received) == sorted(["child", "request"] * len(expected))


def test_guide_creating_spans_snippets_reach_the_grpc_receiver(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    # Basic span
    with trace_span("my_operation"):
        process_task()
    # Span with attributes
    with trace_span(
        "node_execution",
        attributes={
            "node_id": "entry",
            "node_type": "router",
        },
    ):
        result = execute_node()
    assert result == "routed"
    shutdown_telemetry()
    spans = by_name(grpc_receiver.wait_for(2))
    assert spans["my_operation"].attributes == {}
    assert spans["node_execution"].attributes == {"node_id": "entry", "node_type": "router"}
    assert spans["node_execution"].scope_name == "tinyllm_instrument"
    assert spans["node_execution"].kind == "INTERNAL"


def test_guide_traced_async_snippet(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))

    class Graph:
        async def execute(self) -> str:
            await asyncio.sleep(0)
            return "done"

    graph = Graph()

    @traced(attributes={"component": "executor"})
    async def execute_graph(graph_id: str):
        # Function execution is automatically traced
        return await graph.execute()

    assert asyncio.run(execute_graph("g-1")) == "done"
    shutdown_telemetry()
    (span,) = grpc_receiver.wait_for(1)
    assert span.name == "execute_graph"
    assert span.attributes == {"component": "executor"}


def test_guide_recording_events_snippet(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("processing"):
        set_span_attribute("user_id", "user-123")

        record_span_event("cache_miss", attributes={"cache_key": "abc"})

        result = fetch_from_db()
    assert result == {"rows": 1}
    shutdown_telemetry()
    (span,) = grpc_receiver.wait_for(1)
    assert span.attributes == {"user_id": "user-123"}
    assert span.events == [("cache_miss", {"cache_key": "abc"})]


def test_guide_error_recording_snippet_records_once_and_reraises(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    with pytest.raises(RuntimeError, match="disk on fire"):
        with trace_span("risky_operation"):
            try:
                dangerous_code()
            except Exception as e:
                set_span_error(e)
                raise
    shutdown_telemetry()
    (span,) = grpc_receiver.wait_for(1)
    assert span.status_code == "ERROR"
    assert span.status_message == "RuntimeError: disk on fire"
    exception_events = [attrs for name, attrs in span.events if name == "exception"]
    assert len(exception_events) == 1  # set_span_error's, not a second one from trace_span
    assert exception_events[0]["exception.type"] == "RuntimeError"
    assert exception_events[0]["exception.message"] == "disk on fire"
    assert "dangerous_code" in exception_events[0]["exception.stacktrace"]


def test_guide_best_practice_add_context_to_spans(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    node = type("Node", (), {"id": "n1", "type": "llm", "execute": lambda self: 1})()
    graph = type("Graph", (), {"id": "g1"})()
    with trace_span(
        "node_execution",
        attributes={"node_id": node.id, "node_type": node.type, "graph_id": graph.id},
    ):
        result = node.execute()
    assert result == 1
    shutdown_telemetry()
    (span,) = grpc_receiver.wait_for(1)
    assert span.attributes == {"node_id": "n1", "node_type": "llm", "graph_id": "g1"}


def test_guide_best_practice_sampling_config_is_valid_and_applied(grpc_receiver):
    # Sample 10% of traces in production (the log sampling half belongs to the logging pillar)
    config = TelemetryConfig(enable_tracing=True, sampling_rate=0.1)
    assert config.sampling_rate == 0.1
    configure_telemetry(config, exporter="none")
    provider = trace.get_tracer_provider()
    assert "TraceIdRatioBased{0.1}" in provider.sampler.get_description()


def test_guide_best_practice_correlate_across_systems(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("operation") as span:
        trace_id = span.get_span_context().trace_id
        # The guide passes this to emit_event(trace_id=...); the events pillar tests that call.
        formatted = format(trace_id, "032x")
        assert formatted == get_current_trace_id()
        assert format(span.get_span_context().span_id, "016x") == get_current_span_id()
    shutdown_telemetry()
    (received,) = grpc_receiver.wait_for(1)
    assert received.trace_id == formatted


def test_guide_troubleshooting_checks_answer_true_inside_a_span():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    assert is_telemetry_enabled() is True
    with trace_span("op"):
        trace_id = get_current_trace_id()
    assert trace_id is not None and len(trace_id) == 32 and int(trace_id, 16) != 0
    assert get_current_trace_id() is None


# --------------------------------------------------------------------------------------------------
# what the real receivers get
# --------------------------------------------------------------------------------------------------


def _emit_reference_trace() -> dict[str, str]:
    ids = {}
    with trace_span(
        "parent",
        attributes={
            "count": 3,
            "ratio": 0.25,
            "flag": True,
            "label": "x",
            "ids": [1, 2, 3],
            "names": ("a", "b"),
            "mixed": [1, "a"],
            "nothing": None,
            "color": Color.RED,
            "obj": Opaque(),
            "huge": 2**70,
            "meta": {"k": 1},
        },
        kind=trace.SpanKind.SERVER,
    ) as parent:
        ids["parent"] = format(parent.get_span_context().span_id, "016x")
        ids["trace"] = format(parent.get_span_context().trace_id, "032x")
        with trace_span("child") as child:
            ids["child"] = format(child.get_span_context().span_id, "016x")
            record_span_event("retry", {"attempt": 2, "backoff": 0.5})
            set_span_attribute("tokens", 128)
    return ids


def _assert_reference_trace(spans: list[ReceivedSpan], ids: dict[str, str]) -> None:
    named = by_name(spans)
    parent, child = named["parent"], named["child"]
    assert parent.trace_id == child.trace_id == ids["trace"]
    assert parent.span_id == ids["parent"] and parent.parent_span_id is None
    assert child.span_id == ids["child"] and child.parent_span_id == ids["parent"]
    assert parent.kind == "SERVER" and child.kind == "INTERNAL"
    assert parent.attributes == {
        "count": 3,
        "ratio": 0.25,
        "flag": True,
        "label": "x",
        "ids": [1, 2, 3],
        "names": ["a", "b"],
        "mixed": ["1", "a"],
        "color": "red",
        "obj": "opaque-object",
        "huge": str(2**70),
        "meta": '{"k": 1}',
    }
    assert type(parent.attributes["count"]) is int  # the original turned everything into str
    assert type(parent.attributes["flag"]) is bool
    assert child.attributes == {"tokens": 128}
    assert child.events == [("retry", {"attempt": 2, "backoff": 0.5})]
    assert parent.status_code == "UNSET"
    assert parent.resource["service.name"] == "checkout"
    assert parent.resource["deployment.environment"] == "test"
    assert parent.resource["replicas"] == 3
    assert parent.scope_name == "tinyllm_instrument"


def test_grpc_receiver_gets_names_parents_typed_attributes_events_and_resource(grpc_receiver):
    configure_telemetry(
        otlp(
            grpc_receiver,
            service_name="checkout",
            resource_attributes={"deployment.environment": "test", "replicas": 3},
            otlp_headers={"X-Api-Key": "k-123"},
        )
    )
    ids = _emit_reference_trace()
    shutdown_telemetry()
    _assert_reference_trace(grpc_receiver.wait_for(2), ids)
    assert grpc_receiver.request_headers[0]["x-api-key"] == "k-123"


def test_http_receiver_gets_names_parents_typed_attributes_events_and_resource(http_receiver):
    configure_telemetry(
        otlp(
            http_receiver,
            service_name="checkout",
            resource_attributes={"deployment.environment": "test", "replicas": 3},
            otlp_headers={"X-Api-Key": "k-456"},
        )
    )
    ids = _emit_reference_trace()
    shutdown_telemetry()
    _assert_reference_trace(http_receiver.wait_for(2), ids)
    headers = http_receiver.request_headers[0]
    assert headers["x-api-key"] == "k-456"
    assert headers["content-type"] == "application/x-protobuf"


def test_http_exporter_with_gzip_compression_reaches_the_receiver(http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    configure_telemetry(otlp(http_receiver))
    with trace_span("compressed"):
        pass
    shutdown_telemetry()
    assert [s.name for s in http_receiver.wait_for(1)] == ["compressed"]
    assert http_receiver.request_headers[0]["content-encoding"] == "gzip"


def test_error_status_and_exception_event_reach_the_http_receiver(http_receiver):
    configure_telemetry(otlp(http_receiver))
    error = ValueError("bad input")
    with pytest.raises(ValueError) as info:
        with trace_span("failing"):
            raise error
    assert info.value is error
    shutdown_telemetry()
    (span,) = http_receiver.wait_for(1)
    assert span.status_code == "ERROR"
    assert span.status_message == "ValueError: bad input"
    assert [name for name, _ in span.events] == ["exception"]


class LeakyObject:
    def __str__(self) -> str:
        return "conn password=hunter2"


def test_span_attributes_events_and_errors_go_through_the_redaction_policy(http_receiver):
    configure_telemetry(otlp(http_receiver))
    with pytest.raises(PermissionError):
        with trace_span(
            "llm_call",
            attributes={
                "api_key": "sk-live-1234567890abcdef",
                "max_tokens": 256,
                "author": "ann",
                "note": "sent Authorization: Bearer abcdefghijklmnop1234",
                "client": LeakyObject(),
                "meta": {"password": "hunter2", "model": "tiny"},
            },
        ):
            set_span_attribute("token", "t-secret-value")
            record_span_event("retry", {"credentials": "user:pw", "attempt": 2})
            raise PermissionError("login failed for password=hunter2")
    shutdown_telemetry()
    (span,) = http_receiver.wait_for(1)
    assert span.attributes["api_key"] == "[REDACTED]"
    assert span.attributes["token"] == "[REDACTED]"
    assert span.attributes["max_tokens"] == 256  # not a secret: word match, not substring
    assert span.attributes["author"] == "ann"
    assert span.attributes["note"] == "sent Authorization: Bearer [REDACTED]"
    assert span.attributes["client"] == "conn password=[REDACTED]"
    assert json.loads(span.attributes["meta"]) == {"password": "[REDACTED]", "model": "tiny"}
    assert span.events[0] == ("retry", {"credentials": "[REDACTED]", "attempt": 2})
    assert span.status_message == "PermissionError: login failed for password=[REDACTED]"
    (exception,) = [attrs for name, attrs in span.events if name == "exception"]
    assert exception["exception.message"] == "login failed for password=[REDACTED]"
    assert "hunter2" not in repr(span)


# --------------------------------------------------------------------------------------------------
# reconfiguration of the one global provider
# --------------------------------------------------------------------------------------------------


def test_configure_installs_the_global_provider_so_third_party_tracers_join():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    other = trace.get_tracer("third.party.lib")
    with trace_span("ours") as ours:
        with other.start_as_current_span("theirs") as theirs:
            assert theirs.is_recording()
            assert theirs.get_span_context().trace_id == ours.get_span_context().trace_id
            assert theirs.parent.span_id == ours.get_span_context().span_id


def test_second_configure_takes_effect_for_tracers_obtained_before(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver, service_name="svc-a", sampling_rate=0.0))
    kit_tracer = get_tracer()
    lib_tracer = trace.get_tracer("early.lib")
    with trace_span("dropped") as span:
        assert not span.is_recording()
        assert get_current_trace_id() is None
    with kit_tracer.start_as_current_span("dropped_too") as span:
        assert not span.is_recording()

    configure_telemetry(otlp(grpc_receiver, service_name="svc-b", sampling_rate=1.0))
    with kit_tracer.start_as_current_span("kept_kit") as span:
        assert span.is_recording()
    with lib_tracer.start_as_current_span("kept_lib"):
        pass
    with trace_span("kept_helper"):
        pass
    shutdown_telemetry()
    spans = grpc_receiver.wait_for(3)
    assert sorted(s.name for s in spans) == ["kept_helper", "kept_kit", "kept_lib"]
    named = by_name(spans)
    assert named["kept_kit"].resource["service.name"] == "svc-b"
    assert named["kept_helper"].resource["service.name"] == "svc-b"


def test_reconfigure_replaces_the_resource_instead_of_merging_it(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver, resource_attributes={"only.in.first": "yes"}))
    get_tracer()
    configure_telemetry(otlp(grpc_receiver, resource_attributes={"only.in.second": "yes"}))
    with trace_span("after"):  # a tracer from before the second configure
        pass
    with trace.get_tracer("late.lib").start_as_current_span("late"):  # a tracer made after it
        pass
    shutdown_telemetry()
    spans = grpc_receiver.wait_for(2)
    assert sorted(s.name for s in spans) == ["after", "late"]
    for span in spans:
        assert span.resource["only.in.second"] == "yes"
        assert "only.in.first" not in span.resource


def test_reconfigure_moves_export_to_the_new_receiver_and_flushes_the_old_one(
    grpc_receiver, http_receiver
):
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("before"):
        pass
    configure_telemetry(otlp(http_receiver))
    # The previous exporter was flushed during the second configure: no waiting needed.
    assert [s.name for s in grpc_receiver.spans] == ["before"]
    with trace_span("after"):
        pass
    shutdown_telemetry()
    assert [s.name for s in http_receiver.wait_for(1)] == ["after"]
    assert [s.name for s in grpc_receiver.spans] == ["before"]


def test_configure_with_tracing_disabled_turns_recording_off_again():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    configure_telemetry(TelemetryConfig(enable_tracing=False))
    assert is_telemetry_enabled() is False
    assert get_telemetry_config() == TelemetryConfig(enable_tracing=False)
    with trace_span("off") as span:
        assert not span.is_recording()


def test_configure_accepts_keyword_fields_and_overrides():
    configure_telemetry(enable_tracing=True, exporter="none", service_name="kw")
    assert get_telemetry_config().service_name == "kw"
    configure_telemetry(get_telemetry_config(), service_name="kw2")
    assert get_telemetry_config().service_name == "kw2"
    with pytest.raises(TypeError):
        configure_telemetry({"enable_tracing": True})  # type: ignore[arg-type]


def test_exporter_none_still_creates_spans_for_log_correlation(capsys):
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    with trace_span("correlate") as span:
        assert span.is_recording()
        assert get_current_trace_id() == format(span.get_span_context().trace_id, "032x")
        assert get_current_span_id() == format(span.get_span_context().span_id, "016x")
    shutdown_telemetry()
    assert capsys.readouterr().out == ""


def test_tracing_off_gives_non_recording_spans_never_none():
    assert is_telemetry_enabled() is False
    with trace_span("off", attributes={"a": 1}) as span:
        assert span is not None
        assert not span.is_recording()
        span.set_attribute("x", 1)  # a no-op, not an AttributeError on None
        set_span_attribute("y", 2)
        record_span_event("e")
        assert get_current_trace_id() is None
        assert get_current_span_id() is None


def test_reset_forgets_the_config_and_leaves_spans_non_recording():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    exporter = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.reset_telemetry()
    assert get_telemetry_config() is None
    assert is_telemetry_enabled() is False
    with trace_span("after_reset") as span:
        assert not span.is_recording()
    with trace.get_tracer("lib").start_as_current_span("lib_after_reset") as span:
        assert not span.is_recording()
    # The added processor was detached too: a new configuration does not feed it.
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    with trace_span("reconfigured") as span:
        assert span.is_recording()
    assert exporter.get_finished_spans() == ()


def test_shutdown_is_idempotent_and_turns_tracing_off(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("one"):
        pass
    shutdown_telemetry(timeout=5)
    shutdown_telemetry(timeout=5)
    assert is_telemetry_enabled() is False
    assert get_telemetry_config() is not None
    with trace_span("after") as span:
        assert not span.is_recording()
    assert [s.name for s in grpc_receiver.wait_for(1)] == ["one"]


def test_added_span_processor_sees_kit_spans_until_removed():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.add_span_processor(processor)
    with trace_span("seen", attributes={"n": 1}):
        pass
    assert telemetry.remove_span_processor(processor) is True
    assert telemetry.remove_span_processor(processor) is False
    with trace_span("unseen"):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.name == "seen" and span.attributes["n"] == 1


def test_flush_telemetry_exports_without_shutting_down(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("flushed"):
        pass
    assert telemetry.flush_telemetry(timeout=5) is True
    assert [s.name for s in grpc_receiver.wait_for(1)] == ["flushed"]
    assert is_telemetry_enabled() is True


# --------------------------------------------------------------------------------------------------
# failures in the kit stay in the kit
# --------------------------------------------------------------------------------------------------


class _ExplodingProcessor(SimpleSpanProcessor):
    def __init__(self) -> None:
        super().__init__(InMemorySpanExporter())

    def on_end(self, span: Any) -> None:
        raise RuntimeError("processor exploded")


class _ExplodingExporter(InMemorySpanExporter):
    def export(self, spans: Any) -> Any:
        raise RuntimeError("exporter exploded")


def _kit_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tinyllm_instrument"]


def test_a_failing_processor_never_reaches_user_code(caplog):
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    survivor = InMemorySpanExporter()
    telemetry.add_span_processor(_ExplodingProcessor())
    telemetry.add_span_processor(SimpleSpanProcessor(survivor))
    with caplog.at_level(logging.WARNING, logger="tinyllm_instrument"):
        with trace_span("user_work"):
            value = process_task()
    assert value == 42
    assert [s.name for s in survivor.get_finished_spans()] == ["user_work"]
    assert any("span_processor" in m and "processor exploded" in m for m in _kit_warnings(caplog))


def test_a_failing_exporter_is_reported_not_raised(caplog, monkeypatch):
    monkeypatch.setattr(telemetry.exporters, "_build_exporter", lambda config: _ExplodingExporter())
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="console"))
    with caplog.at_level(logging.WARNING, logger="tinyllm_instrument"):
        with trace_span("exported_badly"):
            pass
        shutdown_telemetry()
    assert any("span_export" in m and "exporter exploded" in m for m in _kit_warnings(caplog))


def test_a_collector_refusing_spans_does_not_disturb_the_app(grpc_receiver):
    grpc_receiver.fail_with = grpc.StatusCode.INVALID_ARGUMENT  # not retryable
    configure_telemetry(otlp(grpc_receiver))
    with trace_span("refused"):
        value = process_task()
    shutdown_telemetry()
    assert value == 42
    assert grpc_receiver.wait_for_requests(1) >= 1
    assert grpc_receiver.spans == []


def test_unprintable_attribute_values_are_replaced_and_reported(caplog):
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    exporter = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(exporter))
    with caplog.at_level(logging.WARNING, logger="tinyllm_instrument"):
        with trace_span("odd", attributes={"bad": Unprintable(), "good": 1}):
            pass
    (span,) = exporter.get_finished_spans()
    assert span.attributes["bad"] == "<unprintable Unprintable>"
    assert span.attributes["good"] == 1
    assert any("span_attribute" in m for m in _kit_warnings(caplog))


def test_exporter_construction_errors_are_a_clear_value_error(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no channel")

    monkeypatch.setattr(trace_exporter, "OTLPSpanExporter", broken)
    with pytest.raises(ValueError, match=r"cannot build the OTLP grpc exporter.*no channel"):
        configure_telemetry(
            TelemetryConfig(
                enable_tracing=True, exporter="otlp", otlp_endpoint="http://127.0.0.1:1"
            )
        )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_exporter_construction_errors_do_not_echo_credentials(monkeypatch, protocol):
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_module
    from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_module

    def broken(*args: Any, endpoint: str = "", **kwargs: Any) -> None:
        # What client libraries do: the failing URL, credentials and all, in the message.
        raise RuntimeError(f"cannot reach {endpoint} with api_key=sk-live-abcdefgh12345678")

    module = grpc_module if protocol == "grpc" else http_module
    monkeypatch.setattr(module, "OTLPSpanExporter", broken)
    with pytest.raises(ValueError) as info:
        configure_telemetry(
            TelemetryConfig(
                enable_tracing=True,
                exporter="otlp",
                otlp_protocol=protocol,
                otlp_endpoint="http://tracer:hunter2-pass@127.0.0.1:1",
            )
        )
    message = str(info.value)
    assert "cannot build the OTLP" in message and "127.0.0.1:1" in message
    assert "hunter2" not in message and "sk-live-abcdefgh12345678" not in message
    assert "[REDACTED]" in message


def test_config_repr_shows_header_names_but_no_secret():
    config = TelemetryConfig(
        otlp_headers={
            "x-honeycomb-team": "hc-team-key-123456",
            "authorization": "Bearer abcdefgh1",
        },
        otlp_endpoint="http://tracer:hunter2-pass@collector:4317",
        resource_attributes={"deployment.environment": "prod", "api_key": "sk-live-abcdefgh1234"},
    )
    for text in (repr(config), str(config), f"{config}"):
        assert "x-honeycomb-team" in text and "authorization" in text
        for secret in ("hc-team-key-123456", "abcdefgh1", "hunter2", "sk-live-abcdefgh1234"):
            assert secret not in text, text
        assert "deployment.environment" in text and "prod" in text
        assert "collector:4317" in text
    assert config.otlp_headers == {
        "x-honeycomb-team": "hc-team-key-123456",
        "authorization": "Bearer abcdefgh1",
    }  # the values themselves are intact: only what is shown is redacted
    assert config == TelemetryConfig(
        otlp_headers=dict(config.otlp_headers or {}),
        otlp_endpoint=config.otlp_endpoint,
        resource_attributes=dict(config.resource_attributes or {}),
    )


# --------------------------------------------------------------------------------------------------
# TelemetryConfig validation and endpoint resolution
# --------------------------------------------------------------------------------------------------


def test_config_defaults_match_the_issue():
    config = TelemetryConfig()
    assert config.enable_tracing is False
    assert config.service_name == "tinyllm"
    assert config.exporter == "console"
    assert config.otlp_endpoint is None
    assert config.otlp_protocol == "grpc"
    assert config.otlp_headers is None
    assert config.sampling_rate == 1.0
    assert config.resource_attributes is None
    assert config.propagate_to_threads is True


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("exporter", "jaeger", "'console', 'otlp', 'none'"),
        ("otlp_protocol", "http", "'grpc', 'http/protobuf'"),
        ("sampling_rate", 1.5, "0.0 to 1.0"),
        ("sampling_rate", -0.1, "0.0 to 1.0"),
        ("sampling_rate", True, "0.0 to 1.0"),
        ("sampling_rate", "0.5", "0.0 to 1.0"),
        ("sampling_rate", math.nan, "0.0 to 1.0"),
        ("enable_tracing", "yes", "True or False"),
        ("propagate_to_threads", 1, "True or False"),
        ("service_name", "", "non-empty string"),
        ("export_timeout", 0, "greater than 0"),
        ("shutdown_timeout", -1.0, "greater than 0"),
        ("otlp_endpoint", "localhost:4317", "base URL"),
        ("otlp_endpoint", "http://", "base URL"),
        ("otlp_endpoint", "ftp://collector:21", "base URL"),
        ("otlp_endpoint", "http://collector:notaport", "base URL"),
    ],
)
def test_config_rejects_bad_values_naming_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ValueError) as info:
        TelemetryConfig(**{field: value})
    message = str(info.value)
    assert f"TelemetryConfig.{field}" in message
    assert repr(value) in message
    assert allowed in message


def test_config_rejects_bad_mappings_without_echoing_header_values():
    with pytest.raises(ValueError, match="resource_attributes"):
        TelemetryConfig(resource_attributes={"obj": object()})
    with pytest.raises(ValueError, match="otlp_headers must be a dict"):
        TelemetryConfig(otlp_headers=[("a", "b")])  # type: ignore[arg-type]
    with pytest.raises(ValueError) as info:
        TelemetryConfig(otlp_headers={"authorization": b"Bearer s3cr3t"})  # type: ignore[dict-item]
    assert "authorization" in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_config_copies_mappings_so_later_mutation_does_not_leak_in():
    headers = {"x-key": "a"}
    config = TelemetryConfig(otlp_headers=headers)
    headers["x-key"] = "b"
    assert config.otlp_headers == {"x-key": "a"}
    with pytest.raises(TypeError):
        config.otlp_headers["x-key"] = "c"  # type: ignore[index]


@pytest.mark.parametrize(
    ("protocol", "endpoint", "expected"),
    [
        ("grpc", None, "http://localhost:4317"),
        ("http/protobuf", None, "http://localhost:4318/v1/traces"),
        ("grpc", "http://collector:4317", "http://collector:4317"),
        ("grpc", "https://collector.example", "https://collector.example"),
        ("http/protobuf", "http://collector:4318", "http://collector:4318/v1/traces"),
        ("http/protobuf", "http://collector:4318/", "http://collector:4318/v1/traces"),
        ("http/protobuf", "http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
        ("http/protobuf", "https://gw.example/otlp", "https://gw.example/otlp/v1/traces"),
    ],
)
def test_endpoint_resolution(protocol, endpoint, expected):
    config = TelemetryConfig(exporter="otlp", otlp_protocol=protocol, otlp_endpoint=endpoint)
    assert config.resolved_endpoint() == expected


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("grpc", "http://env-collector:9999"),
        ("http/protobuf", "http://env-collector:9999/v1/traces"),
    ],
)
def test_endpoint_default_comes_from_the_standard_env_var(monkeypatch, protocol, expected):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env-collector:9999")
    config = TelemetryConfig(exporter="otlp", otlp_protocol=protocol)
    assert config.resolved_endpoint() == expected
    explicit = TelemetryConfig(exporter="otlp", otlp_protocol=protocol, otlp_endpoint="http://a:1")
    assert explicit.resolved_endpoint().startswith("http://a:1")


def test_env_endpoint_is_read_when_the_config_is_made(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://first:1")
    config = TelemetryConfig(exporter="otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://second:2")
    assert config.resolved_endpoint() == "http://first:1"


def test_bad_env_endpoint_fails_otlp_configs_only(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_ENDPOINT='not a url'"):
        TelemetryConfig(exporter="otlp")
    assert TelemetryConfig(exporter="console").exporter == "console"


def test_env_endpoint_reaches_a_real_receiver(monkeypatch, http_receiver):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_receiver.endpoint)
    configure_telemetry(
        TelemetryConfig(enable_tracing=True, exporter="otlp", otlp_protocol="http/protobuf")
    )
    with trace_span("via_env"):
        pass
    shutdown_telemetry()
    assert [s.name for s in http_receiver.wait_for(1)] == ["via_env"]


# --------------------------------------------------------------------------------------------------
# propagation
# --------------------------------------------------------------------------------------------------


def test_inject_extract_round_trip_with_baggage(grpc_receiver):
    configure_telemetry(otlp(grpc_receiver))
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with trace_span("client") as client:
            carrier = inject_context()
            client_ctx = client.get_span_context()
    finally:
        otel_context.detach(token)
    assert carrier["traceparent"] == (
        f"00-{client_ctx.trace_id:032x}-{client_ctx.span_id:016x}-{client_ctx.trace_flags:02x}"
    )
    assert client_ctx.trace_flags.sampled
    assert carrier["baggage"] == "tenant=acme"

    # The other side of the wire.
    extracted = extract_context(dict(carrier))
    assert baggage.get_baggage("tenant", extracted) == "acme"
    remote = trace.get_current_span(extracted).get_span_context()
    assert remote.is_remote and remote.trace_id == client_ctx.trace_id
    token = otel_context.attach(extracted)
    try:
        with trace_span("server", kind=trace.SpanKind.SERVER):
            pass
    finally:
        otel_context.detach(token)
    shutdown_telemetry()
    server = by_name(grpc_receiver.wait_for(2))["server"]
    assert server.trace_id == f"{client_ctx.trace_id:032x}"
    assert server.parent_span_id == f"{client_ctx.span_id:016x}"


def test_inject_fills_the_given_carrier_and_extract_of_garbage_is_empty():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    headers = {"accept": "json"}
    with trace_span("call"):
        returned = inject_context(headers)
    assert returned is headers
    assert headers["accept"] == "json" and headers["traceparent"].startswith("00-")
    ctx = extract_context({"traceparent": "garbage"})
    assert not trace.get_current_span(ctx).get_span_context().is_valid
    assert inject_context() == {}  # outside any span, nothing to propagate


# --------------------------------------------------------------------------------------------------
# traced on every kind of callable
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def memory_spans():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    exporter = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def test_traced_sync_function_returns_its_value(memory_spans):
    @traced()
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    assert add(2, b=3) == 5  # the original wrapper broke sync functions
    assert add.__name__ == "add" and add.__doc__ == "Add two numbers."
    assert inspect.signature(add) == inspect.signature(add.__wrapped__)
    assert not inspect.iscoroutinefunction(add)
    (span,) = memory_spans.get_finished_spans()
    assert span.name == "add"


def test_traced_bare_and_named_and_on_methods(memory_spans):
    @traced
    def bare() -> str:
        return "bare"

    class Node:
        @traced
        def run(self, x: int) -> int:
            return x * 2

    @traced("custom.name", attributes={"k": 1})
    def named() -> None:
        return None

    assert bare() == "bare"
    assert Node().run(4) == 8
    named()
    assert [(s.name, dict(s.attributes)) for s in memory_spans.get_finished_spans()] == [
        ("bare", {}),
        ("Node.run", {}),
        ("custom.name", {"k": 1}),
    ]


def test_traced_sync_exception_is_recorded_and_reraised_unchanged(memory_spans):
    boom = KeyError("missing")

    @traced()
    def fail() -> None:
        raise boom

    with pytest.raises(KeyError) as info:
        fail()
    assert info.value is boom
    (span,) = memory_spans.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_traced_coroutine_is_still_a_coroutine_function_and_nests(memory_spans):
    @traced()
    async def inner() -> str:
        await asyncio.sleep(0)
        return get_current_span_id() or ""

    @traced()
    async def outer() -> tuple[str, str]:
        mine = get_current_span_id() or ""
        return mine, await inner()

    assert inspect.iscoroutinefunction(outer)
    outer_id, inner_id = asyncio.run(outer())
    spans = {s.name: s for s in memory_spans.get_finished_spans()}
    assert format(spans["outer"].context.span_id, "016x") == outer_id
    assert format(spans["inner"].context.span_id, "016x") == inner_id
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id


def test_traced_generator_spans_the_whole_iteration_without_leaking_into_the_caller(memory_spans):
    @traced()
    def numbers(n: int):
        for i in range(n):
            assert get_current_span_id() is not None  # current inside the generator's body
            yield i
        return "end"

    assert inspect.isgeneratorfunction(numbers)
    gen = numbers(3)
    seen = []
    for item in gen:
        seen.append(item)
        assert get_current_span_id() is None  # not current in the caller between items
    assert seen == [0, 1, 2]
    (span,) = memory_spans.get_finished_spans()
    assert span.name == "numbers"


def test_traced_generator_send_return_value_and_early_close(memory_spans):
    @traced()
    def echo():
        received = yield "ready"
        while received is not None:
            received = yield received.upper()
        return "finished"

    def drive():
        result = yield from echo()
        return result

    driver = drive()
    assert next(driver) == "ready"
    assert driver.send("a") == "A"
    with pytest.raises(StopIteration) as stop:
        driver.send(None)
    assert stop.value.value == "finished"

    closed = echo()
    next(closed)
    closed.close()
    spans = memory_spans.get_finished_spans()
    assert [s.name for s in spans] == ["echo", "echo"]
    assert all(s.status.status_code == trace.StatusCode.UNSET for s in spans)


def test_traced_generator_error_is_recorded(memory_spans):
    @traced()
    def broken():
        yield 1
        raise ValueError("gen failed")

    with pytest.raises(ValueError, match="gen failed"):
        list(broken())
    (span,) = memory_spans.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR


def test_traced_async_generator(memory_spans):
    @traced(attributes={"stream": True})
    async def tokens(n: int):
        for i in range(n):
            await asyncio.sleep(0)
            yield f"t{i}"

    assert inspect.isasyncgenfunction(tokens)

    async def consume() -> list[str]:
        out = []
        async for tok in tokens(3):
            assert get_current_span_id() is None
            out.append(tok)
        return out

    assert asyncio.run(consume()) == ["t0", "t1", "t2"]
    (span,) = memory_spans.get_finished_spans()
    assert span.name == "tokens" and span.attributes["stream"] is True


def test_traced_keeps_functools_metadata_for_every_kind():
    def plain():
        """doc"""

    async def coro():
        """doc"""

    def gen():
        """doc"""
        yield

    async def agen():
        """doc"""
        yield

    for func, check in [
        (plain, inspect.isfunction),
        (coro, inspect.iscoroutinefunction),
        (gen, inspect.isgeneratorfunction),
        (agen, inspect.isasyncgenfunction),
    ]:
        wrapped = traced()(func)
        assert check(wrapped), func
        assert wrapped.__wrapped__ is func
        assert wrapped.__name__ == func.__name__ and wrapped.__doc__ == "doc"


# --------------------------------------------------------------------------------------------------
# process-level behaviour (fresh interpreters)
# --------------------------------------------------------------------------------------------------


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
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


def test_import_configures_nothing_and_first_configure_registers_atexit_once():
    result = _run_python(
        """
        import atexit
        from opentelemetry import trace
        before = atexit._ncallbacks()
        import tinyllm_instrument.telemetry as t
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        assert atexit._ncallbacks() == before, "import registered an atexit hook"
        t.configure_telemetry(t.TelemetryConfig(enable_tracing=True, exporter="none"))
        provider = trace.get_tracer_provider()
        assert type(provider).__name__ == "KitTracerProvider", provider
        assert provider.resource.attributes["service.name"] == "tinyllm"
        assert atexit._ncallbacks() == before + 1
        t.configure_telemetry(t.TelemetryConfig(enable_tracing=True, exporter="none"))
        assert atexit._ncallbacks() == before + 1
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_exit_flushes_pending_spans_through_the_atexit_hook(grpc_receiver):
    result = _run_python(
        """
        import sys
        import tinyllm_instrument.telemetry as t
        t.configure_telemetry(t.TelemetryConfig(enable_tracing=True, exporter="otlp",
                                                otlp_endpoint=sys.argv[1], service_name="exiting"))
        with t.trace_span("last_words"):
            pass
        """,
        grpc_receiver.endpoint,
    )
    assert result.returncode == 0, result.stderr
    (span,) = grpc_receiver.wait_for(1)
    assert span.name == "last_words" and span.resource["service.name"] == "exiting"


def test_a_provider_installed_by_someone_else_is_joined_not_fought(grpc_receiver):
    result = _run_python(
        """
        import sys
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        theirs = TracerProvider(resource=Resource.create({"service.name": "host-app"}))
        trace.set_tracer_provider(theirs)
        import tinyllm_instrument.telemetry as t
        t.configure_telemetry(t.TelemetryConfig(enable_tracing=True, exporter="otlp",
                                                otlp_endpoint=sys.argv[1]))
        assert trace.get_tracer_provider() is theirs
        with t.trace_span("joined"):
            pass
        t.shutdown_telemetry()
        """,
        grpc_receiver.endpoint,
    )
    assert result.returncode == 0, result.stderr
    assert "was installed before configure_telemetry()" in result.stderr
    (span,) = grpc_receiver.wait_for(1)
    assert span.name == "joined" and span.resource["service.name"] == "host-app"
