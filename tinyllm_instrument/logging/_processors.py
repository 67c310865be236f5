"""The per-line work between a log call and the renderer: names, ids, session, time, sampling,
redaction."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import structlog
from opentelemetry import trace as _otel_trace
from structlog.typing import EventDict, Processor, WrappedLogger

from .._context import CURRENT_CALL, NO_GRAPH
from .._errors import Stage, report_internal_error
from ..genai.sessions import log_fields
from ..redaction import get_redaction_policy, safe_str
from . import _sampling
from ._render import META_KEYS

__all__ = [
    "Enrich",
    "Guarded",
    "LEVEL_NUMBERS",
    "add_graph_context",
    "add_trace_context",
    "format_args",
    "iso_timestamp",
    "processor_name",
    "redact_event",
]

#: Level numbers of the logger methods (and of the level names they write).
LEVEL_NUMBERS = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "warn": 30,
    "error": 40,
    "exception": 40,
    "critical": 50,
    "fatal": 50,
}
# The ``level`` a method writes (structlog's add_log_level: warn -> warning, exception -> error).
_LEVEL_NAMES = {"warn": "warning", "exception": "error", "fatal": "critical", "msg": "info"}

# The parts of the line Enrich adds, by the names of the structlog processors they replace
# (what get_logging_info and ``debug inspect`` list).
ENRICH_PARTS = (
    "sample_event",
    "add_log_level",
    "add_logger_name",
    "add_app_version",
    "add_trace_context",
    "add_graph_context",
    "add_session_fields",
    "TimeStamper",
    "StackInfoRenderer",
    "format_exc_info",
)

# --------------------------------------------------------------------------------------------
# Time: the seconds part of the ISO stamp changes once a second, so it is formatted once.
# --------------------------------------------------------------------------------------------

_stamp_cache: tuple[int, str] = (-1, "")


def iso_timestamp(seconds: float | None = None) -> str:
    """``2026-12-02T04:39:25.866202Z``: now (or ``seconds`` since the epoch), UTC, microseconds.

    Example:
        >>> iso_timestamp(0.5)
        '1970-01-01T00:00:00.500000Z'
    """
    global _stamp_cache
    micros = time.time_ns() // 1000 if seconds is None else round(seconds * 1_000_000)
    whole, frac = divmod(micros, 1_000_000)
    cached = _stamp_cache
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        _stamp_cache = cached
    return f"{cached[1]}.{frac:06d}Z"


# --------------------------------------------------------------------------------------------
# Trace ids: read once per line, formatted once per span.
# --------------------------------------------------------------------------------------------

_last_ids: tuple[Any, tuple[str, str] | None] = (None, None)


def _set_ids(span: Any, event_dict: EventDict) -> None:
    global _last_ids
    last = _last_ids
    if span is last[0]:
        ids = last[1]
    else:
        ctx = span.get_span_context()
        ids = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")) if ctx.is_valid else None
        _last_ids = (span, ids)  # one tuple, swapped whole: safe across threads
    if ids is not None and span.is_recording():
        event_dict["trace_id"], event_dict["span_id"] = ids


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``trace_id`` (32 hex) and ``span_id`` (16 hex) of the current recording span.

    Read when the line is logged, through the OpenTelemetry API, so nothing is bound per call
    and the ids are those of the innermost span that is current right now.
    """
    try:
        _set_ids(_otel_trace.get_current_span(), event_dict)
    except Exception as exc:  # a broken span implementation must not cost the line
        report_internal_error(Stage.LOG_PROCESSOR, exc)
    return event_dict


def add_graph_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``node`` and ``graph`` of the current ``@observe`` call, read when the line is logged.

    ``@observe`` sets one context variable per call instead of binding structlog context, which
    costs less on the hot path; a node outside any graph logs ``graph="none"``.
    """
    node, graph, _ = CURRENT_CALL.get()
    if node is not None:
        event_dict.setdefault("node", node)
        event_dict.setdefault("graph", graph if graph is not None else NO_GRAPH)
    elif graph is not None:
        event_dict.setdefault("graph", graph)
    return event_dict


# --------------------------------------------------------------------------------------------
# Enrichment: one processor for what every line gets, in the order the fields appear.
# --------------------------------------------------------------------------------------------


class Enrich:
    """Samples, then adds level, logger, app and version, trace ids, node and graph, session and
    user (``using_attributes``), timestamp, stack and exception text: one call per line instead
    of ten processors.

    A stdlib record travels in the ``_record`` key; its name, level, time and exception are
    used. ``trace`` is the trace-id processor; `add_trace_context` unless replaced.
    """

    __slots__ = ("app", "version", "trace", "sample")

    def __init__(
        self,
        app: str,
        version: str | None,
        trace: Processor = add_trace_context,
        sample: bool = True,
    ) -> None:
        self.app = app
        self.version = version
        self.trace = trace
        self.sample = sample

    def __repr__(self) -> str:
        return "enrich"

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        record = event_dict.get("_record")
        if record is not None and not isinstance(record, logging.LogRecord):
            record = None  # a caller's own field of that name, not a stdlib record
        if record is None:
            level = _LEVEL_NAMES.get(method_name, method_name)
            level_no = LEVEL_NUMBERS.get(level, 20)
            created = None
        else:
            level = record.levelname.lower()
            level_no = record.levelno
            created = record.created
        span = None
        sampler = _sampling.current_sampler() if self.sample else None
        if sampler is not None:
            try:
                if sampler.hash_based and level_no < 30:
                    span = _otel_trace.get_current_span()
            except Exception:
                span = None
            if not sampler.keep(level_no, event_dict.get("event"), span):
                raise structlog.DropEvent
        event_dict["level"] = level
        if record is not None:
            event_dict["logger"] = record.name
        else:
            name = getattr(logger, "name", None)
            if name is not None:
                event_dict["logger"] = name
        if "app" not in event_dict:
            event_dict["app"] = self.app
        if self.version is not None and "version" not in event_dict:
            event_dict["version"] = self.version
        trace = self.trace
        if trace is add_trace_context:
            try:
                _set_ids(span if span is not None else _otel_trace.get_current_span(), event_dict)
            except Exception as exc:  # a broken span implementation must not cost the line
                report_internal_error(Stage.LOG_PROCESSOR, exc)
        else:  # a replacement (a test's, or yours): it gets the line as any processor would
            event_dict = cast(EventDict, trace(logger, method_name, event_dict))
        node, graph, _ = CURRENT_CALL.get()
        if node is not None:
            event_dict.setdefault("node", node)
            event_dict.setdefault("graph", graph if graph is not None else NO_GRAPH)
        elif graph is not None:
            event_dict.setdefault("graph", graph)
        for key, value in log_fields().items():  # empty outside any using_attributes scope
            event_dict.setdefault(key, value)
        event_dict["timestamp"] = iso_timestamp(created)
        if record is not None:
            if record.stack_info:
                event_dict["stack"] = record.stack_info
            if record.exc_info:
                event_dict["exc_info"] = record.exc_info
        elif "stack_info" in event_dict:
            event_dict = structlog.processors.StackInfoRenderer()(logger, method_name, event_dict)
        if "exc_info" in event_dict:
            event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
        return event_dict


def format_args(event: Any, args: Any) -> str:
    """``event % args`` as logging does it; when they do not fit, the text with a note."""
    try:
        if not isinstance(args, Mapping) and len(args) == 1:
            if isinstance(args[0], Mapping) and args[0]:
                args = args[0]  # logging's "%(name)s" form
        return str(event) % args
    except Exception as exc:
        # The stdlib would print the raw arguments to stderr; keep the line, say what failed.
        return (
            f"{safe_str(event)} [log arguments did not fit: {type(exc).__name__}: "
            f"{safe_str(exc)}; arguments: {_safe_repr(args)}]"
        )


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


# --------------------------------------------------------------------------------------------
# Redaction, last before rendering (after the user's processors)
# --------------------------------------------------------------------------------------------

# The kit writes these itself; nothing a caller passed can be in them.
_NOT_REDACTED = frozenset({*META_KEYS, "level", "timestamp"})


def redact_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Apply the process-wide redaction policy to every value of the line, in place.

    Fails closed: if redaction itself fails, the line's content is withheld, not leaked.
    """
    try:
        get_redaction_policy().redact_in_place(event_dict, _NOT_REDACTED)
        return event_dict
    except Exception as exc:  # pragma: no cover - the policy is built not to raise
        report_internal_error(Stage.LOG_REDACTION, exc)
        kept: dict[str, Any] = {
            k: event_dict[k] for k in ("level", "timestamp", "logger", "app") if k in event_dict
        }
        kept["event"] = "log line withheld: redaction failed"
        return kept


class Guarded:
    """Runs a user-supplied processor; if it raises, reports once and the line goes on."""

    __slots__ = ("processor", "name")

    def __init__(self, processor: Processor) -> None:
        self.processor = processor
        self.name = processor_name(processor)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        try:
            result = self.processor(logger, method_name, event_dict)
        except structlog.DropEvent:
            raise
        except Exception as exc:
            report_internal_error(Stage.LOG_PROCESSOR, exc)
            return event_dict
        if not isinstance(result, Mapping):
            report_internal_error(
                Stage.LOG_PROCESSOR,
                TypeError(f"log processor {self.name} returned {type(result).__name__}, not dict"),
            )
            return event_dict
        if not isinstance(result, dict):
            result = dict(result)
        return result


def processor_name(proc: Any) -> str:
    """A short name for a processor, as ``debug inspect`` lists it."""
    if isinstance(proc, Guarded):
        return proc.name
    name = getattr(proc, "__name__", None)
    if name is None:
        name = repr(proc) if type(proc).__repr__ is not object.__repr__ else type(proc).__name__
    return str(name)
