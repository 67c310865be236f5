"""Tracing: TelemetryConfig, configure_telemetry, span helpers and W3C context propagation.

How the process-wide provider works
-----------------------------------
OpenTelemetry lets a process set its global tracer provider once. So the first
:func:`configure_telemetry` that enables tracing installs one SDK ``TracerProvider`` for good, built
around two switchable parts of the kit's own:

* a sampler that delegates to ``ParentBased(TraceIdRatioBased(rate))`` (or to ALWAYS_OFF when
  tracing is disabled, reset or shut down), and
* a span processor that forwards to the current export pipeline (``_ExportPipeline``: a bounded
  queue and one export thread, where every span is exported or counted as dropped) plus any
  processors added with :func:`add_span_processor`.

Every SDK ``Tracer`` keeps a reference to its provider's sampler and processor, so swapping what
those two delegate to reaches tracers that were obtained before a reconfiguration too. The resource
(service name and ``resource_attributes``) is swapped on the provider and on every tracer it has
handed out (this reaches into SDK internals, checked against opentelemetry-sdk 1.45).
Limit: spans already started keep the resource and processors of the moment they started.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import inspect
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar, cast, overload
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from . import _config
from ._context import CURRENT_GRAPH, CURRENT_NODE
from ._errors import KIT_LOGGER_NAME, report_internal_error
from .redaction import REDACTED, get_redaction_policy
from .tree import TreeSpanExporter

__all__ = [
    "DEFAULT_OTLP_GRPC_ENDPOINT",
    "DEFAULT_OTLP_HTTP_ENDPOINT",
    "DROP_REASONS",
    "DROP_WARNING_INTERVAL",
    "ENV_OTLP_ENDPOINT",
    "EXPORTERS",
    "ON_QUEUE_FULL",
    "OTLP_PROTOCOLS",
    "TRACER_NAME",
    "TelemetryConfig",
    "add_span_processor",
    "configure_telemetry",
    "extract_context",
    "flush_telemetry",
    "get_current_span_id",
    "get_current_trace_id",
    "get_telemetry_config",
    "get_tracer",
    "inject_context",
    "is_telemetry_enabled",
    "record_span_event",
    "remove_span_processor",
    "reset_telemetry",
    "set_span_attribute",
    "set_span_error",
    "shutdown_telemetry",
    "trace_span",
    "traced",
]

_log = logging.getLogger(KIT_LOGGER_NAME)

#: Instrumentation scope name of the kit's spans.
TRACER_NAME = "tinyllm_instrument"
#: Allowed values of ``TelemetryConfig.exporter``.
EXPORTERS = ("console", "otlp", "none", "tree")
#: Allowed values of ``TelemetryConfig.otlp_protocol``.
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
#: The standard OpenTelemetry variable for the collector's base URL; the default of
#: ``otlp_endpoint``.
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
#: Default collector for OTLP/gRPC when neither ``otlp_endpoint`` nor the env var is set (standard
#: port).
DEFAULT_OTLP_GRPC_ENDPOINT = "http://localhost:4317"
#: Default collector for OTLP/HTTP when neither ``otlp_endpoint`` nor the env var is set (standard
#: port).
DEFAULT_OTLP_HTTP_ENDPOINT = "http://localhost:4318"
_HTTP_TRACES_PATH = "/v1/traces"
#: Allowed values of ``TelemetryConfig.on_queue_full``.
ON_QUEUE_FULL = ("block", "drop", "export_inline")
#: Values of the ``reason`` label of ``tinyllm_spans_dropped_total``: the export queue was full, the
#: exporter reported failure (after its own retries), or telemetry shut down before the span was
#: sent.
DROP_REASONS = ("queue_full", "export_failed", "shutdown")
#: Seconds between two warnings about dropped spans; each gives the count since the one before.
DROP_WARNING_INTERVAL = 10.0

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def _shown(value: object) -> str:
    """``repr(value)`` for an error message, with anything secret-shaped redacted.

    Error messages end up in logs and terminals; a password in an endpoint URL or a key pasted
    into the wrong field must not be echoed back.
    """
    try:
        return get_redaction_policy().redact_text(repr(value))
    except Exception:
        return f"<{type(value).__name__}>"


def _reject(field_name: str, value: object, allowed: str) -> ValueError:
    return ValueError(
        f"TelemetryConfig.{field_name}={_shown(value)} is invalid; allowed: {allowed}"
    )


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _reject(name, value, "True or False")


def _check_seconds(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _reject(name, value, "a number of seconds greater than 0")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _reject(name, value, "a whole number of spans, 1 or more")


def _check_str_mapping(name: str, value: object, *, secret_values: bool) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"TelemetryConfig.{name} must be a dict or None, not {type(value).__name__}"
        )
    out: dict[str, Any] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(
                f"TelemetryConfig.{name} has key {key!r}; keys must be non-empty strings"
            )
        if secret_values:
            # Headers carry credentials: the message names the key, never the value.
            if not isinstance(val, str):
                raise ValueError(
                    f"TelemetryConfig.{name}[{key!r}] must be a string, not {type(val).__name__}"
                )
        elif not _is_attribute_value(val):
            raise ValueError(
                f"TelemetryConfig.{name}[{key!r}]={val!r} is invalid; allowed: str, bool, int, "
                "float or a list of one of those"
            )
        out[key] = val
    return out


def _is_attribute_value(value: object) -> bool:
    if isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (str, bool, int, float)) for v in value)
    return False


def _validate_base_url(url: str, source: str) -> str:
    """Check that ``url`` is http(s)://host[:port][/path]; return it without a trailing slash."""
    try:
        parts = urlsplit(url.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(
            f"{source}={_shown(url)} is not a valid OTLP endpoint; allowed: a base URL such as "
            f"{DEFAULT_OTLP_GRPC_ENDPOINT!r} (grpc) or {DEFAULT_OTLP_HTTP_ENDPOINT!r} "
            "(http/protobuf)"
        )
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class TelemetryConfig:
    """How the kit traces; validated at construction (ValueError naming field, value, allowed).

    Args:
        enable_tracing: create and export spans. False (the default) leaves every span
            non-recording.
        service_name: ``service.name`` of the resource; it wins over ``resource_attributes``.
        exporter: "console" (JSON to stdout), "otlp" (a collector), "tree" (each trace printed
            to stdout as a tree of its spans when its root span ends, see
            :class:`~tinyllm_instrument.tree.TreeSpanExporter`) or "none" (spans are created, for
            log correlation, but not exported).
        otlp_endpoint: the collector's base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT``: for
            http/protobuf ``/v1/traces`` is appended (unless already there); for grpc host and
            port are used.
            Default: the ``OTEL_EXPORTER_OTLP_ENDPOINT`` env var, then ``http://localhost:4317``
            (grpc) or ``http://localhost:4318`` (http/protobuf), the standard OTLP ports.
        otlp_protocol: "grpc" or "http/protobuf".
        otlp_headers: extra headers (gRPC metadata) sent with every export, e.g. an API key.
        sampling_rate: fraction of new traces kept, 0..1; child spans follow their parent's
            decision.
        resource_attributes: extra resource attributes (``deployment.environment``...).
        propagate_to_threads: let work started in threads join the caller's trace (used by
            ``observe``).
        flush_on_sigterm: when the app has no SIGTERM handler of its own, make SIGTERM unwind
            the program like Ctrl-C does (``SystemExit(143)``), so open spans end and the
            at-exit flush runs; the default SIGTERM would kill the process with spans unsent.
        export_timeout: seconds one export may take, retries included.
        shutdown_timeout: seconds :func:`shutdown_telemetry` waits for the last spans by default.
        max_queue_size: finished spans waiting for export, at most; the bound on the memory the
            pipeline holds when the collector is slow or down.
        max_export_batch_size: spans per export request. The export thread is woken as soon as
            this many are queued, not only when ``schedule_delay`` elapses. At most
            ``max_queue_size``.
        schedule_delay: seconds the export thread waits at most before sending what is queued.
        on_queue_full: what ending a span does when the queue is full. "block" (the default)
            waits until the export thread has made room, at most ``block_timeout``; "drop" drops
            the span at once; "export_inline" has the calling thread export a batch itself (it
            pays the export, up to ``export_timeout``, while the collector answers slowly). Either
            waiting mode stops waiting, and drops, once an export has failed or a wait has timed
            out, until an export succeeds again: a collector that is down costs the app at most
            one ``block_timeout``. Every dropped span is counted in
            ``tinyllm_spans_dropped_total{reason}``.
        block_timeout: seconds one span end may wait for room ("block", "export_inline").

    Raises:
        ValueError: a field holds a value outside what is allowed.

    Example:
        >>> cfg = TelemetryConfig(enable_tracing=True, exporter="otlp",
        ...     otlp_endpoint="http://collector:4318", otlp_protocol="http/protobuf")
        >>> cfg.resolved_endpoint()
        'http://collector:4318/v1/traces'
    """

    enable_tracing: bool = False
    service_name: str = "tinyllm"
    exporter: str = "console"
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    otlp_headers: Mapping[str, str] | None = None
    sampling_rate: float = 1.0
    resource_attributes: Mapping[str, Any] | None = None
    propagate_to_threads: bool = True
    flush_on_sigterm: bool = True
    export_timeout: float = 10.0
    shutdown_timeout: float = 5.0
    max_queue_size: int = 4096
    max_export_batch_size: int = 512
    schedule_delay: float = 1.0
    on_queue_full: str = "block"
    block_timeout: float = 0.5
    _endpoint: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_bool("enable_tracing", self.enable_tracing)
        _check_bool("propagate_to_threads", self.propagate_to_threads)
        _check_bool("flush_on_sigterm", self.flush_on_sigterm)
        if not isinstance(self.service_name, str) or not self.service_name.strip():
            raise _reject("service_name", self.service_name, "a non-empty string")
        if self.exporter not in EXPORTERS:
            raise _reject("exporter", self.exporter, ", ".join(repr(e) for e in EXPORTERS))
        if self.otlp_protocol not in OTLP_PROTOCOLS:
            raise _reject(
                "otlp_protocol", self.otlp_protocol, ", ".join(repr(p) for p in OTLP_PROTOCOLS)
            )
        rate = self.sampling_rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or not 0.0 <= rate <= 1.0
        ):
            raise _reject("sampling_rate", rate, "a number from 0.0 to 1.0")
        _check_seconds("export_timeout", self.export_timeout)
        _check_seconds("shutdown_timeout", self.shutdown_timeout)
        _check_seconds("schedule_delay", self.schedule_delay)
        _check_seconds("block_timeout", self.block_timeout)
        _check_count("max_queue_size", self.max_queue_size)
        _check_count("max_export_batch_size", self.max_export_batch_size)
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError(
                f"TelemetryConfig.max_export_batch_size={self.max_export_batch_size!r} is larger "
                f"than max_queue_size={self.max_queue_size!r}; a batch is taken from the queue, "
                "so use a batch size up to the queue size"
            )
        if self.on_queue_full not in ON_QUEUE_FULL:
            raise _reject(
                "on_queue_full", self.on_queue_full, ", ".join(repr(m) for m in ON_QUEUE_FULL)
            )
        if self.otlp_endpoint is not None and not isinstance(self.otlp_endpoint, str):
            raise _reject("otlp_endpoint", self.otlp_endpoint, "a URL string or None")
        headers = _check_str_mapping("otlp_headers", self.otlp_headers, secret_values=True)
        resource = _check_str_mapping(
            "resource_attributes", self.resource_attributes, secret_values=False
        )
        # Read-only copies: a caller mutating its dict later must not change a live configuration.
        object.__setattr__(
            self, "otlp_headers", None if headers is None else MappingProxyType(headers)
        )
        object.__setattr__(
            self, "resource_attributes", None if resource is None else MappingProxyType(resource)
        )
        object.__setattr__(self, "sampling_rate", float(rate))
        # Resolve once, so the endpoint is what the environment said when the config was made. An
        # explicit endpoint is always checked; one from the environment only matters for "otlp".
        try:
            object.__setattr__(self, "_endpoint", self._resolve())
        except ValueError:
            if self.otlp_endpoint is not None or self.exporter == "otlp":
                raise

    def _resolve(self) -> str:
        if self.otlp_endpoint is not None:
            base = _validate_base_url(self.otlp_endpoint, "TelemetryConfig.otlp_endpoint")
        else:
            from_env = _config.env_str(ENV_OTLP_ENDPOINT)
            if from_env is not None:
                base = _validate_base_url(from_env, ENV_OTLP_ENDPOINT)
            elif self.otlp_protocol == "grpc":
                base = DEFAULT_OTLP_GRPC_ENDPOINT
            else:
                base = DEFAULT_OTLP_HTTP_ENDPOINT
        if self.otlp_protocol == "http/protobuf" and not base.endswith(_HTTP_TRACES_PATH):
            base += _HTTP_TRACES_PATH
        return base

    def resolved_endpoint(self) -> str:
        """The URL the OTLP exporter sends to: with ``/v1/traces`` for http/protobuf.

        Raises:
            ValueError: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the default used) is not a valid URL.
        """
        return self._endpoint if self._endpoint is not None else self._resolve()


# --------------------------------------------------------------------------------------------------
# The switchable sampler and span processor installed once in the provider
# --------------------------------------------------------------------------------------------------


class _SwitchableSampler(Sampler):
    """Delegates to the sampler of the current configuration; ALWAYS_OFF when tracing is off."""

    def __init__(self) -> None:
        self._delegate: Sampler = ALWAYS_OFF

    def set(self, delegate: Sampler) -> None:
        self._delegate = delegate  # one reference swap: atomic under the GIL

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"TinyllmSwitchableSampler{{{self._delegate.get_description()}}}"


class _KitSpanProcessor(SpanProcessor):
    """Forwards to the kit's exporting processor and to processors added by users or the tests.

    Each child is isolated: a failing processor is reported through ``report_internal_error`` and
    never reaches the code that ended the span.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exporting: tuple[SpanProcessor, ...] = ()
        self._extra: tuple[SpanProcessor, ...] = ()
        self._all: tuple[SpanProcessor, ...] = ()
        # Set when shutdown took the exporting pipeline away: spans that were started before and
        # end after it were meant for the exporter, so they are counted as dropped ("shutdown").
        self.count_orphans = False

    def _publish(self) -> None:
        # A tuple swapped in whole, so the span path iterates without taking the lock.
        self._all = self._exporting + self._extra

    def swap_exporting(
        self, processors: tuple[SpanProcessor, ...], *, stopping: bool = False
    ) -> tuple[SpanProcessor, ...]:
        """Install ``processors``; ``stopping``: tracing stops, so late spans count as dropped."""
        with self._lock:
            old, self._exporting = self._exporting, processors
            self.count_orphans = stopping and bool(old or self.count_orphans)
            self._publish()
        return old

    def add(self, processor: SpanProcessor) -> None:
        with self._lock:
            if processor not in self._extra:
                self._extra += (processor,)
                self._publish()

    def remove(self, processor: SpanProcessor) -> bool:
        with self._lock:
            if processor not in self._extra:
                return False
            self._extra = tuple(p for p in self._extra if p is not processor)
            self._publish()
            return True

    def clear_extra(self) -> tuple[SpanProcessor, ...]:
        with self._lock:
            old, self._extra = self._extra, ()
            self._publish()
        return old

    @property
    def extra(self) -> tuple[SpanProcessor, ...]:
        return self._extra

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        for processor in self._all:
            try:
                processor.on_start(span, parent_context=parent_context)
            except Exception as exc:
                report_internal_error("span_processor", exc)

    def _on_ending(self, span: SdkSpan) -> None:
        for processor in self._all:
            try:
                processor._on_ending(span)
            except Exception as exc:
                report_internal_error("span_processor", exc)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._all:
            try:
                processor.on_end(span)
            except Exception as exc:
                report_internal_error("span_processor", exc)
        if self.count_orphans and span.context.trace_flags.sampled:
            _LATE_SPANS.add("shutdown", 1)

    def shutdown(self) -> None:
        # The provider's own shutdown (atexit of a foreign provider) ends up here: flush ours too.
        _shutdown_processors(self.swap_exporting(()), _current_shutdown_timeout())

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        ok = True
        for processor in self._all:
            try:
                ok = processor.force_flush(timeout_millis) and ok
            except Exception as exc:
                report_internal_error("span_flush", exc)
                ok = False
        return ok


class _GuardedExporter(SpanExporter):
    """Wraps the real exporter so that its faults are reported and counted, not raised or lost."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return self.inner.export(spans)
        except Exception as exc:
            report_internal_error("span_export", exc)
            return SpanExportResult.FAILURE

    def shutdown(self, timeout_millis: float = 30000) -> None:
        try:
            if "timeout_millis" in inspect.signature(self.inner.shutdown).parameters:
                self.inner.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
            else:
                self.inner.shutdown()
        except Exception as exc:
            report_internal_error("span_export", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception as exc:
            report_internal_error("span_export", exc)
            return False


# --------------------------------------------------------------------------------------------------
# The export pipeline: a bounded queue and one export thread; every span exported or counted
# --------------------------------------------------------------------------------------------------


def _count_exported(n: int) -> None:
    # Resolved at count time, so a collector swapped in by set_metrics_collector() gets the counts.
    try:
        from .metrics import get_metrics_collector

        get_metrics_collector().spans_exported.labels().inc(n)
    except Exception:  # pragma: no cover - counting must not be the thing that breaks
        pass


class _DropLedger:
    """Counts dropped spans in ``tinyllm_spans_dropped_total{reason}`` and warns about them.

    One warning at most every :data:`DROP_WARNING_INTERVAL` seconds, with the counts since the
    previous one; never one per span. The pipeline's thread calls :meth:`warn_if_due` on every
    wake, so drops that stop are still reported within about one interval.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._last_warning = -math.inf

    def add(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        try:
            from .metrics import get_metrics_collector

            get_metrics_collector().spans_dropped.labels(reason).inc(n)
        except Exception:  # pragma: no cover - counting must not be the thing that breaks
            pass
        with self._lock:
            self._pending[reason] = self._pending.get(reason, 0) + n
        self.warn_if_due()

    def warn_if_due(self, *, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not self._pending or (
                not force and now - self._last_warning < DROP_WARNING_INTERVAL
            ):
                return
            pending, self._pending = self._pending, {}
            self._last_warning = now
        try:
            _log.warning(
                "tinyllm_instrument: %d span(s) dropped since the last report (%s); counted in "
                "tinyllm_spans_dropped_total{reason}",
                sum(pending.values()),
                ", ".join(f"{reason}={n}" for reason, n in sorted(pending.items())),
            )
        except Exception:  # pragma: no cover - a broken handler must not break the span path
            pass


#: Counts spans that end after shutdown took their pipeline away.
_LATE_SPANS = _DropLedger()


class _ExportPipeline(SpanProcessor):
    """The kit's batching span processor: a bounded queue, one export thread, no silent loss.

    It replaces the SDK's ``BatchSpanProcessor`` for three reasons, each measured against it in the
    same loops as tests/test_export_pipeline.py:

    * every span ends in exactly one of ``tinyllm_spans_exported_total`` and
      ``tinyllm_spans_dropped_total{reason}`` (the SDK drops the oldest span of a full queue,
      logs "Queue full" at most once per 20 s, and counts only into an OpenTelemetry meter, if
      the app has configured one);
    * when the queue is full, the thread that ended the span can wait for room ("block") or export
      a batch itself ("export_inline") instead of dropping. Waiting releases the GIL, which is
      exactly what an export thread starved by a logging-heavy hot loop lacks;
    * the wait is bounded and switched off while the exporter is failing, so a collector that is
      down costs the app one ``block_timeout``, not one per span.

    ``on_end`` does less than the SDK's (no ``os.getpid()`` per span: forks are handled by an
    at-fork hook). The queue may hold up to one span per concurrently ending thread beyond
    ``max_queue_size``, since the length check and the append are not one atomic step; it is
    still bounded.
    """

    def __init__(self, exporter: SpanExporter, config: TelemetryConfig) -> None:
        self._exporter = exporter
        self._max_queue_size = config.max_queue_size
        self._batch_size = config.max_export_batch_size
        self._schedule_delay = config.schedule_delay
        self._mode = config.on_queue_full
        self._block_timeout = config.block_timeout
        self._ledger = _DropLedger()
        self._init_runtime()
        if hasattr(os, "register_at_fork"):
            weak = weakref.WeakMethod(self._after_fork)

            def after_in_child() -> None:
                method = weak()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=after_in_child)

    def _init_runtime(self) -> None:
        self._queue: deque[ReadableSpan] = deque()
        self._wake = threading.Event()
        self._woken = False
        self._room = threading.Condition(threading.Lock())
        self._waiters = 0
        self._export_lock = threading.Lock()
        self._ledger_lock = threading.Lock()  # taking a batch out / abandoning it are one step
        self._in_flight: list[ReadableSpan] | None = None
        self._may_block = True
        self._closed = False
        self._abandoned = False
        self._worker = threading.Thread(target=self._run, name="tinyllm-span-export", daemon=True)
        self._worker.start()
        self._worker_ident = self._worker.ident

    def _after_fork(self) -> None:
        # The parent's spans are the parent's to export and count; the child starts empty, with
        # locks that no thread of the parent can be holding.
        if not self._closed:
            self._ledger = _DropLedger()
            self._init_runtime()

    # -- the span path -------------------------------------------------------------------------

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        queue = self._queue
        if len(queue) < self._max_queue_size and not self._closed:
            queue.append(span)
            # Scheduled by fill level: wake the export thread once a batch is ready.
            if len(queue) >= self._batch_size and not self._woken:
                self._woken = True
                self._wake.set()
            return
        self._on_full(span)

    def _on_full(self, span: ReadableSpan) -> None:
        if (
            self._mode != "drop"
            and threading.get_ident() != self._worker_ident  # never wait for ourselves
        ):
            # Other threads may take the room we wait for (or make by exporting): try again until
            # the span is queued or block_timeout has passed.
            deadline = time.monotonic() + self._block_timeout
            queue = self._queue
            while self._may_block and not self._closed:
                if len(queue) < self._max_queue_size:
                    queue.append(span)
                    return
                if time.monotonic() >= deadline:
                    self._may_block = False  # until an export succeeds again
                    break
                if self._mode == "export_inline" and self._export_lock.acquire(blocking=False):
                    try:
                        self._export_batch()
                    finally:
                        self._export_lock.release()
                elif not self._wait_for_room(deadline):
                    break
        self._ledger.add("shutdown" if self._closed else "queue_full", 1)

    def _wait_for_room(self, deadline: float) -> bool:
        """Wait until the queue has room; False (and no more waiting) once ``deadline`` passed."""
        with self._room:
            self._waiters += 1
            try:
                while (
                    len(self._queue) >= self._max_queue_size
                    and self._may_block
                    and not self._closed
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        # The exporter is not keeping up: stop making the app wait until an export
                        # succeeds again.
                        self._may_block = False
                        return False
                    self._wake.set()
                    # Short slices: a missed notify costs a few milliseconds, not the timeout.
                    self._room.wait(min(remaining, 0.05))
            finally:
                self._waiters -= 1
        return True

    # -- the export thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            timer = not self._wake.wait(self._schedule_delay)
            self._wake.clear()
            self._woken = False
            if self._closed:
                break
            self._export(everything=timer)
            self._ledger.warn_if_due()
        self._export(everything=True)

    def _export(self, *, everything: bool) -> None:
        """Export full batches (and, when ``everything``, the rest) until the queue is drained."""
        while not self._abandoned:
            with self._export_lock:
                queued = len(self._queue)
                if queued == 0 or (not everything and queued < self._batch_size):
                    return
                self._export_batch()

    def _export_batch(self) -> None:
        """Take one batch, export it, count it. The caller holds ``_export_lock``."""
        with self._ledger_lock:
            queue = self._queue
            if self._abandoned or not queue:
                return
            batch = [queue.popleft() for _ in range(min(len(queue), self._batch_size))]
            self._in_flight = batch
        if self._waiters:
            with self._room:
                self._room.notify_all()
        # Spans the exporter itself might create (an instrumented HTTP client) are not exported.
        token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            result = self._exporter.export(batch)
        except Exception as exc:  # _GuardedExporter catches already; this is the last resort
            report_internal_error("span_export", exc)
            result = SpanExportResult.FAILURE
        finally:
            otel_context.detach(token)
        with self._ledger_lock:
            if self._in_flight is not batch:
                return  # a shutdown that stopped waiting counted it already
            self._in_flight = None
        if result is SpanExportResult.SUCCESS:
            self._may_block = True
            _count_exported(len(batch))
        else:
            self._may_block = False
            self._ledger.add("export_failed", len(batch))

    # -- flush and shutdown --------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now, on the calling thread; False if time ran out first."""
        deadline = time.monotonic() + timeout_millis / 1000
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._export_lock.acquire(timeout=remaining):
                return False
            try:
                # Holding the lock means no export is in flight: empty queue means all sent.
                if not self._queue or self._abandoned:
                    return True
                self._export_batch()
            finally:
                self._export_lock.release()

    def shutdown(self, timeout_millis: float = 30000) -> None:
        """Export what is queued, waiting at most ``timeout_millis``; count the rest as dropped."""
        if self._closed:
            return
        deadline = time.monotonic() + timeout_millis / 1000
        self._closed = True
        self._wake.set()
        with self._room:
            self._room.notify_all()
        self._worker.join(max(deadline - time.monotonic(), 0.0))
        # What the export thread did not send by now is counted, including a span a racing
        # thread appended after the thread's last look at the queue.
        with self._ledger_lock:
            self._abandoned = True
            unsent = len(self._in_flight or ()) + len(self._queue)
            self._in_flight = None
            self._queue.clear()
        self._ledger.add("shutdown", unsent)
        if self._worker.is_alive():
            _log.warning(
                "tinyllm_instrument: span export did not finish within %.1fs; %d unsent spans are "
                'dropped (counted in tinyllm_spans_dropped_total{reason="shutdown"})',
                timeout_millis / 1000,
                unsent,
            )
        # Closing the exporter also ends an export still retrying on the abandoned thread.
        _call_bounded(
            lambda: self._exporter.shutdown(),
            max(deadline - time.monotonic(), 0.5),
            "span_shutdown",
        )
        self._ledger.warn_if_due(force=True)


def _call_bounded(func: Callable[[], object], timeout: float, stage: str) -> bool:
    """Run ``func`` on a helper thread, waiting at most ``timeout`` seconds; True if it finished."""

    def run() -> None:
        try:
            func()
        except Exception as exc:
            report_internal_error(stage, exc)

    try:
        worker = threading.Thread(target=run, name="tinyllm-telemetry-shutdown", daemon=True)
        worker.start()
    except RuntimeError:  # no new threads at interpreter shutdown (3.12+): do it here
        run()
        return True
    worker.join(timeout)
    return not worker.is_alive()


class _CurrentStdout:
    """A stream that writes to whatever ``sys.stdout`` is at export time (redirections, capture)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


# --------------------------------------------------------------------------------------------------
# Process-wide state
# --------------------------------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config: TelemetryConfig | None = None
        self.enabled = False
        self.provider: SdkTracerProvider | None = None  # the provider our processor is attached to
        self.owns_provider = False
        self.installed = False  # configure_telemetry looked for / installed a global provider
        self.tracer: trace.Tracer | None = None
        self.atexit_registered = False
        self.sampler = _SwitchableSampler()
        self.processor = _KitSpanProcessor()


_STATE = _State()
_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def _kit_version() -> str:
    return str(getattr(sys.modules.get("tinyllm_instrument"), "__version__", ""))


def _current_shutdown_timeout() -> float:
    config = _STATE.config
    return config.shutdown_timeout if config is not None else TelemetryConfig.shutdown_timeout


def _build_resource(config: TelemetryConfig) -> Resource:
    attributes: dict[str, Any] = dict(config.resource_attributes or {})
    attributes[SERVICE_NAME] = config.service_name
    # Resource.create adds the SDK's telemetry.sdk.* and OTEL_RESOURCE_ATTRIBUTES; ours take
    # precedence.
    return Resource.create(attributes)


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
        raise ValueError(
            f"cannot build the OTLP {config.otlp_protocol} exporter for {endpoint!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _build_processors(config: TelemetryConfig) -> tuple[SpanProcessor, ...]:
    """The exporting pipeline of ``config``: nothing for "none", else a batch processor."""
    exporter = _build_exporter(config)
    if exporter is None:
        return ()
    return (_ExportPipeline(_GuardedExporter(exporter), config),)


def _swap_resource(provider: SdkTracerProvider, resource: Resource) -> None:
    """Give ``provider`` and every tracer it handed out the new resource.

    The SDK (1.45) keeps the resource on the provider and copies it into each Tracer; its own
    ``_update_resource`` merges (old keys would survive), so replace both under the provider's lock.
    """
    try:
        with provider._tracers_lock:
            provider._resource = resource
            for tracer in provider._tracers.values():
                tracer._set_resource(resource)
    except AttributeError as exc:  # an SDK without these internals: new tracers still get it
        report_internal_error("telemetry_resource", exc)


def _install_provider(resource: Resource) -> None:
    """Install our provider globally, or attach our processor to one someone else installed."""
    current = trace.get_tracer_provider()
    if isinstance(current, trace.ProxyTracerProvider):
        provider = SdkTracerProvider(
            sampler=_STATE.sampler, resource=resource, shutdown_on_exit=False
        )
        provider.add_span_processor(_STATE.processor)
        trace.set_tracer_provider(provider)
        current = trace.get_tracer_provider()
        if current is provider:
            _STATE.provider, _STATE.owns_provider = provider, True
            _STATE.tracer = provider.get_tracer(TRACER_NAME, _kit_version())
            return
    # Someone else's provider is global. Do not fight it: join it.
    if isinstance(current, SdkTracerProvider):
        _log.warning(
            "tinyllm_instrument: a global TracerProvider (%s) was installed before "
            "configure_telemetry(); the kit adds its span processor to it, but its sampler and "
            "resource stay in charge (sampling_rate, service_name and resource_attributes are "
            "not applied)",
            type(current).__name__,
        )
        current.add_span_processor(_STATE.processor)
        _STATE.provider, _STATE.owns_provider = current, False
    else:
        _log.warning(
            "tinyllm_instrument: a global TracerProvider (%s) that is not an OpenTelemetry SDK "
            "provider was installed before configure_telemetry(); the kit's spans go to it and "
            "the kit exports nothing itself",
            type(current).__name__,
        )
        _STATE.provider, _STATE.owns_provider = None, False
    _STATE.tracer = current.get_tracer(TRACER_NAME, _kit_version())


def _shutdown_processors(processors: Sequence[SpanProcessor], timeout: float) -> bool:
    """Flush and shut down ``processors`` within ``timeout`` seconds; True if they finished in time.

    The kit's pipelines bound their own wait and count what they could not send. Any other
    processor runs on a helper thread so a dead collector cannot hold the caller (or the exit)
    longer than ``timeout``.
    """
    if not processors:
        return True
    deadline = time.monotonic() + timeout
    ok = True
    for processor in processors:
        remaining = max(deadline - time.monotonic(), 0.0)
        if isinstance(processor, _ExportPipeline):
            try:
                processor.shutdown(timeout_millis=remaining * 1000)
            except Exception as exc:  # pragma: no cover - shutdown is built not to raise
                report_internal_error("span_shutdown", exc)
            continue

        def run(processor: SpanProcessor = processor, remaining: float = remaining) -> None:
            try:
                processor.force_flush(int(remaining * 1000))
            except Exception as exc:
                report_internal_error("span_flush", exc)
            processor.shutdown()

        if not _call_bounded(run, remaining, "span_shutdown"):
            _log.warning(
                "tinyllm_instrument: span export did not finish within %.1fs; unsent spans are "
                "dropped",
                timeout,
            )
            ok = False
    return ok


# --------------------------------------------------------------------------------------------------
# Public configuration API
# --------------------------------------------------------------------------------------------------


def configure_telemetry(config: TelemetryConfig | None = None, **overrides: Any) -> None:
    """Turn tracing on (or off) for the process, as ``config`` says. Calling it again reconfigures.

    The first call that enables tracing installs the kit's SDK ``TracerProvider`` as OpenTelemetry's
    global provider, so ``trace.get_tracer()`` anywhere in the process joins the same traces. Later
    calls change that provider in place: sampler, resource and exporter take effect at once,
    including for tracers obtained earlier. Pending spans of the previous exporter are flushed
    first (bounded by ``shutdown_timeout``). ``shutdown_telemetry`` is registered with ``atexit``
    on the first call. If another global provider was installed first, the kit logs a warning and
    adds its span processor to it (when it is an SDK provider) instead of replacing it.

    Args:
        config: the configuration; None means ``TelemetryConfig(**overrides)``.
        **overrides: fields to set on top of ``config`` (``dataclasses.replace``).

    Raises:
        ValueError: a field is invalid, or the exporter cannot be built.
        TypeError: ``config`` is not a TelemetryConfig.

    Example:
        >>> configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
        >>> with trace_span("step") as span:
        ...     assert span.is_recording()
    """
    if config is None:
        config = TelemetryConfig(**overrides)
    elif not isinstance(config, TelemetryConfig):
        raise TypeError(
            f"configure_telemetry() takes a TelemetryConfig, not {type(config).__name__}"
        )
    elif overrides:
        config = replace(config, **overrides)

    with _STATE.lock:
        _set_thread_propagation(config.enable_tracing and config.propagate_to_threads)
        if config.enable_tracing and config.flush_on_sigterm:
            unwind_on_sigterm()
        if not config.enable_tracing:
            _disable(shutdown_extra=False)
            _STATE.config = config
            return
        processors = _build_processors(config)
        resource = _build_resource(config)
        if not _STATE.installed:
            _install_provider(resource)
            _STATE.installed = True
        elif _STATE.owns_provider and _STATE.provider is not None:
            _swap_resource(_STATE.provider, resource)
        old = _STATE.processor.swap_exporting(processors)
        _STATE.sampler.set(_sampler_for(config.sampling_rate))
        _STATE.config = config
        _STATE.enabled = True
        if not _STATE.atexit_registered:
            atexit.register(shutdown_telemetry)
            _STATE.atexit_registered = True
    _shutdown_processors(old, config.shutdown_timeout)


def _sampler_for(rate: float) -> Sampler:
    """Parent-based sampling at ``rate``. The two ends use ALWAYS_ON / ALWAYS_OFF: the same
    decisions as a ratio sampler, without hashing the trace id on every root span."""
    if rate >= 1.0:
        return ParentBased(ALWAYS_ON)
    if rate <= 0.0:
        return ParentBased(ALWAYS_OFF)
    return ParentBased(TraceIdRatioBased(rate))


def _disable(*, shutdown_extra: bool) -> tuple[SpanProcessor, ...]:
    """Stop sampling and exporting; caller holds the lock. Returns the processors taken out."""
    _STATE.sampler.set(ALWAYS_OFF)
    _STATE.enabled = False
    old = _STATE.processor.swap_exporting((), stopping=_STATE.owns_provider)
    _shutdown_processors(old, _current_shutdown_timeout())
    if shutdown_extra:
        return _STATE.processor.clear_extra()
    return ()


def flush_telemetry(timeout: float | None = None) -> bool:
    """Export every finished span now, without shutting down.

    Args:
        timeout: seconds to wait at most; default ``TelemetryConfig.export_timeout`` of the config.

    Returns:
        True when every processor flushed in time.
    """
    config = _STATE.config
    if timeout is None:
        timeout = config.export_timeout if config is not None else TelemetryConfig.export_timeout
    return _STATE.processor.force_flush(int(timeout * 1000))


def shutdown_telemetry(timeout: float | None = None) -> None:
    """Flush pending spans to the exporter, then shut it down, waiting at most ``timeout`` seconds.

    Afterwards tracing is off (spans are non-recording) until ``configure_telemetry`` is called
    again;
    ``get_telemetry_config()`` still returns the last configuration. Safe to call more than once;
    registered with ``atexit`` by the first ``configure_telemetry``.

    Args:
        timeout: seconds to wait at most; default ``TelemetryConfig.shutdown_timeout`` of the
            config.

    Example:
        >>> shutdown_telemetry(timeout=2.0)
    """
    with _STATE.lock:
        _STATE.sampler.set(ALWAYS_OFF)
        _STATE.enabled = False
        # Only our own provider's late spans are ours to count: a host's provider keeps sampling.
        old = _STATE.processor.swap_exporting((), stopping=_STATE.owns_provider)
        extra = _STATE.processor.extra
        wait = _current_shutdown_timeout() if timeout is None else timeout
    _shutdown_processors(old, wait)
    for processor in extra:  # not ours to shut down, but their spans should be out
        try:
            processor.force_flush(int(wait * 1000))
        except Exception as exc:
            report_internal_error("span_flush", exc)


def reset_telemetry() -> None:
    """Back to unconfigured, for tests: exporters shut down, added processors removed, no config.

    OpenTelemetry's global provider cannot be uninstalled; the kit's stays in place but samples
    nothing, so every span is non-recording until the next ``configure_telemetry``.
    """
    with _STATE.lock:
        _set_thread_propagation(False)
        _restore_sigterm()
        _disable(shutdown_extra=True)
        _STATE.config = None


def get_telemetry_config() -> TelemetryConfig | None:
    """The configuration last given to ``configure_telemetry``, or None."""
    return _STATE.config


def is_telemetry_enabled() -> bool:
    """Whether the kit is creating recording spans (configured with ``enable_tracing=True``)."""
    return _STATE.enabled


def get_tracer() -> trace.Tracer:
    """The kit's tracer (scope ``tinyllm_instrument``); a ProxyTracer until a provider is installed.

    Cheap: after the first call it is one attribute read.
    """
    tracer = _STATE.tracer
    if tracer is None:
        # A ProxyTracer follows whichever provider is installed later, by us or by someone else.
        tracer = trace.get_tracer(TRACER_NAME, _kit_version())
        with _STATE.lock:
            if _STATE.tracer is None:
                _STATE.tracer = tracer
            tracer = _STATE.tracer
    return tracer


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach ``processor`` to the kit's spans (and to every span of the kit's provider).

    It receives spans only while tracing is enabled. ``reset_telemetry`` removes it; the caller
    owns it and shuts it down.

    Example:
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        >>> exporter = InMemorySpanExporter()
        >>> add_span_processor(SimpleSpanProcessor(exporter))
    """
    _STATE.processor.add(processor)


def remove_span_processor(processor: SpanProcessor) -> bool:
    """Detach a processor added with :func:`add_span_processor`; False if it was not attached."""
    return _STATE.processor.remove(processor)


# --------------------------------------------------------------------------------------------------
# Attributes: redaction and type conversion
# --------------------------------------------------------------------------------------------------


def _redact(attributes: dict[str, Any]) -> dict[str, Any] | None:
    """Apply the kit's one redaction policy; None means "drop them all" (it failed: fail closed).

    Objects pass through untouched here; ``_scalar`` redacts the ``str()`` that replaces them.
    """
    try:
        redacted = get_redaction_policy().redact(attributes)
    except Exception as exc:
        report_internal_error("redaction", exc)
        return None
    return dict(redacted) if isinstance(redacted, Mapping) else None


def _redact_text(text: str) -> str:
    try:
        return get_redaction_policy().redact_text(text)
    except Exception as exc:
        report_internal_error("redaction", exc)
        return REDACTED


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception as exc:
        report_internal_error("span_attribute", exc)
        return f"<unprintable {type(value).__name__}>"


def _scalar(value: object) -> str | bool | int | float | None:
    """A valid OTel scalar for ``value``; None for None. Never raises."""
    kind = type(value)
    if kind is str or kind is bool or kind is float:
        return cast(Any, value)
    if kind is int:
        return cast(int, value) if _INT64_MIN <= cast(int, value) <= _INT64_MAX else str(value)
    if value is None:
        return None
    if isinstance(value, Enum):
        return _scalar(value.value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)  # a plain str, whatever the subclass's __str__ says
    if isinstance(value, int):
        return _scalar(int(value))
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, Mapping):
        # Keys and strings inside were redacted already; the objects' str() were not.
        try:
            text = json.dumps(value, default=_safe_str, ensure_ascii=False, sort_keys=True)
        except Exception:
            text = _safe_str(value)
        return _redact_text(text)
    return _redact_text(_safe_str(value))


def _attribute_value(value: object) -> Any:
    """Convert a value to a valid OTel attribute value: scalars keep their type, sequences stay
    homogeneous (mixed ones become strings), anything else becomes ``str(value)``; None stays None.
    """
    if isinstance(value, (list, tuple)):
        items = [_scalar(v) if not isinstance(v, (list, tuple)) else _safe_str(v) for v in value]
        items = [v for v in items if v is not None]
        types = {type(v) for v in items}
        if len(types) > 1:
            items = [v if type(v) is str else _safe_str(v) for v in items]
        return tuple(items)
    return _scalar(value)


def _prepare_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    try:
        redacted = _redact(dict(attributes))
        if not redacted:
            return None
        out: dict[str, Any] = {}
        for key, value in redacted.items():
            converted = _attribute_value(value)
            if converted is not None:
                out[key if type(key) is str else _safe_str(key)] = converted
        return out
    except Exception as exc:  # a hostile Mapping: the user's call goes on without attributes
        report_internal_error("span_attribute", exc)
        return None


# --------------------------------------------------------------------------------------------------
# Span helpers
# --------------------------------------------------------------------------------------------------


def _already_recorded(span: trace.Span, exc: BaseException, message: str) -> bool:
    """Whether ``set_span_error(exc)`` already put this exception on the span (no double events)."""
    events = getattr(span, "events", ())
    if not events:
        return False
    exc_type = type(exc).__qualname__
    for event in events:
        attributes = event.attributes
        if event.name == "exception" and attributes is not None:
            if attributes.get("exception.message") == message and str(
                attributes.get("exception.type", "")
            ).endswith(exc_type):
                return True
    return False


def _record_error(span: trace.Span, exc: BaseException) -> None:
    """Exception event plus ERROR status, with secrets in the message redacted like attributes."""
    try:
        if not span.is_recording():
            return
        raw = _safe_str(exc)
        message = _redact_text(raw)
        if not _already_recorded(span, exc, message):
            overrides = None
            if message != raw:  # the SDK would copy the raw message into message and stacktrace
                stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                overrides = {
                    "exception.message": message,
                    "exception.stacktrace": _redact_text(stacktrace),
                }
            span.record_exception(exc, attributes=overrides)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"))
    except Exception as err:
        report_internal_error("span_error", err)


def _start_span(name: str, attributes: Mapping[str, Any] | None, kind: SpanKind) -> trace.Span:
    try:
        return get_tracer().start_span(name, kind=kind, attributes=_prepare_attributes(attributes))
    except Exception as exc:
        report_internal_error("span_start", exc)
        return trace.INVALID_SPAN


def _end_span(span: trace.Span) -> None:
    try:
        span.end()
    except Exception as exc:
        report_internal_error("span_end", exc)


class _SpanScope:
    """``with trace_span(...)``: start a span, make it current, end it. A class, not a generator
    context manager: this sits on every traced call (see PERFORMANCE-NOTES).
    """

    __slots__ = ("_name", "_attributes", "_kind", "_span", "_token")

    def __init__(self, name: str, attributes: Mapping[str, Any] | None, kind: SpanKind) -> None:
        self._name = name
        self._attributes = attributes
        self._kind = kind

    def __enter__(self) -> trace.Span:
        span = self._span = _start_span(self._name, self._attributes, self._kind)
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        # Like OpenTelemetry's use_span: only Exception is an error; GeneratorExit,
        # KeyboardInterrupt and cancellation are not.
        if isinstance(exc, Exception):
            _record_error(span, exc)
        _end_span(span)
        otel_context.detach(self._token)


def trace_span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[trace.Span]:
    """A context manager that runs its body in a new current span and yields that span.

    The span is never None: with tracing off it is a non-recording span on which every call is a
    no-op.
    Attribute values keep their types (int stays int); values that OpenTelemetry cannot store are
    converted with ``str()``, None values are dropped, and all go through the redaction policy. An
    exception raised by the body is recorded, sets the status to ERROR, and propagates unchanged.

    Args:
        name: span name.
        attributes: initial attributes.
        kind: the OpenTelemetry SpanKind.

    Returns:
        A context manager yielding the span.

    Example:
        >>> with trace_span("node_execution", attributes={"node_id": "entry", "try": 1}) as span:
        ...     span.set_attribute("result_size", 3)
    """
    return _SpanScope(name, attributes, kind)


@overload
def traced(name: F) -> F: ...
@overload
def traced(
    name: str | None = None, attributes: Mapping[str, Any] | None = None
) -> Callable[[F], F]: ...


def traced(
    name: str | Callable[..., Any] | None = None, attributes: Mapping[str, Any] | None = None
) -> Any:
    """Decorate a function, coroutine function, generator or async generator to run in a span.

    One wrapper per kind of callable, chosen at decoration time, so ``inspect.iscoroutinefunction``
    and friends still answer truly and ``functools.wraps`` keeps name, docstring and signature. A
    generator's span covers its whole iteration, and the span is current only while the generator's
    own code runs (not in the caller between items). Usable bare (``@traced``) or called.

    Args:
        name: span name; default the function's ``__qualname__`` (``Class.method``), without the
            ``outer.<locals>.`` prefix of nested functions.
        attributes: attributes set on every span.

    Returns:
        The decorator (or the wrapped function, when used bare).

    Example:
        >>> @traced(attributes={"component": "executor"})
        ... async def execute_graph(graph_id: str) -> str:
        ...     return graph_id
    """
    if callable(name):
        return traced()(name)

    def decorate(func: F) -> F:
        # "outer.<locals>.inner" names the defining function, not the span's work: keep the tail.
        qualname = (
            getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
        )
        span_name = name or qualname.rsplit("<locals>.", 1)[-1]
        static = dict(attributes) if attributes else None
        kind = SpanKind.INTERNAL

        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def asyncgen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                span = _start_span(span_name, static, kind)
                try:
                    agen = func(*args, **kwargs)
                    send: Any = agen.asend
                    arg: Any = None
                    while True:
                        token = otel_context.attach(trace.set_span_in_context(span))
                        try:
                            item = await send(arg)
                        except StopAsyncIteration:
                            return
                        finally:
                            otel_context.detach(token)
                        try:
                            arg = yield item
                            send = agen.asend
                        except GeneratorExit:
                            token = otel_context.attach(trace.set_span_in_context(span))
                            try:
                                await agen.aclose()
                            finally:
                                otel_context.detach(token)
                            raise
                        except BaseException as exc:
                            send, arg = agen.athrow, exc
                except Exception as exc:
                    _record_error(span, exc)
                    raise
                finally:
                    _end_span(span)

            return cast(F, asyncgen_wrapper)

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                span = _start_span(span_name, static, kind)
                try:
                    gen = func(*args, **kwargs)
                    send: Any = gen.send
                    arg: Any = None
                    while True:
                        token = otel_context.attach(trace.set_span_in_context(span))
                        try:
                            item = send(arg)
                        except StopIteration as stop:
                            return stop.value
                        finally:
                            otel_context.detach(token)
                        try:
                            arg = yield item
                            send = gen.send
                        except GeneratorExit:
                            token = otel_context.attach(trace.set_span_in_context(span))
                            try:
                                gen.close()
                            finally:
                                otel_context.detach(token)
                            raise
                        except BaseException as exc:
                            send, arg = gen.throw, exc
                except Exception as exc:
                    _record_error(span, exc)
                    raise
                finally:
                    _end_span(span)

            return cast(F, gen_wrapper)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _SpanScope(span_name, static, kind):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _SpanScope(span_name, static, kind):
                return func(*args, **kwargs)

        return cast(F, sync_wrapper)

    return decorate


def _current_recording_span() -> trace.Span | None:
    span = trace.get_current_span()
    return span if span.is_recording() else None


def record_span_event(name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Add an event to the current span (no-op outside a recording span).

    Example:
        >>> with trace_span("processing"):
        ...     record_span_event("cache_miss", attributes={"cache_key": "abc"})
    """
    span = _current_recording_span()
    if span is None:
        return
    try:
        span.add_event(name, attributes=_prepare_attributes(attributes))
    except Exception as exc:
        report_internal_error("span_event", exc)


def set_span_attribute(key: str, value: Any) -> None:
    """Set one attribute on the current span, converted and redacted like ``trace_span``'s.

    Example:
        >>> with trace_span("processing"):
        ...     set_span_attribute("user_id", "user-123")
    """
    span = _current_recording_span()
    if span is None:
        return
    prepared = _prepare_attributes({key: value})
    if not prepared:
        return
    try:
        span.set_attributes(prepared)
    except Exception as exc:
        report_internal_error("span_attribute", exc)


def set_span_error(error: BaseException) -> None:
    """Record ``error`` on the current span and set its status to ERROR with the error's message.

    ``trace_span`` and ``traced`` will not record the same exception a second time when it
    propagates.

    Example:
        >>> with trace_span("risky_operation"):
        ...     try:
        ...         raise ValueError("boom")
        ...     except ValueError as e:
        ...         set_span_error(e)
    """
    span = _current_recording_span()
    if span is not None:
        _record_error(span, error)


def get_current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a recording span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    return format(span.get_span_context().trace_id, "032x")


def get_current_span_id() -> str | None:
    """The current span's id as 16 hex digits, or None outside a recording span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    return format(span.get_span_context().span_id, "016x")


def inject_context(
    carrier: dict[str, str] | None = None, context: otel_context.Context | None = None
) -> dict[str, str]:
    """Write the W3C ``traceparent``, ``tracestate`` and ``baggage`` headers into ``carrier``.

    Independent of ``OTEL_PROPAGATORS``: always W3C trace context plus W3C baggage.

    Args:
        carrier: a dict to fill (e.g. outgoing HTTP headers); a new one when None.
        context: the context to propagate; default the current one.

    Returns:
        The carrier.

    Example:
        >>> with trace_span("client_call"):
        ...     headers = inject_context({})
    """
    if carrier is None:
        carrier = {}
    try:
        _PROPAGATOR.inject(carrier, context=context)
    except Exception as exc:
        report_internal_error("propagation", exc)
    return carrier


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """Read W3C trace context and baggage from ``carrier`` (e.g. incoming HTTP headers).

    Returns:
        A Context to pass to ``opentelemetry.context.attach`` or ``tracer.start_span(context=...)``;
        an empty one when the carrier holds nothing valid.

    Example:
        >>> ctx = extract_context({"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"})
        >>> token = otel_context.attach(ctx)
    """
    try:
        return _PROPAGATOR.extract(carrier)
    except Exception as exc:
        report_internal_error("propagation", exc)
        return otel_context.Context()


# --------------------------------------------------------------------------------------------
# Context across threads
# --------------------------------------------------------------------------------------------


class _ThreadPropagation:
    """Carries the caller's contextvars (span, log context, graph) into threads it starts.

    ``ThreadPoolExecutor.submit`` runs each work item in a copy of the submitter's context, and
    ``Thread.start`` runs the thread in a copy of the starter's context when the starter is inside
    a span or an observed call. Threads started outside any (pool workers, for instance) keep a
    fresh context, so nothing stale is carried.
    """

    def __init__(self) -> None:
        self.installed = False
        self.original_submit: Any = None
        self.original_start: Any = None

    def install(self) -> None:
        if self.installed:
            return
        original_submit = ThreadPoolExecutor.submit
        original_start = threading.Thread.start

        @functools.wraps(original_submit)  # type: ignore[arg-type]
        def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

        @functools.wraps(original_start)
        def start(self: threading.Thread) -> None:
            if _inside_observed_work():
                run = self.run
                context = contextvars.copy_context()
                self.run = lambda: context.run(run)  # type: ignore[method-assign]
            original_start(self)

        self.original_submit, self.original_start = original_submit, original_start
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
        threading.Thread.start = start  # type: ignore[method-assign]
        self.installed = True

    def uninstall(self) -> None:
        if not self.installed:
            return
        ThreadPoolExecutor.submit = self.original_submit  # type: ignore[method-assign]
        threading.Thread.start = self.original_start  # type: ignore[method-assign]
        self.installed = False


def _inside_observed_work() -> bool:
    return (
        trace.get_current_span().get_span_context().is_valid
        or CURRENT_GRAPH.get() is not None
        or CURRENT_NODE.get() is not None
    )


_THREADS = _ThreadPropagation()


def _set_thread_propagation(on: bool) -> None:
    if on:
        _THREADS.install()
    else:
        _THREADS.uninstall()


# --------------------------------------------------------------------------------------------
# Shutdown on SIGTERM
# --------------------------------------------------------------------------------------------

#: Exit status after SIGTERM, as a shell reports a process killed by it (128 + 15).
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


def unwind_on_sigterm() -> bool:
    """Make SIGTERM unwind the program like SIGINT does, so spans end and get flushed at exit.

    The default SIGTERM ends the process at once: no ``finally``, no ``atexit``, spans lost.
    Installed only from the main thread and only while SIGTERM has its default action, so an
    app's own handler is never replaced. The handler raises ``SystemExit(143)``; a second
    SIGTERM while unwinding or flushing ends the process at once.

    Returns:
        True if the handler was installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False

    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(SIGTERM_EXIT_CODE)


def _restore_sigterm() -> None:
    """Give SIGTERM its default action back, if the kit's handler is the one installed."""
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
