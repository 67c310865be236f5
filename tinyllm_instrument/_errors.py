"""Failures inside the kit: caught, reported once per (stage, error type), and counted."""

from __future__ import annotations

import logging
import threading

from .redaction import safe_text

__all__ = ["KIT_LOGGER_NAME", "Stage", "report_internal_error", "reset_reported"]

#: The kit's own stdlib logger. configure_logging() renders it like every other line.
KIT_LOGGER_NAME = "tinyllm_instrument"
_log = logging.getLogger(KIT_LOGGER_NAME)


class Stage:
    """The ``stage`` label values of ``tinyllm_instrumentation_errors_total``: where the kit failed.

    A fixed set, so the label stays bounded and a dashboard can list them; pass one of these to
    :func:`report_internal_error`.
    """

    ATTRIBUTE = "attribute"
    CACHE_METRICS = "cache_metrics"
    CAPTURE = "capture"
    COST = "cost"
    EVENT_HANDLER = "event_handler"
    INSTRUMENT = "instrument"
    LOG_PROCESSOR = "log_processor"
    LOG_REDACTION = "log_redaction"
    LOG_SAMPLING = "log_sampling"
    METRIC_LABEL = "metric_label"
    OBSERVE_BEGIN = "observe_begin"
    OBSERVE_CONTEXT = "observe_context"
    OBSERVE_FAIL = "observe_fail"
    OBSERVE_FINISH = "observe_finish"
    PROPAGATION = "propagation"
    QUEUE_METRICS = "queue_metrics"
    QUEUE_PRIORITY = "queue_priority"
    REDACTION = "redaction"
    SPAN_ATTRIBUTE = "span_attribute"
    SPAN_END = "span_end"
    SPAN_ERROR = "span_error"
    SPAN_EVENT = "span_event"
    SPAN_EXPORT = "span_export"
    SPAN_FLUSH = "span_flush"
    SPAN_PROCESSOR = "span_processor"
    SPAN_SHUTDOWN = "span_shutdown"
    SPAN_START = "span_start"
    TELEMETRY_RESOURCE = "telemetry_resource"
    UNINSTRUMENT = "uninstrument"
    USAGE = "usage"


_reported: set[tuple[str, str]] = set()
# Re-entrant: an observed function in a signal handler may fail inside the kit while the
# interrupted main thread holds this lock.
_lock = threading.RLock()


def report_internal_error(stage: str, exc: BaseException) -> None:
    """Count a failure of the kit in ``tinyllm_instrumentation_errors_total{stage}``; log it once.

    Never raises: this is the last line of defence between the kit and the user's code.

    Args:
        stage: where it happened, a short fixed word ("span_start", "event_handler", ...).
        exc: the exception the kit caught.
    """
    try:
        # Imported here: metrics sits above this module (it reports its own failures through
        # it), so importing it at the top would run upward and make a cycle.
        from .metrics import get_metrics_collector

        get_metrics_collector().instrumentation_errors.labels(stage).inc()
    except Exception:  # pragma: no cover - counting must not be the thing that breaks
        pass
    try:
        key = (stage, type(exc).__qualname__)
        with _lock:
            first = key not in _reported
            _reported.add(key)
        if first:
            _log.warning(
                "tinyllm_instrument internal error in stage %r (reported once; counted in "
                "tinyllm_instrumentation_errors_total): %s: %s",
                stage,
                type(exc).__name__,
                _message(exc),
            )
    except Exception:  # pragma: no cover
        pass


def _message(exc: BaseException) -> str:
    # The kit's own failure may quote user data (a value it could not convert): redact it too.
    return safe_text(exc)


def reset_reported() -> None:
    """Forget which errors were logged (for tests)."""
    with _lock:
        _reported.clear()
