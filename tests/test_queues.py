"""observe_queue: exact queue sizes and wait times per priority, asyncio and threading queues."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest

import tinyllm_instrument
from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector
from tinyllm_instrument.queues import (
    DEFAULT_PRIORITY,
    default_priority_of,
    observe_queue,
    unobserve_queue,
)

SIZE, WAIT = "tinyllm_queue_size", "tinyllm_queue_wait_time_seconds"


class Clock:
    """A clock the test moves by hand, so wait times are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def collector(registry):
    collector = MetricsCollector(registry=registry)
    set_metrics_collector(collector)
    return collector


@pytest.fixture
def clock():
    return Clock()


def size(collector, priority=DEFAULT_PRIORITY):
    return collector.registry.get_sample_value(SIZE, {"priority": str(priority)})


def waits(collector, priority=DEFAULT_PRIORITY):
    """(number of waits observed, their sum) for one priority."""
    labels = {"priority": str(priority)}
    get = collector.registry.get_sample_value
    return get(WAIT + "_count", labels), get(WAIT + "_sum", labels)


def test_asyncio_queue_size_and_waits_are_exact(collector, clock):
    async def scenario() -> list[str]:
        q = observe_queue(asyncio.Queue(), clock=clock)
        await q.put("a")
        clock.now += 1
        q.put_nowait("b")
        assert size(collector) == 2.0
        clock.now += 4
        got = [await q.get()]
        assert size(collector) == 1.0
        clock.now += 2
        got.append(q.get_nowait())
        return got

    assert asyncio.run(scenario()) == ["a", "b"]
    assert size(collector) == 0.0
    assert waits(collector) == (2.0, 5.0 + 6.0)


def test_asyncio_priority_queue_keeps_its_order_and_labels_by_first_element(collector, clock):
    async def scenario() -> list[tuple[int, str]]:
        q = observe_queue(asyncio.PriorityQueue(), clock=clock)
        for item in [(3, "c"), (1, "a"), (2, "b"), (1, "a2")]:
            await q.put(item)
            clock.now += 1
        assert [size(collector, p) for p in (1, 2, 3)] == [2.0, 1.0, 1.0]
        return [await q.get() for _ in range(4)]

    # Put at 100, 101, 102, 103; all taken at 104.
    assert asyncio.run(scenario()) == [(1, "a"), (1, "a2"), (2, "b"), (3, "c")]
    assert waits(collector, 1) == (2.0, 3.0 + 1.0)
    assert waits(collector, 2) == (1.0, 2.0)
    assert waits(collector, 3) == (1.0, 4.0)
    assert [size(collector, p) for p in (1, 2, 3)] == [0.0, 0.0, 0.0]


def test_the_consumer_gets_the_very_object_put(collector):
    payload = {"prompt": "hi"}
    q = observe_queue(queue.Queue())
    q.put(payload)
    assert q.get() is payload


def test_threaded_queue_counts_every_item_across_threads(collector):
    q: queue.Queue[int] = observe_queue(queue.Queue(maxsize=5))
    n = 200
    received: list[int] = []

    def consume() -> None:
        for _ in range(n):
            received.append(q.get())
            q.task_done()

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(n):
        q.put(i)  # blocks while the queue is full: that time is not queue wait
    q.join()
    consumer.join(10)
    assert received == list(range(n))
    assert size(collector) == 0.0
    assert waits(collector)[0] == float(n)


def test_thread_priority_queue_default_priority(collector, clock):
    q = observe_queue(queue.PriorityQueue(), clock=clock)
    q.put((2, "low"))
    q.put((1, "high"))
    clock.now += 3
    assert q.get_nowait() == (1, "high")
    assert (size(collector, 1), size(collector, 2)) == (0.0, 1.0)
    assert waits(collector, 1) == (1.0, 3.0)


def test_custom_priority_of(collector, clock):
    q = observe_queue(asyncio.Queue(), priority_of=lambda job: job["tier"], clock=clock)
    q.put_nowait({"tier": "gold"})
    q.put_nowait({"tier": "free"})
    q.put_nowait({"tier": "free"})
    assert (size(collector, "gold"), size(collector, "free")) == (1.0, 2.0)
    clock.now += 1.5
    q.get_nowait()
    assert waits(collector, "gold") == (1.0, 1.5)


def test_a_failing_priority_of_puts_the_item_under_default(collector):
    def bad(item):
        raise LookupError("no tier")

    q = observe_queue(queue.Queue(), priority_of=bad)
    q.put("x")
    assert q.get() == "x"
    assert waits(collector)[0] == 1.0
    errors = collector.registry.get_sample_value(
        "tinyllm_instrumentation_errors_total", {"stage": "queue_priority"}
    )
    assert errors == 1.0


def test_one_object_queued_twice_gets_two_exact_waits(collector, clock):
    q = observe_queue(queue.Queue(), clock=clock)
    item = object()
    q.put(item)
    clock.now += 2
    q.put(item)
    clock.now += 3
    assert q.get() is item and q.get() is item
    assert waits(collector) == (2.0, 5.0 + 3.0)


def test_lifo_queue_waits_follow_the_items(collector, clock):
    q = observe_queue(queue.LifoQueue(), clock=clock)
    q.put("first")
    clock.now += 10
    q.put("second")
    clock.now += 1
    assert q.get() == "second"
    assert waits(collector) == (1.0, 1.0)
    clock.now += 1
    assert q.get() == "first"
    assert waits(collector) == (2.0, 1.0 + 12.0)


def test_items_queued_before_observing_count_in_size_but_not_in_waits(collector):
    q: queue.PriorityQueue[tuple[int, str]] = queue.PriorityQueue()
    q.put((1, "early"))
    observe_queue(q)
    assert size(collector, 1) == 1.0
    q.put((1, "late"))
    assert size(collector, 1) == 2.0
    assert q.get() == (1, "early")
    assert waits(collector, 1) == (None, None)
    assert q.get() == (1, "late")
    assert waits(collector, 1)[0] == 1.0
    assert size(collector, 1) == 0.0


def test_size_is_the_sum_over_observed_queues(collector):
    first, second = observe_queue(queue.Queue()), observe_queue(asyncio.Queue())
    first.put("a")
    second.put_nowait("b")
    second.put_nowait("c")
    assert size(collector) == 3.0
    first.get()
    assert size(collector) == 2.0


def test_unobserve_restores_the_queue_and_removes_its_items_from_the_gauge(collector):
    q = observe_queue(queue.Queue())
    q.put("a")
    assert unobserve_queue(q) is True
    assert size(collector) == 0.0
    q.put("b")
    assert [q.get(), q.get()] == ["a", "b"]
    assert size(collector) == 0.0 and waits(collector) == (None, None)
    assert unobserve_queue(q) is False
    assert "_put" not in vars(q)


def test_items_removed_behind_its_back_do_not_haunt_later_counts(collector, clock):
    q = observe_queue(queue.Queue(), clock=clock)
    q.put("a")
    q.put("b")
    with q.mutex:
        q.queue.clear()  # e.g. a shutdown path draining the deque directly
    clock.now += 7
    q.put("c")
    assert size(collector) == 1.0
    assert q.get() == "c"
    assert waits(collector) == (1.0, 0.0)


def test_observing_again_replaces_priority_of(collector):
    q = queue.Queue()
    assert observe_queue(q) is q
    observe_queue(q, priority_of=lambda item: "vip")
    q.put("x")
    assert size(collector, "vip") == 1.0


def test_a_collector_swapped_in_gets_the_current_size_at_the_next_change(collector):
    q = observe_queue(queue.Queue())
    q.put("a")
    q.put("b")
    second = MetricsCollector()
    set_metrics_collector(second)
    q.put("c")
    assert size(second) == 3.0
    assert size(collector) == 2.0


def test_sizes_stay_right_while_the_kit_is_off(collector):
    q = observe_queue(queue.Queue())
    q.put("a")
    tinyllm_instrument.configure(enabled=False)
    q.put("b")
    q.get()
    assert size(collector) == 1.0 and waits(collector) == (None, None)
    tinyllm_instrument.configure(enabled=True)
    q.get()
    assert size(collector) == 0.0 and waits(collector)[0] == 1.0


@pytest.mark.parametrize("obj", [queue.SimpleQueue(), [], "queue"])
def test_unsupported_queues_are_a_clear_type_error(obj):
    with pytest.raises(TypeError, match="asyncio.Queue, asyncio.PriorityQueue or queue.Queue"):
        observe_queue(obj)


def test_priority_of_must_be_callable():
    with pytest.raises(TypeError, match="priority_of must be callable"):
        observe_queue(queue.Queue(), priority_of="tier")


@pytest.mark.parametrize(
    ("item", "priority"),
    [((1, "x"), 1), ([2, "y"], 2), ("text", "default"), (5, "default"), ((), "default")],
)
def test_default_priority_of(item, priority):
    assert default_priority_of(item) == priority


def test_a_dropped_queue_takes_its_items_out_of_the_gauge(collector):
    q = observe_queue(queue.Queue())
    q.put("a")
    q.put("b")
    assert size(collector) == 2.0
    del q
    assert size(collector) == 0.0
