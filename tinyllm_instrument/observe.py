"""@observe: the public decorator, and the choice of role per call for ``instrument()``.

What a decorated callable does per call is decided when decorating and carried out by
:mod:`._observer` (the plan and each call's lifecycle); the wrappers, one per kind of callable,
live in :mod:`._calls`. This module picks the observer (or the role, per call) and wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from . import _config
from ._calls import CallLifecycle, kind_of
from ._calls import lifecycle_of as _lifecycle_of
from ._calls import wrap as _wrap
from ._context import CURRENT_CALL
from ._errors import Stage
from ._observe_settings import (
    DEFAULT_CAPTURE_BYTES,
    configure_observe,
    reset_observe_settings,
)
from ._observer import Observer as _Observer
from ._observer import code_location as _code_location
from ._observer import report as _report
from ._usage import record_usage

__all__ = [
    "DEFAULT_CAPTURE_BYTES",
    "GRAPH",
    "GRAPH_OR_NODE",
    "NODE",
    "ObservedFunction",
    "configure_observe",
    "is_observed",
    "observe",
    "observe_as",
    "record_usage",
    "reset_observe_settings",
]

P = ParamSpec("P")
R = TypeVar("R")
_get_scope = CURRENT_CALL.get

# --------------------------------------------------------------------------------------------
# Choosing the role per call (patching): graph when no graph is current, node otherwise
# --------------------------------------------------------------------------------------------

#: Roles of :func:`observe_as`.
NODE, GRAPH, GRAPH_OR_NODE = "node", "graph", "graph_or_node"


class _Dispatch(CallLifecycle):
    """Picks the observer of each call: ``outermost`` when no graph is current, else ``inner``."""

    __slots__ = ("outermost", "inner", "is_active", "sees_items")

    def __init__(
        self, outermost: _Observer, inner: _Observer, is_active: Callable[[], bool] | None
    ) -> None:
        self.outermost = outermost
        self.inner = inner
        self.is_active = is_active
        self.sees_items = outermost.sees_items or inner.sees_items

    def start(self, args: tuple, kwargs: dict) -> Any:
        try:
            if self.is_active is not None and not self.is_active():
                return None
        except Exception as exc:
            _report(Stage.OBSERVE_BEGIN, exc)
            return None
        observer = self.outermost if _get_scope()[1] is None else self.inner
        return observer.start(args, kwargs)

    def end_ok(self, call: Any, result: Any) -> None:
        call.observer.end_ok(call, result)

    def end_error(self, call: Any, exc: BaseException) -> None:
        call.observer.end_error(call, exc)

    def end_closed(self, call: Any) -> None:
        call.observer.end_closed(call)

    def resume(self, call: Any) -> None:
        call.observer.resume(call)

    def pause(self, call: Any) -> None:
        call.observer.pause(call)

    def pause_item(self, call: Any, item: Any) -> None:
        call.observer.pause_item(call, item)


# --------------------------------------------------------------------------------------------
# The decorator
# --------------------------------------------------------------------------------------------


class _ObservedType(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(_lifecycle_of(obj), (_Observer, _Dispatch))


class ObservedFunction(metaclass=_ObservedType):
    """The type of what ``@observe`` returns, for ``isinstance`` checks only.

    An observed plain function or coroutine function is a function (so that a call costs one
    frame); an observed generator, async generator or callable object is a
    ``wrapt.FunctionWrapper``. ``isinstance(x, ObservedFunction)`` is true for either, and for a
    classmethod or staticmethod holding one.

    Example:
        >>> isinstance(observe(len), ObservedFunction)
        True
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> ObservedFunction:
        raise TypeError("ObservedFunction is not instantiated: decorate with @observe")


def is_observed(obj: Any) -> bool:
    """Whether ``obj`` is an observed callable (also inside a classmethod or staticmethod).

    Example:
        >>> is_observed(observe(len)), is_observed(len)
        (True, False)
    """
    return isinstance(obj, ObservedFunction)


@overload
def observe(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def observe(
    *,
    node: str | None = None,
    graph: str | None = None,
    name: str | None = None,
    attributes: dict[str, Any] | None = None,
    capture_input: bool = False,
    capture_output: bool = False,
    model: str | None = None,
    kind: str | None = None,
    provider: str | None = None,
    new_trace: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def observe(
    func: Callable[..., Any] | None = None,
    /,
    *,
    node: str | None = None,
    graph: str | None = None,
    name: str | None = None,
    attributes: dict[str, Any] | None = None,
    capture_input: bool = False,
    capture_output: bool = False,
    model: str | None = None,
    kind: str | None = None,
    provider: str | None = None,
    new_trace: bool = False,
) -> Any:
    """Observe every call of a graph or node callable: span, metrics, log context and events.

    Works on functions, coroutines, generators, async generators, methods, classmethods,
    staticmethods (above or below those decorators) and callable objects. A generator called with
    bad arguments raises at the call; its span covers its first ``next()`` to its end.

    Args:
        func: the callable, when used as a bare ``@observe``.
        node: the node name (default: the function's ``__qualname__``).
        graph: the graph name. Alone, it makes the call a graph: nodes called inside it get it as
            their ``graph`` label and their spans become its children. With ``node``, the node is
            pinned to that graph.
        name: the span name (default: the node or graph name; see also
            ``configure_observe(span_names="spec")``).
        attributes: extra span attributes, redacted like every other attribute.
        capture_input: record the arguments by parameter name as ``input.value`` (with
            ``input.mime_type``), bounded then redacted; for an ``llm`` node called with a
            ``messages`` argument, also ``llm.input_messages.*``.
        capture_output: record the result as ``output.value`` / ``output.mime_type``; for an
            ``llm`` node also the reply as ``llm.output_messages.0.*``; for a retriever, the
            documents' contents and metadata (their ids, scores and count are always written).
        model: the model a node calls: labels the request, token and cost metrics, and makes
            the node an ``llm`` one unless ``kind`` says otherwise.
        kind: what step this is, for LLM back-ends: ``llm``, ``embedding``, ``retriever``,
            ``reranker``, ``tool``, ``agent``, ``chain``, ``guardrail`` or ``evaluator``.
            Default: ``llm`` for a node with ``model=``, else ``chain``. See docs/genai.md.
        provider: the model's provider (``"openai"``, ``"anthropic"``...); by default the
            SDK package the result (or a streamed item) comes from, when it is one.
        new_trace: for a graph: a call made inside another observed call (a wrapped
            ``main()``, a loop) is the root of a trace of its own, linked to the enclosing
            span, instead of its child.

    Returns:
        The wrapped callable with the same signature, or a decorator when called with options.

    Raises:
        ValueError: an option of the wrong type or value (an unknown ``kind`` names the
            allowed ones), at decoration time.
        TypeError: ``func`` is not callable.

    Example:
        >>> @observe(graph="rag")
        ... def answer(question):
        ...     return retrieve(question)
        >>> @observe(node="retrieve")
        ... def retrieve(question):
        ...     return ["doc"]
    """
    options = dict(
        node=node,
        graph=graph,
        name=name,
        attributes=attributes,
        capture_input=capture_input,
        capture_output=capture_output,
        model=model,
        kind=kind,
        provider=provider,
        new_trace=new_trace,
    )
    if func is None:
        return lambda f: _decorate(f, options)
    return _decorate(func, options)


def _check_callable(func: Any) -> None:
    if not callable(func) and not isinstance(func, (classmethod, staticmethod)):
        raise TypeError(
            f"@observe needs a function, method or callable object, not {type(func).__name__}"
        )


def _decorate(func: Any, options: dict[str, Any]) -> Any:
    _check_callable(func)
    if is_observed(func):
        return func
    call_kind = kind_of(func)
    return _wrap(func, _Observer(func, call_kind, **options), _config.STATE, call_kind)


def observe_as(
    func: Any,
    role: str = NODE,
    *,
    graph: str | None = None,
    is_active: Callable[[], bool] | None = None,
    model: str | None = None,
    kind: str | None = None,
    new_trace: bool = False,
    node: str | None = None,
    control_flow: tuple[type[BaseException], ...] = (),
) -> Any:
    """Observe ``func`` in a role chosen when decorating, or per call (for ``instrument()``).

    Args:
        func: as for :func:`observe`.
        role: ``NODE`` (a node named after its qualname), ``GRAPH`` (the graph ``graph``) or
            ``GRAPH_OR_NODE``: each call is the graph ``graph`` when no graph is current, and a
            node otherwise, so the first observed call on a stack is its graph.
        graph: the graph name for ``GRAPH`` and ``GRAPH_OR_NODE``; default the qualname.
        is_active: asked per call (after the kit's own switch); a call made while it answers
            False runs unobserved. ``uninstrument`` uses it for references taken while patched.
        model: as ``@observe(model=...)``: the model the callable calls (``run --model``).
        kind: as ``@observe(kind=...)``, for the node role (a graph is a ``chain``).
        new_trace: as ``@observe(new_trace=True)``, for the graph role: each graph call made
            inside another observed call is the root of a trace of its own, linked to it.
        node: the node name for the node role (default: the qualname), as ``@observe(node=)``:
            a preset names a node by what the library calls it (a LangGraph graph node name).
        control_flow: exception types the wrapped library raises through the call to steer
            it, not as failures (LangGraph's ``GraphInterrupt``): such a call ends with
            ``tinyllm.interrupted`` set to the type's name, no error status and no error
            metrics; the exception passes on unchanged.

    Returns:
        The observed callable, as :func:`observe` returns it.

    Raises:
        ValueError: an unknown role, kind, a model or node that is not a non-empty string, or
            a ``control_flow`` that is not a tuple of exception types.
        TypeError: ``func`` is not callable.

    Example:
        >>> wrapper = observe_as(agent_step, GRAPH_OR_NODE, is_active=lambda: patch.active)
    """
    _check_callable(func)
    if role not in (NODE, GRAPH, GRAPH_OR_NODE):
        raise ValueError(f"role={role!r}: use NODE, GRAPH or GRAPH_OR_NODE")
    if not isinstance(control_flow, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in control_flow
    ):
        raise ValueError(f"control_flow={control_flow!r}: use a tuple of exception types")
    call_kind = kind_of(func)
    graph_name = graph or _code_location(func)[0]
    no_options: dict[str, Any] = dict(
        name=None,
        attributes=None,
        capture_input=False,
        capture_output=False,
        model=model,
        control_flow=control_flow,
    )
    as_node = _Observer(func, call_kind, node=node, graph=None, kind=kind, **no_options)
    as_graph = _Observer(
        func, call_kind, node=None, graph=graph_name, new_trace=new_trace, **no_options
    )
    if role == NODE:
        outermost = inner = as_node
    elif role == GRAPH:
        outermost = inner = as_graph
    else:
        outermost, inner = as_graph, as_node
    return _wrap(func, _Dispatch(outermost, inner, is_active), _config.STATE, call_kind)
