"""The ``@langgraph`` preset: each run of a compiled LangGraph graph a kit graph, each node a node.

Two public seams of LangGraph, both stable across 0.x and 1.x (its tests pass on 0.2.76 and
1.2.24):

* ``StateGraph.add_node(node, action)``: the one way a node enters a ``StateGraph``, with the
  name the graph knows it by. The preset hands LangGraph the user's callable observed as a
  node of that name (kind ``chain``) and LangGraph never sees the difference: the observed
  callable keeps the parameters, annotations and kind (sync, async, generator, async
  generator) that LangGraph inspects to decide how to call it. Wrapping here, rather than in
  the task runner (``langgraph.pregel._runner`` / ``_retry``, private and reshaped between
  minor versions), means LangGraph's own nodes (``__start__``, the channel and branch writers)
  and conditional edge functions are never wrapped: they do not go through ``add_node``.
* ``Pregel.invoke`` / ``ainvoke`` / ``stream`` / ``astream``: the public run methods of every
  compiled graph (``CompiledStateGraph`` is a ``Pregel``). Each run is a kit graph named by the
  graph's ``name`` (``compile(name=...)``, default ``"LangGraph"``), read per run, so copies
  made by ``with_config`` keep it. ``invoke`` is written over ``stream`` (``ainvoke`` over
  ``astream``): that inner call is recognised and not observed a second time.

A compiled graph used as a node of another (a subgraph) is not wrapped by ``add_node``:
LangGraph must still see it as a graph (checkpoint namespaces, interrupts, ``subgraphs=True``),
so it stays as given, and its run is a kit graph of its own name nested under the parent's
graph span, its nodes labelled with its name. A node that is already observed (``@observe``,
another preset) is left as it is; any other LangChain ``Runnable`` given as a node is not
wrapped (its calls run through LangChain's callbacks, not through a function the preset can
observe without changing how LangGraph calls it).

Nodes are wrapped as they are added: a graph built before the preset was installed gets graph
spans but no node spans. ``tinyllm-instrument run --instrument @langgraph`` installs it before
the program starts; in code, call ``instrument("@langgraph")`` before building graphs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType
from typing import Any

import wrapt

from .._errors import Stage, report_internal_error
from ..observe import GRAPH, NODE, is_observed, observe_as
from ._base import Preset, Report

__all__ = ["PRESET"]

#: Imported by ``from langgraph.graph import StateGraph``; defines (through .state) StateGraph.
_GRAPH_MODULE = "langgraph.graph"
#: Imported by every compiled graph; exports Pregel, the class that runs them.
_PREGEL_MODULE = "langgraph.pregel"
_RUN_METHODS = ("invoke", "ainvoke", "stream", "astream")
#: Methods written over another run method of the same graph: invoke -> stream, ainvoke -> astream.
_DELEGATING = frozenset({"invoke", "ainvoke"})
#: LangGraph's own default name for a compiled graph.
_DEFAULT_GRAPH_NAME = "LangGraph"
#: Graph names with an observer kept per run method; beyond, a run builds its observer anew.
_MAX_GRAPH_NAMES = 256
#: The kind of a wrapped node: a step of the graph, as OpenInference calls it.
_NODE_KIND = "chain"


class _Patch:
    """One class attribute replaced by the preset: enough to put it back exactly."""

    __slots__ = ("owner", "attr", "original", "wrapper", "observers")

    def __init__(self, owner: type, attr: str, original: Any) -> None:
        self.owner = owner
        self.attr = attr
        self.original = original
        self.wrapper: Any = None
        self.observers: dict[str, Any] = {}  # graph name -> observed original

    @property
    def label(self) -> str:
        return f"{self.owner.__module__}:{self.owner.__qualname__}.{self.attr}"


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        # Read per call by every wrapper (and by every node observed while installed): off after
        # uninstall, so a graph built while installed runs unobserved, as if never wrapped.
        self.active = False
        self.report: Report | None = None
        self.patches: dict[tuple[int, str], _Patch] = {}
        self.hooked: set[str] = set()  # modules with a post-import hook (wrapt keeps them)
        # LangGraph's control-flow exceptions (interrupt(), Command(graph=PARENT)): a node or a
        # subgraph they pass through was interrupted, it did not fail.
        self.control_flow: tuple[type[BaseException], ...] = ()


_STATE = _State()

# The graph whose invoke/ainvoke is running on this context and has not yet reached its inner
# stream/astream: that inner call is the same run, observed once already.
_DELEGATED: ContextVar[Any] = ContextVar("tinyllm_langgraph_delegated", default=None)


def _is_active() -> bool:
    return _STATE.active


# --------------------------------------------------------------------------------------------
# Nodes: StateGraph.add_node
# --------------------------------------------------------------------------------------------


def _is_runnable(obj: Any) -> bool:
    """A LangChain Runnable (a compiled graph is one), which LangGraph runs as it is."""
    base = sys.modules.get("langchain_core.runnables.base")
    runnable = getattr(base, "Runnable", None)
    return isinstance(runnable, type) and isinstance(obj, runnable)


def _already_observed(action: Any) -> bool:
    """Observed itself, or a bound method or ``functools.partial`` of an observed function."""
    inner = getattr(action, "__func__", None)
    if isinstance(action, functools.partial):
        inner = action.func
    return is_observed(action) or (inner is not None and is_observed(inner))


def _node_arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """``add_node``'s arguments with the action observed as a node of the graph's name for it;
    None to pass the call on untouched (nothing to wrap, or LangGraph will refuse the call).
    """
    kwargs = dict(kwargs)
    if args:
        node, rest = args[0], args[1:]
    elif "node" in kwargs:
        node, rest = kwargs.pop("node"), ()
    else:
        return None
    if isinstance(node, str):
        if rest:
            action, rest = rest[0], rest[1:]
        elif "action" in kwargs:
            action = kwargs.pop("action")
        else:
            return None
        name = node
    else:
        if rest or "action" in kwargs:
            return None  # add_node(callable, action): LangGraph's own rules, untouched
        action = node
        if _is_runnable(action):
            return None
        # LangGraph's own name for a callable given alone.
        name = getattr(action, "__name__", type(action).__name__)
    if (
        not isinstance(name, str)
        or not name
        or action is None
        or isinstance(action, type)
        or not callable(action)
        or _is_runnable(action)
        or _already_observed(action)
    ):
        return None
    if not inspect.isroutine(action) and not isinstance(action, functools.partial):
        # A callable object: LangGraph tells an async one by its __call__, which on a proxy
        # of the object is the proxy's own; its bound __call__ answers as the object's would.
        # One whose __call__ is a generator LangGraph does not run as one: left as it fails.
        action = action.__call__
        if inspect.isgeneratorfunction(action) or inspect.isasyncgenfunction(action):
            return None
    observed = observe_as(
        action,
        NODE,
        node=name,
        kind=_NODE_KIND,
        is_active=_is_active,
        control_flow=_STATE.control_flow,
    )
    return (name, observed, *rest), kwargs


def _add_node(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        changed = _node_arguments(args, kwargs)
    except Exception as exc:  # never let the kit stop a graph from being built
        report_internal_error(Stage.INSTRUMENT, exc)
        changed = None
    if changed is not None:
        args, kwargs = changed
    return wrapped(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# Graph runs: Pregel.invoke / ainvoke / stream / astream
# --------------------------------------------------------------------------------------------


def _graph_name(graph: Any) -> str:
    name = getattr(graph, "name", None)
    return name if isinstance(name, str) and name else _DEFAULT_GRAPH_NAME


def _observed_run(patch: _Patch, graph: Any) -> Any:
    """The original run method observed as the graph ``graph.name``, built once per name."""
    name = _graph_name(graph)
    observed = patch.observers.get(name)
    if observed is None:
        observed = observe_as(
            patch.original,
            GRAPH,
            graph=name,
            is_active=_is_active,
            control_flow=_STATE.control_flow,
        )
        with _STATE.lock:
            if len(patch.observers) < _MAX_GRAPH_NAMES:
                observed = patch.observers.setdefault(name, observed)
    return observed


def _run_wrapper(patch: _Patch) -> Callable[[Any, Any, tuple, dict], Any]:
    delegating = patch.attr in _DELEGATING
    is_async = patch.attr == "ainvoke"

    def run(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        if instance is None or _DELEGATED.get() is instance:
            # The inner stream of an invoke already observed: runs as part of it. Cleared, so
            # that a run of this same graph from inside one of its nodes is observed again.
            _DELEGATED.set(None)
            return wrapped(*args, **kwargs)
        try:
            observed = _observed_run(patch, instance)
        except Exception as exc:
            report_internal_error(Stage.INSTRUMENT, exc)
            return wrapped(*args, **kwargs)
        if not delegating:
            return observed(instance, *args, **kwargs)
        if is_async:
            return _ainvoke(observed, instance, args, kwargs)
        token = _DELEGATED.set(instance)
        try:
            return observed(instance, *args, **kwargs)
        finally:
            _DELEGATED.reset(token)

    return run


async def _ainvoke(observed: Any, graph: Any, args: tuple, kwargs: dict) -> Any:
    token = _DELEGATED.set(graph)
    try:
        return await observed(graph, *args, **kwargs)
    finally:
        _DELEGATED.reset(token)


# --------------------------------------------------------------------------------------------
# Install / uninstall
# --------------------------------------------------------------------------------------------


def _patch(owner: type, attr: str, make: Callable[[_Patch], Any]) -> None:
    """Replace ``owner.attr`` with a switchable wrapt wrapper, once per process."""
    with _STATE.lock:
        key = (id(owner), attr)
        patch = _STATE.patches.get(key)
        if patch is not None and patch.owner is owner:
            return  # still in place under someone else's later patch: switched on again
        original = vars(owner).get(attr)
        if original is None:
            return  # not this version's shape: nothing to wrap, and nothing reported
        patch = _Patch(owner, attr, original)
        patch.wrapper = wrapt.FunctionWrapper(original, make(patch), enabled=_is_active)
        setattr(owner, attr, patch.wrapper)
        _STATE.patches[key] = patch
        report = _STATE.report
    if report is not None:
        report(patch.label)


def _control_flow() -> tuple[type[BaseException], ...]:
    """``langgraph.errors.GraphBubbleUp`` (0.2 on: the base of GraphInterrupt and
    ParentCommand), else ``GraphInterrupt`` (0.1); public in ``langgraph.errors`` throughout.
    """
    errors = importlib.import_module("langgraph.errors")
    for name in ("GraphBubbleUp", "GraphInterrupt"):
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return (cls,)
    return ()


def _learn_control_flow() -> None:
    if not _STATE.control_flow:
        _STATE.control_flow = _control_flow()


def _on_graph_module(module: ModuleType) -> None:
    if not _STATE.active:
        return
    try:
        _learn_control_flow()
        state_graph = getattr(module, "StateGraph", None)
        if isinstance(state_graph, type):
            _patch(state_graph, "add_node", lambda patch: _add_node)
    except Exception as exc:
        report_internal_error(Stage.INSTRUMENT, exc)


def _on_pregel_module(module: ModuleType) -> None:
    if not _STATE.active:
        return
    try:
        _learn_control_flow()
        pregel = getattr(module, "Pregel", None)
        if isinstance(pregel, type):
            for attr in _RUN_METHODS:
                _patch(pregel, attr, _run_wrapper)
    except Exception as exc:
        report_internal_error(Stage.INSTRUMENT, exc)


_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    _PREGEL_MODULE: _on_pregel_module,
    _GRAPH_MODULE: _on_graph_module,
}


def _install(report: Report) -> None:
    """Wrap the seams now where LangGraph is imported, else when it is (a post-import hook)."""
    with _STATE.lock:
        _STATE.report = report
        _STATE.active = True
        for patch in _STATE.patches.values():  # left in place under a later patch: on again
            report(patch.label)
        for name, hook in _HOOKS.items():
            if name not in _STATE.hooked:
                # wrapt calls the hook at once when the module is imported already. Hooks cannot
                # be removed: each one checks _STATE.active.
                _STATE.hooked.add(name)
                wrapt.register_post_import_hook(hook, name)
            elif name in sys.modules:
                hook(sys.modules[name])


def _uninstall() -> None:
    """Put back every wrapped method still outermost; the others stay as switched-off
    pass-throughs, so a patch someone put on top of one is not clobbered.
    """
    with _STATE.lock:
        _STATE.active = False
        _STATE.report = None
        for key, patch in list(_STATE.patches.items()):
            try:
                if vars(patch.owner).get(patch.attr) is patch.wrapper:
                    setattr(patch.owner, patch.attr, patch.original)
                    del _STATE.patches[key]
            except Exception as exc:
                report_internal_error(Stage.UNINSTRUMENT, exc)


PRESET = Preset(
    name="langgraph",
    distribution="langgraph",
    majors=(0, 1),
    covers=(
        "compiled graphs: each invoke/ainvoke/stream/astream a graph named graph.name; "
        "each StateGraph.add_node callable a node named by its graph node name"
    ),
    install=_install,
    uninstall=_uninstall,
)
