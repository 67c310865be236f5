"""Cache instrumentation: hits and misses of mappings, lru_cache functions and Redis clients."""

from __future__ import annotations

import inspect
import threading
from typing import Any, TypeVar, cast

import wrapt

from . import _config
from ._errors import Stage, report_internal_error
from .events import EventCategory, EventSeverity, emit_event, get_event_emitter
from .metrics import get_metrics_collector
from .redaction import safe_str

__all__ = ["REDIS_LOOKUPS", "instrument_cache"]

_T = TypeVar("_T")
_MISSING: Any = object()
_DEBUG = EventSeverity.DEBUG
#: Redis client methods whose answers are counted: ``None`` (or a ``None`` entry) is a miss.
REDIS_LOOKUPS = ("get", "getex", "getdel", "hget", "mget", "hmget")
# Keys in CACHE events are cut to this many characters: enough to recognise, not a payload.
_MAX_KEY_CHARS = 128


def _key_text(key: object) -> str:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else safe_str(key)
    return text[:_MAX_KEY_CHARS]


def _record(
    cache_type: str, hits: int, misses: int, key: object = _MISSING, function: str | None = None
) -> None:
    """Count ``hits`` and ``misses`` and emit the matching DEBUG CACHE events; never raises."""
    if not _config.STATE.enabled:
        return
    try:
        collector = get_metrics_collector()
        if hits:
            collector.cache_hits.labels(cache_type).inc(hits)
        if misses:
            collector.cache_misses.labels(cache_type).inc(misses)
        if get_event_emitter().wants(_DEBUG):
            data: dict[str, Any] = {"cache_type": cache_type}
            if key is not _MISSING:
                data["key"] = _key_text(key)
            if function is not None:
                data["function"] = function
            for outcome, n in (("hit", hits), ("miss", misses)):
                for _ in range(n):
                    emit_event(
                        f"cache.{outcome}", EventCategory.CACHE, _DEBUG, f"Cache {outcome}",
                        data=data,
                    )  # fmt: skip
    except Exception as exc:
        report_internal_error(Stage.CACHE_METRICS, exc)


# --------------------------------------------------------------------------- mapping-like caches


class _InstrumentedMapping(wrapt.ObjectProxy):
    """A mapping whose value lookups are counted; everything else passes straight through."""

    def __init__(self, wrapped: Any, cache_type: str) -> None:
        super().__init__(wrapped)
        self._self_cache_type = cache_type

    def __getitem__(self, key: Any) -> Any:
        try:
            value = self.__wrapped__[key]
        except KeyError:
            _record(self._self_cache_type, 0, 1, key)
            raise
        _record(self._self_cache_type, 1, 0, key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        # A sentinel default tells a miss from a stored value equal to ``default``.
        value = self.__wrapped__.get(key, _MISSING)
        if value is _MISSING:
            _record(self._self_cache_type, 0, 1, key)
            return default
        _record(self._self_cache_type, 1, 0, key)
        return value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        value = self.__wrapped__.get(key, _MISSING)
        if value is _MISSING:
            _record(self._self_cache_type, 0, 1, key)
            return self.__wrapped__.setdefault(key, default)
        _record(self._self_cache_type, 1, 0, key)
        return value

    def __repr__(self) -> str:
        return f"<instrumented cache {self._self_cache_type!r} {self.__wrapped__!r}>"


# --------------------------------------------------------------------------- functools.lru_cache


def _instrument_lru(func: Any, cache_type: str) -> Any:
    # lru_cache keeps exact hit/miss counts in cache_info(); after each call the wrapper counts
    # the difference since the last call it saw. Read under a lock, so concurrent calls are each
    # counted once, and calls made around the wrapper are counted too.
    # The lock is re-entrant because a signal handler that calls the function runs in the thread
    # it interrupted, maybe inside settle(). That inner settle() only asks the outer one to read
    # cache_info() once more, so the handler's lookup is counted, and counted once.
    lock = threading.RLock()
    last = [0, 0]
    state = {"settling": False, "again": False}
    info = func.cache_info()
    last[:] = [info.hits, info.misses]
    name = getattr(func, "__qualname__", repr(func))

    def take_difference() -> tuple[int, int]:
        info = func.cache_info()
        hits, misses = info.hits - last[0], info.misses - last[1]
        if hits < 0 or misses < 0:  # cache_clear() zeroed the counts
            hits, misses = info.hits, info.misses
        last[:] = [info.hits, info.misses]
        return hits, misses

    def settle() -> None:
        try:
            with lock:
                if state["settling"]:  # re-entered from a signal handler
                    state["again"] = True
                    return
                state["settling"] = True
                hits = misses = 0
                try:
                    while True:
                        state["again"] = False
                        more_hits, more_misses = take_difference()
                        hits, misses = hits + more_hits, misses + more_misses
                        # Clear the mark before the last look: a settle() entered after this
                        # line counts for itself; one entered before it has set "again".
                        state["settling"] = False
                        if not state["again"]:
                            break
                        state["settling"] = True
                finally:
                    state["settling"] = False
            _record(cache_type, hits, misses, function=name)
        except Exception as exc:
            report_internal_error(Stage.CACHE_METRICS, exc)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            return wrapped(*args, **kwargs)
        finally:
            settle()

    return wrapt.FunctionWrapper(func, wrapper)


# --------------------------------------------------------------------------- redis-py clients


def _redis_misses(method: str, result: Any) -> tuple[int, int]:
    if method in ("mget", "hmget"):
        values = list(result or ())
        misses = sum(1 for v in values if v is None)
        return len(values) - misses, misses
    return (0, 1) if result is None else (1, 0)


class _InstrumentedRedis(wrapt.ObjectProxy):
    """A redis-py client (sync or asyncio) whose lookups in :data:`REDIS_LOOKUPS` are counted."""

    def __init__(self, wrapped: Any, cache_type: str) -> None:
        super().__init__(wrapped)
        self._self_cache_type = cache_type

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.__wrapped__, name)
        if name not in REDIS_LOOKUPS or not callable(attr):
            return attr
        cache_type = self._self_cache_type

        def lookup(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            key = args[0] if args and name not in ("mget", "hmget") else _MISSING
            if inspect.isawaitable(result):
                return _settle_async(name, result, cache_type, key)
            _record(cache_type, *_redis_misses(name, result), key)
            return result

        return lookup

    def __repr__(self) -> str:
        return f"<instrumented cache {self._self_cache_type!r} {self.__wrapped__!r}>"


async def _settle_async(name: str, pending: Any, cache_type: str, key: object) -> Any:
    result = await pending
    _record(cache_type, *_redis_misses(name, result), key)
    return result


def _is_redis_client(obj: object) -> bool:
    return callable(getattr(obj, "execute_command", None)) and any(
        klass.__module__.split(".")[0] == "redis" for klass in type(obj).__mro__
    )


def _is_lru_function(obj: object) -> bool:
    return callable(obj) and callable(getattr(obj, "cache_info", None))


# --------------------------------------------------------------------------- public API


def instrument_cache(obj: _T, cache_type: str | None = None) -> _T:
    """Count the hits and misses of a cache in ``tinyllm_cache_hits_total`` / ``_misses_total``.

    Returns a wrapper that behaves like ``obj`` (``isinstance`` included) and counts, with label
    ``cache_type``, in the process-wide collector looked up at each lookup:

    * a mapping-like cache (``dict``, ``cachetools`` caches, anything with ``__getitem__``):
      ``cache[key]`` (a ``KeyError`` is a miss and is re-raised), ``cache.get(key, default)``
      and ``cache.setdefault(key, default)``. ``key in cache`` is not a lookup and is not
      counted: the usual ``if key in cache: return cache[key]`` counts the hit once.
    * a ``functools.lru_cache`` / ``functools.cache`` function: every call, as its
      ``cache_info()`` counts it. ``cache_info`` and ``cache_clear`` stay available.
    * a redis-py client, sync or ``redis.asyncio``: the lookups in :data:`REDIS_LOOKUPS`; a
      ``None`` answer is a miss, each key of ``mget`` / ``hmget`` counts once. Pipelines are
      not counted.

    Each hit and miss is also a ``cache.hit`` / ``cache.miss`` event (category CACHE, severity
    DEBUG) when the process-wide emitter has a handler that wants DEBUG events; otherwise no event
    is built. Recording never raises into the caller, and is skipped while the kit is off.

    Args:
        obj: the cache.
        cache_type: the label value; default ``"redis"`` for a Redis client and ``"memory"``
            otherwise.

    Returns:
        The instrumented cache; ``obj`` itself is unchanged.

    Raises:
        TypeError: ``obj`` is none of the supported kinds, or ``cache_type`` is not a non-empty
            string.

    Example:
        >>> answers = instrument_cache({}, cache_type="answers")
        >>> answers.get("q1")          # a miss
        >>> answers["q1"] = "42"
        >>> answers["q1"]              # a hit
        '42'
        >>> embed = instrument_cache(functools.lru_cache(maxsize=1024)(embed))  # doctest: +SKIP
    """
    if cache_type is not None and (not isinstance(cache_type, str) or not cache_type.strip()):
        raise TypeError(f"cache_type must be a non-empty string, got {cache_type!r}")
    if _is_redis_client(obj):
        return cast(_T, _InstrumentedRedis(obj, cache_type or "redis"))
    kind = cache_type or "memory"
    if _is_lru_function(obj):
        return cast(_T, _instrument_lru(obj, kind))
    if callable(getattr(obj, "__getitem__", None)) and callable(getattr(obj, "get", None)):
        return cast(_T, _InstrumentedMapping(obj, kind))
    raise TypeError(
        "instrument_cache() takes a mapping-like cache (with __getitem__ and get), a "
        f"functools.lru_cache function or a redis-py client, not {type(obj).__name__}"
    )
