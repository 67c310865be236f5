"""get_logger's logger: structlog's bound-logger API on the kit's own, reconfigurable line path."""

from __future__ import annotations

import contextlib
import logging as _stdlib_logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import structlog
from structlog.typing import Processor

from .._errors import Stage, report_internal_error
from ._processors import LEVEL_NUMBERS, format_args
from ._sink import Sink, count_dropped

__all__ = [
    "KitLogger",
    "Pipeline",
    "bind_context",
    "bound_context",
    "clear_context",
    "current_pipeline",
    "get_logger",
    "set_pipeline",
    "unbind_context",
]

# structlog's live configuration. Reading one attribute per call is what lets a logger made
# before configure_logging (or inside structlog.testing.capture_logs) follow the configuration
# of the moment without structlog's lazy proxy, which rebuilds a bound logger on every call.
_STRUCTLOG_CONFIG: Any = getattr(getattr(structlog, "_config", None), "_CONFIG", None)


class Pipeline:
    """What `configure_logging` decided, swapped whole on every reconfiguration.

    ``processors`` is the very list structlog was configured with; while structlog still holds
    it, lines of kit loggers take the short path (no stdlib record, no proxy). ``foreign`` is
    the chain for standard-library records after their event dict is built.
    """

    __slots__ = ("processors", "foreign", "sink")

    def __init__(self, processors: list[Processor], sink: Sink) -> None:
        self.processors = processors
        self.foreign = processors[1:]  # records merge bound context themselves
        self.sink = sink

    def current(self) -> bool:
        config = _STRUCTLOG_CONFIG
        if config is None:  # pragma: no cover - a structlog without the private attribute
            return structlog.get_config()["processors"] is self.processors
        return config.default_processors is self.processors

    def run(self, logger: Any, method_name: str, event_dict: Any, chain: list[Processor]) -> None:
        """Run ``chain`` on ``event_dict`` and write the line; never raises."""
        try:
            for proc in chain:
                event_dict = proc(logger, method_name, event_dict)
        except structlog.DropEvent:
            return
        except Exception as exc:  # a kit bug must cost the line, never the caller
            count_dropped("render_error")
            report_internal_error(Stage.LOG_PROCESSOR, exc)
            return
        if not self.sink.write(event_dict):
            # Reconfigured while this line was on its way: the new sink takes it.
            current = _pipeline
            if current is not None and current is not self and current.sink.write(event_dict):
                return
            count_dropped("closed")


_pipeline: Pipeline | None = None


def set_pipeline(pipeline: Pipeline | None) -> None:
    """Make ``pipeline`` the one every kit logger uses from now on (None: structlog's own)."""
    global _pipeline
    _pipeline = pipeline


def current_pipeline() -> Pipeline | None:
    return _pipeline


def _method(name: str, level_no: int, exc_info: bool = False) -> Any:
    def method(self: KitLogger, event: Any = None, *args: Any, **kw: Any) -> None:
        if exc_info:
            kw.setdefault("exc_info", True)
        pipeline = _pipeline
        if pipeline is None or not pipeline.current():
            return self._via_structlog(name, event, args, kw)
        if not self._stdlib.isEnabledFor(level_no):
            return None
        context = self._context
        event_dict = context.copy() if context else {}
        if kw:
            event_dict.update(kw)
        if event is not None:
            # Formatted here, as structlog's own loggers do, so no field name is taken.
            event_dict["event"] = format_args(event, args) if args else event
        pipeline.run(self, name, event_dict, pipeline.processors)
        return None

    async def amethod(self: KitLogger, event: Any = None, *args: Any, **kw: Any) -> None:
        method(self, event, *args, **kw)

    method.__name__ = name
    amethod.__name__ = "a" + name
    return method, amethod


class KitLogger:
    """A structlog-style bound logger whose lines follow the kit's configuration of the moment.

    Methods ``debug``, ``info``, ``warning`` (``warn``), ``error``, ``exception``, ``critical``
    (``fatal``), ``msg`` and ``log(level, ...)``, their ``a``-prefixed async forms, and
    ``bind`` / ``unbind`` / ``try_unbind`` / ``new``, as structlog's bound loggers have them.
    The level filter is the standard library's for the logger's name (so
    ``logging.getLogger(name).setLevel(...)`` and ``logging.disable`` apply). Before
    `configure_logging`, or while structlog is configured otherwise (``capture_logs``), lines go
    through structlog's configuration instead.
    """

    __slots__ = ("_name", "_context", "_stdlib")

    def __init__(
        self, name: str, context: dict[str, Any], stdlib: _stdlib_logging.Logger | None = None
    ) -> None:
        self._name = name
        self._context = context
        self._stdlib = _stdlib_logging.getLogger(name) if stdlib is None else stdlib

    @property
    def name(self) -> str:
        """The ``logger`` field of its lines."""
        return self._name

    def __repr__(self) -> str:
        return f"<KitLogger {self._name!r} context={self._context!r}>"

    # -- context -----------------------------------------------------------------------------

    def bind(self, **new_values: Any) -> KitLogger:
        """A logger with these fields added to every line."""
        return KitLogger(self._name, {**self._context, **new_values}, self._stdlib)

    def new(self, **new_values: Any) -> KitLogger:
        """A logger with only these fields."""
        return KitLogger(self._name, dict(new_values), self._stdlib)

    def unbind(self, *keys: str) -> KitLogger:
        """A logger without these fields.

        Raises:
            KeyError: a key is not bound.
        """
        context = dict(self._context)
        for key in keys:
            del context[key]
        return KitLogger(self._name, context, self._stdlib)

    def try_unbind(self, *keys: str) -> KitLogger:
        """A logger without these fields; unknown keys are ignored."""
        context = {k: v for k, v in self._context.items() if k not in keys}
        return KitLogger(self._name, context, self._stdlib)

    # -- levels ------------------------------------------------------------------------------

    def is_enabled_for(self, level: int) -> bool:
        """Whether a line at ``level`` would be written now."""
        if _pipeline is None:
            return True
        return self._stdlib.isEnabledFor(level)

    isEnabledFor = is_enabled_for  # noqa: N815 - the standard library's spelling

    def get_effective_level(self) -> int:
        """The level below which lines are skipped."""
        return self._stdlib.getEffectiveLevel()

    debug, adebug = _method("debug", 10)
    info, ainfo = _method("info", 20)
    msg, amsg = _method("info", 20)
    warning, awarning = _method("warning", 30)
    warn, awarn = _method("warning", 30)
    error, aerror = _method("error", 40)
    exception, aexception = _method("error", 40, exc_info=True)
    critical, acritical = _method("critical", 50)
    fatal, afatal = _method("critical", 50)

    def log(self, level: int, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at a level number (``logging.INFO``...)."""
        name = _stdlib_logging.getLevelName(level)
        method = getattr(self, str(name).lower(), None) if isinstance(name, str) else None
        if method is None or str(name).lower() not in LEVEL_NUMBERS:
            method = self.info
        method(event, *args, **kw)

    async def alog(self, level: int, event: Any = None, *args: Any, **kw: Any) -> None:
        self.log(level, event, *args, **kw)

    def _via_structlog(self, method: str, event: Any, args: tuple, kw: dict[str, Any]) -> Any:
        logger = structlog.get_logger(self._name)
        if self._context:
            logger = logger.bind(**self._context)
        return getattr(logger, method)(event, *args, **kw)


def get_logger(name: str | None = None, **initial_context: Any) -> Any:
    """A structlog-style logger whose lines carry ``initial_context`` on every call.

    It follows the current configuration, including one made after it was created.

    Args:
        name: the ``logger`` field; default the calling module's ``__name__``.
        initial_context: fields on every line, e.g. ``component="executor"``.

    Returns:
        A bound logger (``info``, ``warning``, ``error``, ``exception``, ``bind``...).

    Example:
        >>> logger = get_logger(__name__, component="executor")
        >>> logger.info("task_started", task_id="abc123")  # doctest: +SKIP
    """
    if name is None:
        try:
            name = sys._getframe(1).f_globals.get("__name__", "tinyllm")
        except Exception:  # pragma: no cover - no frames on some interpreters
            name = "tinyllm"
    return KitLogger(str(name), dict(initial_context))


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
