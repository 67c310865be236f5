"""The export pipeline: a bounded queue and one export thread; every span exported or counted."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._atfork import call_in_forked_children
from .._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from .._threads import leave_signals_to_the_app
from .config import TelemetryConfig
from .drops import DropLedger, DropReport, count_exported, merged

__all__ = ["ExportPipeline", "shutdown_processors"]

_log = logging.getLogger(KIT_LOGGER_NAME)


class ExportPipeline(SpanProcessor):
    """The kit's batching span processor: a bounded queue, one export thread, no silent loss.

    It replaces the SDK's ``BatchSpanProcessor`` for three reasons, each measured against it in the
    same loops as tests/test_export_pipeline.py:

    * every span ends in exactly one of ``tinyllm_spans_exported_total`` and
      ``tinyllm_spans_dropped_total{reason}`` (the SDK drops the oldest span of a full queue,
      logs "Queue full" at most once per 20 s, and counts only into an OpenTelemetry meter, if
      the app has configured one);
    * when the queue is full, the thread that ended the span can wait for room ("block") or export
      a batch itself ("export_inline") instead of dropping. Waiting releases the GIL, which is
      exactly what an export thread starved by a logging-heavy hot loop lacks;
    * the wait is bounded and switched off while the exporter is failing, so a collector that is
      down costs the app one ``block_timeout``, not one per span.

    ``on_end`` does less than the SDK's (no ``os.getpid()`` per span: forks are handled by an
    at-fork hook). The queue may hold up to one span per concurrently ending thread beyond
    ``max_queue_size``, since the length check and the append are not one atomic step; it is
    still bounded.

    Locks: a signal handler runs between two bytecodes of the main thread, possibly while this
    thread holds one of the pipeline's locks, and the handler's observed call ends a span here
    too. So the locks a span end can take (the room condition, the drop ledger) and the one
    shutdown takes (the accounting lock) are re-entrant. The export lock is not, on purpose: one
    export at a time; it is only ever taken without blocking or with a timeout.
    """

    #: Only ``on_end`` does anything: the kit's fan-out does not call ``on_start`` /
    #: ``_on_ending`` (one call per span saved each).
    ends_only = True

    def __init__(self, exporter: SpanExporter, config: TelemetryConfig) -> None:
        self._exporter = exporter
        self._max_queue_size = config.max_queue_size
        self._batch_size = config.max_export_batch_size
        self._schedule_delay = config.schedule_delay
        self._mode = config.on_queue_full
        self._block_timeout = config.block_timeout
        self._hint: str | None = getattr(exporter, "check_hint", None)
        self._ledger = DropLedger(self._hint)
        self._init_runtime()
        call_in_forked_children(self._after_fork)

    def _init_runtime(self) -> None:
        self._queue: deque[ReadableSpan] = deque()
        self._wake = threading.Event()
        self._woken = False
        self._room = threading.Condition(threading.RLock())
        self._waiters = 0
        self._export_lock = threading.Lock()
        # Taking a batch out and abandoning the queue are each one step under this lock.
        self._ledger_lock = threading.RLock()
        self._in_flight: list[ReadableSpan] | None = None
        self._may_block = True
        self._closed = False
        self._abandoned = False
        self._worker = threading.Thread(target=self._run, name="tinyllm-span-export", daemon=True)
        self._worker.start()
        self._worker_ident = self._worker.ident

    def _after_fork(self) -> None:
        # The parent's spans are the parent's to export and count; the child starts empty, with
        # locks that no thread of the parent can be holding.
        if not self._closed:
            self._ledger = DropLedger(self._hint)
            self._init_runtime()

    # -- the span path -------------------------------------------------------------------------

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        queue = self._queue
        if len(queue) < self._max_queue_size and not self._closed:
            queue.append(span)
            # Scheduled by fill level: wake the export thread once a batch is ready.
            if len(queue) >= self._batch_size and not self._woken:
                self._woken = True
                self._wake.set()
            return
        self._on_full(span)

    def _on_full(self, span: ReadableSpan) -> None:
        if (
            self._mode != "drop"
            and threading.get_ident() != self._worker_ident  # never wait for ourselves
        ):
            # Other threads may take the room we wait for (or make by exporting): try again until
            # the span is queued or block_timeout has passed.
            deadline = time.monotonic() + self._block_timeout
            queue = self._queue
            while self._may_block and not self._closed:
                if len(queue) < self._max_queue_size:
                    queue.append(span)
                    return
                if time.monotonic() >= deadline:
                    self._may_block = False  # until an export succeeds again
                    break
                if self._mode == "export_inline" and self._export_lock.acquire(blocking=False):
                    try:
                        self._export_batch()
                    finally:
                        self._export_lock.release()
                elif not self._wait_for_room(deadline):
                    break
        self._ledger.add("shutdown" if self._closed else "queue_full", 1)

    def _wait_for_room(self, deadline: float) -> bool:
        """Wait until the queue has room; False (and no more waiting) once ``deadline`` passed."""
        with self._room:
            self._waiters += 1
            try:
                while (
                    len(self._queue) >= self._max_queue_size
                    and self._may_block
                    and not self._closed
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        # The exporter is not keeping up: stop making the app wait until an export
                        # succeeds again.
                        self._may_block = False
                        return False
                    self._wake.set()
                    # Short slices: a missed notify costs a few milliseconds, not the timeout.
                    self._room.wait(min(remaining, 0.05))
            finally:
                self._waiters -= 1
        return True

    # -- the export thread ---------------------------------------------------------------------

    def _run(self) -> None:
        leave_signals_to_the_app()
        while not self._closed:
            timer = not self._wake.wait(self._schedule_delay)
            self._wake.clear()
            self._woken = False
            if self._closed:
                break
            self._export(everything=timer)
            self._ledger.warn_if_due()
        self._export(everything=True)

    def _export(self, *, everything: bool) -> None:
        """Export full batches (and, when ``everything``, the rest) until the queue is drained."""
        while not self._abandoned:
            with self._export_lock:
                queued = len(self._queue)
                if queued == 0 or (not everything and queued < self._batch_size):
                    return
                self._export_batch()

    def _export_batch(self) -> None:
        """Take one batch, export it, count it. The caller holds ``_export_lock``."""
        with self._ledger_lock:
            queue = self._queue
            if self._abandoned or not queue:
                return
            # In flight before the first span leaves the queue: a shutdown that interrupts this
            # (a signal handler) finds every span either queued or in flight, and counts it.
            batch: list[ReadableSpan] = []
            self._in_flight = batch
            while queue and len(batch) < self._batch_size:
                batch.append(queue.popleft())
            if self._abandoned:
                return
        if self._waiters:
            with self._room:
                self._room.notify_all()
        # Spans the exporter itself might create (an instrumented HTTP client) are not exported.
        token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            result = self._exporter.export(batch)
        except Exception as exc:  # _GuardedExporter catches already; this is the last resort
            report_internal_error(Stage.SPAN_EXPORT, exc)
            result = SpanExportResult.FAILURE
        finally:
            otel_context.detach(token)
        with self._ledger_lock:
            if self._in_flight is not batch:
                return  # a shutdown that stopped waiting counted it already
            self._in_flight = None
        if result is SpanExportResult.SUCCESS:
            self._may_block = True
            count_exported(len(batch))
        else:
            self._may_block = False
            cause = getattr(self._exporter, "last_failure", None) or "the exporter said so"
            # Reported once per kind of failure; at shutdown, in the one closing line instead.
            self._ledger.add("export_failed", len(batch), cause=cause, quiet=self._closed)

    # -- flush and shutdown --------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now, on the calling thread; False if time ran out first."""
        deadline = time.monotonic() + timeout_millis / 1000
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._export_lock.acquire(timeout=remaining):
                return False
            try:
                # Holding the lock means no export is in flight: empty queue means all sent.
                if not self._queue or self._abandoned:
                    return True
                self._export_batch()
            finally:
                self._export_lock.release()

    def shutdown(self, timeout_millis: float = 30000) -> None:
        """Export what is queued, waiting at most ``timeout_millis``; count the rest as dropped,
        and report the drops not reported yet in one line."""
        self.close(timeout_millis).log()

    def close(self, timeout_millis: float = 30000) -> DropReport:
        """:meth:`shutdown` without the line: the drops not reported yet are returned instead, so
        that several pipelines and the spans left open end in one line together."""
        if self._closed:
            return DropReport()
        timeout = timeout_millis / 1000
        deadline = time.monotonic() + timeout
        self._closed = True
        self._wake.set()
        with self._room:
            self._room.notify_all()
        # Keep a little of the bound for closing the exporter, so the whole stays within it.
        reserve = min(0.25, timeout / 4)
        self._worker.join(max(deadline - time.monotonic() - reserve, 0.0))
        # What the export thread did not send by now is counted, including a span a racing
        # thread appended after the thread's last look at the queue.
        with self._ledger_lock:
            self._abandoned = True
            unsent = len(self._in_flight or ()) + len(self._queue)
            self._in_flight = None
            self._queue.clear()
        self._ledger.add("shutdown", unsent, quiet=True)
        stuck = self._worker.is_alive()
        if stuck:
            # Why the export in flight has not come back, if its exporter said so already.
            pending = getattr(self._exporter, "pending_failure", None)
            cause = pending() if callable(pending) else None
            if cause:
                self._ledger.note(cause)
        report = self._ledger.take()
        if stuck:
            report.notes.append(f"export did not finish within {timeout:.1f}s")
        # Closing the exporter also ends an export still retrying on the abandoned thread.
        _call_bounded(
            lambda: self._exporter.shutdown(),
            max(deadline - time.monotonic(), 0.0),
            Stage.SPAN_SHUTDOWN,
        )
        return report


def _call_bounded(func: Callable[[], object], timeout: float, stage: str) -> bool:
    """Run ``func`` on a helper thread, waiting at most ``timeout`` seconds; True if it finished."""

    def run() -> None:
        try:
            if threading.current_thread() is not threading.main_thread():
                leave_signals_to_the_app()
            func()
        except Exception as exc:
            report_internal_error(stage, exc)

    try:
        worker = threading.Thread(target=run, name="tinyllm-telemetry-shutdown", daemon=True)
        worker.start()
    except RuntimeError:  # no new threads at interpreter shutdown (3.12+): do it here
        run()
        return True
    worker.join(timeout)
    return not worker.is_alive()


def shutdown_processors(
    processors: Sequence[SpanProcessor], timeout: float, *, report: DropReport | None = None
) -> bool:
    """Flush and shut down ``processors`` within ``timeout`` seconds; True if they finished in time.

    The kit's pipelines bound their own wait and count what they could not send; what they
    dropped and did not report yet, with ``report`` (spans left open, say), makes one line. Any
    other processor runs on a helper thread so a dead collector cannot hold the caller (or the
    exit) longer than ``timeout``.
    """
    reports = [report] if report is not None else []
    deadline = time.monotonic() + timeout
    ok = True
    for processor in processors:
        remaining = max(deadline - time.monotonic(), 0.0)
        if isinstance(processor, ExportPipeline):
            try:
                reports.append(processor.close(timeout_millis=remaining * 1000))
            except Exception as exc:  # pragma: no cover - close is built not to raise
                report_internal_error(Stage.SPAN_SHUTDOWN, exc)
            continue

        def run(processor: SpanProcessor = processor, remaining: float = remaining) -> None:
            try:
                processor.force_flush(int(remaining * 1000))
            except Exception as exc:
                report_internal_error(Stage.SPAN_FLUSH, exc)
            processor.shutdown()

        if not _call_bounded(run, remaining, Stage.SPAN_SHUTDOWN):
            _log.warning(
                "tinyllm_instrument: span export did not finish within %.1fs; unsent spans are "
                "dropped",
                timeout,
            )
            ok = False
    merged(reports).log()
    return ok
