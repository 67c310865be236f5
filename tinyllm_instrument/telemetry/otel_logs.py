"""OpenTelemetry's own log records during the kit's calls: kept off stderr, handed to the kit.

The OTLP exporters log every retry and every failed batch, and the W3C propagators echo the
headers they reject, a 1 MB baggage header included. The kit reports those failures itself, once
per kind and bounded (:mod:`.drops`, :mod:`.propagation`), so while the kit's own call runs on
the current thread the records of the loggers it watches are captured instead of printed.

The filter is attached to a dependency's logger the first time the kit needs it (never at
import), and it only acts inside :class:`captured`: the same loggers used by the app's own
exporters or propagators, or on other threads, log exactly as before.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from types import TracebackType

__all__ = ["captured", "first_message", "watch"]

#: Records kept per captured call, at most: enough to describe a failure, bounded for a flood.
_MAX_KEPT = 8

_local = threading.local()
_watch_lock = threading.Lock()


class _CaptureFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        records: list[logging.LogRecord] | None = getattr(_local, "records", None)
        if records is None:
            return True
        if len(records) < _MAX_KEPT:
            records.append(record)
        return False


_FILTER = _CaptureFilter()


def watch(logger_names: Iterable[str]) -> None:
    """Capture the records of these loggers while a :class:`captured` block runs on a thread."""
    with _watch_lock:
        for name in logger_names:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                # First in line: the gRPC exporter's own DuplicateFilter would otherwise swallow
                # a repeated failure before the kit sees what it was.
                logger.filters.insert(0, _FILTER)


class captured:  # noqa: N801 - used like a function: ``with captured() as records``
    """Collect (instead of print) the watched loggers' records on this thread, in this block."""

    __slots__ = ("_previous", "records")

    def __enter__(self) -> list[logging.LogRecord]:
        self._previous = getattr(_local, "records", None)
        self.records: list[logging.LogRecord] = []
        _local.records = self.records
        return self.records

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _local.records = self._previous


# Words about retrying say nothing once the retries are over: "Transient error X encountered
# while exporting traces to host:port, retrying in 0.81s." is reported as "X".
_RETRY_NOISE = (
    re.compile(r"^\s*transient error\s+", re.IGNORECASE),
    re.compile(
        r"\s*encountered while exporting \w+(?: batch)?(?: to [^\s,]+?)?(?=,\s|\.\s|\.?$)",
        re.IGNORECASE,
    ),
    re.compile(r",?\s*retrying in [0-9.]+\s*s\b", re.IGNORECASE),
)


def first_message(records: Iterable[logging.LogRecord], level: int = logging.WARNING) -> str | None:
    """The first record at ``level`` or above, as text without retry words; None if none.

    The first one names the cause (connection refused, deadline exceeded...); later ones repeat
    it or only say that the retries are over.
    """
    for record in records:
        if record.levelno >= level:
            try:
                text = record.getMessage()
            except Exception:  # a record whose arguments do not fit its format
                text = str(record.msg)
            for pattern in _RETRY_NOISE:
                text = pattern.sub("", text)
            return text.strip(" .,") or None
    return None
