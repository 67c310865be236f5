"""@langgraph: each compiled-graph run a kit graph, each add_node node a kit node, in-process."""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import operator
import os
import socket
import subprocess
import sys
import threading
import traceback
import urllib.request
from pathlib import Path
from typing import Annotated, Any, TypedDict, get_type_hints

import pytest
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from langgraph.types import Command, Send, interrupt
from opentelemetry.trace import StatusCode
from otlp_receivers import GrpcTraceReceiver
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tinyllm_instrument import observe
from tinyllm_instrument.observe import NODE, observe_as
from tinyllm_instrument.presets import langgraph as lg_preset
from tinyllm_instrument.testing import capture

PRESET = lg_preset.PRESET
#: Where Pregel lives: langgraph.pregel.main in 1.x, langgraph.pregel in 0.2 (labels name it).
PREGEL = f"{Pregel.__module__}:Pregel"


@pytest.fixture
def preset():
    """The preset installed for the test, and what it reported wrapping."""
    labels: list[str] = []
    PRESET.install(labels.append)
    yield labels
    PRESET.uninstall()


class State(TypedDict, total=False):
    x: int
    log: Annotated[list[str], operator.add]


def _parent_ids(spans: list[Any]) -> dict[str, Any]:
    return {s.name: (s.parent.span_id if s.parent else None) for s in spans}


def _linear_graph(name: str | None = "pipeline", nodes: dict[str, Any] | None = None) -> Any:
    builder = StateGraph(State)
    names = list(nodes or {})
    for node, action in (nodes or {}).items():
        builder.add_node(node, action)
    builder.add_edge(START, names[0])
    for a, b in zip(names, names[1:], strict=False):
        builder.add_edge(a, b)
    builder.add_edge(names[-1], END)
    return builder.compile(name=name) if name else builder.compile()


def plain(state: State) -> State:
    return {"x": state["x"] + 1, "log": ["plain"]}


async def coro(state: State) -> State:
    await asyncio.sleep(0)
    return {"x": state["x"] * 10, "log": ["coro"]}


def gen(state: State):
    yield {"x": state["x"] + 2, "log": ["gen"]}


async def agen(state: State):
    await asyncio.sleep(0)
    yield {"x": state["x"] + 3, "log": ["agen"]}


# --- what install wraps ----------------------------------------------------------------------


def test_install_reports_the_seams_it_wrapped_and_uninstall_puts_them_back():
    originals = {a: vars(Pregel)[a] for a in ("invoke", "ainvoke", "stream", "astream")}
    add_node = vars(StateGraph)["add_node"]
    labels: list[str] = []
    PRESET.install(labels.append)
    try:
        assert sorted(labels) == [
            "langgraph.graph.state:StateGraph.add_node",
            f"{PREGEL}.ainvoke",
            f"{PREGEL}.astream",
            f"{PREGEL}.invoke",
            f"{PREGEL}.stream",
        ]
        assert vars(StateGraph)["add_node"] is not add_node
    finally:
        PRESET.uninstall()
    assert vars(StateGraph)["add_node"] is add_node
    assert {a: vars(Pregel)[a] for a in originals} == originals
    PRESET.uninstall()  # idempotent
    assert vars(StateGraph)["add_node"] is add_node


# --- one graph span per run, nodes named by their graph node names under it ------------------


def test_invoke_is_one_graph_span_with_every_kind_of_node_under_it_by_its_node_name(preset):
    graph = _linear_graph(nodes={"first": plain, "second": gen})
    with capture() as cap:
        assert graph.invoke({"x": 1}) == {"x": 4, "log": ["plain", "gen"]}
    spans = cap.spans
    assert sorted(s.name for s in spans) == ["first", "pipeline", "second"]
    root = cap.span("pipeline")
    assert root.parent is None
    assert root.attributes["tinyllm.graph"] == "pipeline"
    for name in ("first", "second"):
        node = cap.span(name)
        assert node.parent.span_id == root.context.span_id
        assert node.context.trace_id == root.context.trace_id
        assert node.attributes["tinyllm.node"] == name
        assert node.attributes["tinyllm.graph"] == "pipeline"
        assert node.attributes["openinference.span.kind"] == "CHAIN"


def test_ainvoke_observes_coroutine_and_async_generator_nodes(preset):
    graph = _linear_graph(nodes={"multiply": coro, "stream_more": agen})

    with capture() as cap:
        result = asyncio.run(graph.ainvoke({"x": 1}))
    assert result == {"x": 13, "log": ["coro", "agen"]}
    root = cap.span("pipeline")
    assert _parent_ids(cap.spans) == {
        "pipeline": None,
        "multiply": root.context.span_id,
        "stream_more": root.context.span_id,
    }


def test_stream_graph_span_lasts_until_the_stream_is_consumed(preset):
    graph = _linear_graph(nodes={"first": plain, "second": plain})
    # the graph node names are not the function's name
    with capture() as cap:
        chunks = graph.stream({"x": 0})
        first = next(chunks)
        assert first == {"first": {"x": 1, "log": ["plain"]}}
        assert [s.name for s in cap.spans] == ["first"]  # the graph is still running
        rest = list(chunks)
    assert rest == [{"second": {"x": 2, "log": ["plain"]}}]
    assert [s.name for s in cap.spans] == ["first", "second", "pipeline"]
    root = cap.span("pipeline")
    assert cap.span("second").parent.span_id == root.context.span_id
    assert root.status.status_code != StatusCode.ERROR


def test_a_stream_closed_early_ends_its_graph_span(preset):
    graph = _linear_graph(nodes={"first": plain, "second": plain})
    with capture() as cap:
        chunks = graph.stream({"x": 0})
        next(chunks)
        chunks.close()
    assert cap.span("pipeline").end_time is not None
    assert "second" not in {s.name for s in cap.spans}


def test_astream_is_one_graph_span_until_consumed(preset):
    graph = _linear_graph(name="agraph", nodes={"multiply": coro, "gen_node": gen})

    async def consume() -> list[Any]:
        return [chunk async for chunk in graph.astream({"x": 1})]

    with capture() as cap:
        chunks = asyncio.run(consume())
    assert [list(c) for c in chunks] == [["multiply"], ["gen_node"]]
    root = cap.span("agraph")
    assert root.parent is None
    assert {s.name: s.parent.span_id for s in cap.spans if s.parent} == {
        "multiply": root.context.span_id,
        "gen_node": root.context.span_id,
    }


def test_the_graph_is_named_LangGraph_when_compile_gives_no_name(preset):
    graph = _linear_graph(name=None, nodes={"only": plain})
    with capture() as cap:
        graph.invoke({"x": 1})
    assert cap.span("only").attributes["tinyllm.graph"] == "LangGraph"
    assert cap.span("LangGraph").parent is None


def test_invoking_twice_makes_two_traces(preset):
    graph = _linear_graph(nodes={"first": plain})
    with capture() as cap:
        graph.invoke({"x": 1})
        graph.invoke({"x": 2})
    roots = cap.spans_named("pipeline")
    assert len(roots) == 2
    assert roots[0].context.trace_id != roots[1].context.trace_id
    nodes = cap.spans_named("first")
    assert {n.parent.span_id for n in nodes} == {r.context.span_id for r in roots}


# --- what is not a node --------------------------------------------------------------------


def test_conditional_edges_and_langgraphs_own_nodes_are_not_nodes(preset):
    def route(state: State) -> str:
        return "left" if state["x"] > 0 else "right"

    builder = StateGraph(State)
    builder.add_node("decide", plain)
    builder.add_node("left", plain)
    builder.add_node("right", plain)
    builder.add_edge(START, "decide")
    builder.add_conditional_edges("decide", route, ["left", "right"])
    builder.add_edge("left", END)
    builder.add_edge("right", END)
    graph = builder.compile(name="router")
    with capture() as cap:
        graph.invoke({"x": 1})
    assert sorted(s.name for s in cap.spans) == ["decide", "left", "router"]


# --- threads: a map-reduce fan-out ---------------------------------------------------------


def test_a_send_fan_out_runs_in_threads_and_every_task_nests_under_the_graph(preset):
    threads: set[str] = set()

    def split(state: State) -> State:
        return {"x": state["x"]}

    def fan_out(state: State) -> list[Send]:
        return [Send("work", {"x": i}) for i in range(4)]

    def work(state: State) -> State:
        threads.add(threading.current_thread().name)
        return {"log": [f"w{state['x']}"]}

    builder = StateGraph(State)
    builder.add_node("split", split)
    builder.add_node("work", work)
    builder.add_edge(START, "split")
    builder.add_conditional_edges("split", fan_out, ["work"])
    builder.add_edge("work", END)
    graph = builder.compile(name="mapreduce")
    with capture() as cap:
        result = graph.invoke({"x": 0})
    assert sorted(result["log"]) == ["w0", "w1", "w2", "w3"]
    assert threads - {threading.current_thread().name}, "LangGraph ran no task in a thread"
    root = cap.span("mapreduce")
    works = cap.spans_named("work")
    assert len(works) == 4
    assert {w.parent.span_id for w in works} == {root.context.span_id}
    assert {w.attributes["tinyllm.graph"] for w in works} == {"mapreduce"}


# --- errors --------------------------------------------------------------------------------


class NodeFailure(Exception):
    pass


def test_a_failing_node_marks_node_and_graph_and_the_users_exception_passes_unchanged(preset):
    raised: list[BaseException] = []

    def fails(state: State) -> State:
        exc = NodeFailure("bad state")
        raised.append(exc)
        raise exc

    graph = _linear_graph(nodes={"ok": plain, "boom": fails})
    with capture() as cap:
        with pytest.raises(NodeFailure) as info:
            graph.invoke({"x": 1})
    assert info.value is raised[0]
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "fails"
    node, root = cap.span("boom"), cap.span("pipeline")
    assert node.status.status_code == StatusCode.ERROR
    assert root.status.status_code == StatusCode.ERROR
    assert node.status.description == "NodeFailure: bad state"
    assert node.events[0].attributes["exception.type"].endswith("NodeFailure")
    assert node.parent.span_id == root.context.span_id
    assert cap.span("ok").status.status_code != StatusCode.ERROR


def test_a_failing_async_generator_node_under_ainvoke(preset):
    async def refuses(state: State):
        await asyncio.sleep(0)
        raise NodeFailure("no")
        yield {}  # pragma: no cover - makes it an async generator

    graph = _linear_graph(nodes={"refuse": refuses})
    with capture() as cap:
        with pytest.raises(NodeFailure):
            asyncio.run(graph.ainvoke({"x": 1}))
    assert cap.span("refuse").status.status_code == StatusCode.ERROR
    assert cap.span("pipeline").status.status_code == StatusCode.ERROR


# --- metrics -------------------------------------------------------------------------------


def test_node_and_graph_metrics_carry_the_graph_node_name_and_graph_name(preset):
    graph = _linear_graph(nodes={"first": plain, "second": gen})
    with capture() as cap:
        graph.invoke({"x": 1})
        graph.invoke({"x": 2})
    text = generate_latest(cap.collector.registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for node in ("first", "second"):
        key = ("tinyllm_node_executions_total", (("graph", "pipeline"), ("node", node)))
        assert samples[key] == 2
    key = ("tinyllm_graph_execution_duration_seconds_count", (("graph", "pipeline"),))
    assert samples[key] == 2
    assert not any(labels and dict(labels).get("node") == "plain" for _, labels in samples)


# --- subgraphs, observed nodes, runnables, LangGraph's introspection -----------------------


def test_a_subgraph_node_is_a_graph_of_its_own_name_under_its_parent(preset):
    inner = _linear_graph(name="inner", nodes={"inner_step": plain})
    builder = StateGraph(State)
    builder.add_node("before", plain)
    builder.add_node("sub", inner)
    builder.add_edge(START, "before")
    builder.add_edge("before", "sub")
    builder.add_edge("sub", END)
    outer = builder.compile(name="outer")
    with capture() as cap:
        assert outer.invoke({"x": 0})["x"] == 2
    root, sub = cap.span("outer"), cap.span("inner")
    assert sub.parent.span_id == root.context.span_id
    step = cap.span("inner_step")
    assert step.parent.span_id == sub.context.span_id
    assert step.attributes["tinyllm.graph"] == "inner"
    assert cap.span("before").attributes["tinyllm.graph"] == "outer"
    assert sub.context.trace_id == root.context.trace_id


def test_an_already_observed_llm_node_is_not_wrapped_twice(preset):
    @observe(node="call_model", kind="llm", model="gpt-test")
    def call_model(state: State) -> State:
        return {"x": state["x"], "log": ["llm"]}

    graph = _linear_graph(nodes={"llm": call_model})
    with capture() as cap:
        graph.invoke({"x": 1})
    assert sorted(s.name for s in cap.spans) == ["call_model", "pipeline"]
    span = cap.span("call_model")
    assert span.attributes["openinference.span.kind"] == "LLM"
    assert span.parent.span_id == cap.span("pipeline").context.span_id


def test_add_node_forms_callable_objects_and_runnables(preset):
    class Step:
        def __call__(self, state: State) -> State:
            return {"log": ["obj"]}

    def named_by_function(state: State) -> State:
        return {"log": ["fn"]}

    builder = StateGraph(State)
    builder.add_node(named_by_function)  # the name is the function's
    builder.add_node("object_step", Step())
    builder.add_node(node="keyword_step", action=plain)
    builder.add_node("runnable_step", RunnableLambda(lambda s: {"log": ["runnable"]}))
    builder.add_edge(START, "named_by_function")
    builder.add_edge("named_by_function", "object_step")
    builder.add_edge("object_step", "keyword_step")
    builder.add_edge("keyword_step", "runnable_step")
    builder.add_edge("runnable_step", END)
    graph = builder.compile(name="forms")
    with capture() as cap:
        result = graph.invoke({"x": 0})
    assert result["log"] == ["fn", "obj", "plain", "runnable"]
    # a Runnable other than a function is not wrapped (see the module docstring)
    assert sorted(s.name for s in cap.spans) == [
        "forms",
        "keyword_step",
        "named_by_function",
        "object_step",
    ]


class Private(TypedDict):
    secret: int


def wants_config(state: State, config: RunnableConfig) -> Private:
    return {"secret": config["configurable"]["bonus"]}


def reads_private(state: Private) -> State:
    """LangGraph reads this node's input schema from its first parameter's annotation."""
    return {"x": state["secret"] * 2}


def reads_private_in_parts(state: Private):
    """A generator node: LangGraph reads its input schema the same way."""
    yield {"x": state["secret"] + 1}


def test_an_observed_generator_keeps_the_annotations_langgraph_reads():
    # LangGraph reads a node's input schema, and the targets of a Command it returns, from
    # get_type_hints(node): the observed generator's must be the function's own.
    observed = observe(reads_private_in_parts)
    assert observed.__annotations__ == reads_private_in_parts.__annotations__
    assert get_type_hints(observed) == {"state": Private}


def test_a_generator_node_keeps_its_input_schema(preset):
    graph = _linear_graph(nodes={"configured": wants_config, "private": reads_private_in_parts})
    with capture() as cap:
        result = graph.invoke({"x": 0}, {"configurable": {"bonus": 41}})
    assert result["x"] == 42
    assert {"configured", "private"} <= {s.name for s in cap.spans}


def test_langgraph_still_sees_the_nodes_parameters_config_and_input_schema(preset):
    graph = _linear_graph(nodes={"configured": wants_config, "private": reads_private})
    with capture() as cap:
        result = graph.invoke({"x": 0}, {"configurable": {"bonus": 21}})
    assert result["x"] == 42
    assert {"configured", "private"} <= {s.name for s in cap.spans}


# --- on and off ----------------------------------------------------------------------------


def test_after_uninstall_graphs_built_while_installed_run_unobserved():
    PRESET.install(lambda label: None)
    try:
        graph = _linear_graph(nodes={"first": plain})
    finally:
        PRESET.uninstall()
    with capture() as cap:
        assert graph.invoke({"x": 1})["x"] == 2
    assert cap.spans == []
    PRESET.install(lambda label: None)
    try:
        with capture() as cap:
            graph.invoke({"x": 1})
        assert sorted(s.name for s in cap.spans) == ["first", "pipeline"]
    finally:
        PRESET.uninstall()


def test_uninstall_leaves_a_patch_put_on_top_and_switches_its_own_off():
    PRESET.install(lambda label: None)
    ours = vars(Pregel)["invoke"]
    calls: list[str] = []

    def on_top(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("on_top")
        return ours(self, *args, **kwargs)

    Pregel.invoke = on_top  # type: ignore[method-assign]
    try:
        PRESET.uninstall()
        assert vars(Pregel)["invoke"] is on_top
        graph = _linear_graph(nodes={"first": plain})
        with capture() as cap:
            assert graph.invoke({"x": 1})["x"] == 2
        assert calls == ["on_top"]
        assert cap.spans == []
        labels: list[str] = []
        PRESET.install(labels.append)  # switched on again, not wrapped twice
        assert f"{PREGEL}.invoke" in labels
        with capture() as cap:
            graph.invoke({"x": 1})
        assert [s.name for s in cap.spans] == ["pipeline"]  # built while off: no node spans
    finally:
        PRESET.uninstall()
        Pregel.invoke = ours.__wrapped__  # type: ignore[method-assign]
        lg_preset._STATE.patches.clear()


def test_a_failure_inside_the_preset_is_counted_and_the_graph_still_builds_and_runs(
    preset, monkeypatch
):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("kit bug")

    monkeypatch.setattr(lg_preset, "observe_as", broken)
    with capture() as cap:
        graph = _linear_graph(nodes={"first": plain})
        assert graph.invoke({"x": 1})["x"] == 2
    errors = cap.sample("tinyllm_instrumentation_errors_total", {"stage": "instrument"})
    assert errors is not None and errors >= 2  # add_node, and the graph run
    assert cap.spans == []


def test_a_graph_whose_name_is_not_a_string_is_named_LangGraph(preset):
    graph = _linear_graph(nodes={"first": plain})
    graph.name = None  # type: ignore[assignment]
    with capture() as cap:
        graph.invoke({"x": 1})
    assert cap.span("first").attributes["tinyllm.graph"] == "LangGraph"


def test_a_graph_run_from_inside_one_of_its_own_nodes_is_observed_again(preset):
    holder: dict[str, Any] = {}

    def recurse(state: State) -> State:
        if state["x"] < 2:
            return {"x": holder["graph"].invoke({"x": state["x"] + 1})["x"]}
        return {"x": state["x"]}

    graph = _linear_graph(nodes={"recurse": recurse})
    holder["graph"] = graph
    with capture() as cap:
        assert graph.invoke({"x": 0})["x"] == 2
    assert len(cap.spans_named("pipeline")) == 3
    assert len(cap.spans_named("recurse")) == 3
    assert len({s.context.trace_id for s in cap.spans}) == 1


# --- an unchanged LangGraph app under `tinyllm-instrument run --instrument @langgraph` -----

CLI = str(Path(sys.executable).parent / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"
LG_APP_NODES = ["classify", "retrieve", "score", "score", "answer"]


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TINYLLM_INSTRUMENT_")
        and k not in ("TRACEPARENT", "TRACESTATE", "BAGGAGE", "PYTHONPATH")
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "run", "--instrument", "@langgraph", *args],
        capture_output=True,
        text=True,
        cwd=APPS,
        env=_env(),
        timeout=120,
    )


def test_the_app_under_run_sends_one_graph_span_per_run_with_its_nodes_and_serves_metrics():
    port = _free_port()
    with GrpcTraceReceiver() as receiver:
        proc = subprocess.Popen(
            [
                CLI,
                "run",
                "--instrument",
                "@langgraph",
                "--otlp-endpoint",
                receiver.endpoint,
                "--metrics-port",
                str(port),
                "lg_app.py",
                "--times",
                "2",
                "--wait",
            ],
            cwd=APPS,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            lines = [proc.stdout.readline().strip() for _ in range(3)]
            assert lines[2] == "ready", (lines, proc.stderr and proc.poll())
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert lines[0] == (
            "Where is my invoice? -> Using 2 documents: Invoices are sent monthly. "
            "(scores [20, 26])"
        )
        spans = receiver.wait_for(2 * (1 + len(LG_APP_NODES)))
    graphs = [s for s in spans if s.name == "support"]
    assert len(graphs) == 2
    assert {g.parent_span_id for g in graphs} == {None}
    assert len({g.trace_id for g in graphs}) == 2
    for graph in graphs:
        nodes = [s for s in spans if s.trace_id == graph.trace_id and s is not graph]
        assert sorted(s.name for s in nodes) == sorted(LG_APP_NODES)
        assert {s.parent_span_id for s in nodes} == {graph.span_id}
        assert {s.attributes["tinyllm.graph"] for s in nodes} == {"support"}
        assert {s.attributes["tinyllm.node"] for s in nodes} == set(LG_APP_NODES)
    assert "route" not in {s.name for s in spans}  # the conditional edge
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }
    for node, runs in (("classify", 2), ("retrieve", 2), ("score", 4), ("answer", 2)):
        key = ("tinyllm_node_executions_total", (("graph", "support"), ("node", node)))
        assert samples[key] == runs, key
    key = ("tinyllm_graph_execution_duration_seconds_count", (("graph", "support"),))
    assert samples[key] == 2


def test_the_app_under_run_with_the_tree_exporter_prints_the_graph_and_its_nodes():
    result = _run("--exporter", "tree", "lg_app.py")
    assert result.returncode == 0, result.stderr
    tree = [
        line.split()[0:2] for line in result.stdout.splitlines() if "µs" in line or "ms" in line
    ]
    names = [parts[1] if parts[0] in ("├─", "└─") else parts[0] for parts in tree]
    assert names == ["support", *LG_APP_NODES], result.stdout


def test_a_failing_node_under_run_exits_as_the_program_does_with_error_spans():
    with GrpcTraceReceiver() as receiver:
        result = _run("--otlp-endpoint", receiver.endpoint, "lg_app.py", "--fail")
        assert result.returncode == 3, result.stderr
        assert "error: refused: a forbidden question" in result.stdout
        by_name = {s.name: s for s in receiver.wait_for(4)}
    assert by_name["answer"].status_code == "ERROR"
    assert by_name["support"].status_code == "ERROR"
    assert by_name["answer"].parent_span_id == by_name["support"].span_id


def test_print_plan_lists_what_the_preset_wrapped():
    result = _run("--exporter", "none", "--print-plan", "lg_app.py")
    assert result.returncode == 0, result.stderr
    plan = result.stderr[result.stderr.index("tinyllm-instrument plan:") :]
    assert "  @langgraph  (compiled graphs:" in plan
    for label in (
        "langgraph.graph.state:StateGraph.add_node",
        f"{PREGEL}.invoke",
        f"{PREGEL}.astream",
    ):
        assert f"    {label}\n" in plan


def test_instrument_at_langgraph_in_code_and_uninstrument():
    from tinyllm_instrument import instrument, uninstrument
    from tinyllm_instrument.patching import get_instrumentation_plan

    instrument("@langgraph")
    try:
        assert (
            "langgraph.graph.state:StateGraph.add_node" in get_instrumentation_plan()["@langgraph"]
        )
        graph = _linear_graph(nodes={"first": plain})
        with capture() as cap:
            graph.invoke({"x": 1})
        assert sorted(s.name for s in cap.spans) == ["first", "pipeline"]
    finally:
        uninstrument("@langgraph")
    assert "@langgraph" not in get_instrumentation_plan()
    with capture() as cap:
        graph.invoke({"x": 1})
    assert cap.spans == []


# --- LangGraph's control flow is not a failure -----------------------------------------------


def test_an_interrupt_is_an_interruption_of_the_node_not_an_error(preset):
    def ask(state: State) -> State:
        return {"x": interrupt("how much?")}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile(checkpointer=InMemorySaver(), name="hitl")
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}
    with capture() as cap:
        graph.invoke({"x": 0}, config)
        assert graph.get_state(config).next == ("ask",)  # paused, waiting for its answer
        assert graph.invoke(Command(resume=5), config)["x"] == 5
    first, second = cap.spans_named("ask")
    assert first.status.status_code == StatusCode.UNSET
    assert first.attributes["tinyllm.interrupted"] == "GraphInterrupt"
    assert second.status.status_code == StatusCode.UNSET
    assert "tinyllm.interrupted" not in second.attributes
    assert {s.status.status_code for s in cap.spans_named("hitl")} == {StatusCode.UNSET}
    assert cap.sample("tinyllm_node_executions_total", {"node": "ask", "graph": "hitl"}) == 2
    errors = cap.sample(
        "tinyllm_node_errors_total",
        {"node": "ask", "graph": "hitl", "error_type": "GraphInterrupt"},
    )
    assert errors is None


def test_a_command_to_the_parent_graph_does_not_fail_the_subgraph(preset):
    def hand_back(state: State) -> Command:
        return Command(graph=Command.PARENT, goto="after", update={"log": ["handed back"]})

    def after(state: State) -> State:
        return {"log": ["after"]}

    inner = _linear_graph(name="inner", nodes={"hand_back": hand_back})
    builder = StateGraph(State)
    builder.add_node("sub", inner)
    builder.add_node("after", after)
    builder.add_edge(START, "sub")
    builder.add_edge("after", END)
    outer = builder.compile(name="outer")
    with capture() as cap:
        assert outer.invoke({"x": 0})["log"] == ["handed back", "after"]
    for name in ("inner", "hand_back", "outer", "after"):
        assert cap.span(name).status.status_code == StatusCode.UNSET, name
    assert cap.span("inner").attributes["tinyllm.interrupted"] == "ParentCommand"


def test_observe_as_refuses_a_control_flow_that_is_not_a_tuple_of_exception_types():
    for bad in ([KeyError], (KeyError, "x"), (int,)):
        with pytest.raises(ValueError, match="control_flow=.*tuple of exception types"):
            observe_as(plain, NODE, control_flow=bad)  # type: ignore[arg-type]


# --- what LangGraph reads from a node is unchanged ---------------------------------------------


def _sub_caller_graph() -> Any:
    inner = _linear_graph(name="inner", nodes={"inner_step": plain})

    def calls_inner(state: State) -> State:
        return inner.invoke(state)

    async def streams_inner(state: State):
        yield await inner.ainvoke(state)

    return _linear_graph(name="outer", nodes={"calls": calls_inner, "streams": streams_inner})


def test_langgraph_still_finds_the_subgraph_a_function_node_calls():
    # LangGraph finds a subgraph called inside a function node by reading the function's source
    # and closure (checkpoint namespaces, interrupts, subgraphs=True depend on it).
    plain_found = sorted(name for name, _ in _sub_caller_graph().get_subgraphs())
    PRESET.install(lambda label: None)
    try:
        graph = _sub_caller_graph()
        found = sorted(name for name, _ in graph.get_subgraphs())
        with capture() as cap:
            asyncio.run(graph.ainvoke({"x": 0}))
    finally:
        PRESET.uninstall()
    assert plain_found == ["calls", "streams"]
    assert found == plain_found
    outer = cap.span("outer")
    inners = cap.spans_named("inner")
    assert {s.parent.span_id for s in inners} == {
        cap.span("calls").context.span_id,
        cap.span("streams").context.span_id,
    }
    assert {s.parent.span_id for s in cap.spans_named("inner_step")} == {
        s.context.span_id for s in inners
    }
    assert cap.span("calls").parent.span_id == outer.context.span_id


def test_add_sequence_partials_methods_and_lambdas_are_nodes_by_their_graph_names(preset):
    class Worker:
        def step(self, state: State) -> State:
            return {"log": ["method"]}

    def tagged(state: State, *, tag: str) -> State:
        return {"log": [tag]}

    builder = StateGraph(State)
    builder.add_sequence([("seq_a", plain), ("seq_b", plain)])
    builder.add_node("bound_method", Worker().step)
    builder.add_node("a_partial", functools.partial(tagged, tag="partial"))
    builder.add_node("a_lambda", lambda state: {"log": ["lambda"]})
    builder.add_edge(START, "seq_a")
    builder.add_edge("seq_b", "bound_method")
    builder.add_edge("bound_method", "a_partial")
    builder.add_edge("a_partial", "a_lambda")
    builder.add_edge("a_lambda", END)
    graph = builder.compile(name="forms")
    with capture() as cap:
        result = graph.invoke({"x": 0})
    assert result == {"x": 2, "log": ["plain", "plain", "method", "partial", "lambda"]}
    root = cap.span("forms")
    names = ["seq_a", "seq_b", "bound_method", "a_partial", "a_lambda"]
    assert [s.name for s in cap.spans] == [*names, "forms"]
    assert {cap.span(n).parent.span_id for n in names} == {root.context.span_id}


def test_a_langgraph_of_another_major_version_is_skipped_with_a_note(monkeypatch):
    from tinyllm_instrument import instrument, uninstrument
    from tinyllm_instrument.patching import get_instrumentation_plan

    real_version = importlib.metadata.version

    def version(name: str) -> str:
        return "2.1.0" if name == "langgraph" else real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    add_node = vars(StateGraph)["add_node"]
    instrument("@langgraph")
    try:
        assert get_instrumentation_plan()["@langgraph"] == [
            "skipped: langgraph 2.1.0 found; @langgraph is written for 0.x/1.x"
        ]
        assert vars(StateGraph)["add_node"] is add_node
    finally:
        uninstrument("@langgraph")


def test_a_bound_method_or_partial_of_an_observed_function_is_not_wrapped_twice(preset):
    class Agent:
        @observe(node="think")
        def think(self, state: State) -> State:
            return {"log": ["thought"]}

    @observe(node="tag")
    def tag(state: State, *, label: str) -> State:
        return {"log": [label]}

    graph = _linear_graph(
        nodes={"method": Agent().think, "partial": functools.partial(tag, label="tagged")}
    )
    with capture() as cap:
        assert graph.invoke({"x": 0})["log"] == ["thought", "tagged"]
    assert sorted(s.name for s in cap.spans) == ["pipeline", "tag", "think"]


def test_an_async_callable_object_node_is_still_awaited(preset):
    class AsyncStep:
        async def __call__(self, state: State) -> State:
            await asyncio.sleep(0)
            return {"x": state["x"] + 1, "log": ["async object"]}

    graph = _linear_graph(nodes={"async_object": AsyncStep(), "after": coro})
    with capture() as cap:
        result = asyncio.run(graph.ainvoke({"x": 0}))
    assert result == {"x": 10, "log": ["async object", "coro"]}
    assert cap.span("async_object").parent.span_id == cap.span("pipeline").context.span_id


def test_an_astream_closed_early_ends_its_graph_span(preset):
    graph = _linear_graph(name="agraph", nodes={"multiply": coro, "stream_more": agen})

    async def first_only() -> Any:
        chunks = graph.astream({"x": 1})
        first = await chunks.__anext__()
        await chunks.aclose()
        return first

    with capture() as cap:
        assert asyncio.run(first_only()) == {"multiply": {"x": 10, "log": ["coro"]}}
    assert cap.span("agraph").end_time is not None
    assert "stream_more" not in {s.name for s in cap.spans}


def test_the_langgraph_benchmark_cases_run_and_observe_what_they_say():
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        import test_langgraph as bench
    finally:
        sys.path.pop(0)
    cases = bench._cases()
    try:
        counts = {}
        for name, (installed, run) in cases.items():
            if installed:
                PRESET.install(lambda label: None)
            else:
                PRESET.uninstall()
            with capture() as cap:
                run()
            counts[name] = len(cap.spans) // bench.LOOPS
    finally:
        PRESET.uninstall()
        sys.modules.pop("test_langgraph", None)
    assert counts == {"plain": 0, "observed": 4, "built_before": 1, "uninstalled": 0}
