"""Tracing: TelemetryConfig, configure_telemetry, span helpers and W3C context propagation.

The pillar is a package, one concern per module; this module re-exports the public names, so the
guide's imports (``from tinyllm_instrument.telemetry import trace_span``) do not change:

* :mod:`.config`: ``TelemetryConfig``, validated when made;
* :mod:`.provider`: the process-wide provider, its switchable sampler and span processor;
* :mod:`.pipeline`: the export queue and thread, where every span is exported or counted;
* :mod:`.exporters`: OTLP, console and tree exporters behind the pipeline;
* :mod:`.spans`: the one span layer (attribute conversion, error recording, span helpers);
* :mod:`.propagation`: W3C headers, threads and pools;
* :mod:`.lifecycle`: SIGTERM and the process's end.
"""

from __future__ import annotations

from .config import (
    DEFAULT_OTLP_GRPC_ENDPOINT,
    DEFAULT_OTLP_HTTP_ENDPOINT,
    ENV_OTLP_ENDPOINT,
    EXPORTERS,
    ON_QUEUE_FULL,
    OTLP_PROTOCOLS,
    TelemetryConfig,
)
from .lifecycle import SIGTERM_EXIT_CODE, unwind_on_sigterm
from .pipeline import DROP_REASONS, DROP_WARNING_INTERVAL
from .propagation import extract_context, inject_context
from .provider import (
    TRACER_NAME,
    add_span_processor,
    configure_telemetry,
    flush_telemetry,
    get_telemetry_config,
    get_tracer,
    is_telemetry_enabled,
    remove_span_processor,
    reset_telemetry,
    shutdown_telemetry,
)
from .spans import (
    get_current_span_id,
    get_current_trace_id,
    record_span_event,
    set_span_attribute,
    set_span_error,
    trace_span,
    traced,
)

__all__ = [
    "DEFAULT_OTLP_GRPC_ENDPOINT",
    "DEFAULT_OTLP_HTTP_ENDPOINT",
    "DROP_REASONS",
    "DROP_WARNING_INTERVAL",
    "ENV_OTLP_ENDPOINT",
    "EXPORTERS",
    "ON_QUEUE_FULL",
    "OTLP_PROTOCOLS",
    "SIGTERM_EXIT_CODE",
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
    "unwind_on_sigterm",
]
