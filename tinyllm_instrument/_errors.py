"""Failures inside the kit: caught, reported once per (stage, error type), and counted."""

from __future__ import annotations

import logging
import threading

__all__ = ["KIT_LOGGER_NAME", "report_internal_error", "reset_reported"]

#: The kit's own stdlib logger. configure_logging() renders it like every other line.
KIT_LOGGER_NAME = "tinyllm_instrument"
_log = logging.getLogger(KIT_LOGGER_NAME)

_reported: set[tuple[str, str]] = set()
_lock = threading.Lock()


def report_internal_error(stage: str, exc: BaseException) -> None:
    """Count a failure of the kit in ``tinyllm_instrumentation_errors_total{stage}``; log it once.

    Never raises: this is the last line of defence between the kit and the user's code.

    Args:
        stage: where it happened, a short fixed word ("span_start", "event_handler", ...).
        exc: the exception the kit caught.
    """
    try:
        from .metrics import (
            get_metrics_collector,
        )  # local: metrics sits below, but imports us lazily

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
                _safe_str(exc),
            )
    except Exception:  # pragma: no cover
        pass


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<unprintable>"


def reset_reported() -> None:
    """Forget which errors were logged (for tests)."""
    with _lock:
        _reported.clear()
