"""Structured logging: configure_logging, get_logger, the processor chain and request logging."""

from __future__ import annotations

import contextlib
import json
import logging as _stdlib_logging
import math
import os
import random as _random
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

import structlog
from opentelemetry import trace as _otel_trace
from structlog.typing import EventDict, Processor, WrappedLogger

from . import redaction as _redaction
from ._context import CURRENT_GRAPH, CURRENT_NODE, NO_GRAPH
from ._errors import Stage, report_internal_error

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "RequestLogger",
    "bind_context",
    "bound_context",
    "clear_context",
    "configure_log_sampling",
    "configure_logging",
    "enrichment_processors",
    "get_log_sampling_stats",
    "get_logger",
    "get_logging_info",
    "get_request_logger",
    "is_logging_configured",
    "reset_log_sampling",
    "reset_logging",
    "unbind_context",
]


#: Accepted ``log_level`` names (any case).
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Accepted ``log_format`` values.
LOG_FORMATS: tuple[str, ...] = ("console", "json")

_LEVEL_NUMBERS = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "warn": 30,
    "error": 40,
    "exception": 40,
    "critical": 50,
    "fatal": 50,
}
# Keys ProcessorFormatter uses for its own bookkeeping; never redact or render them.
_META_KEYS = ("_record", "_from_structlog")


# --------------------------------------------------------------------------------------------
# Processors. Each runs once per log line, so each does the least it can.
# --------------------------------------------------------------------------------------------


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``trace_id`` (32 hex) and ``span_id`` (16 hex) of the current recording span.

    Read when the line is logged, through the OpenTelemetry API, so nothing is bound per call
    and the ids are those of the innermost span that is current right now.
    """
    try:
        span = _otel_trace.get_current_span()
        ctx = span.get_span_context()
        if ctx.is_valid and span.is_recording():
            event_dict["trace_id"] = format(ctx.trace_id, "032x")
            event_dict["span_id"] = format(ctx.span_id, "016x")
    except Exception as exc:  # a broken span implementation must not cost the line
        report_internal_error(Stage.LOG_PROCESSOR, exc)
    return event_dict


def add_graph_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``node`` and ``graph`` of the current ``@observe`` call, read when the line is logged.

    ``@observe`` sets two context variables per call instead of binding structlog context, which
    costs less on the hot path; a node outside any graph logs ``graph="none"``.
    """
    node = CURRENT_NODE.get()
    graph = CURRENT_GRAPH.get()
    if node is not None:
        event_dict.setdefault("node", node)
        event_dict.setdefault("graph", graph if graph is not None else NO_GRAPH)
    elif graph is not None:
        event_dict.setdefault("graph", graph)
    return event_dict


def redact_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Apply the process-wide redaction policy to every key and value of the line.

    Fails closed: if redaction itself fails, the line's content is withheld, not leaked.
    """
    policy = _redaction.get_redaction_policy()
    try:
        out: dict[str, Any] = {}
        for key, value in event_dict.items():
            if key in _META_KEYS:
                out[key] = value
            elif policy.is_sensitive_key(key):
                out[key] = _redaction.REDACTED
            else:
                out[key] = policy.redact(value, scan_objects=True)
        return out
    except Exception as exc:  # pragma: no cover - policy.redact is built not to raise
        report_internal_error(Stage.LOG_REDACTION, exc)
        kept: dict[str, Any] = {
            k: event_dict[k]
            for k in ("level", "timestamp", "logger", "app", "version")
            if k in event_dict
        }
        kept.update({k: event_dict[k] for k in _META_KEYS if k in event_dict})
        kept["event"] = "log line withheld: redaction failed"
        return kept


def add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``logger``: the stdlib record's name, else the wrapped logger's ``name``, if any."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    else:
        name = getattr(logger, "name", None)
        if name is not None:
            event_dict["logger"] = name
    return event_dict


class _StaticFields:
    """Adds ``app`` and ``version``; a value the caller passed explicitly wins."""

    __slots__ = ("app", "version")

    def __init__(self, app: str, version: str) -> None:
        self.app = app
        self.version = version

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if "app" not in event_dict:
            event_dict["app"] = self.app
        if "version" not in event_dict:
            event_dict["version"] = self.version
        return event_dict

    def __repr__(self) -> str:
        return "add_app_version"


class _Guarded:
    """Runs a user-supplied processor; if it raises, reports once and the line goes on."""

    __slots__ = ("processor", "name")

    def __init__(self, processor: Processor) -> None:
        self.processor = processor
        self.name = _processor_name(processor)

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
        return result


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


class _LogSampler:
    """Keeps a fraction of lines below WARNING and/or at most N per second; counts everything."""

    def __init__(
        self,
        sample_rate: float | None,
        max_per_second: float | None,
        hash_based: bool,
        clock: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        self.sample_rate = sample_rate
        self.max_per_second = max_per_second
        self.hash_based = hash_based
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        self.seen = 0
        self.kept = 0
        self.dropped = 0
        # Bucket size: one second's worth, but at least one line (else 0.5/s would keep nothing).
        self._capacity = max(1.0, float(max_per_second or 0.0))
        self._tokens = self._capacity
        self._last = clock() if max_per_second is not None else 0.0
        # TraceIdRatioBased compares the low 64 bits of the trace id with rate * 2**64; doing the
        # same means hash-based log sampling keeps exactly the logs of the traces it keeps.
        self._trace_bound = round((sample_rate if sample_rate is not None else 1.0) * (1 << 64))

    def _passes_rate(self, event: Any) -> bool:
        rate = self.sample_rate
        if rate is None or rate >= 1.0:
            return True
        if not self.hash_based:
            return self._rng() < rate
        ctx = _otel_trace.get_current_span().get_span_context()
        if ctx.is_valid:
            return (ctx.trace_id & 0xFFFFFFFFFFFFFFFF) < self._trace_bound
        bound = structlog.contextvars.get_contextvars()
        key = f"{event!s}|{sorted(bound.items(), key=lambda kv: kv[0])!r}"
        return zlib.crc32(key.encode("utf-8", "replace")) < rate * 4294967296.0

    def keep(self, level_no: int, event: Any) -> bool:
        if level_no >= 30:  # warnings and errors are never sampled away
            with self._lock:
                self.seen += 1
                self.kept += 1
            return True
        try:
            ok = self._passes_rate(event)
        except Exception as exc:  # keep the line rather than lose it to a sampler bug
            report_internal_error(Stage.LOG_SAMPLING, exc)
            ok = True
        with self._lock:
            self.seen += 1
            if ok and self.max_per_second is not None:
                now = self._clock()
                elapsed = now - self._last
                self._last = now
                if elapsed > 0:
                    self._tokens = min(self._capacity, self._tokens + elapsed * self.max_per_second)
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                else:
                    ok = False
            if ok:
                self.kept += 1
            else:
                self.dropped += 1
        return ok

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"seen": self.seen, "kept": self.kept, "dropped": self.dropped}

    def describe(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "max_per_second": self.max_per_second,
            "hash_based": self.hash_based,
        }


_sampler: _LogSampler | None = None


def sample_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Drop the line (structlog.DropEvent) when log sampling says so; a no-op when it is off."""
    sampler = _sampler
    if sampler is not None and not sampler.keep(
        _LEVEL_NUMBERS.get(method_name, 20), event_dict.get("event")
    ):
        raise structlog.DropEvent
    return event_dict


class _SamplingFilter(_stdlib_logging.Filter):
    """The same sampling for records from the standard library's ``logging``."""

    def filter(self, record: _stdlib_logging.LogRecord) -> bool:
        sampler = _sampler
        if sampler is None or hasattr(record, "_logger"):  # structlog lines were sampled already
            return True
        try:
            event = record.getMessage()
        except Exception:
            event = record.msg
        return sampler.keep(record.levelno, event)


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got NaN")
    return float(value)


def configure_log_sampling(
    sample_rate: float | None = None,
    max_per_second: float | None = None,
    hash_based: bool = False,
    *,
    clock: Callable[[], float] | None = None,
    rng: Callable[[], float] | None = None,
) -> None:
    """Keep only a share of DEBUG/INFO lines and/or at most ``max_per_second`` of them.

    WARNING and above are never dropped. Dropped lines are counted, see
    `get_log_sampling_stats`. Takes effect at once for every logger, whether called before or
    after `configure_logging`; calling it again replaces the settings and restarts the counts.
    With no arguments sampling is off.

    Args:
        sample_rate: fraction of lines to keep, 0.0 to 1.0; None keeps all.
        max_per_second: token-bucket limit (bursts up to one second's worth); None for none.
        hash_based: decide by the current trace id when there is a current span (so a trace's
            lines are kept or dropped together, and exactly for the traces a
            ``TraceIdRatioBased`` sampler with the same rate keeps), else by the event name plus
            the bound context; False decides at random per line.
        clock: seconds as a float, for the rate limit (default ``time.monotonic``; for tests).
        rng: returns a float in [0, 1) (default ``random.random``; for tests).

    Raises:
        ValueError: ``sample_rate`` outside 0..1 or ``max_per_second`` not above 0.
        TypeError: either is not a number.

    Example:
        >>> configure_log_sampling(sample_rate=0.5, max_per_second=500, hash_based=True)
        >>> sorted(get_log_sampling_stats())
        ['dropped', 'kept', 'seen']
    """
    global _sampler
    if sample_rate is not None:
        rate = _check_number("sample_rate", sample_rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0.0 and 1.0, got {sample_rate!r}")
    if max_per_second is not None:
        limit = _check_number("max_per_second", max_per_second)
        if not limit > 0 or math.isinf(limit):
            raise ValueError(
                f"max_per_second must be a finite number above 0, got {max_per_second!r}"
            )
    if sample_rate is None and max_per_second is None:
        _sampler = None
        return
    _sampler = _LogSampler(
        None if sample_rate is None else float(sample_rate),
        max_per_second,
        bool(hash_based),
        clock or time.monotonic,
        rng or _random.random,
    )


def get_log_sampling_stats() -> dict[str, int]:
    """Counts since sampling was last configured: ``{"seen": n, "kept": n, "dropped": n}``.

    All zero while sampling is off (nothing is dropped then).
    """
    sampler = _sampler
    if sampler is None:
        return {"seen": 0, "kept": 0, "dropped": 0}
    return sampler.stats()


def reset_log_sampling() -> None:
    """Turn sampling off and forget its counts (for tests)."""
    global _sampler
    _sampler = None


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


class _StdoutHandler(_stdlib_logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when the line is emitted (redirects keep working)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> IO[str]:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _State:
    def __init__(self) -> None:
        self.handler: _stdlib_logging.Handler | None = None
        self.previous_root_level: int | None = None
        self.format: str | None = None
        self.level: str | None = None
        self.file: str | None = None
        self.processor_names: list[str] = []
        self.static: _StaticFields | None = None


_state = _State()
_config_lock = threading.RLock()


def _processor_name(proc: Any) -> str:
    if proc is structlog.processors.format_exc_info:
        return "format_exc_info"
    if isinstance(proc, _Guarded):
        return proc.name
    name = getattr(proc, "__name__", None)
    if name is None:
        name = repr(proc) if isinstance(proc, _StaticFields) else type(proc).__name__
    return str(name)


def _validate_level(log_level: Any) -> tuple[str, int]:
    if isinstance(log_level, str) and log_level.strip().upper() in LOG_LEVELS:
        name = log_level.strip().upper()
        return name, _stdlib_logging.getLevelName(name)
    if isinstance(log_level, int) and not isinstance(log_level, bool):
        name = _stdlib_logging.getLevelName(log_level)
        if name in LOG_LEVELS:
            return name, log_level
    raise ValueError(
        f"log_level {log_level!r} is not a log level; use one of {', '.join(LOG_LEVELS)}"
    )


def _open_file_handler(log_file: Any) -> _stdlib_logging.Handler:
    try:
        path = os.fspath(log_file)
    except TypeError:
        raise ValueError(
            f"log_file must be a path (str or os.PathLike), got {type(log_file).__name__}"
        ) from None
    if not path:
        raise ValueError("log_file is empty; pass a file path, or None to log to stdout")
    if os.path.isdir(path):
        raise ValueError(f"log_file {path!r} is a directory; pass a file path inside it")
    try:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        return _stdlib_logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot open log_file {path!r} for writing ({exc.strerror or exc}); "
            "check that the directory exists and is writable, or pass log_file=None for stdout",
        ) from exc


def _json_default(obj: Any) -> Any:
    try:
        return repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"


def configure_logging(
    log_level: str | int = "INFO",
    log_format: str = "console",
    log_file: str | os.PathLike[str] | None = None,
    *,
    app: str = "tinyllm",
    version: str | None = None,
    stream: IO[str] | None = None,
    processors: Sequence[Processor] = (),
) -> None:
    """Render structlog lines and standard-library records alike, to stdout or a file.

    One handler, owned by the kit, sits on the root logger; calling again replaces it (never
    stacks) and takes effect at once, for loggers created before as well. Every line carries
    ``event``, ``level``, ``timestamp`` (ISO 8601, UTC), ``logger``, ``app`` and ``version``;
    inside a recording span also ``trace_id`` and ``span_id``; plus the bound context. Secrets
    are redacted by `tinyllm_instrument.redaction`. ``exc_info=True`` adds an ``exception``
    field with the traceback.

    Args:
        log_level: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case), or the matching int.
        log_format: "console" (key=value, for people) or "json" (one object per line).
        log_file: append lines to this file (its directory is created) instead of stdout.
        app: the ``app`` field.
        version: the ``version`` field; default the package version.
        stream: write here instead of stdout (ignored when ``log_file`` is given).
        processors: your own structlog processors, run after the kit's enrichment and before
            redaction; one that raises is reported and skipped, and the line still goes out.

    Raises:
        ValueError: bad ``log_level``, ``log_format`` or ``log_file`` value.
        OSError: ``log_file`` cannot be opened for writing.

    Example:
        >>> configure_logging(log_level="INFO", log_format="json", stream=sys.stdout)
        >>> get_logger("demo").info("task_started", task_id="abc123")  # doctest: +SKIP
        {"task_id": "abc123", "event": "task_started", "level": "info", ...}
    """
    level_name, level_no = _validate_level(log_level)
    fmt = log_format.strip().lower() if isinstance(log_format, str) else log_format
    if fmt not in LOG_FORMATS:
        raise ValueError(
            f"log_format {log_format!r} is not supported; use one of {', '.join(LOG_FORMATS)}"
        )
    for proc in processors:
        if not callable(proc):
            raise ValueError(f"processors must be callables, got {proc!r}")
    if version is None:
        from . import __version__  # here, not at the top: the package imports this module

        version = __version__

    handler: _stdlib_logging.Handler
    if log_file is not None:
        handler = _open_file_handler(log_file)
    elif stream is not None:
        handler = _stdlib_logging.StreamHandler(stream)
    else:
        handler = _StdoutHandler()

    static = _StaticFields(str(app), str(version))
    user = [_Guarded(p) for p in processors]
    # Shared tail: the same enrichment for structlog lines and for stdlib records.
    tail = _enrichment_tail(static, user)
    structlog_chain: list[Processor] = [
        structlog.stdlib.filter_by_level,  # skip all work for lines below the level
        structlog.contextvars.merge_contextvars,
        sample_event,
        structlog.stdlib.PositionalArgumentsFormatter(),
        *tail,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    foreign_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.ExtraAdder(),
        *tail,
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(default=_json_default)
    else:
        colors = stream is None and log_file is None and _isatty(sys.stdout)
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler.setFormatter(formatter)
    handler.addFilter(_SamplingFilter())
    handler.tinyllm_instrument_handler = True  # type: ignore[attr-defined]

    with _config_lock:
        root = _stdlib_logging.getLogger()
        old = _state.handler
        if old is not None:
            root.removeHandler(old)
            _close_quietly(old)
        else:
            _state.previous_root_level = root.level
        root.addHandler(handler)
        root.setLevel(level_no)
        structlog.configure(
            processors=structlog_chain,
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            context_class=dict,
            # Loggers made earlier must see a reconfiguration, so nothing is cached.
            cache_logger_on_first_use=False,
        )
        _state.handler = handler
        _state.static = static
        _state.format = fmt
        _state.level = level_name
        _state.file = None if log_file is None else os.path.abspath(os.fspath(log_file))
        _state.processor_names = [_processor_name(p) for p in structlog_chain[:-1]] + [
            _processor_name(renderer)
        ]


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _close_quietly(handler: _stdlib_logging.Handler) -> None:
    try:
        handler.close()
    except Exception:  # pragma: no cover
        pass


def enrichment_processors() -> list[Processor]:
    """The kit's per-line enrichment and redaction, without level filter, sampling or renderer.

    For ``structlog.testing.capture_logs(processors=...)``: captured event dicts then look like
    the lines `configure_logging` writes (bound context, level, logger, app, version, trace ids,
    timestamp, ``exception`` text), secrets redacted. Works whether or not logging is configured.

    Returns:
        A new list of processors; the last one is the redaction.
    """
    static = _state.static
    if static is None:
        from . import __version__  # here, not at the top: the package imports this module

        static = _StaticFields("tinyllm", __version__)
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.PositionalArgumentsFormatter(),
        *_enrichment_tail(static, ()),
    ]


def _enrichment_tail(static: _StaticFields, user: Sequence[Processor]) -> list[Processor]:
    """What every line gets, structlog's or stdlib's: level, logger, app/version, trace and graph
    context, timestamp, stack and exception text, the user's processors, then redaction last."""
    return [
        structlog.stdlib.add_log_level,
        add_logger_name,
        static,
        add_trace_context,
        add_graph_context,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        *user,
        redact_event,
    ]


def is_logging_configured() -> bool:
    """Whether `configure_logging` is in effect."""
    return _state.handler is not None


def reset_logging() -> None:
    """Undo `configure_logging`: remove the kit's handler, restore the root level, reset structlog.

    Bound context is cleared too. Meant for tests.
    """
    global _state
    with _config_lock:
        handler = _state.handler
        if handler is not None:
            root = _stdlib_logging.getLogger()
            root.removeHandler(handler)
            _close_quietly(handler)
            if _state.previous_root_level is not None:
                root.setLevel(_state.previous_root_level)
            structlog.reset_defaults()
        _state = _State()
    structlog.contextvars.clear_contextvars()


def get_logging_info() -> dict[str, Any]:
    """What is configured, for ``debug inspect``.

    Returns:
        ``{"configured", "format", "level", "file", "processors": [names], "sampling"}``;
        ``sampling`` is None or the settings plus the seen/kept/dropped counts.
    """
    sampler = _sampler
    return {
        "configured": _state.handler is not None,
        "format": _state.format,
        "level": _state.level,
        "file": _state.file,
        "processors": list(_state.processor_names),
        "sampling": None if sampler is None else {**sampler.describe(), **sampler.stats()},
    }


# --------------------------------------------------------------------------------------------
# Loggers and context
# --------------------------------------------------------------------------------------------


def get_logger(name: str | None = None, **initial_context: Any) -> Any:
    """A structlog logger whose lines carry ``initial_context`` on every call.

    It follows the current configuration, including one made after it was created.

    Args:
        name: the ``logger`` field; default the calling module's ``__name__``.
        initial_context: fields on every line, e.g. ``component="executor"``.

    Returns:
        A bound structlog logger (``info``, ``warning``, ``error``, ``exception``, ``bind``...).

    Example:
        >>> logger = get_logger(__name__, component="executor")
        >>> logger.info("task_started", task_id="abc123")  # doctest: +SKIP
    """
    if name is None:
        try:
            name = sys._getframe(1).f_globals.get("__name__", "tinyllm")
        except Exception:  # pragma: no cover - no frames on some interpreters
            name = "tinyllm"
    return structlog.get_logger(name, **initial_context)


def bind_context(**kv: Any) -> Mapping[str, Any]:
    """Add fields to every line logged from this context (thread or asyncio task) on.

    Returns:
        Tokens for ``structlog.contextvars.reset_contextvars`` (exact restoration).

    Example:
        >>> _ = bind_context(request_id="req-123", user_id="user-456")
        >>> unbind_context("request_id", "user_id")
    """
    return structlog.contextvars.bind_contextvars(**kv)


def unbind_context(*keys: str) -> None:
    """Stop adding these fields; unknown keys are ignored."""
    structlog.contextvars.unbind_contextvars(*keys)


def clear_context() -> None:
    """Remove every bound field of this context."""
    structlog.contextvars.clear_contextvars()


@contextlib.contextmanager
def bound_context(**kv: Any) -> Iterator[None]:
    """Bind fields for a ``with`` block; on exit the previous values are back exactly.

    Example:
        >>> with bound_context(request_id="req-1"):
        ...     pass
    """
    tokens = structlog.contextvars.bind_contextvars(**kv)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


# --------------------------------------------------------------------------------------------
# Request logging
# --------------------------------------------------------------------------------------------

#: Bodies longer than this (characters, after JSON encoding for dicts/lists) are truncated.
DEFAULT_MAX_BODY_CHARS = 2048


class RequestLogger:
    """Logs HTTP requests and responses with headers and bodies redacted and long bodies cut.

    Args:
        logger_name: the ``logger`` field of its lines.
        max_body_chars: keep at most this many characters of a body, then
            ``...[truncated N chars]``.

    Example:
        >>> req_logger = get_request_logger()
        >>> req_logger.log_request("req-123", "POST", "/api/generate",
        ...     headers={"Authorization": "Bearer sk-abc123"}, body={"prompt": "Hello"})
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        logger_name: str = "tinyllm_instrument.requests",
        max_body_chars: int = DEFAULT_MAX_BODY_CHARS,
    ) -> None:
        if (
            isinstance(max_body_chars, bool)
            or not isinstance(max_body_chars, int)
            or max_body_chars < 0
        ):
            raise ValueError(f"max_body_chars must be an int >= 0, got {max_body_chars!r}")
        self.max_body_chars = max_body_chars
        self._logger = get_logger(logger_name)

    def log_request(
        self,
        request_id: str,
        method: str,
        path: str,
        headers: Any = None,
        body: Any = None,
    ) -> None:
        """Log ``http_request`` with the request's method, path, headers and body."""
        fields: dict[str, Any] = {"request_id": request_id, "method": method, "path": path}
        self._add_payload(fields, headers, body)
        self._logger.info("http_request", **fields)

    def log_response(
        self,
        request_id: str,
        status_code: int,
        headers: Any = None,
        body: Any = None,
        duration_ms: float | None = None,
    ) -> None:
        """Log ``http_response``: INFO below 400, WARNING for 4xx, ERROR for 5xx."""
        fields: dict[str, Any] = {"request_id": request_id, "status_code": status_code}
        if duration_ms is not None:
            fields["duration_ms"] = duration_ms
        self._add_payload(fields, headers, body)
        level = "info"
        if isinstance(status_code, int) and not isinstance(status_code, bool):
            level = "error" if status_code >= 500 else "warning" if status_code >= 400 else "info"
        getattr(self._logger, level)("http_response", **fields)

    def _add_payload(self, fields: dict[str, Any], headers: Any, body: Any) -> None:
        policy = _redaction.get_redaction_policy()
        if headers is not None:
            fields["headers"] = _redact_headers(policy, headers)
        if body is not None:  # 0, "" and {} are bodies too
            fields["body"] = self._body(policy, body)

    def _body(self, policy: _redaction.RedactionPolicy, body: Any) -> Any:
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body).decode("utf-8", "replace")
        red = policy.redact(body, scan_objects=True)
        if isinstance(red, str):
            text = red
        elif isinstance(red, (dict, list, tuple)):
            try:
                text = json.dumps(red, default=_json_default, ensure_ascii=False)
            except Exception:
                text = _json_default(red)
            if len(text) <= self.max_body_chars:
                return red
        else:
            return red
        if len(text) > self.max_body_chars:
            cut = len(text) - self.max_body_chars
            return f"{text[: self.max_body_chars]}...[truncated {cut} chars]"
        return text


def _redact_headers(policy: _redaction.RedactionPolicy, headers: Any) -> Any:
    if isinstance(headers, Mapping):
        return policy.redact(headers, scan_objects=True)
    try:  # a list of (name, value) pairs, as ASGI and http.client give them
        pairs = []
        for name, value in headers:
            if isinstance(name, bytes):
                name = name.decode("latin-1")
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            pairs.append(
                [
                    name,
                    _redaction.REDACTED
                    if policy.is_sensitive_key(name)
                    else policy.redact(value, scan_objects=True),
                ]
            )
        return pairs
    except Exception:
        return policy.redact(headers, scan_objects=True)


def get_request_logger(
    logger_name: str = "tinyllm_instrument.requests", max_body_chars: int = DEFAULT_MAX_BODY_CHARS
) -> RequestLogger:
    """A `RequestLogger`; headers and bodies are redacted even before `configure_logging`.

    Raises:
        ValueError: ``max_body_chars`` is negative or not an int.
    """
    return RequestLogger(logger_name, max_body_chars)
