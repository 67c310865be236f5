"""Log sampling: keep a share of DEBUG/INFO lines and/or at most N per second; count the rest."""

from __future__ import annotations

import math
import random as _random
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import structlog
from opentelemetry import trace as _otel_trace

from .._errors import Stage, report_internal_error
from ._sink import count_dropped

__all__ = [
    "LogSampler",
    "configure_log_sampling",
    "current_sampler",
    "get_log_sampling_stats",
    "reset_log_sampling",
]


class LogSampler:
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
        # Re-entrant: a signal handler may log (and so sample) while this thread holds it.
        self._lock = threading.RLock()
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

    def _passes_rate(self, event: Any, span: Any) -> bool:
        rate = self.sample_rate
        if rate is None or rate >= 1.0:
            return True
        if not self.hash_based:
            return self._rng() < rate
        if span is None:
            span = _otel_trace.get_current_span()
        ctx = span.get_span_context()
        if ctx.is_valid:
            return (ctx.trace_id & 0xFFFFFFFFFFFFFFFF) < self._trace_bound
        bound = structlog.contextvars.get_contextvars()
        key = f"{event!s}|{sorted(bound.items(), key=lambda kv: kv[0])!r}"
        return zlib.crc32(key.encode("utf-8", "replace")) < rate * 4294967296.0

    def keep(self, level_no: int, event: Any, span: Any = None) -> bool:
        """Whether to write this line; ``span`` is the current span when already looked up."""
        if level_no >= 30:  # warnings and errors are never sampled away
            with self._lock:
                self.seen += 1
                self.kept += 1
            return True
        try:
            ok = self._passes_rate(event, span)
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
        if not ok:
            count_dropped("sampled")
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


_sampler: LogSampler | None = None


def current_sampler() -> LogSampler | None:
    """The sampler in effect, or None when sampling is off."""
    return _sampler


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
    _sampler = LogSampler(
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
