"""Structured logging: configure_logging, get_logger, context binding, sampling, request logs."""

from __future__ import annotations

from ._configure import (
    ENV_SERVICE_NAME,
    LOG_FORMATS,
    LOG_LEVELS,
    configure_logging,
    default_app_name,
    enrichment_processors,
    get_logging_info,
    is_logging_configured,
    reset_logging,
)
from ._logger import (
    KitLogger,
    bind_context,
    bound_context,
    clear_context,
    get_logger,
    unbind_context,
)
from ._processors import add_graph_context, add_trace_context, redact_event
from ._requests import DEFAULT_MAX_BODY_CHARS, RequestLogger, get_request_logger
from ._sampling import (
    configure_log_sampling,
    get_log_sampling_stats,
    reset_log_sampling,
)
from ._sink import DROP_REASONS

__all__ = [
    "DEFAULT_MAX_BODY_CHARS",
    "DROP_REASONS",
    "ENV_SERVICE_NAME",
    "KitLogger",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "RequestLogger",
    "add_graph_context",
    "add_trace_context",
    "bind_context",
    "bound_context",
    "clear_context",
    "configure_log_sampling",
    "configure_logging",
    "default_app_name",
    "enrichment_processors",
    "get_log_sampling_stats",
    "get_logger",
    "get_logging_info",
    "get_request_logger",
    "is_logging_configured",
    "redact_event",
    "reset_log_sampling",
    "reset_logging",
    "unbind_context",
]
