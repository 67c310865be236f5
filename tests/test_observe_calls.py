"""@observe's wrapper mechanics: what a call looks like from inside and outside, at the edges.

Recursion depth, one exception through many observed frames, a kit that fails to start a call,
streams that fail before their first step, the caller's frame, and what reaches the span of a
call that raised a secret.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import re
import sys
import types
import warnings

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from tinyllm_instrument import instrument, observe, uninstrument
from tinyllm_instrument._context import CURRENT_CALL, NO_CALL
from tinyllm_instrument.logging import configure_logging

SECRET = "sk-proj-Zq9abcdefghijklmnopqrstuvwx"


def _nothing_current() -> bool:
    return (
        CURRENT_CALL.get() == NO_CALL and not trace.get_current_span().get_span_context().is_valid
    )


# --- recursion: one extra frame per level at most ------------------------------------------------


def _depth(call) -> int:
    reached = [0]
    try:
        call(reached)
    except RecursionError:
        pass
    return reached[0]


def _sync_recursion(deco):
    def f(n, reached):
        reached[0] = n
        return f(n + 1, reached)

    f = deco(f)
    return lambda reached: f(0, reached)


def _async_recursion(deco):
    async def f(n, reached):
        reached[0] = n
        return await f(n + 1, reached)

    f = deco(f)
    return lambda reached: asyncio.run(f(0, reached))


def _method_recursion(deco):
    class Walker:
        def step(self, n, reached):
            reached[0] = n
            return self.step(n + 1, reached)

    Walker.step = deco(Walker.step)
    return lambda reached: Walker().step(0, reached)


@pytest.mark.parametrize("shape", [_sync_recursion, _async_recursion, _method_recursion])
def test_an_observed_level_of_recursion_costs_at_most_one_more_frame(tinyllm_capture, shape):
    plain = _depth(shape(lambda f: f))
    observed = _depth(shape(observe))
    # One frame of the wrapper per level: half the plain depth, less the few frames the kit
    # needs at the deepest level to start a call.
    assert observed >= plain // 2 - 16, (plain, observed)


def test_instrumented_recursion_costs_at_most_one_more_frame(tinyllm_capture, monkeypatch):
    module = types.ModuleType("recursive_target")
    exec(
        "def f(n, reached):\n    reached[0] = n\n    return f(n + 1, reached)\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, "recursive_target", module)
    plain = _depth(lambda reached: module.f(0, reached))
    instrument("recursive_target:f")
    try:
        observed = _depth(lambda reached: module.f(0, reached))
    finally:
        uninstrument()
    assert observed >= plain // 2 - 16, (plain, observed)


# --- one exception through many observed frames ---------------------------------------------


def test_a_recursion_error_through_hundreds_of_observed_frames_is_one_event(tinyllm_capture):
    @observe(node="walk")
    def walk(n):
        return walk(n + 1)

    limit = sys.getrecursionlimit()
    with pytest.raises(RecursionError) as info:
        walk(0)
    assert sys.getrecursionlimit() == limit  # the frames lent to the error path are given back
    assert info.value.__context__ is None  # the user's own RecursionError, not one of the kit's
    spans = tinyllm_capture.spans_named("walk")
    assert len(spans) > 400
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    assert all([e.name for e in s.events] == ["exception"] for s in spans)
    assert len(tinyllm_capture.events_of("node.execution.failed")) == 1
    labels = {"node": "walk", "graph": "none", "error_type": "RecursionError"}
    assert tinyllm_capture.sample("tinyllm_node_errors_total", labels) == len(spans)
    assert _nothing_current()


def test_a_recursion_error_through_hundreds_of_observed_frames_is_one_log_line():
    stream = io.StringIO()
    configure_logging(log_format="json", stream=stream)

    @observe(node="walk")
    def walk(n):
        return walk(n + 1)

    with pytest.raises(RecursionError):
        walk(0)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = [line for line in lines if line.get("event_type") == "node.execution.failed"]
    assert len(failed) == 1
    # besides it, at most the kit's one report that it could not observe the deepest calls
    assert len(lines) <= 2, lines


def test_an_exception_through_graph_and_node_is_one_event_each(tinyllm_capture):
    @observe(node="leaf")
    def leaf(n):
        if n == 0:
            raise KeyError("deep")
        return leaf(n - 1)

    @observe(graph="g")
    def graph():
        return leaf(20)

    with pytest.raises(KeyError):
        graph()
    types_ = [e.event_type for e in tinyllm_capture.events if e.event_type.endswith("failed")]
    assert types_ == ["node.execution.failed", "graph.execution.failed"]
    assert len(tinyllm_capture.spans_named("leaf")) == 21


def test_the_same_node_failing_again_later_is_a_new_event(tinyllm_capture):
    @observe(node="flaky")
    def flaky():
        raise ValueError("again")

    for _ in range(3):
        with pytest.raises(ValueError):
            flaky()
    assert len(tinyllm_capture.events_of("node.execution.failed")) == 3


# --- the kit failing to start a call changes nothing the user can see --------------------------


def _break_the_tracer(monkeypatch):
    def broken_tracer():
        raise RuntimeError("tracer down")

    monkeypatch.setattr(sys.modules["tinyllm_instrument._observer"], "get_tracer", broken_tracer)


class UserError(Exception):
    pass


def _sync(seen):
    def f():
        seen.append(sys.exc_info())
        raise UserError("mine")

    return f, lambda f: f()


def _async(seen):
    async def f():
        seen.append(sys.exc_info())
        raise UserError("mine")

    return f, lambda f: asyncio.run(f())


def _gen(seen):
    def f():
        seen.append(sys.exc_info())
        raise UserError("mine")
        yield

    return f, lambda f: list(f())


def _agen(seen):
    async def f():
        seen.append(sys.exc_info())
        raise UserError("mine")
        yield

    async def consume(f):
        return [x async for x in f()]

    return f, lambda f: asyncio.run(consume(f))


@pytest.mark.parametrize("kind", [_sync, _async, _gen, _agen], ids=["sync", "async", "gen", "agen"])
def test_a_broken_tracer_leaves_the_users_code_outside_any_except_block(
    tinyllm_capture, monkeypatch, kind
):
    _break_the_tracer(monkeypatch)
    seen: list = []
    func, run = kind(seen)
    with pytest.raises(UserError) as info:
        run(observe(node="n")(func))
    assert seen == [(None, None, None)]
    assert info.value.__context__ is None
    assert tinyllm_capture.sample(
        "tinyllm_instrumentation_errors_total", {"stage": "observe_begin"}
    )


# --- streams: bad arguments and a first step that fails ------------------------------------------


def test_every_kind_called_with_bad_arguments_raises_at_the_call_as_without_the_kit(
    tinyllm_capture,
):
    @observe(node="f")
    def f(n, *, k=1):
        return n

    @observe(node="co")
    async def co(n, *, k=1):
        return n

    @observe(node="gen")
    def gen(n, *, k=1):
        yield n

    @observe(node="agen")
    async def agen(n, *, k=1):
        yield n

    for func in (f, co, gen, agen):
        for args, kwargs in (((1, 2, 3), {}), ((), {}), ((1,), {"j": 2})):
            with pytest.raises(TypeError) as observed:
                func(*args, **kwargs)
            with pytest.raises(TypeError) as plain:
                func.__wrapped__(*args, **kwargs)
            assert str(observed.value) == str(plain.value)
    # a call that never started (its arguments did not bind) is not observed, for every kind
    assert tinyllm_capture.spans == []
    assert _nothing_current()


@pytest.mark.parametrize("how", ["bad arguments", "raises at once"])
def test_a_generator_failing_before_its_first_item_leaves_nothing_current(tinyllm_capture, how):
    @observe(node="gen", graph="g", model="m")
    def gen(n):
        raise UserError("first step")
        yield n

    with pytest.raises(TypeError if how == "bad arguments" else UserError):
        if how == "bad arguments":
            gen(1, 2)
        else:
            next(gen(1))
    assert _nothing_current()
    spans = tinyllm_capture.spans_named("gen")
    assert all(s.end_time is not None for s in spans)
    assert [s.status.status_code for s in spans] == (
        [] if how == "bad arguments" else [StatusCode.ERROR]
    )


@pytest.mark.parametrize("how", ["bad arguments", "raises at once"])
def test_an_async_generator_failing_before_its_first_item_leaves_nothing_current(
    tinyllm_capture, how
):
    @observe(node="agen", graph="g", model="m")
    async def agen(n):
        raise UserError("first step")
        yield n

    async def task():
        with pytest.raises(TypeError if how == "bad arguments" else UserError):
            if how == "bad arguments":
                agen(1, 2)
            else:
                await agen(1).__anext__()
        return _nothing_current()

    assert asyncio.run(task())
    spans = tinyllm_capture.spans_named("agen")
    assert all(s.end_time is not None for s in spans)
    assert [s.status.status_code for s in spans] == (
        [] if how == "bad arguments" else [StatusCode.ERROR]
    )


# --- the frame above the user's function -------------------------------------------------------


def test_the_frame_above_an_observed_function_belongs_to_the_users_module(tinyllm_capture):
    @observe
    def who_called():
        return sys._getframe(1).f_globals["__name__"]

    @observe
    async def who_called_async():
        return sys._getframe(1).f_globals["__name__"]

    assert who_called() == __name__
    assert asyncio.run(who_called_async()) == __name__


def test_a_warning_from_an_observed_function_is_attributed_to_its_caller(tinyllm_capture):
    @observe
    def deprecated():
        warnings.warn("use something else", UserWarning, stacklevel=2)

    def caller():
        deprecated()
        return sys._getframe().f_lineno - 1

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        line = caller()
    (warning,) = seen
    assert (warning.filename, warning.lineno) == (__file__, line)
    # and filters by module see the caller's module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("error", category=UserWarning, module=re.escape(__name__))
        with pytest.raises(UserWarning, match="something else"):
            caller()


def test_a_log_call_with_stacklevel_in_an_observed_function_names_its_caller(tinyllm_capture):
    # A stdlib Logger itself: configure_logging installs structlog's logger class process-wide,
    # whose findCaller counts frames its own way (see the report on issue 14).
    logger = logging.Logger("app.noisy")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)

    @observe
    def noisy():
        logger.warning("from below", stacklevel=2)

    def caller():
        noisy()
        return sys._getframe().f_lineno - 1

    line = caller()
    (record,) = records
    assert (record.pathname, record.lineno, record.funcName) == (__file__, line, "caller")


# --- what reaches the span of a call that raised a secret --------------------------------------


class LLMClient:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def __repr__(self) -> str:
        return f"LLMClient(api_key={self.api_key!r})"


@pytest.mark.parametrize("kind", ["sync", "async", "gen", "agen"])
def test_a_secret_in_an_exception_reaches_no_span_field(tinyllm_capture, kind):
    def fail():
        try:
            raise KeyError(f"cause with {SECRET}")
        except KeyError as cause:
            raise ValueError(f"bad key {SECRET}") from cause

    if kind == "sync":
        node = observe(node="n")(lambda: fail())
        run = node
    elif kind == "async":

        async def coro():
            fail()

        run = lambda: asyncio.run(observe(node="n")(coro)())  # noqa: E731
    elif kind == "gen":

        def gen():
            yield 1
            fail()

        run = lambda: list(observe(node="n")(gen)())  # noqa: E731
    else:

        async def agen():
            yield 1
            fail()

        async def consume():
            return [x async for x in observe(node="n")(agen)()]

        run = lambda: asyncio.run(consume())  # noqa: E731
    with pytest.raises(ValueError):
        run()
    (span,) = tinyllm_capture.spans_named("n")
    (event,) = span.events
    text = json.dumps([dict(event.attributes), span.status.description, dict(span.attributes)])
    assert "Zq9abc" not in text
    assert event.attributes["exception.message"] == "bad key [REDACTED]"
    assert "The above exception was the direct cause" in event.attributes["exception.stacktrace"]
    assert span.status.description == "ValueError: bad key [REDACTED]"
    (failed,) = tinyllm_capture.events_of("node.execution.failed")
    assert "Zq9abc" not in json.dumps(failed.to_dict())


def test_captured_values_json_cannot_encode_are_redacted_before_they_are_printed(
    tinyllm_capture,
):
    @observe(node="n", capture_input=True, capture_output=True)
    def f(payload):
        return {("tuple", "key"): 1, "password": "hunter2", "client": LLMClient(SECRET)}

    f({("a", 1): "x", "api_key": "sk-live-abcdefghijkl", "note": "password=hunter2"})
    attrs = tinyllm_capture.span("n").attributes
    for key in ("input.value", "output.value"):
        text = attrs[key]
        json.loads(text)  # still valid JSON
        assert "hunter2" not in text and "abcdefghijkl" not in text and "Zq9abc" not in text, text
    assert "[REDACTED]" in attrs["output.value"]


def test_object_attribute_values_are_redacted(tinyllm_capture):
    @observe(node="n", attributes={"client": LLMClient(SECRET)}, capture_output=True)
    def f():
        return [LLMClient(SECRET)]

    f()
    attrs = tinyllm_capture.span("n").attributes
    assert "Zq9abc" not in json.dumps(dict(attrs))
    assert attrs["client"] == "LLMClient(api_key='[REDACTED]')"


# --- attributes the OTLP encoder would drop -------------------------------------------------------


def test_an_int_past_64_bits_arrives_at_a_real_otlp_receiver_without_an_encoder_error(caplog):
    from otlp_receivers import GrpcTraceReceiver

    from tinyllm_instrument.telemetry import (
        TelemetryConfig,
        configure_telemetry,
        flush_telemetry,
        reset_telemetry,
    )

    @observe(node="big", attributes={"big": 2**70, "small": 7})
    def big():
        return 1

    with GrpcTraceReceiver() as receiver:
        configure_telemetry(
            TelemetryConfig(enable_tracing=True, exporter="otlp", otlp_endpoint=receiver.endpoint)
        )
        try:
            with caplog.at_level(logging.WARNING):
                big()
                assert flush_telemetry(5.0)
                (span,) = receiver.wait_for(1, timeout=10)
        finally:
            reset_telemetry()
    assert span.attributes["big"] == str(2**70)
    assert span.attributes["small"] == 7
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- the wrapper takes exactly the parameters of the function it wraps --------------------------

SHAPES = [
    "def f(): return ()",
    "def f(a): return (a,)",
    "def f(a, b=2, c=None): return (a, b, c)",
    "def f(a, /, b, *, c, d=4): return (a, b, c, d)",
    "def f(a=1, /, b=2): return (a, b)",
    "def f(*args): return args",
    "def f(**kwargs): return kwargs",
    "def f(a, *args, k=3, **kwargs): return (a, args, k, kwargs)",
    "def f(self, call, func, gate, observed, factory): return (self, call, func, gate, observed)",
    "def f(_tl_func, _tl_call=2): return (_tl_func, _tl_call)",
    "def f(a, *, _tl_k0=9): return (a, _tl_k0)",
    "def f(x=[]): x.append(1); return len(x)",
]
CALLS = [
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((1,), {"b": 5}),
    ((1, 2), {"c": 3}),
    ((), {"a": 1, "b": 2}),
    ((1, 2, 3, 4, 5), {"k": 6, "z": 7}),
    ((1, 2, 3, 4, 5, 6), {}),
    ((), {"_tl_func": 1}),
]


def _outcome(func, args, kwargs):
    try:
        return ("ok", func(*args, **kwargs))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("is_async", [False, True], ids=["def", "async def"])
@pytest.mark.parametrize("source", SHAPES)
def test_the_wrapper_binds_arguments_exactly_as_the_function_does(
    tinyllm_capture, source, is_async
):
    if is_async:
        source = "async " + source
    plain_ns: dict = {}
    exec(source, plain_ns)
    observed_ns: dict = {}
    exec(source, observed_ns)
    observed = observe(capture_input=True)(observed_ns["f"])

    def run(func):
        if not is_async:
            return func
        return lambda *args, **kwargs: asyncio.run(func(*args, **kwargs))

    for args, kwargs in CALLS:
        expected = _outcome(run(plain_ns["f"]), args, kwargs)
        assert _outcome(run(observed), args, kwargs) == expected, (args, kwargs)
    for span in tinyllm_capture.spans:
        json.loads(span.attributes["input.value"])
    assert inspect.signature(observed) == inspect.signature(plain_ns["f"])


def test_a_mutable_default_is_the_functions_own_object(tinyllm_capture):
    @observe
    def remember(item, seen=[]):  # noqa: B006 - the behaviour under test
        seen.append(item)
        return seen

    assert remember(1) is remember(2) is remember.__wrapped__(3)
    assert remember(4) == [1, 2, 3, 4]


# --- observe_as: the role chosen per call, for instrument() -------------------------------------


def test_observe_as_graph_or_node_is_the_graph_outside_any_graph_and_a_node_inside(
    tinyllm_capture,
):
    from tinyllm_instrument.observe import GRAPH_OR_NODE, observe_as

    def step(n):
        return step(n - 1) if n else "done"

    step = observe_as(step, GRAPH_OR_NODE, graph="agent")
    assert step(2) == "done"
    outer = tinyllm_capture.span("agent")
    assert "tinyllm.node" not in outer.attributes
    inner = [s for s in tinyllm_capture.spans if s.name != "agent"]
    assert len(inner) == 2 and all(s.attributes["tinyllm.graph"] == "agent" for s in inner)
    assert {s.name for s in inner} == {step.__qualname__}  # nodes are named after the qualname
    labels = {"node": step.__qualname__, "graph": "agent"}
    assert tinyllm_capture.sample("tinyllm_node_executions_total", labels) == 2


def test_observe_as_runs_unobserved_while_is_active_says_no(tinyllm_capture):
    from tinyllm_instrument.observe import NODE, observe_as

    active = [True]

    def work(x):
        return x + 1

    observed = observe_as(work, NODE, is_active=lambda: active[0])
    assert observed(1) == 2
    active[0] = False
    assert observed(2) == 3
    assert len(tinyllm_capture.spans) == 1
    with pytest.raises(ValueError, match="role"):
        observe_as(work, "boss")


def test_countless_distinct_signatures_keep_working_without_growing_the_line_cache(
    tinyllm_capture,
):
    import linecache

    def ours() -> int:
        return sum(1 for name in linecache.cache if name.startswith("<tinyllm_instrument"))

    before = ours()
    for i in range(1500):
        namespace: dict = {}
        exec(f"def f(p{i}, q=1):\n    return p{i} + q\n", namespace)
        assert observe(namespace["f"])(i) == i + 1
    assert ours() - before <= 1024


def test_an_observed_call_keeps_every_value_of_the_context_it_was_called_in(tinyllm_capture):
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    seen = {}

    @observe(node="inner")
    def inner():
        seen["baggage"] = baggage.get_baggage("tenant")
        seen["value"] = otel_context.get_value("app-key")
        seen["span"] = trace.get_current_span().get_span_context().span_id
        return 1

    ctx = baggage.set_baggage("tenant", "acme")
    ctx = otel_context.set_value("app-key", "kept", ctx)
    token = otel_context.attach(ctx)
    try:
        assert inner() == 1
        assert otel_context.get_value("app-key") == "kept"  # restored, nothing added
        assert not trace.get_current_span().get_span_context().is_valid
    finally:
        otel_context.detach(token)
    assert seen["baggage"] == "acme" and seen["value"] == "kept"
    assert seen["span"] == tinyllm_capture.span("inner").context.span_id
