"""using_attributes: nesting, threads, pools, tasks, generators, spans, log lines, children."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tinyllm_instrument.genai import (
    SessionSpanProcessor,
    add_session_fields,
    inject_session,
    session_attributes,
    session_fields,
    session_from_carrier,
    using_attributes,
)
from tinyllm_instrument.genai.sessions import on_start
from tinyllm_instrument.metrics import get_metrics_collector
from tinyllm_instrument.redaction import configure_redaction, reset_redaction


@pytest.fixture(autouse=True)
def _default_redaction():
    reset_redaction()
    yield
    reset_redaction()


@pytest.fixture
def spans():
    """A provider with the session processor (as the kit's will have) and an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def attrs_of(exporter: InMemorySpanExporter) -> dict[str, dict[str, Any]]:
    return {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}


# --------------------------------------------------------------------------------------------
# Values and nesting
# --------------------------------------------------------------------------------------------


def test_outside_any_scope_nothing():
    assert session_fields() == {}
    assert dict(session_attributes()) == {}


def test_the_attributes_every_span_gets():
    with using_attributes(
        session_id="chat-1", user_id="u-9", tags=["beta", "eu"], metadata={"plan": "pro", "n": 2}
    ):
        attrs = dict(session_attributes())
    assert attrs == {
        "session.id": "chat-1",
        "gen_ai.conversation.id": "chat-1",
        "user.id": "u-9",
        "tag.tags": ["beta", "eu"],
        "metadata": '{"plan":"pro","n":2}',
    }
    assert json.loads(attrs["metadata"]) == {"plan": "pro", "n": 2}


def test_nesting_merges_inner_wins_tags_united_in_order():
    with using_attributes(
        session_id="s1", user_id="u1", tags=["a", "b"], metadata={"x": 1, "y": 1}
    ):
        with using_attributes(session_id="s2", tags=["b", "c", "a", "d"], metadata={"y": 2}):
            inner = dict(session_attributes())
        after = dict(session_attributes())
    assert inner["session.id"] == "s2"
    assert inner["user.id"] == "u1"  # not given inside: kept
    assert inner["tag.tags"] == ["a", "b", "c", "d"]
    assert json.loads(inner["metadata"]) == {"x": 1, "y": 2}
    assert after["session.id"] == "s1" and after["tag.tags"] == ["a", "b"]
    assert session_fields() == {}


def test_an_exception_leaves_the_scope_too():
    with pytest.raises(KeyError):
        with using_attributes(session_id="s"):
            raise KeyError("x")
    assert session_fields() == {}


def test_ids_are_converted_bounded_and_redacted():
    session = uuid.UUID("12345678-1234-5678-1234-567812345678")
    with using_attributes(session_id=session, user_id=42):
        assert session_fields() == {
            "session_id": "12345678-1234-5678-1234-567812345678",
            "user_id": "42",
        }
    with using_attributes(session_id="x" * 10_000, user_id="Bearer abcdefghijklmnop"):
        fields = session_fields()
    assert len(fields["session_id"].encode()) <= 256
    assert fields["user_id"] == "Bearer [REDACTED]"
    with using_attributes(session_id="", user_id=None):
        assert session_fields() == {}  # an empty id is no id


def test_an_id_whose_str_raises_does_not_break_the_app():
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with using_attributes(user_id=Weird()):
        assert session_fields() == {"user_id": "<unprintable Weird>"}


def test_an_id_the_app_declared_sensitive_is_redacted():
    configure_redaction(extra_keys=["user_id"])
    with using_attributes(session_id="s", user_id="alice@example.com"):
        assert session_fields() == {"session_id": "s", "user_id": "[REDACTED]"}


def test_tags_and_metadata_are_redacted_and_bounded():
    with using_attributes(
        tags=["t" * 1000, "key=sk-proj-abcdefghijklmnop"] + [f"tag{i}" for i in range(200)],
        metadata={"password": "hunter2", "notes": "n" * 100_000},
    ):
        attrs = dict(session_attributes())
    tags = attrs["tag.tags"]
    assert len(tags) == 64 and tags[-1] == "...[truncated]"
    assert len(tags[0].encode()) <= 128 and tags[1] == "key=[REDACTED]"
    assert len(attrs["metadata"].encode()) <= 4096
    assert "hunter2" not in attrs["metadata"]
    json.loads(attrs["metadata"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tags": "beta"}, r"tags must be a list .* not str"),
        ({"tags": b"beta"}, r"tags must be a list .* not bytes"),
        ({"tags": 3}, r"tags must be a list .* not int"),
        ({"tags": {"a": 1}}, r"tags must be a list .* not dict"),
        ({"tags": ["ok", 3]}, r"every tag must be a string, got int"),
        ({"metadata": ["a"]}, r"metadata must be a mapping .* not list"),
        ({"metadata": "plan=pro"}, r"metadata must be a mapping .* not str"),
    ],
)
def test_bad_tags_or_metadata_are_a_type_error_naming_the_argument(kwargs, message):
    with pytest.raises(TypeError, match=message):
        using_attributes(**kwargs)


def test_tags_may_be_any_iterable_of_strings():
    with using_attributes(tags=(t for t in ("a", "b"))):
        assert session_attributes()["tag.tags"] == ["a", "b"]


# --------------------------------------------------------------------------------------------
# Threads, pools, tasks
# --------------------------------------------------------------------------------------------


def test_threads_see_the_scope_they_were_started_in_through_the_context():
    seen: dict[str, Any] = {}

    def work(name: str) -> None:
        seen[name] = session_fields()

    with using_attributes(session_id="s-thread"):
        ctx = contextvars.copy_context()
        copied = threading.Thread(target=ctx.run, args=(work, "copied"))
        bare = threading.Thread(target=work, args=("bare",))
        copied.start()
        bare.start()
        copied.join()
        bare.join()
    assert seen["copied"] == {"session_id": "s-thread"}
    assert seen["bare"] == {}  # a thread without the context has none, as with OTel's


def test_nested_scopes_in_a_thread_pool_keep_each_task_apart():
    def task(i: int) -> dict[str, str]:
        with using_attributes(user_id=f"u{i}"):
            return session_fields()

    with using_attributes(session_id="outer"):
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(contextvars.copy_context().run, task, i) for i in range(40)]
            results = [f.result() for f in futures]
        # the pool's work did not leak into this thread
        assert session_fields() == {"session_id": "outer"}
    assert results == [{"session_id": "outer", "user_id": f"u{i}"} for i in range(40)]


def test_the_kits_thread_propagation_carries_the_scope_into_pools():
    from tinyllm_instrument.telemetry.propagation import set_thread_propagation

    set_thread_propagation(True)
    try:
        with using_attributes(session_id="pooled"):
            with ThreadPoolExecutor(max_workers=2) as pool:
                assert pool.submit(session_fields).result() == {"session_id": "pooled"}
    finally:
        set_thread_propagation(False)


def test_asyncio_tasks_nest_independently():
    async def turn(i: int) -> dict[str, Any]:
        async with using_attributes(user_id=f"u{i}", tags=[f"t{i}"]):
            await asyncio.sleep(0.001 * (5 - i))  # interleave
            return dict(session_attributes())

    async def main() -> list[dict[str, Any]]:
        with using_attributes(session_id="conv", tags=["root"]):
            return await asyncio.gather(*(asyncio.create_task(turn(i)) for i in range(5)))

    results = asyncio.run(main())
    for i, attrs in enumerate(results):
        assert attrs["session.id"] == "conv"
        assert attrs["user.id"] == f"u{i}"
        assert attrs["tag.tags"] == ["root", f"t{i}"]


# --------------------------------------------------------------------------------------------
# As a decorator
# --------------------------------------------------------------------------------------------


def test_decorating_a_function_and_a_coroutine_function():
    @using_attributes(session_id="sync")
    def f(x: int) -> tuple[int, dict[str, str]]:
        return x + 1, session_fields()

    @using_attributes(session_id="async")
    async def g(x: int) -> tuple[int, dict[str, str]]:
        await asyncio.sleep(0)
        return x + 1, session_fields()

    assert f(1) == (2, {"session_id": "sync"})
    assert asyncio.run(g(1)) == (2, {"session_id": "async"})
    assert f.__name__ == "f" and g.__name__ == "g"
    assert asyncio.iscoroutinefunction(g)
    assert session_fields() == {}


def test_one_decorated_function_called_from_many_threads_at_once():
    barrier = threading.Barrier(8)

    @using_attributes(tags=["shared"])
    def work(i: int) -> dict[str, Any]:
        with using_attributes(user_id=str(i)):
            barrier.wait()  # all inside the same decorator object at once
            return dict(session_attributes())

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(8)))
    assert [r["user.id"] for r in results] == [str(i) for i in range(8)]
    assert all(r["tag.tags"] == ["shared"] for r in results)


def test_recursion_through_one_decorated_function():
    @using_attributes(tags=["r"])
    def depth(n: int) -> list[dict[str, str]]:
        with using_attributes(user_id=str(n)):
            here = session_fields()
            return [here] + (depth(n - 1) if n else [])

    assert [d["user_id"] for d in depth(3)] == ["3", "2", "1", "0"]
    assert session_fields() == {}


def test_a_decorated_generator_holds_the_scope_only_while_its_own_code_runs():
    @using_attributes(session_id="gen")
    def tokens():
        for word in ("a", "b", "c"):
            yield word, session_fields()

    seen_by_consumer = []
    with using_attributes(session_id="consumer"):
        for _word, inside in tokens():
            assert inside == {"session_id": "gen"}
            seen_by_consumer.append(session_fields())
    assert seen_by_consumer == [{"session_id": "consumer"}] * 3


def test_a_decorated_generator_send_throw_close_and_return_value():
    finally_saw: list[dict[str, str]] = []

    @using_attributes(session_id="g")
    def echo():
        try:
            received = yield "ready"
            while True:
                try:
                    received = yield f"got {received}"
                except ValueError as exc:
                    received = f"caught {exc} in {session_fields()['session_id']}"
                if received == "stop":
                    return "done"
        finally:
            finally_saw.append(session_fields())

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send(1) == "got 1"
    assert gen.throw(ValueError("v")) == "got caught v in g"
    with pytest.raises(StopIteration) as stop:
        gen.send("stop")
    assert stop.value.value == "done"
    assert finally_saw == [{"session_id": "g"}]

    closed = echo()
    next(closed)
    closed.close()  # the generator's finally runs inside its scope
    assert finally_saw[-1] == {"session_id": "g"}
    assert session_fields() == {}


def test_an_exception_inside_a_decorated_generator_passes_unchanged():
    boom = RuntimeError("boom")

    @using_attributes(session_id="g")
    def failing():
        yield 1
        raise boom

    gen = failing()
    next(gen)
    with pytest.raises(RuntimeError) as info:
        next(gen)
    assert info.value is boom
    assert session_fields() == {}


def test_a_decorated_async_generator():
    @using_attributes(session_id="agen")
    async def stream():
        for i in range(3):
            await asyncio.sleep(0)
            yield i, session_fields()

    async def main() -> tuple[list[Any], list[Any]]:
        inside, outside = [], []
        async with using_attributes(session_id="consumer"):
            agen = stream()
            async for i, fields in agen:
                inside.append(fields)
                outside.append(session_fields())
                if i == 1:
                    break
            await agen.aclose()
        return inside, outside

    inside, outside = asyncio.run(main())
    assert inside == [{"session_id": "agen"}] * 2
    assert outside == [{"session_id": "consumer"}] * 2


# --------------------------------------------------------------------------------------------
# Spans, log lines, events
# --------------------------------------------------------------------------------------------


def test_every_span_started_inside_carries_them_the_kits_and_any_others(spans):
    provider, exporter = spans
    kit = provider.get_tracer("tinyllm_instrument")
    other = provider.get_tracer("opentelemetry.instrumentation.httpx")
    with using_attributes(session_id="s1", user_id="u1", tags=["t"]):
        with kit.start_as_current_span("graph"):
            with kit.start_as_current_span("node"):
                with other.start_as_current_span("HTTP POST"):
                    pass
    with kit.start_as_current_span("after"):
        pass
    got = attrs_of(exporter)
    for name in ("graph", "node", "HTTP POST"):
        assert got[name]["session.id"] == "s1", name
        assert got[name]["user.id"] == "u1", name
        assert list(got[name]["tag.tags"]) == ["t"], name
    assert "session.id" not in got["after"]


def test_spans_in_worker_threads_carry_the_scope(spans):
    provider, exporter = spans
    tracer = provider.get_tracer("t")

    def work(i: int) -> None:
        with tracer.start_as_current_span(f"work-{i}"):
            pass

    with using_attributes(session_id="fan-out"):
        with ThreadPoolExecutor(max_workers=3) as pool:
            for f in [pool.submit(contextvars.copy_context().run, work, i) for i in range(6)]:
                f.result()
    got = attrs_of(exporter)
    assert {got[f"work-{i}"]["session.id"] for i in range(6)} == {"fan-out"}


def test_on_start_never_raises():
    class BrokenSpan:
        def set_attributes(self, attributes: Any) -> None:
            raise RuntimeError("span gone")

    registry = get_metrics_collector().registry
    key = ("tinyllm_instrumentation_errors_total", {"stage": "span_processor"})
    before = registry.get_sample_value(*key) or 0.0
    on_start(BrokenSpan())  # no scope: nothing is even tried
    with using_attributes(session_id="s"):
        on_start(BrokenSpan())
    assert registry.get_sample_value(*key) == before + 1


def test_log_lines_carry_session_and_user(capsys):
    structlog.configure(
        processors=[add_session_fields, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger()
        with using_attributes(session_id="s-log", user_id="u-log"):
            log.info("inside")
            log.info("explicit", user_id="given")
        log.info("outside")
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"event": "inside", "session_id": "s-log", "user_id": "u-log"}
    assert lines[1]["user_id"] == "given"  # a value the line has is kept
    assert lines[2] == {"event": "outside"}


def test_events_get_session_and_user():
    with using_attributes(session_id="s-ev", user_id="u-ev", tags=["x"]):
        fields = session_fields()
        fields["session_id"] = "mutated"  # a copy: the scope is not changed by its readers
        assert session_fields() == {"session_id": "s-ev", "user_id": "u-ev"}


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


def test_the_carrier_round_trip():
    with using_attributes(session_id="s", user_id="u", tags=["a"], metadata={"k": [1, 2]}):
        carrier = inject_session({"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
        expected = dict(session_attributes())
    assert carrier["traceparent"].startswith("00-")  # the trace's own entries are untouched
    assert carrier["baggage"].startswith("session.id=s,user.id=u,tag.tags=")  # W3C baggage
    assert inject_session({}) == {}  # outside any scope: nothing to carry
    with session_from_carrier(carrier):
        assert dict(session_attributes()) == expected


@pytest.mark.parametrize(
    "bad",
    ["tag.tags=not+json", "tag.tags=%5B1%2C2%5D", "metadata=3", "metadata=%5B%5D"],
)
def test_a_bad_carrier_is_counted_and_ignored(bad):
    registry = get_metrics_collector().registry
    key = ("tinyllm_instrumentation_errors_total", {"stage": "propagation"})
    before = registry.get_sample_value(*key) or 0.0
    assert session_from_carrier({"baggage": bad}) is None
    assert registry.get_sample_value(*key) == before + 1
    assert session_from_carrier({}) is None
    assert session_from_carrier({"baggage": "other=1"}) is None


def test_a_child_process_joins_the_scope_from_its_environment():
    child = (
        "import json, os\n"
        "from tinyllm_instrument.genai import session_from_carrier, session_fields, "
        "session_attributes\n"
        "scope = session_from_carrier({'baggage': os.environ['BAGGAGE']})\n"
        "scope.__enter__()  # for the life of the process\n"
        "print(json.dumps(dict(session_attributes())))\n"
    )
    with using_attributes(session_id="parent-s", user_id="parent-u", tags=["p"]):
        carrier = inject_session({})
        expected = dict(session_attributes())
    env = dict(os.environ, BAGGAGE=carrier["baggage"])
    out = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == expected


def test_used_as_a_bare_decorator_is_a_clear_error():
    with pytest.raises(TypeError, match=r"write @using_attributes\(session_id=...\)"):

        @using_attributes
        def f() -> None:
            pass


def test_a_method_can_be_decorated():
    class Bot:
        @using_attributes(tags=["bot"])
        def reply(self) -> dict[str, Any]:
            return dict(session_attributes())

    assert Bot().reply()["tag.tags"] == ["bot"]


def test_a_scope_left_open_by_a_suspended_generator_does_not_stick():
    # A plain `with` inside a generator body stays entered while the generator is suspended;
    # leaving the outer scope must still restore what was there before it.
    def body():
        with using_attributes(session_id="inner"):
            yield 1
            yield 2

    with using_attributes(session_id="outer"):
        gen = body()
        next(gen)
        assert session_fields() == {"session_id": "inner"}  # the leak Python makes
    assert session_fields() == {}  # gone once the outer scope is left
    assert list(gen) == [2]  # the generator finishes later without disturbing anything
    assert session_fields() == {}
