"""@observe: forms, callable kinds, and the four pillars of each call."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import multiprocessing
import pickle
import threading
import traceback

import observed_samples
import pytest
from opentelemetry.trace import StatusCode
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tinyllm_instrument import configure, observe, record_usage
from tinyllm_instrument.events import BufferedEventHandler, EventSeverity, get_event_emitter
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.observe import ObservedFunction, configure_observe

log = get_logger(__name__)


def _hex(span_id: int, width: int = 16) -> str:
    return format(span_id, f"0{width}x")


# --- forms -----------------------------------------------------------------------------------


def test_every_form_of_the_decorator_observes_the_call(tinyllm_capture):
    @observe
    def bare(x):
        return x

    @observe()
    def empty(x):
        return x

    @observe(node="entry")
    def named(x):
        return x

    @observe(graph="rag")
    def graph(x):
        return x

    assert [bare(1), empty(2), named(3), graph(4)] == [1, 2, 3, 4]
    names = [s.name for s in tinyllm_capture.spans]
    assert names == [
        "test_every_form_of_the_decorator_observes_the_call.<locals>.bare",
        "test_every_form_of_the_decorator_observes_the_call.<locals>.empty",
        "entry",
        "rag",
    ]
    assert tinyllm_capture.span("entry").attributes["tinyllm.node"] == "entry"
    assert tinyllm_capture.span("rag").attributes["tinyllm.graph"] == "rag"
    assert "tinyllm.node" not in tinyllm_capture.span("rag").attributes


def test_name_and_attributes_options(tinyllm_capture):
    @observe(node="n", name="custom span", attributes={"node_type": "router", "k": 3})
    def f():
        return None

    f()
    span = tinyllm_capture.span("custom span")
    assert span.attributes["node_type"] == "router"
    assert span.attributes["k"] == 3  # typed: int stays int
    assert span.attributes["code.function"].endswith("<locals>.f")
    assert span.attributes["code.namespace"] == __name__


@pytest.mark.parametrize(
    "kwargs",
    [{"node": ""}, {"graph": 3}, {"name": ["x"]}, {"attributes": "a=b"}, {"model": 1}],
)
def test_bad_options_fail_at_decoration_time_with_the_option_named(kwargs):
    (key,) = kwargs
    with pytest.raises(ValueError, match=key):
        observe(**kwargs)(lambda: None)


def test_decorating_a_non_callable_is_a_type_error():
    with pytest.raises(TypeError, match="callable"):
        observe(42)


# --- callable kinds and what is preserved -------------------------------------------------------


def test_sync_coroutine_generator_and_async_generator_keep_their_kind():
    @observe
    def f(a, b=2):
        """Doc of f."""
        return a + b

    @observe
    async def co(a):
        return a

    @observe
    def gen(n):
        yield from range(n)

    @observe
    async def agen(n):
        for i in range(n):
            yield i

    assert isinstance(f, ObservedFunction)
    assert f.__name__ == "f" and f.__doc__ == "Doc of f."
    assert f.__qualname__.endswith("<locals>.f")
    assert str(inspect.signature(f)) == "(a, b=2)"
    assert inspect.isfunction(f.__wrapped__)
    assert inspect.iscoroutinefunction(co) and not inspect.iscoroutinefunction(f)
    assert inspect.isgeneratorfunction(gen) and not inspect.isgeneratorfunction(co)
    assert inspect.isasyncgenfunction(agen) and not inspect.isasyncgenfunction(gen)
    assert f(1) == 3
    assert asyncio.run(co(5)) == 5
    assert list(gen(3)) == [0, 1, 2]

    async def consume():
        return [i async for i in agen(3)]

    assert asyncio.run(consume()) == [0, 1, 2]


class Service:
    factor = 10

    @observe
    def method(self, x):
        return (self, x)

    @observe
    @classmethod
    def cls_above(cls, x):
        return (cls, x)

    @classmethod
    @observe
    def cls_below(cls, x):
        return (cls, x)

    @observe
    @staticmethod
    def static_above(x):
        return x * 2

    @staticmethod
    @observe
    def static_below(x):
        return x * 3

    @observe
    async def amethod(self, x):
        return x * self.factor


def test_methods_classmethods_and_staticmethods_bind_correctly(tinyllm_capture):
    svc = Service()
    assert svc.method(1) == (svc, 1)
    assert Service.method(svc, 2) == (svc, 2)
    assert Service.cls_above(3) == (Service, 3) and svc.cls_above(3) == (Service, 3)
    assert Service.cls_below(4) == (Service, 4) and svc.cls_below(4) == (Service, 4)
    assert Service.static_above(5) == 10 and svc.static_above(5) == 10
    assert Service.static_below(5) == 15 and svc.static_below(5) == 15
    assert asyncio.run(svc.amethod(2)) == 20
    names = [s.name for s in tinyllm_capture.spans]
    assert names.count("Service.method") == 2
    assert names.count("Service.cls_above") == 2
    assert names.count("Service.cls_below") == 2
    assert names.count("Service.static_above") == 2
    assert names.count("Service.static_below") == 2
    assert names.count("Service.amethod") == 1


def test_callable_objects_sync_and_async(tinyllm_capture):
    class Tool:
        def __call__(self, x):
            return x + 1

    class AsyncTool:
        async def __call__(self, x):
            return x + 2

    tool = observe(node="tool")(Tool())
    atool = observe(node="atool")(AsyncTool())
    assert tool(1) == 2
    assert asyncio.run(atool(1)) == 3
    assert tinyllm_capture.span("tool").status.status_code is StatusCode.UNSET
    # the async object's span covers the awaited body, not just the coroutine's creation
    assert tinyllm_capture.span("atool").attributes["tinyllm.node"] == "atool"


def test_module_level_function_pickles_by_reference():
    assert pickle.loads(pickle.dumps(observed_samples.square)) is observed_samples.square
    assert pickle.loads(pickle.dumps(observed_samples.plain)) is observed_samples.plain


@pytest.mark.slow
def test_multiprocessing_pool_can_use_an_observed_function():
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.map(observed_samples.square, range(5)) == [0, 1, 4, 9, 16]


def test_observing_twice_wraps_once(tinyllm_capture):
    def f():
        return 1

    once = observe(node="a")(f)
    twice = observe(node="b")(once)
    assert twice is once
    cm = classmethod(once)
    assert observe(cm) is cm
    twice()
    assert [s.name for s in tinyllm_capture.spans] == ["a"]


# --- spans ----------------------------------------------------------------------------------


def test_graph_is_parent_of_its_nodes_at_any_depth_sync_and_async(tinyllm_capture):
    @observe(node="leaf")
    async def leaf():
        return 1

    @observe(node="middle")
    async def middle():
        return await leaf()

    @observe(node="sync_node")
    def sync_node():
        return 2

    @observe(graph="g")
    async def graph():
        results = await asyncio.gather(middle(), middle())
        return sum(results) + sync_node()

    assert asyncio.run(graph()) == 4
    spans = tinyllm_capture.spans
    by_id = {s.context.span_id: s for s in spans}
    root = tinyllm_capture.span("g")
    assert root.parent is None
    for mid in tinyllm_capture.spans_named("middle"):
        assert mid.parent.span_id == root.context.span_id
    for lf in tinyllm_capture.spans_named("leaf"):
        assert by_id[lf.parent.span_id].name == "middle"
        assert lf.context.trace_id == root.context.trace_id
        assert lf.attributes["tinyllm.graph"] == "g"
    assert tinyllm_capture.span("sync_node").parent.span_id == root.context.span_id


def test_attributes_are_redacted(tinyllm_capture):
    @observe(
        node="n", attributes={"api_key": "sk-abcdefghijklmnopqrstu", "note": "Bearer abc.defghijkl"}
    )
    def f():
        return 1

    f()
    attrs = tinyllm_capture.span("n").attributes
    assert "sk-abc" not in attrs["api_key"]
    assert "abc.defghijkl" not in attrs["note"]


def test_capture_input_and_output_are_redacted_json_within_budget(tinyllm_capture):
    configure_observe(capture_bytes=256)

    @observe(node="n", capture_input=True, capture_output=True)
    def f(prompt, password, max_tokens=5):
        return {"text": "x" * 1000, "author": "me"}

    f("hello", "hunter2", max_tokens=7)
    attrs = tinyllm_capture.span("n").attributes
    captured_in = json.loads(attrs["input.value"])
    assert captured_in == {"prompt": "hello", "password": "[REDACTED]", "max_tokens": 7}
    assert attrs["input.mime_type"] == attrs["output.mime_type"] == "application/json"
    out = attrs["output.value"]
    assert len(out.encode()) <= 256
    # the result keeps its shape; its long text is cut
    assert json.loads(out)["text"].endswith("...[truncated]")


def test_nothing_is_captured_by_default(tinyllm_capture):
    @observe(node="n")
    def f(secret_prompt):
        return "secret answer"

    f("p")
    attrs = tinyllm_capture.span("n").attributes
    assert not {"input.value", "output.value", "tinyllm.input", "tinyllm.output"} & set(attrs)


def test_capture_input_skips_self(tinyllm_capture):
    class A:
        @observe(node="m", capture_input=True)
        def m(self, q):
            return q

    A().m("question")
    assert json.loads(tinyllm_capture.span("m").attributes["input.value"]) == {"q": "question"}


# --- metrics --------------------------------------------------------------------------------


def test_node_metrics_use_the_enclosing_graph_label_or_none(tinyllm_capture):
    @observe(node="n")
    def node():
        return 1

    @observe(graph="g")
    def graph():
        return node()

    graph()
    node()
    cap = tinyllm_capture
    assert cap.sample("tinyllm_node_executions_total", {"node": "n", "graph": "g"}) == 1
    assert cap.sample("tinyllm_node_executions_total", {"node": "n", "graph": "none"}) == 1
    assert (
        cap.sample("tinyllm_node_execution_duration_seconds_count", {"node": "n", "graph": "g"})
        == 1
    )
    assert cap.sample("tinyllm_graph_execution_duration_seconds_count", {"graph": "g"}) == 1


def test_one_clock_read_serves_span_and_histogram(tinyllm_capture):
    @observe(node="n")
    def f():
        return sum(range(1000))

    f()
    span = tinyllm_capture.span("n")
    observed = tinyllm_capture.sample(
        "tinyllm_node_execution_duration_seconds_sum", {"node": "n", "graph": "none"}
    )
    assert observed == (span.end_time - span.start_time) / 1e9


def test_histogram_exemplar_carries_the_sampled_trace_id(tinyllm_capture):
    @observe(node="n")
    def f():
        return 1

    f()
    trace_id = _hex(tinyllm_capture.span("n").context.trace_id, 32)
    text = openmetrics_latest(tinyllm_capture.collector.registry).decode()
    exemplars = [
        s.exemplar.labels["trace_id"]
        for fam in text_string_to_metric_families(text)
        if fam.name == "tinyllm_node_execution_duration_seconds"
        for s in fam.samples
        if s.exemplar is not None
    ]
    assert exemplars == [trace_id]


def test_exact_histogram_count_across_8_threads_times_5000_calls(tinyllm_capture):
    @observe(node="hot")
    def hot(x):
        return x + 1

    def work():
        for i in range(5000):
            hot(i)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels = {"node": "hot", "graph": "none"}
    assert tinyllm_capture.sample("tinyllm_node_execution_duration_seconds_count", labels) == 40_000
    assert tinyllm_capture.sample("tinyllm_node_executions_total", labels) == 40_000


# --- log context ----------------------------------------------------------------------------


def test_log_lines_inside_a_call_carry_node_graph_and_ids_and_context_is_restored(tinyllm_capture):
    @observe(node="inner")
    def inner():
        log.info("in_inner")

    @observe(graph="g")
    def graph():
        log.info("in_graph_before")
        inner()
        log.info("in_graph_after")

    log.info("outside_before")
    graph()
    log.info("outside_after")
    cap = tinyllm_capture
    (before,) = cap.logs_with(event="outside_before")
    (after,) = cap.logs_with(event="outside_after")
    for entry in (before, after):
        assert "node" not in entry and "graph" not in entry and "trace_id" not in entry
    (line,) = cap.logs_with(event="in_inner")
    span = cap.span("inner")
    assert line["node"] == "inner" and line["graph"] == "g"
    assert line["trace_id"] == _hex(span.context.trace_id, 32)
    assert line["span_id"] == _hex(span.context.span_id)
    g = cap.span("g")
    for name in ("in_graph_before", "in_graph_after"):
        (entry,) = cap.logs_with(event=name)
        assert entry["span_id"] == _hex(g.context.span_id)
        assert entry["graph"] == "g" and "node" not in entry


def test_200_coroutines_under_gather_each_log_their_own_ids(tinyllm_capture):
    @observe(node="worker")
    async def worker(i):
        await asyncio.sleep(0)
        log.info("working", i=i)
        await asyncio.sleep(0)
        log.info("done", i=i)

    async def main():
        await asyncio.gather(*(worker(i) for i in range(200)))

    asyncio.run(main())
    spans = tinyllm_capture.spans_named("worker")
    assert len(spans) == 200
    span_ids = {_hex(s.context.span_id) for s in spans}
    per_i: dict[int, set[str]] = {}
    for entry in tinyllm_capture.logs:
        if entry.get("event") in ("working", "done"):
            per_i.setdefault(entry["i"], set()).add(entry["span_id"])
    assert len(per_i) == 200
    assert all(len(ids) == 1 for ids in per_i.values())  # both lines of one task: one span
    assert {ids.pop() for ids in per_i.values()} == span_ids  # and every task its own


def test_generator_context_is_never_left_attached_across_a_yield(tinyllm_capture):
    @observe(node="stream")
    def stream():
        log.info("producing", n=1)
        yield 1
        log.info("producing", n=2)
        yield 2

    for _item in stream():
        log.info("consuming")
    cap = tinyllm_capture
    for entry in cap.logs_with(event="consuming"):
        assert "node" not in entry and "span_id" not in entry
    span_id = _hex(cap.span("stream").context.span_id)
    assert [e["span_id"] for e in cap.logs_with(event="producing")] == [span_id, span_id]


def test_real_json_log_lines_carry_the_call_context(tmp_path):
    path = tmp_path / "app.log"
    configure_logging(log_level="INFO", log_format="json", log_file=str(path))

    @observe(node="n", graph="g")
    def f():
        get_logger("app").info("hello")

    f()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    (hello,) = [entry for entry in lines if entry["event"] == "hello"]
    assert hello["node"] == "n" and hello["graph"] == "g"


# --- events ---------------------------------------------------------------------------------


def test_lifecycle_events_for_nodes_and_graphs(tinyllm_capture):
    @observe(node="n")
    def node(fail):
        if fail:
            raise KeyError("boom")
        return 1

    @observe(graph="g")
    def graph():
        node(False)
        try:
            node(True)
        except KeyError:
            pass

    graph()
    cap = tinyllm_capture
    types = [e.event_type for e in cap.events]
    assert types == [
        "graph.execution.started",
        "node.execution.started",
        "node.execution.completed",
        "node.execution.started",
        "node.execution.failed",
        "graph.execution.completed",
    ]
    started = cap.events_of("node.execution.started")[0]
    assert started.severity is EventSeverity.DEBUG and started.category.value == "execution"
    completed = cap.events_of("node.execution.completed")[0]
    assert completed.severity is EventSeverity.DEBUG
    assert completed.data["node"] == "n" and completed.data["graph"] == "g"
    assert completed.data["duration_ms"] >= 0
    (failed,) = cap.events_of("node.execution.failed")
    assert failed.severity is EventSeverity.ERROR
    assert failed.data["error_type"] == "KeyError" and "boom" in failed.data["error_message"]
    assert completed.trace_id == _hex(cap.span("g").context.trace_id, 32)


def test_completed_severity_is_configurable(tinyllm_capture):
    configure_observe(completed_severity="info")

    @observe(node="n")
    def f():
        return 1

    f()
    (completed,) = tinyllm_capture.events_of("node.execution.completed")
    assert completed.severity is EventSeverity.INFO


def test_no_event_is_built_when_no_handler_wants_its_severity(tinyllm_capture, monkeypatch):
    # importlib: the package re-exports the decorator under the submodule's name
    observe_module = importlib.import_module("tinyllm_instrument._observer")

    emitter = get_event_emitter()
    for handler in list(emitter.handlers):
        emitter.remove_handler(handler)
    picky = BufferedEventHandler()
    picky.min_severity = EventSeverity.ERROR
    emitter.add_handler(picky)
    built = []
    real = observe_module.emit_event
    monkeypatch.setattr(
        observe_module, "emit_event", lambda *a, **k: built.append(a) or real(*a, **k)
    )

    @observe(node="n")
    def f(fail):
        if fail:
            raise ValueError("x")

    f(False)
    assert built == []
    with pytest.raises(ValueError):
        f(True)
    assert [a[0] for a in built] == ["node.execution.failed"]
    assert [e.event_type for e in picky.get_events()] == ["node.execution.failed"]


# --- tokens ---------------------------------------------------------------------------------


class _Usage:
    def __init__(self, p, c):
        self.prompt_tokens, self.completion_tokens = p, c


class _Result:
    def __init__(self, p, c):
        self.usage = _Usage(p, c)


@pytest.mark.parametrize(
    "result",
    [
        {"usage": {"prompt_tokens": 11, "completion_tokens": 7}},
        {"usage": {"input_tokens": 11, "output_tokens": 7}},
        {"input_tokens": 11, "output_tokens": 7},
        _Result(11, 7),
    ],
    ids=["dict-openai", "dict-anthropic", "flat-dict", "object"],
)
def test_usage_in_common_shapes_is_recorded(tinyllm_capture, result):
    @observe(node="llm", model="m1")
    def llm():
        return result

    llm()
    labels = {"model": "m1", "graph": "none"}
    assert tinyllm_capture.sample("tinyllm_tokens_input_total", labels) == 11
    assert tinyllm_capture.sample("tinyllm_tokens_output_total", labels) == 7
    attrs = tinyllm_capture.span("llm").attributes
    assert attrs["gen_ai.usage.input_tokens"] == 11 and attrs["gen_ai.usage.output_tokens"] == 7


def test_record_usage_serves_streaming_nodes(tinyllm_capture):
    @observe(graph="g")
    def graph():
        return list(stream())

    @observe(node="stream", model="m2")
    def stream():
        yield "a"
        yield "b"
        record_usage(input_tokens=5, output_tokens=2)

    assert graph() == ["a", "b"]
    labels = {"model": "m2", "graph": "g"}
    assert tinyllm_capture.sample("tinyllm_tokens_input_total", labels) == 5
    assert tinyllm_capture.sample("tinyllm_tokens_output_total", labels) == 2
    assert tinyllm_capture.span("stream").attributes["gen_ai.usage.output_tokens"] == 2


def test_malformed_usage_does_not_break_the_call_and_is_counted(tinyllm_capture):
    @observe(node="llm")
    def llm():
        return {"usage": {"prompt_tokens": "eleven", "completion_tokens": -1}}

    assert llm() == {"usage": {"prompt_tokens": "eleven", "completion_tokens": -1}}
    assert tinyllm_capture.sample("tinyllm_instrumentation_errors_total", {"stage": "usage"}) == 1


# --- errors, cancellation, streams ------------------------------------------------------------


class NodeFailure(Exception):
    pass


def test_exception_is_recorded_counted_and_propagates_as_the_same_object(tinyllm_capture):
    raised = NodeFailure("bad input")

    @observe(node="n", graph="g")
    def user_function():
        raise raised

    with pytest.raises(NodeFailure) as info:
        user_function()
    assert info.value is raised
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "user_function"
    span = tinyllm_capture.span("n")
    assert span.status.status_code is StatusCode.ERROR
    assert "NodeFailure" in span.status.description
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"].endswith("NodeFailure")
    labels = {"node": "n", "graph": "g", "error_type": "NodeFailure"}
    assert tinyllm_capture.sample("tinyllm_node_errors_total", labels) == 1


def test_async_exception_propagates_unchanged(tinyllm_capture):
    @observe(node="an")
    async def fails():
        raise NodeFailure("async")

    with pytest.raises(NodeFailure, match="async"):
        asyncio.run(fails())
    assert tinyllm_capture.span("an").status.status_code is StatusCode.ERROR


def test_cancellation_ends_the_span_marked_cancelled_and_reraises(tinyllm_capture):
    started = asyncio.Event()

    @observe(node="slow")
    async def slow():
        started.set()
        await asyncio.sleep(10)

    async def main():
        task = asyncio.create_task(slow())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    span = tinyllm_capture.span("slow")
    assert span.end_time is not None
    assert span.attributes["tinyllm.cancelled"] is True
    assert span.status.status_code is not StatusCode.ERROR
    labels = {"node": "slow", "graph": "none", "error_type": "CancelledError"}
    assert tinyllm_capture.sample("tinyllm_node_errors_total", labels) is None


def test_generator_span_covers_first_next_to_exhaustion_with_first_item_and_count(tinyllm_capture):
    @observe(node="gen")
    def gen():
        yield "a"
        yield "b"
        yield "c"

    stream = gen()
    assert tinyllm_capture.spans == []  # nothing starts before the first next()
    assert list(stream) == ["a", "b", "c"]
    span = tinyllm_capture.span("gen")
    assert span.attributes["tinyllm.generator.items"] == 3
    assert span.attributes["tinyllm.time_to_first_item_ms"] >= 0
    assert "tinyllm.generator.closed_early" not in span.attributes
    labels = {"node": "gen", "graph": "none"}
    assert tinyllm_capture.sample("tinyllm_node_time_to_first_item_seconds_count", labels) == 1
    assert tinyllm_capture.sample("tinyllm_node_execution_duration_seconds_count", labels) == 1


def test_time_to_first_item_lands_in_its_bucket_and_sum(tinyllm_capture):
    import time

    from tinyllm_instrument.metrics import TIME_TO_FIRST_ITEM_BUCKETS

    @observe(node="slow_start")
    def gen():
        time.sleep(0.03)
        yield "a"
        yield "b"

    assert list(gen()) == ["a", "b"]
    seconds = tinyllm_capture.span("slow_start").attributes["tinyllm.time_to_first_item_ms"] / 1000
    assert seconds >= 0.03
    labels = {"node": "slow_start", "graph": "none"}
    name = "tinyllm_node_time_to_first_item_seconds"
    assert tinyllm_capture.sample(f"{name}_count", labels) == 1
    assert tinyllm_capture.sample(f"{name}_sum", labels) == pytest.approx(seconds, abs=1e-6)
    for bound in TIME_TO_FIRST_ITEM_BUCKETS:
        le = "+Inf" if bound == float("inf") else str(float(bound))
        got = tinyllm_capture.sample(f"{name}_bucket", {**labels, "le": le})
        assert got == (1 if seconds <= bound else 0), (bound, seconds, got)


def test_breaking_out_of_a_generator_is_closed_early_not_an_error(tinyllm_capture):
    closed = []

    @observe(node="gen")
    def gen():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    for item in gen():
        if item == 2:
            break
    assert closed == [True]
    span = tinyllm_capture.span("gen")
    assert span.attributes["tinyllm.generator.closed_early"] is True
    assert span.attributes["tinyllm.generator.items"] == 3
    assert span.status.status_code is StatusCode.UNSET


def test_generator_send_throw_and_return_value_are_forwarded(tinyllm_capture):
    @observe(node="echo")
    def echo():
        received = []
        try:
            while True:
                value = yield len(received)
                received.append(value)
        except KeyError:
            yield "caught"
        return received

    g = echo()
    assert next(g) == 0
    assert g.send("x") == 1
    assert g.send("y") == 2
    assert g.throw(KeyError("k")) == "caught"
    with pytest.raises(StopIteration) as stop:
        next(g)
    assert stop.value.value == ["x", "y"]


def test_generator_exception_marks_the_span_as_error(tinyllm_capture):
    @observe(node="gen")
    def gen():
        yield 1
        raise NodeFailure("mid-stream")

    with pytest.raises(NodeFailure):
        list(gen())
    span = tinyllm_capture.span("gen")
    assert span.status.status_code is StatusCode.ERROR
    labels = {"node": "gen", "graph": "none", "error_type": "NodeFailure"}
    assert tinyllm_capture.sample("tinyllm_node_errors_total", labels) == 1


def test_async_generator_asend_athrow_and_early_close(tinyllm_capture):
    @observe(node="agen")
    async def agen():
        total = 0
        try:
            while True:
                value = yield total
                total += value or 0
        except KeyError:
            yield -1

    @observe(node="aloop")
    async def aloop():
        for i in range(10):
            yield i

    async def main():
        g = agen()
        assert await g.asend(None) == 0
        assert await g.asend(5) == 5
        assert await g.athrow(KeyError()) == -1
        await g.aclose()
        out = []
        async with contextlib.aclosing(aloop()) as stream:  # a break alone does not close it
            async for i in stream:
                out.append(i)
                if i == 1:
                    break
        return out

    assert asyncio.run(main()) == [0, 1]
    assert tinyllm_capture.span("agen").attributes["tinyllm.generator.closed_early"] is True
    aloop_span = tinyllm_capture.span("aloop")
    assert aloop_span.attributes["tinyllm.generator.items"] == 2
    assert aloop_span.attributes["tinyllm.generator.closed_early"] is True


def test_an_abandoned_async_generator_still_ends_its_span_without_error(tinyllm_capture):
    @observe(node="abandoned")
    async def numbers():
        for i in range(10):
            yield i

    async def main():
        async for i in numbers():
            if i == 1:
                break  # never aclose()d: asyncio finalises it when the loop shuts down

    asyncio.run(main())
    span = tinyllm_capture.span("abandoned")
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["tinyllm.generator.items"] == 2


# --- failure isolation and the switch -------------------------------------------------------------


def test_a_raising_event_handler_or_unprintable_attribute_never_reaches_the_user(tinyllm_capture):
    from tinyllm_instrument.events import EventHandler

    class Broken(EventHandler):
        def handle(self, event):
            raise RuntimeError("handler down")

    broken = Broken()
    broken.min_severity = EventSeverity.DEBUG
    get_event_emitter().add_handler(broken)

    class Unprintable:
        def __str__(self):
            raise RuntimeError("no str")

        __repr__ = __str__

    @observe(node="n", attributes={"weird": Unprintable()}, capture_output=True)
    def f():
        return Unprintable()

    for _ in range(3):
        assert isinstance(f(), Unprintable)
    errors = "tinyllm_instrumentation_errors_total"
    # started + completed per call reach the broken handler: 2 x 3 failures, each counted
    assert tinyllm_capture.sample(errors, {"stage": "event_handler"}) == 6
    # the static attribute once, at decoration; the captured result at each of the 3 calls
    assert tinyllm_capture.sample(errors, {"stage": "capture"}) == 3


def test_disabled_switch_makes_a_call_a_pass_through(tinyllm_capture):
    @observe(node="n")
    def f(x):
        return x * 2

    configure(enabled=False)
    assert f(2) == 4
    assert tinyllm_capture.spans == []
    assert (
        tinyllm_capture.sample("tinyllm_node_executions_total", {"node": "n", "graph": "none"})
        is None
    )
    configure(enabled=True)
    f(2)
    assert len(tinyllm_capture.spans) == 1


def test_env_switch_turns_the_kit_off(monkeypatch, tinyllm_capture):
    monkeypatch.setenv("TINYLLM_INSTRUMENT_ENABLED", "0")
    configure()

    @observe(node="n")
    def f():
        return 1

    assert f() == 1
    assert tinyllm_capture.spans == []


# --- context across threads -------------------------------------------------------------------


def test_pool_and_thread_work_inside_an_observed_call_joins_its_trace_and_graph(tinyllm_capture):
    from concurrent.futures import ThreadPoolExecutor

    @observe(node="in_pool")
    def in_pool(i):
        log.info("pooled", i=i)
        return i

    @observe(node="in_thread")
    def in_thread():
        log.info("threaded")

    executor = ThreadPoolExecutor(max_workers=2)

    @observe(graph="fanout")
    def graph():
        results = list(executor.map(in_pool, range(4)))
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        return results

    assert graph() == [0, 1, 2, 3]
    # Later work on the same pool, submitted outside any observed call, carries nothing stale.
    executor.submit(in_pool, 99).result()
    executor.shutdown()
    cap = tinyllm_capture
    root = cap.span("fanout")
    pooled = cap.spans_named("in_pool")
    inside = [s for s in pooled if s.parent is not None]
    assert len(inside) == 4
    for span in inside + [cap.span("in_thread")]:
        assert span.parent.span_id == root.context.span_id
        assert span.attributes["tinyllm.graph"] == "fanout"
    (outside,) = [s for s in pooled if s.parent is None]
    assert "tinyllm.graph" not in outside.attributes
    assert cap.sample("tinyllm_node_executions_total", {"node": "in_pool", "graph": "fanout"}) == 4
    assert cap.sample("tinyllm_node_executions_total", {"node": "in_pool", "graph": "none"}) == 1
    (threaded,) = cap.logs_with(event="threaded")
    assert threaded["graph"] == "fanout"
    assert threaded["trace_id"] == _hex(root.context.trace_id, 32)


def test_propagate_to_threads_false_leaves_threads_alone(tinyllm_capture):
    from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry

    configure_telemetry(
        TelemetryConfig(enable_tracing=True, exporter="none", propagate_to_threads=False)
    )

    @observe(node="in_thread")
    def in_thread():
        return 1

    @observe(graph="g")
    def graph():
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()

    graph()
    span = tinyllm_capture.span("in_thread")
    assert span.parent is None
    assert span.context.trace_id != tinyllm_capture.span("g").context.trace_id


# --- end to end at a real OTLP receiver -------------------------------------------------------


def test_observed_graph_arrives_at_a_real_otlp_grpc_receiver():
    from otlp_receivers import GrpcTraceReceiver

    from tinyllm_instrument.telemetry import (
        TelemetryConfig,
        configure_telemetry,
        flush_telemetry,
        reset_telemetry,
    )

    @observe(node="retrieve", attributes={"top_k": 3})
    def retrieve(q):
        return ["doc"]

    @observe(node="generate", model="fake")
    async def generate(q, docs):
        if q == "bad":
            raise NodeFailure("model down")
        return {"usage": {"prompt_tokens": 4, "completion_tokens": 2}}

    @observe(graph="rag")
    async def rag(q):
        return await generate(q, retrieve(q))

    with GrpcTraceReceiver() as receiver:
        configure_telemetry(
            TelemetryConfig(
                enable_tracing=True,
                exporter="otlp",
                otlp_endpoint=receiver.endpoint,
                service_name="observe-e2e",
            )
        )
        try:
            asyncio.run(rag("fine"))
            with pytest.raises(NodeFailure):
                asyncio.run(rag("bad"))
            assert flush_telemetry(5.0)
            spans = receiver.wait_for(6, timeout=10)
        finally:
            reset_telemetry()
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == ["generate", "rag", "retrieve"]
    for root in by_name["rag"]:
        assert root.parent_span_id is None
        assert root.resource["service.name"] == "observe-e2e"
        children = [s for s in spans if s.parent_span_id == root.span_id]
        assert sorted(s.name for s in children) == ["generate", "retrieve"]
        assert all(s.trace_id == root.trace_id for s in children)
    (retrieve_span, _) = by_name["retrieve"]
    assert retrieve_span.attributes["top_k"] == 3  # typed: an int arrives as an int
    assert retrieve_span.attributes["tinyllm.graph"] == "rag"
    (ok,) = [s for s in by_name["generate"] if s.status_code == "UNSET"]
    (failed,) = [s for s in by_name["generate"] if s.status_code == "ERROR"]
    assert ok.attributes["gen_ai.usage.input_tokens"] == 4
    assert "model down" in failed.status_message
    assert [name for name, _ in failed.events] == ["exception"]


def test_model_nodes_feed_the_guides_request_metrics(tinyllm_capture):
    @observe(node="llm", model="m")
    def llm(fail):
        if fail:
            raise TimeoutError("slow")
        active_during.append(
            tinyllm_capture.sample("tinyllm_active_requests", {"model": "m", "graph": "g"})
        )
        return "ok"

    active_during: list = []

    @observe(graph="g")
    def graph():
        llm(False)
        with pytest.raises(TimeoutError):
            llm(True)

    graph()
    cap = tinyllm_capture
    labels = {"model": "m", "graph": "g"}
    assert active_during == [1.0]
    assert cap.sample("tinyllm_active_requests", labels) == 0
    assert cap.sample("tinyllm_requests_total", dict(labels, request_type="generate")) == 2
    assert cap.sample("tinyllm_request_latency_seconds_count", labels) == 2
    assert cap.sample("tinyllm_errors_total", dict(labels, error_type="TimeoutError")) == 1
