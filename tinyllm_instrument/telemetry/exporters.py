"""Exporters behind the pipeline: OTLP (gRPC or HTTP), console, tree; faults counted, not raised."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult

from .._errors import Stage, report_internal_error
from ..redaction import safe_text
from ..tree import TreeSpanExporter
from .config import TelemetryConfig
from .pipeline import ExportPipeline

__all__ = ["build_processors"]


class _GuardedExporter(SpanExporter):
    """Wraps the real exporter so that its faults are reported and counted, not raised or lost."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return self.inner.export(spans)
        except Exception as exc:
            report_internal_error(Stage.SPAN_EXPORT, exc)
            return SpanExportResult.FAILURE

    def shutdown(self, timeout_millis: float = 30000) -> None:
        try:
            if "timeout_millis" in inspect.signature(self.inner.shutdown).parameters:
                self.inner.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
            else:
                self.inner.shutdown()
        except Exception as exc:
            report_internal_error(Stage.SPAN_EXPORT, exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception as exc:
            report_internal_error(Stage.SPAN_EXPORT, exc)
            return False


class _CurrentStdout:
    """A stream that writes to whatever ``sys.stdout`` is at export time (redirections, capture)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _build_exporter(config: TelemetryConfig) -> SpanExporter | None:
    if config.exporter == "none":
        return None
    if config.exporter == "console":
        return ConsoleSpanExporter(
            service_name=config.service_name, out=cast(Any, _CurrentStdout())
        )
    if config.exporter == "tree":
        # Through the export pipeline like the others: the tree is rendered and printed on the
        # export thread, never on the thread that ended the span (a slow terminal or a full pipe
        # cannot stall the app), and the queue bound and drop counting are the same as for any
        # exporter. A tree shows up at most ``schedule_delay`` after its root ends, which is soon
        # enough for a person reading a console; flush and shutdown print at once.
        return TreeSpanExporter()
    endpoint = config.resolved_endpoint()
    headers = dict(config.otlp_headers or {})
    try:
        if config.otlp_protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter(
                endpoint=endpoint,
                insecure=urlsplit(endpoint).scheme == "http",
                # gRPC metadata keys must be lower case.
                headers={k.lower(): v for k, v in headers.items()} or None,
                timeout=config.export_timeout,
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(
            endpoint=endpoint, headers=headers or None, timeout=config.export_timeout
        )
    except Exception as exc:
        # The endpoint may hold a password and the library's message may echo it, or a header.
        raise ValueError(
            f"cannot build the OTLP {config.otlp_protocol} exporter for "
            f"{safe_text(repr(endpoint))}: {type(exc).__name__}: {safe_text(exc)}"
        ) from None


def build_processors(config: TelemetryConfig) -> tuple[SpanProcessor, ...]:
    """The exporting pipeline of ``config``: nothing for "none", else a batch processor."""
    exporter = _build_exporter(config)
    if exporter is None:
        return ()
    return (ExportPipeline(_GuardedExporter(exporter), config),)
