"""The process-wide provider: installed once, reconfigured in place, shut down at exit.

How the process-wide provider works
-----------------------------------
OpenTelemetry lets a process set its global tracer provider once. So the first
:func:`configure_telemetry` that enables tracing installs the kit's provider for good: a proxy
(:mod:`.proxy`) over an SDK ``TracerProvider`` that every later configuration replaces with a
fresh one (new sampler, new resource), re-pointing every tracer handed out so far. All of those
SDK providers share one span processor of the kit's, the fan-out below, which forwards to the
current export pipeline (``ExportPipeline``: a bounded queue and one export thread, where every
span is exported or counted as dropped) plus any processors added with
:func:`add_span_processor`.

The fan-out also keeps the ids of the sampled spans it has promised to the exporters and not seen
end yet. When tracing stops exporting (shutdown, exit, ``enable_tracing=False``), those still
open are counted at once as dropped (reason ``unfinished``), and ending them later exports
nothing and counts nothing again.

Nothing here imports the OpenTelemetry SDK: importing the package, or calling ``observe`` before
any configuration, loads only the API. The SDK (whose import reads, and may reject, ``OTEL_*``
variables) is loaded by the first configuration that enables tracing.

Limit: spans already started keep the resource of the moment they started.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from dataclasses import replace
from types import ModuleType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from .._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from ..genai import sessions as _sessions
from .config import TelemetryConfig, check_sdk_environment, sdk_error_line
from .drops import DropReport
from .lifecycle import restore_sigterm, unwind_on_sigterm
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

_MISSING = object()
_SESSION_SCOPE = _sessions.SCOPE_VAR
_RECEIVED = _sessions.RECEIVED
_session_on_start = _sessions.on_start


# --------------------------------------------------------------------------------------------------
# The span processor fan-out shared by every SDK provider of the kit
# --------------------------------------------------------------------------------------------------


class _Fan:
    """One consistent view for the span path, swapped in whole (one attribute read per span).

    ``exporting``: the export pipelines. ``extra``: processors added by users or tests. ``open``:
    ids of the spans promised to ``exporting`` and not ended yet; None when not tracking.
    ``starting`` / ``ending``: who wants ``on_start`` / ``_on_ending`` (the export pipeline does
    nothing there, and skipping it saves a call per span).
    """

    __slots__ = ("exporting", "extra", "everyone", "starting", "ending", "open")

    def __init__(
        self,
        exporting: tuple[Any, ...],
        extra: tuple[Any, ...],
        open_spans: dict[int, None] | None,
    ) -> None:
        self.exporting = exporting
        self.extra = extra
        self.everyone = exporting + extra
        self.starting = tuple(p for p in self.everyone if not getattr(p, "ends_only", False))
        self.ending = tuple(p for p in self.starting if hasattr(p, "_on_ending"))
        self.open = open_spans


def _drain(open_spans: dict[int, None] | None) -> int:
    """Empty ``open_spans`` and say how many it held. Each id is taken by exactly one of this and
    a racing ``on_end`` (``dict.popitem`` / ``dict.pop`` are atomic), so no span counts twice."""
    if not open_spans:
        return 0
    n = 0
    while True:
        try:
            open_spans.popitem()
        except KeyError:
            return n
        n += 1


class _KitSpanProcessor:
    """Forwards to the kit's exporting pipeline and to processors added by users or the tests.

    A span processor by duck typing (the SDK calls these five methods), so that it exists, and
    ``add_span_processor`` works, before the SDK is imported. Each child is isolated: a failing
    processor is reported through ``report_internal_error`` and never reaches the code that ended
    the span. The span path reads one attribute and takes no lock; the lock (re-entrant: a signal
    handler may add a processor while this thread changes them) only orders the writers.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._fan = _Fan((), (), None)

    # -- changing the processors (rare, under the lock) --------------------------------------

    def swap_exporting(
        self, processors: tuple[Any, ...], *, track: bool
    ) -> tuple[tuple[Any, ...], int]:
        """Install ``processors``; return the previous ones and how many spans promised to them
        are left open (each counted here once). ``track``: keep the ids of the sampled spans
        promised to ``processors``.

        Spans open across a swap from one exporter to another are the new one's to export.
        """
        with self._lock:
            fan = self._fan
            if not (processors and track):
                open_spans = None
            elif fan.open is not None:
                open_spans = fan.open  # a new exporter takes over the spans promised to the old
            else:
                open_spans = {}
            self._fan = _Fan(processors, fan.extra, open_spans)
            # After the swap: a span ending now pops its id from the old dict or finds it gone.
            unfinished = _drain(fan.open) if fan.open is not open_spans else 0
        return fan.exporting, unfinished

    def add(self, processor: Any) -> None:
        with self._lock:
            fan = self._fan
            if processor not in fan.extra:
                self._fan = _Fan(fan.exporting, fan.extra + (processor,), fan.open)

    def remove(self, processor: Any) -> bool:
        with self._lock:
            fan = self._fan
            if processor not in fan.extra:
                return False
            extra = tuple(p for p in fan.extra if p is not processor)
            self._fan = _Fan(fan.exporting, extra, fan.open)
            return True

    def clear_extra(self) -> tuple[Any, ...]:
        with self._lock:
            fan = self._fan
            self._fan = _Fan(fan.exporting, (), fan.open)
        return fan.extra

    @property
    def extra(self) -> tuple[Any, ...]:
        return self._fan.extra

    def after_fork_in_child(self) -> None:
        # The parent's open spans are the parent's to export or count, not the child's.
        fan = self._fan
        self._fan = _Fan(fan.exporting, fan.extra, None if fan.open is None else {})
        self._lock = threading.RLock()

    # -- the span path (every span: keep it lean) -----------------------------------------------

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        # using_attributes: first, so that every processor (and exporter) sees the session.
        # Without a scope, one ContextVar read (and, once a session has come in from outside,
        # one attribute read).
        if _SESSION_SCOPE.get() is not None or _RECEIVED.any:
            _session_on_start(span, parent_context)
        fan = self._fan
        open_spans = fan.open
        if open_spans is not None:
            # Processors only see recording spans, and the kit's samplers record only what they
            # sample: no need to look at the trace flags here.
            open_spans[span.get_span_context().span_id] = None
        for processor in fan.starting:
            try:
                processor.on_start(span, parent_context=parent_context)
            except Exception as exc:
                report_internal_error(Stage.SPAN_PROCESSOR, exc)

    def _on_ending(self, span: Any) -> None:
        for processor in self._fan.ending:
            try:
                processor._on_ending(span)
            except Exception as exc:
                report_internal_error(Stage.SPAN_PROCESSOR, exc)

    def on_end(self, span: Any) -> None:
        fan = self._fan
        open_spans = fan.open
        if (
            open_spans is None
            or open_spans.pop(span.get_span_context().span_id, _MISSING) is not _MISSING
        ):
            targets = fan.everyone
        else:
            # Not promised to these exporters: counted already as unfinished, or started before
            # they were installed. Added processors still see it.
            targets = fan.extra
        for processor in targets:
            try:
                processor.on_end(span)
            except Exception as exc:
                report_internal_error(Stage.SPAN_PROCESSOR, exc)

    def shutdown(self) -> None:
        # The provider's own shutdown (atexit of a host's provider we joined) ends up here.
        _stop_exporting(_current_shutdown_timeout())

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        ok = True
        for processor in self._fan.everyone:
            try:
                ok = processor.force_flush(timeout_millis) and ok
            except Exception as exc:
                report_internal_error(Stage.SPAN_FLUSH, exc)
                ok = False
        return ok


# --------------------------------------------------------------------------------------------------
# Process-wide state
# --------------------------------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        # Re-entrant: a signal handler may call the kit while configure holds it.
        self.lock = threading.RLock()
        self.config: TelemetryConfig | None = None
        self.enabled = False
        self.kit_provider: Any = None  # proxy.KitTracerProvider once ours is the global one
        self.installed = False  # configure_telemetry looked for / installed a global provider
        self.tracer: trace.Tracer | None = None
        self.atexit_registered = False
        self.processor = _KitSpanProcessor()


_STATE = _State()


def _kit_version() -> str:
    return str(getattr(sys.modules.get("tinyllm_instrument"), "__version__", ""))


def _current_shutdown_timeout() -> float:
    config = _STATE.config
    return config.shutdown_timeout if config is not None else TelemetryConfig.shutdown_timeout


def _sdk_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """The modules that need the SDK: exporters, pipeline, proxy (imported on first use).

    Raises:
        ValueError: one line, when the SDK rejects an ``OTEL_*`` variable as it is imported.
    """
    try:
        from . import exporters, pipeline, proxy
    except ValueError as exc:
        raise ValueError(sdk_error_line(exc)) from None
    return exporters, pipeline, proxy


def _shutdown_processors(processors: tuple[Any, ...], timeout: float, unfinished: int) -> None:
    if not processors and not unfinished:
        return  # nothing to do, and no reason to import the SDK
    from .drops import count_dropped

    count_dropped("unfinished", unfinished)
    report = DropReport({"unfinished": unfinished} if unfinished else {})
    _sdk_modules()[1].shutdown_processors(processors, timeout, report=report)


def _install_provider(proxy: ModuleType, config: TelemetryConfig) -> None:
    """Install our provider globally, or attach our processor to one someone else installed."""
    current = trace.get_tracer_provider()
    if isinstance(current, trace.ProxyTracerProvider):
        provider = proxy.KitTracerProvider(
            _STATE.processor,
            proxy.sampler_for(config.sampling_rate),
            proxy.build_resource(config),
            add_span_processor=add_span_processor,
            flush=flush_telemetry,
            shutdown=shutdown_telemetry,
        )
        trace.set_tracer_provider(provider)
        current = trace.get_tracer_provider()
        if current is provider:
            _STATE.kit_provider = provider
            _STATE.tracer = provider.get_tracer(TRACER_NAME, _kit_version())
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_STATE.processor.after_fork_in_child)
            return
    # Someone else's provider is global. Do not fight it: join it.
    if proxy.is_sdk_provider(current):
        _log.warning(
            "tinyllm_instrument: a global TracerProvider (%s) was installed before "
            "configure_telemetry(); the kit adds its span processor to it, but its sampler and "
            "resource stay in charge (sampling_rate, service_name and resource_attributes are "
            "not applied)",
            type(current).__name__,
        )
        current.add_span_processor(_STATE.processor)  # type: ignore[attr-defined]
    else:
        _log.warning(
            "tinyllm_instrument: a global TracerProvider (%s) that is not an OpenTelemetry SDK "
            "provider was installed before configure_telemetry(); the kit's spans go to it and "
            "the kit exports nothing itself",
            type(current).__name__,
        )
    _STATE.tracer = current.get_tracer(TRACER_NAME, _kit_version())


# --------------------------------------------------------------------------------------------------
# Public configuration API
# --------------------------------------------------------------------------------------------------


def configure_telemetry(config: TelemetryConfig | None = None, **overrides: Any) -> None:
    """Turn tracing on (or off) for the process, as ``config`` says. Calling it again reconfigures.

    The first call that enables tracing imports the OpenTelemetry SDK and installs the kit's
    provider as OpenTelemetry's global provider, so ``trace.get_tracer()`` anywhere in the process
    joins the same traces. Later calls change it in place: sampler, resource and exporter take
    effect at once, including for tracers obtained earlier. Pending spans of the previous exporter
    are flushed first (bounded by ``shutdown_timeout``). ``shutdown_telemetry`` is registered with
    ``atexit`` on the first call. If another global provider was installed first, the kit logs a
    warning and adds its span processor to it (when it is an SDK provider) instead of replacing it.

    Args:
        config: the configuration; None means ``TelemetryConfig(**overrides)``.
        **overrides: fields to set on top of ``config`` (``dataclasses.replace``).

    Raises:
        ValueError: a field is invalid, the exporter cannot be built, or an ``OTEL_*`` variable
            the SDK reads holds a value it rejects. The message is one line naming what to fix,
            e.g. ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT='abc': must be a non-negative integer (or
            'unset' for no limit)``.
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
        if config.enable_tracing:
            # Everything that can refuse the configuration, before anything changes.
            check_sdk_environment()
            exporters, _pipeline, proxy = _sdk_modules()
            processors = exporters.build_processors(config)
        set_thread_propagation(config.enable_tracing and config.propagate_to_threads)
        if config.enable_tracing and config.flush_on_sigterm:
            unwind_on_sigterm(timeout=config.shutdown_timeout, flush=shutdown_telemetry)
        if not config.enable_tracing:
            _disable(clear_extra=False)
            _STATE.config = config
            return
        if not _STATE.installed:
            _install_provider(proxy, config)
            _STATE.installed = True
        elif _STATE.kit_provider is not None:
            _STATE.kit_provider.configure(
                proxy.sampler_for(config.sampling_rate), proxy.build_resource(config)
            )
        owns = _STATE.kit_provider is not None  # only our own provider's spans are ours to count
        old, unfinished = _STATE.processor.swap_exporting(processors, track=owns)
        _STATE.config = config
        _STATE.enabled = True
        if not _STATE.atexit_registered:
            atexit.register(shutdown_telemetry)
            _STATE.atexit_registered = True
    _shutdown_processors(old, config.shutdown_timeout, unfinished)


def _stop_exporting(timeout: float) -> None:
    """Sample nothing and take the exporters out: flush them, count what was left open."""
    with _STATE.lock:
        _STATE.enabled = False
        if _STATE.kit_provider is not None:
            _STATE.kit_provider.turn_off()
        old, unfinished = _STATE.processor.swap_exporting((), track=False)
    _shutdown_processors(old, timeout, unfinished)


def _disable(*, clear_extra: bool) -> tuple[Any, ...]:
    """Stop sampling and exporting. Returns the added processors taken out (``clear_extra``)."""
    _stop_exporting(_current_shutdown_timeout())
    if clear_extra:
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
    again; ``get_telemetry_config()`` still returns the last configuration. Spans still open are
    counted as dropped (``tinyllm_spans_dropped_total{reason="unfinished"}``), and whatever was
    dropped and not reported yet is reported in one line. Safe to call more than once; registered
    with ``atexit`` by the first ``configure_telemetry``.

    Args:
        timeout: seconds to wait at most; default ``TelemetryConfig.shutdown_timeout`` of the
            config.

    Example:
        >>> shutdown_telemetry(timeout=2.0)
    """
    wait = _current_shutdown_timeout() if timeout is None else timeout
    _stop_exporting(wait)
    for processor in _STATE.processor.extra:  # not ours to shut down, but their spans should be out
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
        _disable(clear_extra=True)
        _STATE.config = None


def get_telemetry_config() -> TelemetryConfig | None:
    """The configuration last given to ``configure_telemetry``, or None."""
    return _STATE.config


def is_telemetry_enabled() -> bool:
    """Whether the kit is creating recording spans (configured with ``enable_tracing=True``)."""
    return _STATE.enabled


def get_tracer() -> trace.Tracer:
    """The kit's tracer (scope ``tinyllm_instrument``); a ProxyTracer until a provider is installed.

    It follows every reconfiguration. Cheap: after the first call it is one attribute read.
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


def add_span_processor(processor: Any) -> None:
    """Attach ``processor`` (an SDK ``SpanProcessor``) to every span of the kit's provider.

    It receives spans only while tracing is enabled. ``reset_telemetry`` removes it; the caller
    owns it and shuts it down.

    Example:
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        >>> exporter = InMemorySpanExporter()
        >>> add_span_processor(SimpleSpanProcessor(exporter))
    """
    _STATE.processor.add(processor)


def remove_span_processor(processor: Any) -> bool:
    """Detach a processor added with :func:`add_span_processor`; False if it was not attached."""
    return _STATE.processor.remove(processor)
