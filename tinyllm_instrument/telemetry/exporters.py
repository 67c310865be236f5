"""Exporters behind the pipeline: OTLP (gRPC or HTTP), console, tree; faults counted, not raised."""

from __future__ import annotations

import inspect
import logging
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
from .drops import one_line
from .otel_logs import captured, first_message, watch
from .pipeline import ExportPipeline

__all__ = ["build_processors"]

#: Loggers that the OTLP exporters' HTTP stack logs retries on, besides the exporters' own.
_TRANSPORT_LOGGERS = ("urllib3.connectionpool",)


class _GuardedExporter(SpanExporter):
    """Wraps the real exporter so that its faults are reported and counted, not raised or lost.

    While the inner exporter runs, the records of its own loggers are captured instead of printed
    (one line per retry and per failed batch otherwise); the first of them, or the exception,
    becomes :attr:`last_failure`, which the pipeline reports once per kind of failure.

    Attributes:
        last_failure: what went wrong in the last export that did not succeed, one short line.
        check_hint: how a person checks the destination (a ``tinyllm-instrument health``
            command), or None.
    """

    def __init__(self, inner: SpanExporter, check_hint: str | None = None) -> None:
        self.inner = inner
        self.check_hint = check_hint
        self.last_failure: str | None = None
        self._records: list[logging.LogRecord] = []  # of the export in progress
        watch(_logger_names(inner))

    def pending_failure(self) -> str | None:
        """What the exporter has said so far about the export still in progress (retrying)."""
        cause = first_message(list(self._records))
        return one_line(safe_text(cause)) if cause else None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with captured() as records:
            self._records = records
            try:
                result = self.inner.export(spans)
            except Exception as exc:
                report_internal_error(Stage.SPAN_EXPORT, exc)
                self.last_failure = one_line(f"{type(exc).__name__}: {safe_text(exc)}")
                return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            cause = first_message(records)
            if cause is not None:
                self.last_failure = one_line(safe_text(cause))
            elif self.last_failure is None:
                self.last_failure = "the exporter reported a failure"
            # else: nothing new was said, the same failure again (the exporter de-duplicates)
        return result

    def shutdown(self, timeout_millis: float = 30000) -> None:
        with captured():
            try:
                if "timeout_millis" in inspect.signature(self.inner.shutdown).parameters:
                    self.inner.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
                else:
                    self.inner.shutdown()
            except Exception as exc:
                report_internal_error(Stage.SPAN_EXPORT, exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with captured():
            try:
                return self.inner.force_flush(timeout_millis)
            except Exception as exc:
                report_internal_error(Stage.SPAN_EXPORT, exc)
                return False


def _logger_names(exporter: object) -> list[str]:
    """The loggers an exporter's code logs on: the module of each class it is made of (the
    OpenTelemetry exporters use ``getLogger(__name__)``), and their HTTP transport's."""
    names = [
        klass.__module__
        for klass in type(exporter).__mro__
        if klass.__module__.startswith("opentelemetry.exporter.")
    ]
    return names + list(_TRANSPORT_LOGGERS) if names else names


class _CurrentStdout:
    """A stream that writes to whatever ``sys.stdout`` is at export time (redirections, capture)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _check_hint(config: TelemetryConfig) -> str:
    """The command that checks the collector: ``health`` takes the base URL, as the user does."""
    endpoint = config.resolved_endpoint()
    command = "tinyllm-instrument health --otlp-endpoint "
    if config.otlp_protocol == "grpc":
        command += safe_text(endpoint)
    else:  # health appends /v1/traces itself
        command += safe_text(endpoint.removesuffix("/v1/traces"))
        command += f" --otlp-protocol {config.otlp_protocol}"
    return f"check the collector with: {command}"


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
    hint = _check_hint(config) if config.exporter == "otlp" else None
    return (ExportPipeline(_GuardedExporter(exporter, hint), config),)
