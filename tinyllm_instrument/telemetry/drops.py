"""Dropped spans: counted in ``tinyllm_spans_dropped_total{reason}``, reported in few, short lines.

Every span the kit meant to export and did not is counted once, by reason. What a person reads on
stderr is bounded: one line when a new kind of export failure appears (with the count so far), one
summary every :data:`DROP_WARNING_INTERVAL` seconds while spans keep being dropped, and one line
when telemetry shuts down. No line per span or per batch, and the exporter's own retry messages
stay off stderr (see :mod:`.otel_logs`).

Nothing here imports the OpenTelemetry SDK: the names are part of the package's public face.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .._errors import KIT_LOGGER_NAME

__all__ = [
    "DROP_REASONS",
    "DROP_WARNING_INTERVAL",
    "DropLedger",
    "DropReport",
    "count_dropped",
    "count_exported",
    "failure_kind",
    "merged",
    "one_line",
]

_log = logging.getLogger(KIT_LOGGER_NAME)

#: Values of the ``reason`` label of ``tinyllm_spans_dropped_total``:
#:
#: * ``queue_full``: the export queue was full when the span ended;
#: * ``export_failed``: the exporter reported failure (after its own retries);
#: * ``shutdown``: the span had ended but was still waiting for export when telemetry shut down
#:   (or was reconfigured) and the flush bound ran out;
#: * ``unfinished``: the span was still open, never ended, when telemetry shut down: a stream that
#:   was never closed, a thread still running at exit. Ending it later exports nothing.
DROP_REASONS = ("queue_full", "export_failed", "shutdown", "unfinished")
#: Seconds between two warnings about dropped spans; each gives the count since the one before.
DROP_WARNING_INTERVAL = 10.0
#: Characters of an exporter's failure message shown at most in one line.
MAX_CAUSE_CHARS = 240

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_SPACES = re.compile(r"\s{2,}")
_DIGITS = re.compile(r"\d+")
# What names a kind of failure in an exporter's message: a gRPC status, an exception class, an
# HTTP status. Hosts, ports and delays vary between two failures of the same kind.
_KIND_TOKENS = re.compile(
    r"StatusCode\.[A-Z_]+|\b[A-Za-z]+(?:Error|Exception|Timeout)\b|\bcode:? [1-5]\d\d\b"
)


def one_line(text: str, limit: int = MAX_CAUSE_CHARS) -> str:
    """``text`` as one printable line of at most ``limit`` characters (control characters become
    spaces, the end is cut with an ellipsis)."""
    flat = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def failure_kind(cause: str) -> str:
    """The kind of failure ``cause`` describes: its status and error names, else its text with
    the numbers left out."""
    tokens = _KIND_TOKENS.findall(cause)
    return " ".join(tokens) if tokens else _DIGITS.sub("#", cause)


def count_exported(n: int) -> None:
    """Add ``n`` to ``tinyllm_spans_exported_total`` of the process-wide collector."""
    # Resolved at count time, so a collector swapped in by set_metrics_collector() gets the counts.
    try:
        from ..metrics import get_metrics_collector

        get_metrics_collector().spans_exported.labels().inc(n)
    except Exception:  # pragma: no cover - counting must not be the thing that breaks
        pass


def count_dropped(reason: str, n: int) -> None:
    """Add ``n`` to ``tinyllm_spans_dropped_total{reason}`` of the process-wide collector."""
    if n <= 0:
        return
    try:
        from ..metrics import get_metrics_collector

        get_metrics_collector().spans_dropped.labels(reason).inc(n)
    except Exception:  # pragma: no cover - counting must not be the thing that breaks
        pass


@dataclass
class DropReport:
    """Drops not yet reported: counts by reason, new kinds of failure, and what to do about it.

    ``hint`` says how to check the exporter's destination; ``notes`` are short facts such as
    "export did not finish within 2.0s"; ``earlier``: drops were reported before these.
    """

    counts: dict[str, int] = field(default_factory=dict)
    causes: list[str] = field(default_factory=list)
    hint: str | None = None
    notes: list[str] = field(default_factory=list)
    earlier: bool = False

    def merge(self, other: DropReport) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
        self.causes += [c for c in other.causes if c not in self.causes]
        self.notes += [n for n in other.notes if n not in self.notes]
        self.hint = self.hint or other.hint
        self.earlier = self.earlier or other.earlier

    def line(self) -> str | None:
        """The one line that reports these drops; None when nothing was dropped."""
        total = sum(self.counts.values())
        if total <= 0:
            return None
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.counts.items()) if n > 0)
        since = " since the last report" if self.earlier else ""
        parts = [f"tinyllm_instrument: {total} span(s) dropped{since} ({reasons}"]
        parts += [f"; {note}" for note in self.notes]
        parts.append(")")
        if self.causes:
            parts.append(": span export failed: " + "; ".join(self.causes))
        parts.append("; counted in tinyllm_spans_dropped_total{reason}")
        failing = self.counts.get("export_failed", 0) > 0 or bool(self.notes)
        if self.hint and failing:
            parts.append(f"; {self.hint}")
        return "".join(parts)

    def log(self) -> None:
        """Write :meth:`line` as one warning on the kit's logger, if there is anything to say."""
        text = self.line()
        if text is None:
            return
        try:
            _log.warning("%s", text)
        except Exception:  # pragma: no cover - a broken handler must not break the caller
            pass


def merged(reports: Iterable[DropReport]) -> DropReport:
    """One report holding all of ``reports``."""
    out = DropReport()
    for report in reports:
        out.merge(report)
    return out


class DropLedger:
    """Counts the spans one pipeline drops and decides when to say so.

    A new kind of failure is reported at once (with the counts so far); otherwise one summary at
    most every :data:`DROP_WARNING_INTERVAL` seconds. The pipeline's thread calls
    :meth:`warn_if_due` on every wake, so drops that stop are still reported within about one
    interval. :meth:`take` hands what is unreported to a final summary instead.

    The lock is re-entrant: a signal handler that runs observed code can interrupt a thread holding
    it, and the handler's own dropped span comes back here.
    """

    def __init__(self, hint: str | None = None) -> None:
        self._lock = threading.RLock()
        self._pending: dict[str, int] = {}
        self._kinds_seen: set[str] = set()
        self._new_causes: list[str] = []
        self._last_warning = -math.inf
        self.hint = hint

    def add(self, reason: str, n: int, *, cause: str | None = None, quiet: bool = False) -> None:
        """Count ``n`` spans dropped for ``reason``; ``cause`` describes a failure, ``quiet``
        leaves the reporting to a later :meth:`take`."""
        if n <= 0:
            return
        count_dropped(reason, n)
        new_kind = False
        with self._lock:
            self._pending[reason] = self._pending.get(reason, 0) + n
            if cause is not None:
                kind = failure_kind(cause)
                if kind not in self._kinds_seen:
                    self._kinds_seen.add(kind)
                    self._new_causes.append(cause)
                    new_kind = True
        if not quiet:
            self.warn_if_due(force=new_kind)

    def note(self, cause: str) -> None:
        """Describe a failure that has not (yet) dropped anything, for the next report."""
        with self._lock:
            kind = failure_kind(cause)
            if kind not in self._kinds_seen:
                self._kinds_seen.add(kind)
                self._new_causes.append(cause)

    def take(self) -> DropReport:
        """Everything not reported yet, as a report; the ledger starts again from nothing."""
        with self._lock:
            report = DropReport(
                dict(self._pending),
                list(self._new_causes),
                self.hint,
                earlier=self._last_warning > -math.inf,
            )
            self._pending.clear()
            self._new_causes.clear()
        return report

    def warn_if_due(self, *, force: bool = False) -> None:
        """Log the unreported drops if a new kind of failure came or the interval has passed."""
        with self._lock:
            now = time.monotonic()
            if not self._pending or (
                not force and now - self._last_warning < DROP_WARNING_INTERVAL
            ):
                return
            report = self.take()
            self._last_warning = now
        report.log()
