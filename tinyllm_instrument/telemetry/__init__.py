"""Tracing: TelemetryConfig, configure_telemetry, span helpers and W3C context propagation.

The pillar is a package, one concern per module; this module re-exports the public names, so the
guide's imports (``from tinyllm_instrument.telemetry import trace_span``) do not change:

* :mod:`.config`: ``TelemetryConfig``, validated when made;
* :mod:`.provider`: the process-wide state: configure, reconfigure, shut down; the span
  processor fan-out;
* :mod:`.proxy`: the kit's global provider, a proxy over the SDK provider of each configuration;
* :mod:`.ids`: trace and span ids from the kit's own entropy;
* :mod:`.pipeline`: the export queue and thread, where every span is exported or counted;
* :mod:`.drops`: counting dropped spans and reporting them in few lines;
* :mod:`.exporters`: OTLP, console and tree exporters behind the pipeline;
* :mod:`.otel_logs`: OpenTelemetry's own log records during the kit's calls;
* :mod:`.spans`: the one span layer (attribute conversion, error recording, span helpers);
* :mod:`.propagation`: W3C headers, threads and pools;
* :mod:`.lifecycle`: SIGTERM and the process's end.

Importing the package loads the OpenTelemetry API only. ``proxy``, ``ids``, ``pipeline`` and
``exporters`` need the SDK, whose import reads (and may reject) ``OTEL_*`` variables: they are
imported by the first ``configure_telemetry`` that enables tracing, or on first attribute access
(``telemetry.exporters``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .config import (
    DEFAULT_OTLP_GRPC_ENDPOINT,
    DEFAULT_OTLP_HTTP_ENDPOINT,
    ENV_OTLP_ENDPOINT,
    EXPORTERS,
    ON_QUEUE_FULL,
    OTLP_PROTOCOLS,
    TelemetryConfig,
)
from .drops import DROP_REASONS, DROP_WARNING_INTERVAL
from .lifecycle import SIGTERM_EXIT_CODE, unwind_on_sigterm
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

#: Submodules that import the OpenTelemetry SDK: loaded on first use, never by the package import.
_SDK_SUBMODULES = frozenset({"exporters", "ids", "pipeline", "proxy"})


def __getattr__(name: str) -> ModuleType:
    if name in _SDK_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
