"""Real OTLP trace receivers for tests, gRPC and HTTP/protobuf, on the official protobufs.

Both receivers listen on 127.0.0.1 with an ephemeral port, decode every span they are sent into a
plain :class:`ReceivedSpan` record, and can be told to fail (``fail_with``) or to answer slowly
(``delay``) so that tests can play a collector that is down or overloaded::

    with GrpcTraceReceiver() as receiver:
        configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="otlp",
                                            otlp_endpoint=receiver.endpoint))
        ...
        spans = receiver.wait_for(3)

Test modules import the classes directly (``from otlp_receivers import GrpcTraceReceiver``); pytest
puts ``tests/`` on ``sys.path`` because ``tests/conftest.py`` lives there and ``tests/`` is not a
package.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = [
    "GrpcTraceReceiver",
    "HttpTraceReceiver",
    "ReceivedSpan",
    "decode_any_value",
    "decode_request",
]

_KIND_PREFIX = "SPAN_KIND_"
_STATUS_PREFIX = "STATUS_CODE_"


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as a receiver decoded it from the wire.

    ``kind`` is the SpanKind name without prefix ("INTERNAL", "SERVER", ...), ``status_code`` one of
    "UNSET", "OK", "ERROR". Attribute values keep their wire types: int, float, bool, str, list,
    dict, bytes.
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: str
    status_message: str
    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    links: list[tuple[str, str]] = field(default_factory=list)


def decode_any_value(value: common_pb2.AnyValue) -> Any:
    """Turn an OTLP ``AnyValue`` into the matching Python value (None when unset)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _decode_attributes(value.kvlist_value.values)
    return getattr(value, which)


def _decode_attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: decode_any_value(kv.value) for kv in key_values}


def _decode_span(span: trace_pb2.Span, resource: dict[str, Any], scope: Any) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        kind=trace_pb2.Span.SpanKind.Name(span.kind).removeprefix(_KIND_PREFIX),
        attributes=_decode_attributes(span.attributes),
        events=[(ev.name, _decode_attributes(ev.attributes)) for ev in span.events],
        status_code=trace_pb2.Status.StatusCode.Name(span.status.code).removeprefix(_STATUS_PREFIX),
        status_message=span.status.message,
        resource=resource,
        scope_name=scope.name,
        scope_version=scope.version,
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
    )


def decode_request(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """Flatten an ``ExportTraceServiceRequest`` into :class:`ReceivedSpan` records (wire order)."""
    out: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(_decode_span(span, resource, scope_spans.scope))
    return out


class _Store:
    """The part both receivers share: received spans, request count, failure switches."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._requests = 0
        self._headers: list[dict[str, str]] = []
        #: Seconds to wait before answering each request (a slow collector).
        self.delay: float = 0.0

    def _record(self, spans: list[ReceivedSpan], headers: dict[str, str]) -> None:
        with self._cond:
            self._requests += 1
            self._headers.append(headers)
            self._spans.extend(spans)
            self._cond.notify_all()

    def _count_failed_request(self, headers: dict[str, str]) -> None:
        with self._cond:
            self._requests += 1
            self._headers.append(headers)
            self._cond.notify_all()

    def _sleep(self) -> None:
        if self.delay > 0:
            time.sleep(self.delay)

    @property
    def spans(self) -> list[ReceivedSpan]:
        """A snapshot of every span received so far, in arrival order."""
        with self._cond:
            return list(self._spans)

    @property
    def requests(self) -> int:
        """How many export requests arrived, failed ones included."""
        with self._cond:
            return self._requests

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers (gRPC metadata) of every request, lower-cased keys, in arrival order."""
        with self._cond:
            return list(self._headers)

    def clear(self) -> None:
        """Forget received spans, headers and the request count."""
        with self._cond:
            self._spans.clear()
            self._headers.clear()
            self._requests = 0

    def wait_for(self, n: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Block until at least ``n`` spans arrived; return them all.

        Raises:
            AssertionError: fewer than ``n`` spans arrived within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._spans) >= n, timeout):
                raise AssertionError(
                    f"expected at least {n} span(s) within {timeout}s, received {len(self._spans)} "
                    f"in {self._requests} request(s): {[s.name for s in self._spans]}"
                )
            return list(self._spans)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> int:
        """Block until at least ``n`` requests arrived (failed ones included); return the count."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._requests >= n, timeout):
                raise AssertionError(
                    f"expected {n} request(s) within {timeout}s, got {self._requests}"
                )
            return self._requests


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: GrpcTraceReceiver) -> None:
        self._receiver = receiver

    def Export(  # noqa: N802 - the generated servicer's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        receiver = self._receiver
        headers = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        receiver._sleep()
        fail_with = receiver.fail_with
        if fail_with is not None:
            receiver._count_failed_request(headers)
            context.abort(fail_with, "simulated failure by GrpcTraceReceiver")
        receiver._record(decode_request(request), headers)
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcTraceReceiver(_Store):
    """An OTLP/gRPC trace receiver on 127.0.0.1: ``grpc.server`` and the generated TraceService.

    Set ``fail_with`` to a ``grpc.StatusCode`` (UNAVAILABLE, RESOURCE_EXHAUSTED...) to refuse every
    request, and ``delay`` to answer slowly. ``stop()`` closes the port: a collector that is down.
    """

    def __init__(self) -> None:
        super().__init__()
        #: When set, every Export is aborted with this status code (requests are still counted).
        self.fail_with: grpc.StatusCode | None = None
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        """Base URL for ``TelemetryConfig.otlp_endpoint``, e.g. ``http://127.0.0.1:43121``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GrpcTraceReceiver:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-grpc")
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        if self.port == 0:  # pragma: no cover - grpc reports bind failure as port 0
            raise RuntimeError("GrpcTraceReceiver could not bind 127.0.0.1")
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()

    def __enter__(self) -> GrpcTraceReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path.split("?", 1)[0] != "/v1/traces":
            self._answer(404, b"not found", "text/plain")
            return
        receiver._sleep()
        if receiver.fail_with is not None:
            receiver._count_failed_request(headers)
            self._answer(
                receiver.fail_with, b"simulated failure by HttpTraceReceiver", "text/plain"
            )
            return
        encoding = headers.get("content-encoding", "").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                raise ValueError(f"unsupported Content-Encoding {encoding!r}")
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
        except Exception as exc:  # a malformed request is the client's fault: answer 400
            receiver._count_failed_request(headers)
            self._answer(400, str(exc).encode(), "text/plain")
            return
        receiver._record(decode_request(request), headers)
        response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self._answer(200, response, "application/x-protobuf")

    def _answer(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: HttpTraceReceiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _HttpHandler)


class HttpTraceReceiver(_Store):
    """An OTLP/HTTP (protobuf) trace receiver on 127.0.0.1: ``POST /v1/traces``, gzip or deflate.

    Set ``fail_with`` to an HTTP status (503, 429...) to refuse every request, and ``delay`` to
    answer slowly. ``stop()`` closes the port: a collector that is down.
    """

    def __init__(self) -> None:
        super().__init__()
        #: When set, every POST is answered with this HTTP status (requests are still counted).
        self.fail_with: int | None = None
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        """Base URL for ``TelemetryConfig.otlp_endpoint`` (the exporter appends ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        """The full signal URL, ``<endpoint>/v1/traces``."""
        return self.endpoint + "/v1/traces"

    def start(self) -> HttpTraceReceiver:
        self._server = _HttpServer(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> HttpTraceReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
