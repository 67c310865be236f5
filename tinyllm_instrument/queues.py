"""Queue instrumentation: ``tinyllm_queue_size{priority}`` and put-to-get wait times.

How it works
------------
``observe_queue`` instruments the queue object in place by giving it its own ``_put`` and
``_get``: the hooks ``queue.Queue`` and ``asyncio.Queue`` document for subclasses, and the only
places where an item enters or leaves the container. ``put``, ``put_nowait``, ``get`` and
``get_nowait`` all go through them, for every holder of the queue, and for ``queue.Queue`` they run
under the queue's own lock. So:

* the consumer receives the very object the producer put: nothing is wrapped or copied;
* a ``PriorityQueue`` keeps its ordering, since the heap sees the items themselves;
* the wait of each item is exact: its enqueue time is kept in a side table keyed by the item's
  ``id()`` (unique while the queue holds it; a FIFO per id handles one object queued twice),
  from the moment it entered the container (not while ``put`` blocked on a full queue) to the
  moment it left it.

``tinyllm_queue_size{priority}`` is the number of items waiting at that priority in all observed
queues of the process, set (not incremented) on every change, so a collector swapped in by a
test shows the right value at the next put or get.
"""

from __future__ import annotations

import asyncio
import queue as _queue_mod
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from . import _config
from ._errors import Stage, report_internal_error
from .metrics import get_metrics_collector
from .metrics.guard import label_value

__all__ = ["DEFAULT_PRIORITY", "default_priority_of", "observe_queue", "unobserve_queue"]

#: The priority label of items whose priority is not known (plain FIFO/LIFO queues).
DEFAULT_PRIORITY = "default"

_Q = TypeVar("_Q")

_SUPPORTED = (asyncio.Queue, _queue_mod.Queue)
_PRIORITY_QUEUES = (asyncio.PriorityQueue, _queue_mod.PriorityQueue)


def default_priority_of(item: object) -> object:
    """The priority of an item of a priority queue: the first element of a tuple or list.

    ``(1, "task")`` has priority ``1``; anything else (an int, an object with ``__lt__``) has
    :data:`DEFAULT_PRIORITY`, since using the item itself as a label value would create one time
    series per item. ``observe_queue`` uses this for ``asyncio.PriorityQueue`` and
    ``queue.PriorityQueue``; other queues have no priority, so every item is ``"default"``.

    Args:
        item: an item put into the queue.

    Returns:
        The label value for ``tinyllm_queue_size`` / ``tinyllm_queue_wait_time_seconds``.

    Example:
        >>> default_priority_of((2, "summarise")), default_priority_of("job")
        (2, 'default')
    """
    if isinstance(item, (tuple, list)) and item:
        return item[0]
    return DEFAULT_PRIORITY


def _no_priority(item: object) -> object:
    return DEFAULT_PRIORITY


# Totals per priority over every observed queue, so the gauge shows the process's backlog.
_observers: weakref.WeakSet[_QueueObserver] = weakref.WeakSet()
# Re-entrant: a signal handler that puts into an observed queue runs in the thread it
# interrupted, possibly while that thread sums the totals here.
_totals_lock = threading.RLock()


def _publish_size(priority: str) -> None:
    # Called with the queue's lock held (queue.Queue); takes only _totals_lock, never the reverse.
    with _totals_lock:
        total = sum(obs.counts.get(priority, 0) for obs in list(_observers))
    if _config.STATE.enabled:
        get_metrics_collector().queue_size.labels(priority).set(total)


def _label(priority: object) -> str:
    # The same conversion as the cardinality guard's, so that counts kept per priority use the
    # key the metric will show (1 and "1" are one series).
    return label_value(priority)


class _QueueObserver:
    """The state ``observe_queue`` attaches to one queue: per-item timestamps and per-priority
    counts. Mutated only inside the queue's ``_put`` / ``_get``."""

    __slots__ = ("priority_of", "clock", "stamps", "counts", "__weakref__")

    def __init__(self, priority_of: Callable[[Any], object], clock: Callable[[], float]) -> None:
        self.priority_of = priority_of
        self.clock = clock
        #: id(item) -> FIFO of (enqueue time, priority label) for items now in the queue.
        self.stamps: dict[int, deque[tuple[float, str]]] = {}
        #: priority label -> items now in the queue.
        self.counts: dict[str, int] = {}

    def priority(self, item: object) -> str:
        try:
            return _label(self.priority_of(item))
        except Exception as exc:  # a user's priority_of must not break the queue
            report_internal_error(Stage.QUEUE_PRIORITY, exc)
            return DEFAULT_PRIORITY

    def forget_all(self) -> None:
        # The container is empty but stamps remain: items left without _get (q.queue.clear(),
        # shutdown). Drop them so a reused id() cannot inherit an old timestamp.
        stale = list(self.counts)
        self.stamps.clear()
        self.counts.clear()
        for priority in stale:
            _publish_size(priority)

    def on_put(self, item: object, was_empty: bool) -> None:
        if was_empty and self.stamps:
            self.forget_all()
        priority = self.priority(item)
        self.stamps.setdefault(id(item), deque()).append((self.clock(), priority))
        self.counts[priority] = self.counts.get(priority, 0) + 1
        _publish_size(priority)

    def on_get(self, item: object, now_empty: bool) -> None:
        now = self.clock()
        fifo = self.stamps.get(id(item))
        if fifo:
            enqueued, priority = fifo.popleft()
            if not fifo:
                del self.stamps[id(item)]
            wait: float | None = max(now - enqueued, 0.0)
        else:  # in the queue before observe_queue: its size is known, its wait is not
            priority, wait = self.priority(item), None
        count = self.counts.get(priority, 0)
        if count > 1:
            self.counts[priority] = count - 1
        else:
            self.counts.pop(priority, None)
        _publish_size(priority)
        if wait is not None and _config.STATE.enabled:
            get_metrics_collector().queue_wait_time.labels(priority).observe(wait)
        if now_empty and self.stamps:
            self.forget_all()


def _container(q: Any) -> Any:
    # queue.Queue keeps its items in .queue, asyncio.Queue in ._queue (both since forever).
    return q.queue if isinstance(q, _queue_mod.Queue) else q._queue


def observe_queue(
    queue: _Q,
    priority_of: Callable[[Any], object] | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> _Q:
    """Instrument ``queue`` in place: queue size per priority and each item's wait, put to get.

    Works for ``asyncio.Queue``, ``asyncio.PriorityQueue``, ``asyncio.LifoQueue``,
    ``queue.Queue``, ``queue.PriorityQueue`` and ``queue.LifoQueue`` (and their subclasses).
    Items are neither wrapped nor copied, ordering is unchanged, and every holder of the queue is
    covered. Keeps ``tinyllm_queue_size{priority}`` current and observes
    ``tinyllm_queue_wait_time_seconds{priority}`` for every item taken out, in the process-wide
    collector (looked up at each put and get). Items already queued are counted in the size;
    their wait is not observed, since when they were put is unknown. Recording is skipped while
    the kit is switched off. Calling it again on the same queue replaces ``priority_of``.

    Args:
        queue: the queue to observe.
        priority_of: ``item -> priority`` label value, called once per put. Default: for
            priority queues :func:`default_priority_of` (the first element of a tuple item),
            for other queues always ``"default"``. An exception in it is counted in
            ``tinyllm_instrumentation_errors_total{stage="queue_priority"}`` and the item
            gets ``"default"``.
        clock: seconds as a float (default ``time.monotonic``; for tests).

    Returns:
        ``queue`` itself, so ``q = observe_queue(asyncio.Queue())`` works.

    Raises:
        TypeError: ``queue`` is not one of the supported kinds (``queue.SimpleQueue`` and
            ``multiprocessing.Queue`` have no hook to observe), or ``priority_of`` is not
            callable.

    Example:
        >>> jobs = observe_queue(asyncio.PriorityQueue())
        >>> jobs.put_nowait((1, "summarise"))   # tinyllm_queue_size{priority="1"} == 1
        >>> jobs.get_nowait()                    # wait observed under priority "1"
        (1, 'summarise')
    """
    if not isinstance(queue, _SUPPORTED):
        raise TypeError(
            f"observe_queue() takes an asyncio.Queue, asyncio.PriorityQueue or queue.Queue "
            f"(or a subclass), not {type(queue).__name__}"
        )
    if priority_of is None:
        priority_of = default_priority_of if isinstance(queue, _PRIORITY_QUEUES) else _no_priority
    elif not callable(priority_of):
        raise TypeError(f"priority_of must be callable (item -> priority), got {priority_of!r}")
    existing: _QueueObserver | None = getattr(queue, "_tinyllm_observer", None)
    if existing is not None:
        existing.priority_of = priority_of
        if clock is not None:
            existing.clock = clock
        return queue

    observer = _QueueObserver(priority_of, clock or time.monotonic)
    q: Any = queue
    lock = q.mutex if isinstance(q, _queue_mod.Queue) else None
    container = _container(q)
    # The class's functions, called on a weak reference: the hooks live in the queue's __dict__,
    # and a bound method there would make a cycle that keeps a dropped queue (and its items in
    # the size gauge) alive until the garbage collector runs.
    put, get = type(q)._put, type(q)._get
    ref = weakref.ref(q)

    def _put(item: Any) -> None:
        was_empty = not container
        put(ref(), item)
        try:
            observer.on_put(item, was_empty)
        except Exception as exc:
            report_internal_error(Stage.QUEUE_METRICS, exc)

    def _get() -> Any:
        item = get(ref())
        try:
            observer.on_get(item, not container)
        except Exception as exc:
            report_internal_error(Stage.QUEUE_METRICS, exc)
        return item

    def _count_existing() -> None:
        for item in list(container):
            priority = observer.priority(item)
            observer.counts[priority] = observer.counts.get(priority, 0) + 1

    if lock is not None:
        with lock:
            _count_existing()
            q._put, q._get, q._tinyllm_observer = _put, _get, observer
    else:
        _count_existing()
        q._put, q._get, q._tinyllm_observer = _put, _get, observer
    _observers.add(observer)
    for priority in list(observer.counts):
        _publish_size(priority)
    # A queue dropped with items in it: they leave the gauge with it.
    weakref.finalize(queue, _forget, observer)
    return queue


def _forget(observer: _QueueObserver) -> None:
    try:
        _observers.discard(observer)
        for priority in list(observer.counts):
            _publish_size(priority)
    except Exception as exc:  # runs from the garbage collector: never raise there
        report_internal_error(Stage.QUEUE_METRICS, exc)


def unobserve_queue(queue: object) -> bool:
    """Remove what :func:`observe_queue` added; the queue behaves as before it was observed.

    Its items no longer count in ``tinyllm_queue_size`` (the gauge is updated now).

    Args:
        queue: a queue passed to ``observe_queue``.

    Returns:
        True if it was observed, False if there was nothing to remove.

    Example:
        >>> unobserve_queue(observe_queue(asyncio.Queue()))
        True
    """
    q: Any = queue
    observer: _QueueObserver | None = getattr(q, "_tinyllm_observer", None)
    if observer is None:
        return False
    lock = q.mutex if isinstance(q, _queue_mod.Queue) else None
    if lock is not None:
        with lock:
            del q._put, q._get, q._tinyllm_observer
    else:
        del q._put, q._get, q._tinyllm_observer
    _forget(observer)
    return True
