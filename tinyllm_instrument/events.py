"""Events: structured occurrences with a category and a severity, dispatched to handlers."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import traceback
from collections import deque
from collections.abc import Iterable, Mapping, MutableSequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Protocol, TypeVar

from ._config import STATE as _STATE
from ._errors import Stage, report_internal_error
from .genai.sessions import check_id, log_fields
from .logging import get_logger, is_logging_configured
from .metrics import MetricsCollector, get_metrics_collector
from .redaction import get_redaction_policy, safe_str
from .telemetry import get_current_span_id, get_current_trace_id

__all__ = sorted(
    [
        "BufferedEventHandler",
        "Event",
        "EventCategory",
        "EventEmitter",
        "EventHandler",
        "EventSeverity",
        "LOGGER_NAME",
        "LogEventHandler",
        "MetricEventHandler",
        "emit_error_event",
        "emit_event",
        "get_event_emitter",
        "reset_event_emitter",
        "set_event_emitter",
    ]
)

#: Name of the logger LogEventHandler writes to by default.
LOGGER_NAME = "tinyllm_instrument.events"
_STDLIB_EVENTS_LOGGER = logging.getLogger(LOGGER_NAME)


# --------------------------------------------------------------------------- categories, severities


_E = TypeVar("_E", bound="_WordEnum")


class _WordEnum(str, Enum):
    """A str Enum whose value is a lowercase word; accepts the word in any case."""

    def __str__(self) -> str:
        # The plain word, never "EventSeverity.INFO": it ends up in metric labels and CLI output.
        return str(self.value)

    def __format__(self, format_spec: str) -> str:
        return format(str(self.value), format_spec)

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            for member in cls:
                if member.value == word:
                    return member
        return None

    @classmethod
    def coerce(cls: type[_E], value: Any) -> _E:
        """Return the member for ``value``: a member, or its word in any case ("info", "INFO").

        Raises:
            ValueError: ``value`` names no member; the message lists the allowed words.
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except (ValueError, TypeError):
            allowed = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown {cls.__name__} {value!r}; use one of: {allowed}") from None


class EventCategory(_WordEnum):
    """What an event is about. The values are the words used in metric labels and the CLI.

    Example:
        >>> EventCategory("EXECUTION") is EventCategory.EXECUTION
        True
        >>> str(EventCategory.CACHE)
        'cache'
    """

    SYSTEM = "system"
    EXECUTION = "execution"
    MODEL = "model"
    CACHE = "cache"
    SECURITY = "security"
    PERFORMANCE = "performance"
    USER = "user"
    INTEGRATION = "integration"
    DATA = "data"


class EventSeverity(_WordEnum):
    """How much an event matters, ordered DEBUG < INFO < WARNING < ERROR < CRITICAL.

    ``.level`` is the matching stdlib ``logging`` level (10 to 50). Comparisons go by level, and a
    plain word is accepted on the other side (``EventSeverity.ERROR >= "warning"``).

    Example:
        >>> EventSeverity.WARNING > EventSeverity.INFO, EventSeverity.WARNING.level
        (True, 30)
    """

    level: int  # type: ignore[misc]  # set per member in __new__, not a member itself

    DEBUG = ("debug", 10)
    INFO = ("info", 20)
    WARNING = ("warning", 30)
    ERROR = ("error", 40)
    CRITICAL = ("critical", 50)

    def __new__(cls, word: str, level: int) -> EventSeverity:
        member = str.__new__(cls, word)
        member._value_ = word
        # A plain attribute, not a property: it is read on every dispatch.
        member.level = level  # type: ignore[misc]
        return member

    def _other_level(self, other: object) -> int | None:
        if isinstance(other, EventSeverity):
            return other.level
        if isinstance(other, str):
            return EventSeverity.coerce(other).level
        return None

    def __lt__(self, other: object) -> bool:
        level = self._other_level(other)
        return NotImplemented if level is None else self.level < level

    def __le__(self, other: object) -> bool:
        level = self._other_level(other)
        return NotImplemented if level is None else self.level <= level

    def __gt__(self, other: object) -> bool:
        level = self._other_level(other)
        return NotImplemented if level is None else self.level > level

    def __ge__(self, other: object) -> bool:
        level = self._other_level(other)
        return NotImplemented if level is None else self.level >= level

    # Enum's hash is by name; defining ordering must not lose it.
    __hash__ = _WordEnum.__hash__


# Above CRITICAL: the minimum level of an emitter with no handler, so nothing passes.
_NEVER = 1_000


# --------------------------------------------------------------------------- the event


_V4_KEEP = ~(0xF000 << 64) & ~(0xC000 << 48)
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def _new_event_id() -> str:
    # A valid uuid4 hex, built from os.urandom directly: uuid.uuid4().hex costs ~2.5 us, this ~0.9.
    return "%032x" % ((int.from_bytes(os.urandom(16), "big") & _V4_KEEP) | _V4_SET)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):  # fromisoformat accepts "Z" only from Python 3.11
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"timestamp {value!r} is not ISO 8601; use e.g. '2025-01-31T12:00:00+00:00'"
            ) from None
    if not isinstance(value, datetime):
        raise TypeError(f"timestamp must be a datetime or an ISO 8601 string, not {value!r}")
    if value.tzinfo is None:  # naive: taken as UTC, the only zone the kit writes
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _iso_utc(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


_JSON_DEPTH = 32


def _json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-serialisable copy: containers recursed, enums as values, anything else as str."""
    if isinstance(value, Enum):  # before str/int: a str or int Enum is written as its value
        return _json_safe(value.value, depth)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if depth >= _JSON_DEPTH:  # also stops self-referencing containers
        return "<max depth>"
    if isinstance(value, Mapping):
        return {safe_str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, deque)):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, datetime):
        return _iso_utc(_as_utc(value))
    if isinstance(value, date):
        return value.isoformat()
    return safe_str(value)


@dataclass(slots=True)
class Event:
    """One structured event.

    ``category`` and ``severity`` accept the enum members or their words ("execution", "INFO").
    ``timestamp`` accepts a datetime (naive is taken as UTC) or an ISO 8601 string and is stored
    as an aware UTC datetime. ``event_id`` is a uuid4 in hex. ``session_id`` / ``user_id`` are
    those of the ``using_attributes`` scope the event was emitted in (``emit_event`` fills them).

    Raises:
        ValueError: an unknown category or severity, or a timestamp string that is not ISO 8601.

    Example:
        >>> e = Event("cache.miss", "cache", "info", "Cache miss", data={"key": "k1"})
        >>> e.to_dict()["severity"], e.category is EventCategory.CACHE
        ('info', True)
    """

    event_type: str
    category: EventCategory
    severity: EventSeverity
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    event_id: str = field(default_factory=_new_event_id)
    timestamp: datetime = field(default_factory=_utc_now)
    trace_id: str | None = None
    span_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    stack_trace: str | None = None
    session_id: str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        if type(self.category) is not EventCategory:
            self.category = EventCategory.coerce(self.category)
        if type(self.severity) is not EventSeverity:
            self.severity = EventSeverity.coerce(self.severity)
        ts = self.timestamp
        if type(ts) is not datetime or ts.tzinfo is not timezone.utc:
            self.timestamp = _as_utc(ts)
        if self.data is None:
            self.data = {}
        if self.tags is None:
            self.tags = []

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of every field.

        Enums become their words, the timestamp an ISO 8601 UTC string ("...Z"), and values in
        ``data`` that JSON cannot hold become strings.

        Returns:
            A new dict; ``json.dumps`` accepts it.
        """
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "category": self.category.value,
            "severity": self.severity.value,
            "message": self.message,
            "timestamp": _iso_utc(self.timestamp),
            "data": _json_safe(self.data),
            "tags": _json_safe(self.tags),
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "stack_trace": self.stack_trace,
            "session_id": self.session_id,
            "user_id": self.user_id,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Event:
        """Rebuild an Event from ``to_dict()`` output (unknown keys are ignored).

        Raises:
            TypeError: event_type, category, severity or message is missing.
            ValueError: as for the constructor.
        """
        known = {k: values[k] for k in _EVENT_FIELDS if k in values}
        return cls(**known)


_EVENT_FIELDS = tuple(f.name for f in fields(Event))


# --------------------------------------------------------------------------- handlers


# Anything that can change which handler gets which event (an edit of any emitter's handler list,
# a new min_severity on any handler) stores a new number here. An emitter keeps a dispatch plan
# and the number it was made for, so wants() knows with one comparison that the plan holds; a
# handler does not know which emitters hold it, hence one number for the whole process.
# itertools.count: each change gets a number never stored before, with no lock for a signal
# handler to deadlock on; a change made while an emitter plans leaves it a number to catch up on.
_settings_version = 0
_versions = itertools.count(1)


def _settings_changed() -> None:
    global _settings_version
    _settings_version = next(_versions)


class EventHandler:
    """Base class of event handlers: subclass it and implement ``handle(event)``.

    ``min_severity`` (default DEBUG) is the lowest severity the handler is given. Set it in the
    class body, in ``__init__`` or later on the handler; a word ("warning") is accepted, and
    emitters notice a change at once. ``handle`` runs synchronously in the emitting thread; an
    exception it raises is caught by the emitter, counted and logged once, and never reaches the
    code that emitted.

    Example:
        >>> class PrintHandler(EventHandler):
        ...     min_severity = EventSeverity.WARNING
        ...     def handle(self, event: Event) -> None:
        ...         print(event.event_type)
    """

    min_severity: EventSeverity = EventSeverity.DEBUG

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # `min_severity = "warning"` in a subclass body: a member from now on, and a bad word
        # fails here, where the class is defined, not at the first event.
        if "min_severity" in cls.__dict__:
            cls.min_severity = EventSeverity.coerce(cls.__dict__["min_severity"])

    def __init__(self, min_severity: EventSeverity | str | None = None) -> None:
        if min_severity is not None:
            self.min_severity = min_severity  # type: ignore[assignment]  # coerced below

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "min_severity":  # a member, whatever was given, and emitters re-plan
            super().__setattr__(name, EventSeverity.coerce(value))
            _settings_changed()
        else:
            super().__setattr__(name, value)

    def handle(self, event: Event) -> None:
        """Process one event.

        Raises:
            NotImplementedError: always, in the base class.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement handle(event)")


class _Logger(Protocol):
    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...
    def critical(self, event: str, **kw: Any) -> Any: ...


_LOG_METHOD = {
    EventSeverity.DEBUG: "debug",
    EventSeverity.INFO: "info",
    EventSeverity.WARNING: "warning",
    EventSeverity.ERROR: "error",
    EventSeverity.CRITICAL: "critical",
}


class LogEventHandler(EventHandler):
    """Write each event as one log line at the event's severity.

    The line's ``event`` is the event type; it also carries ``event_type``, ``event_id``,
    ``category``, ``message``, ``data``, ``tags``, ``trace_id`` / ``span_id``, ``session_id`` /
    ``user_id`` when the event has them and, for errors, ``error_type``, ``error_message`` and
    ``stack_trace``. The logging pipeline writes the ids of
    the span current when the line is logged; an event carrying another trace's ids (see the
    guide's "Correlate Across Systems") adds them as ``event_trace_id`` / ``event_span_id``.

    ``min_severity`` defaults to INFO, not DEBUG: a handler that takes DEBUG makes every emitter
    it sits in build the per-call DEBUG events of ``@observe``, and a log line per call of a hot
    node is what the kit promises not to write. To see DEBUG events in the log, ask for them:
    ``LogEventHandler(min_severity="debug")`` (and configure the log level to DEBUG as well).

    Args:
        logger: a structlog-style logger (methods debug ... critical); None for the kit's
            ``get_logger("tinyllm_instrument.events")``, looked up at the first event.
        min_severity: the lowest severity written; None for the class's (INFO).

    Example:
        >>> handler = LogEventHandler(min_severity="warning")
        >>> get_event_emitter().add_handler(handler)  # doctest: +SKIP
    """

    min_severity = EventSeverity.INFO

    def __init__(
        self,
        logger: _Logger | None = None,
        *,
        min_severity: EventSeverity | str | None = None,
    ) -> None:
        super().__init__(min_severity)
        self._logger = logger

    def _resolve_logger(self) -> _Logger:
        logger = self._logger
        if logger is None:
            # Loggers from get_logger follow later configure_logging() calls, so caching is safe.
            logger = self._logger = get_logger(LOGGER_NAME)
        return logger

    def handle(self, event: Event) -> None:
        """Log ``event`` at its severity."""
        fields: dict[str, Any] = {
            "event_type": event.event_type,
            "event_id": event.event_id,
            "category": event.category.value,
            "message": event.message,
            "data": event.data,
            "tags": event.tags,
        }
        # Ids only when known, so the logging processor's own current-span ids are not blanked.
        # That processor writes the ids of the span current when the line is logged; an event
        # correlated with another trace keeps its own ids as event_trace_id / event_span_id.
        if event.trace_id is not None:
            fields["trace_id"] = event.trace_id
            current = get_current_trace_id()
            if current is not None and current != event.trace_id:
                fields["event_trace_id"] = event.trace_id
                fields["event_span_id"] = event.span_id
        if event.span_id is not None:
            fields["span_id"] = event.span_id
        # The event's own, which the logging chain's ids of the current scope do not overwrite.
        if event.session_id is not None:
            fields["session_id"] = event.session_id
        if event.user_id is not None:
            fields["user_id"] = event.user_id
        if event.error_type is not None:
            fields["error_type"] = event.error_type
            fields["error_message"] = event.error_message
            fields["stack_trace"] = event.stack_trace
        if self._logger is None and not is_logging_configured():
            # Nobody configured logging: structlog's default would print to the program's stdout,
            # which may be its data. Go through stdlib logging like any library: WARNING and up
            # reach stderr through logging.lastResort unless the app set up handlers of its own.
            _STDLIB_EVENTS_LOGGER.log(
                event.severity.level,
                "%s: %s",
                event.event_type,
                event.message,
                extra={"tinyllm_event": fields},
            )
            return
        getattr(self._resolve_logger(), _LOG_METHOD[event.severity])(event.event_type, **fields)


class MetricEventHandler(EventHandler):
    """Count events in ``tinyllm_events_total{category,severity}``.

    It creates no metric of its own (the collector owns the family), so any number of instances
    can exist. Without ``collector`` it counts in whatever ``get_metrics_collector()`` returns at
    the time of the event, so a collector swapped in later is used.

    ``min_severity`` defaults to INFO, for the reason given in LogEventHandler: counting DEBUG
    events would make ``@observe`` build two events per call. ``min_severity="debug"`` counts them.

    Args:
        collector: a MetricsCollector; None for the process-wide one.
        min_severity: the lowest severity counted; None for the class's (INFO).

    Example:
        >>> get_event_emitter().add_handler(MetricEventHandler(my_collector))  # doctest: +SKIP
    """

    min_severity = EventSeverity.INFO

    def __init__(
        self,
        collector: MetricsCollector | None = None,
        *,
        min_severity: EventSeverity | str | None = None,
    ) -> None:
        super().__init__(min_severity)
        self._collector = collector

    def handle(self, event: Event) -> None:
        """Increment the counter for the event's category and severity."""
        collector = self._collector
        if collector is None:
            collector = get_metrics_collector()
        collector.events_total.labels(event.category.value, event.severity.value).inc()


class BufferedEventHandler(EventHandler):
    """Keep the last ``max_size`` events in memory (a thread-safe ring buffer), for tests and tools.

    Args:
        max_size: how many events to keep; the oldest go first.
        min_severity: the lowest severity kept; None for the class's (DEBUG: everything).

    Raises:
        ValueError: ``max_size`` is less than 1.
        TypeError: ``max_size`` is not an int.

    Example:
        >>> buffer = BufferedEventHandler(max_size=100)
        >>> emitter = EventEmitter([buffer])
        >>> emitter.emit(Event("a.b", "system", "info", "hello"))
        >>> [e.message for e in buffer.get_events(severity="info")]
        ['hello']
    """

    def __init__(
        self,
        max_size: int = 1000,
        *,
        min_severity: EventSeverity | str | None = None,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError(f"max_size must be an int, not {max_size!r}")
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        super().__init__(min_severity)
        self.max_size = max_size
        self._events: deque[Event] = deque(maxlen=max_size)
        # Re-entrant: an event emitted by a signal handler may arrive while this thread holds it.
        self._lock = threading.RLock()

    def handle(self, event: Event) -> None:
        """Store ``event``, dropping the oldest when full."""
        with self._lock:
            self._events.append(event)

    def get_events(
        self,
        event_type: str | None = None,
        category: EventCategory | str | None = None,
        severity: EventSeverity | str | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Return the stored events that match every given filter, oldest first.

        Args:
            event_type: exact event type.
            category: exact category (member or word).
            severity: exact severity (member or word); not "at least".
            limit: keep only the last ``limit`` matches (the most recent); None for all.

        Returns:
            A new list; later events do not change it.

        Raises:
            ValueError: an unknown category or severity, or a negative ``limit``.
        """
        cat = None if category is None else EventCategory.coerce(category)
        sev = None if severity is None else EventSeverity.coerce(severity)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        with self._lock:
            snapshot = list(self._events)
        matches = [
            e
            for e in snapshot
            if (event_type is None or e.event_type == event_type)
            and (cat is None or e.category is cat)
            and (sev is None or e.severity is sev)
        ]
        if limit is not None:
            matches = matches[len(matches) - limit :] if limit else []
        return matches

    def clear(self) -> None:
        """Drop every stored event."""
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        return len(self._events)


# --------------------------------------------------------------------------- the emitter


class _HandlerList(MutableSequence[Any]):
    """An emitter's handlers in dispatch order: a list whose every edit makes emitters re-plan.

    MutableSequence builds append, extend, pop, remove, clear, reverse and ``+=`` out of the
    three edits below, so each way of changing the list goes through ``_settings_changed``.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        return self._items[index]  # a slice gives a plain list

    def __setitem__(self, index: Any, value: Any) -> None:
        self._items[index] = value
        _settings_changed()

    def __delitem__(self, index: Any) -> None:
        del self._items[index]
        _settings_changed()

    def insert(self, index: int, value: Any) -> None:
        self._items.insert(index, value)
        _settings_changed()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _HandlerList):
            other = other._items
        return self._items == other if isinstance(other, list) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __repr__(self) -> str:
        return repr(self._items)


def _handler_level(handler: Any) -> int:
    return EventSeverity.coerce(getattr(handler, "min_severity", EventSeverity.DEBUG)).level


class EventEmitter:
    """Dispatch events synchronously to a list of handlers.

    Each handler gets the events at or above its ``min_severity``, in list order. An exception
    raised by a handler is caught, counted in ``tinyllm_instrumentation_errors_total{stage=
    "event_handler"}`` and logged once per exception type; the other handlers still run and the
    emitting code never sees it. Nothing is dispatched while the emitter is disabled or the kit is
    switched off (``tinyllm_instrument.configure(enabled=False)``).

    ``.handlers`` behaves as a list and may be edited directly (append, insert, ``del``,
    assignment...); ``wants()`` sees such edits at once.

    Args:
        handlers: the initial handlers.
        enabled: whether to start enabled.

    Example:
        >>> buffer = BufferedEventHandler()
        >>> emitter = EventEmitter([buffer])
        >>> emitter.wants(EventSeverity.DEBUG)
        True
    """

    def __init__(self, handlers: Iterable[Any] = (), *, enabled: bool = True) -> None:
        self._lock = threading.RLock()
        self._handlers = _HandlerList()
        #: Read by the guide's troubleshooting; enable() / disable() set it.
        self._enabled = bool(enabled)
        self._planned_for = -1  # the generation the plan below was made for
        self._plan: tuple[tuple[Any, int], ...] = ()
        self._min_level = _NEVER
        for handler in handlers:
            self.add_handler(handler)

    @property
    def handlers(self) -> MutableSequence[Any]:
        """The handlers, in dispatch order (a mutable sequence; direct edits take effect)."""
        return self._handlers

    @handlers.setter
    def handlers(self, handlers: Iterable[Any]) -> None:
        self._handlers = _HandlerList(handlers)
        _settings_changed()

    @property
    def enabled(self) -> bool:
        """Whether this emitter dispatches events."""
        return self._enabled

    def enable(self) -> None:
        """Start dispatching events."""
        self._enabled = True

    def disable(self) -> None:
        """Stop dispatching events; handlers stay installed."""
        self._enabled = False

    def add_handler(self, handler: Any) -> Any:
        """Append ``handler``; adding one already present does nothing.

        Args:
            handler: an EventHandler, or any object with ``handle(event)`` and optionally
                ``min_severity``.

        Returns:
            ``handler``, so ``buffer = emitter.add_handler(BufferedEventHandler())`` works.

        Raises:
            TypeError: ``handler`` has no callable ``handle``.
            ValueError: its ``min_severity`` is not a severity.
        """
        if not callable(getattr(handler, "handle", None)):
            raise TypeError(f"{handler!r} is not an event handler: it has no handle(event) method")
        _handler_level(handler)  # validate now rather than at dispatch
        with self._lock:
            if not any(h is handler for h in self._handlers):
                self._handlers.append(handler)
        return handler

    def remove_handler(self, handler: Any) -> bool:
        """Remove ``handler`` if present.

        Returns:
            True if it was removed, False if it was not there.
        """
        with self._lock:
            for index, present in enumerate(self._handlers):
                if present is handler:
                    del self._handlers[index]
                    return True
        return False

    def _replan(self) -> None:
        with self._lock:
            # Read the version first: a change made while planning (by another thread, or by a
            # signal handler in this one) stores a newer one, and the next call plans anew.
            version = _settings_version
            plan = []
            for handler in tuple(self._handlers):
                try:
                    level = _handler_level(handler)
                except Exception as exc:  # e.g. a bad min_severity appended directly
                    report_internal_error(Stage.EVENT_HANDLER, exc)
                    level = EventSeverity.DEBUG.level
                plan.append((handler, level))
            self._plan = tuple(plan)
            self._min_level = min((level for _, level in plan), default=_NEVER)
            self._planned_for = version

    def wants(self, severity: EventSeverity | str) -> bool:
        """Whether an event of ``severity`` would reach at least one handler.

        Cheap enough to call before building an event on a hot path: a few attribute reads and
        one comparison, plus a re-plan after the handlers changed.

        Args:
            severity: a member or its word.

        Returns:
            False when disabled, when the kit is off, or when every handler's ``min_severity``
            is above ``severity``.

        Raises:
            ValueError: an unknown severity word.
        """
        if not (self._enabled and _STATE.enabled):
            return False
        if self._planned_for != _settings_version:
            self._replan()
        try:
            level = severity.level  # type: ignore[union-attr]
        except AttributeError:
            level = EventSeverity.coerce(severity).level
        return level >= self._min_level

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every handler whose ``min_severity`` it meets, in order.

        Handler exceptions are isolated (see the class docstring); this never raises for them.
        """
        if not (self._enabled and _STATE.enabled):
            return
        if self._planned_for != _settings_version:
            self._replan()
        level = event.severity.level
        if level < self._min_level:
            return
        for handler, min_level in self._plan:
            if level >= min_level:
                try:
                    handler.handle(event)
                except Exception as exc:
                    report_internal_error(Stage.EVENT_HANDLER, exc)


_emitter: EventEmitter | None = None
# Re-entrant, as the emitter's own lock: a signal handler may emit while this thread creates it.
_emitter_lock = threading.RLock()


def get_event_emitter() -> EventEmitter:
    """Return the process-wide emitter, created on first use with LogEventHandler and
    MetricEventHandler installed.

    Returns:
        The same EventEmitter until ``reset_event_emitter()`` or ``set_event_emitter()``.

    Example:
        >>> [h.__class__.__name__ for h in get_event_emitter().handlers]
        ['LogEventHandler', 'MetricEventHandler']
    """
    global _emitter
    emitter = _emitter
    if emitter is None:
        with _emitter_lock:
            if _emitter is None:
                created = EventEmitter([LogEventHandler(), MetricEventHandler()])
                if _emitter is None:  # not made meanwhile by a signal handler in this thread
                    _emitter = created
            emitter = _emitter
    return emitter


def set_event_emitter(emitter: EventEmitter | None) -> EventEmitter | None:
    """Install ``emitter`` as the process-wide one (None: a default one is made on next use).

    Returns:
        The previous process-wide emitter, or None if none had been created.

    Raises:
        TypeError: ``emitter`` is neither an EventEmitter nor None.
    """
    global _emitter
    if emitter is not None and not isinstance(emitter, EventEmitter):
        raise TypeError(f"expected an EventEmitter or None, got {type(emitter).__name__}")
    with _emitter_lock:
        previous, _emitter = _emitter, emitter
    return previous


def reset_event_emitter() -> None:
    """Forget the process-wide emitter; ``get_event_emitter()`` then makes a fresh one (tests)."""
    set_event_emitter(None)


# --------------------------------------------------------------------------- emitting


# Keys of **extra that set Event fields; every other key goes into data.
_EXTRA_FIELDS = frozenset(
    {"span_id", "event_id", "timestamp", "error_type", "error_message", "stack_trace"}
)


def _redact(value: Any) -> Any:
    # The policy never raises: it fails closed, replacing what it cannot check.
    return get_redaction_policy().redact(value)


def _current_ids() -> tuple[str | None, str | None]:
    return get_current_trace_id(), get_current_span_id()


def _as_hex(value: Any, width: int) -> str:
    # Accept the raw int of span.get_span_context().trace_id as well as its hex.
    if isinstance(value, int) and not isinstance(value, bool):
        return format(value, f"0{width}x")
    return str(value)


def _as_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):  # one tag, not its characters
        return [tags]
    return [safe_str(t) for t in tags]


def emit_event(
    event_type: str,
    category: EventCategory | str,
    severity: EventSeverity | str,
    message: str,
    data: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    trace_id: str | int | None = None,
    **extra: Any,
) -> Event:
    """Build an event and dispatch it to the process-wide emitter's handlers.

    ``trace_id`` and ``span_id`` come from the current recording span unless given; a given
    ``trace_id`` gets the current span's id only when it is that span's trace. ``session_id``
    and ``user_id`` come from the current ``using_attributes`` scope unless given. Message, data
    and error fields pass through the redaction policy first.

    Args:
        event_type: dotted name, e.g. "node.execution.completed".
        category: an EventCategory or its word.
        severity: an EventSeverity or its word.
        message: human-readable text.
        data: structured details (copied, not kept).
        tags: labels for filtering; a single string is one tag.
        trace_id: hex (or the int from a span context) to correlate with another trace.
        **extra: ``span_id``, ``event_id``, ``timestamp``, ``error_type``, ``error_message`` and
            ``stack_trace`` set those fields; any other keyword is added to ``data``, overriding
            a key of the same name there (``emit_event(..., data={"a": 1}, user_id=7)`` gives
            ``data == {"a": 1, "user_id": 7}``). ``session_id`` and ``user_id`` also set those
            fields (as text, redacted and bounded as ``using_attributes`` does), in place of
            the scope's.

    Returns:
        The Event, built and returned even when no handler wants it or the emitter is disabled.

    Raises:
        ValueError: unknown category or severity; the message lists the allowed words.
        TypeError: ``data`` is not a mapping.

    Example:
        >>> emit_event(
        ...     "node.execution.completed", EventCategory.EXECUTION, EventSeverity.INFO,
        ...     "Node execution completed successfully", data={"node_id": "entry"},
        ... )  # doctest: +SKIP
    """
    category = EventCategory.coerce(category)
    severity = EventSeverity.coerce(severity)
    if data is not None and not isinstance(data, Mapping):
        raise TypeError(f"data must be a mapping (e.g. a dict), not {type(data).__name__}")
    payload: dict[str, Any] = dict(data) if data else {}
    event_fields: dict[str, Any] = {}
    for key, value in extra.items():
        if key in _EXTRA_FIELDS:
            event_fields[key] = value
        else:
            payload[key] = value

    span_id = event_fields.pop("span_id", None)
    if trace_id is None or span_id is None:
        current_trace, current_span = _current_ids()
        if trace_id is None:
            trace_id = current_trace
            if span_id is None:
                span_id = current_span
        elif span_id is None and _as_hex(trace_id, 32) == current_trace:
            span_id = current_span

    for key in ("error_message", "stack_trace"):
        if event_fields.get(key) is not None:
            event_fields[key] = _redact(safe_str(event_fields[key]))

    session = log_fields()  # of the using_attributes scope in effect; empty outside any
    for key in ("session_id", "user_id"):
        if key in extra:
            event_fields[key] = check_id(extra[key], key)
        elif key in session:
            event_fields[key] = session[key]

    event = Event(
        event_type=str(event_type),
        category=category,
        severity=severity,
        message=_redact(safe_str(message)),
        data=_redact(payload) if payload else payload,
        tags=_as_tags(tags),
        trace_id=None if trace_id is None else _as_hex(trace_id, 32),
        span_id=None if span_id is None else _as_hex(span_id, 16),
        **event_fields,
    )
    get_event_emitter().emit(event)
    return event


def _format_exception(error: BaseException) -> str:
    # From the exception object itself, never sys.exc_info(): valid after the except block has
    # ended and for an exception never raised (then it is just the "Type: message" line).
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:  # pragma: no cover - traceback guards __str__ itself; belt and braces
        return f"{type(error).__name__}: {safe_str(error)}\n"


def emit_error_event(
    message: str,
    error: BaseException,
    category: EventCategory | str = EventCategory.SYSTEM,
    data: Mapping[str, Any] | None = None,
    *,
    event_type: str | None = None,
    severity: EventSeverity | str = EventSeverity.ERROR,
    tags: Iterable[str] | None = None,
    trace_id: str | int | None = None,
    **extra: Any,
) -> Event:
    """Emit an event describing ``error``: its type, message and stack trace.

    Everything is read from the exception object, so this works inside or after an ``except``
    block, from another thread, or for an exception that was never raised.

    Args:
        message: what failed, in words.
        error: the exception.
        category: an EventCategory or its word.
        data: structured details.
        event_type: default ``"<category>.error"``, e.g. "execution.error".
        severity: default ERROR.
        tags: as for ``emit_event``.
        trace_id: as for ``emit_event``.
        **extra: as for ``emit_event``.

    Returns:
        The Event, with ``error_type`` (class name), ``error_message`` and ``stack_trace``.

    Raises:
        TypeError: ``error`` is not an exception.
        ValueError: unknown category or severity.

    Example:
        >>> try:
        ...     risky_operation()
        ... except Exception as e:
        ...     emit_error_event("Operation failed", e, EventCategory.EXECUTION)  # doctest: +SKIP
    """
    if not isinstance(error, BaseException):
        raise TypeError(f"error must be an exception instance, not {type(error).__name__}")
    category = EventCategory.coerce(category)
    return emit_event(
        event_type if event_type is not None else f"{category.value}.error",
        category,
        severity,
        message,
        data,
        tags,
        trace_id,
        error_type=type(error).__name__,
        error_message=safe_str(error),
        stack_trace=_format_exception(error),
        **extra,
    )
