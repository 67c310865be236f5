"""The process-wide provider: installed once, reconfigured in place, shut down at exit.

How the process-wide provider works
-----------------------------------
OpenTelemetry lets a process set its global tracer provider once. So the first
:func:`configure_telemetry` that enables tracing installs one SDK ``TracerProvider`` for good, built
around two switchable parts of the kit's own:

* a sampler that delegates to ``ParentBased(TraceIdRatioBased(rate))`` (or to ALWAYS_OFF when
  tracing is disabled, reset or shut down), and
* a span processor that forwards to the current export pipeline (``ExportPipeline``: a bounded
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
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from .._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from .config import TelemetryConfig
from .exporters import build_processors
from .lifecycle import restore_sigterm, unwind_on_sigterm
from .pipeline import LATE_SPANS, shutdown_processors
from .propagation import set_thread_propagation

__all__ = [
    "TRACER_NAME",
    "add_span_processor",
    "configure_telemetry",
    "flush_telemetry",
    "get_telemetry_config",
    "get_tracer",
    "is_telemetry_enabled",
    "remove_span_processor",
    "reset_telemetry",
    "shutdown_telemetry",
]

_log = logging.getLogger(KIT_LOGGER_NAME)

#: Instrumentation scope name of the kit's spans.
TRACER_NAME = "tinyllm_instrument"


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
                report_internal_error(Stage.SPAN_PROCESSOR, exc)

    def _on_ending(self, span: SdkSpan) -> None:
        for processor in self._all:
            try:
                processor._on_ending(span)
            except Exception as exc:
                report_internal_error(Stage.SPAN_PROCESSOR, exc)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._all:
            try:
                processor.on_end(span)
            except Exception as exc:
                report_internal_error(Stage.SPAN_PROCESSOR, exc)
        if self.count_orphans and span.context.trace_flags.sampled:
            LATE_SPANS.add("shutdown", 1)

    def shutdown(self) -> None:
        # The provider's own shutdown (atexit of a foreign provider) ends up here: flush ours too.
        shutdown_processors(self.swap_exporting(()), _current_shutdown_timeout())

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        ok = True
        for processor in self._all:
            try:
                ok = processor.force_flush(timeout_millis) and ok
            except Exception as exc:
                report_internal_error(Stage.SPAN_FLUSH, exc)
                ok = False
        return ok


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
        report_internal_error(Stage.TELEMETRY_RESOURCE, exc)


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
        set_thread_propagation(config.enable_tracing and config.propagate_to_threads)
        if config.enable_tracing and config.flush_on_sigterm:
            unwind_on_sigterm(timeout=config.shutdown_timeout, flush=shutdown_telemetry)
        if not config.enable_tracing:
            _disable(shutdown_extra=False)
            _STATE.config = config
            return
        processors = build_processors(config)
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
    shutdown_processors(old, config.shutdown_timeout)


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
    shutdown_processors(old, _current_shutdown_timeout())
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
    shutdown_processors(old, wait)
    for processor in extra:  # not ours to shut down, but their spans should be out
        try:
            processor.force_flush(int(wait * 1000))
        except Exception as exc:
            report_internal_error(Stage.SPAN_FLUSH, exc)


def reset_telemetry() -> None:
    """Back to unconfigured, for tests: exporters shut down, added processors removed, no config.

    OpenTelemetry's global provider cannot be uninstalled; the kit's stays in place but samples
    nothing, so every span is non-recording until the next ``configure_telemetry``.
    """
    with _STATE.lock:
        set_thread_propagation(False)
        restore_sigterm()
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
