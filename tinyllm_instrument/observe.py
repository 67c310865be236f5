"""@observe: a plan built once at decoration time, and the one lifecycle of every observed call.

What a decorated callable does per call is decided when decorating (:class:`_Observer`): span
name and start attributes, metric handles, which wrapper. The wrappers themselves, one per kind
of callable, live in :mod:`._calls` and call the observer's ``start`` / ``end_ok`` /
``end_error`` / ``end_closed`` / ``resume`` / ``pause``; those are written here once.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace

from . import _config
from ._calls import ASYNC_GENERATOR, GENERATOR, CallLifecycle, call_in_frame, kind_of
from ._calls import lifecycle_of as _lifecycle_of
from ._calls import wrap as _wrap
from ._context import CURRENT_GRAPH, CURRENT_MODEL, CURRENT_NODE, NO_GRAPH
from ._errors import Stage, report_internal_error
from ._observe_metrics import MAX_CACHED_GRAPHS, HandleCache
from ._usage import PLAIN_RESULT_TYPES, record_usage, record_usage_of
from .events import EventCategory, EventSeverity, emit_event, get_event_emitter
from .metrics import get_metrics_collector
from .redaction import safe_str
from .telemetry import get_tracer
from .telemetry.spans import json_attribute, prepare_attributes, record_error

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

#: Byte budget of one captured input or output attribute (after redaction, as JSON).
DEFAULT_CAPTURE_BYTES = 4096

_DEBUG = EventSeverity.DEBUG
_ERROR = EventSeverity.ERROR
_EXECUTION = EventCategory.EXECUTION


class _Settings:
    """Process-wide options of @observe, read per call (one attribute each)."""

    __slots__ = ("completed_severity", "capture_bytes")

    def __init__(self) -> None:
        self.completed_severity: EventSeverity = _DEBUG
        self.capture_bytes = DEFAULT_CAPTURE_BYTES


_SETTINGS = _Settings()


def configure_observe(
    *,
    completed_severity: EventSeverity | str | None = None,
    capture_bytes: int | None = None,
) -> None:
    """Set process-wide options of ``@observe``.

    Args:
        completed_severity: severity of ``node.execution.completed`` / ``graph.execution.completed``
            events. DEBUG by default, so that a hot node does not write a log line per call.
        capture_bytes: byte budget of each captured input/output attribute (default 4096).

    Raises:
        ValueError: an unknown severity or a budget below 64 bytes.

    Example:
        >>> configure_observe(completed_severity="info")
    """
    if completed_severity is not None:
        _SETTINGS.completed_severity = _severity(completed_severity)
    if capture_bytes is not None:
        if (
            isinstance(capture_bytes, bool)
            or not isinstance(capture_bytes, int)
            or capture_bytes < 64
        ):
            raise ValueError(f"capture_bytes={capture_bytes!r}: use a whole number of bytes >= 64")
        _SETTINGS.capture_bytes = capture_bytes


def reset_observe_settings() -> None:
    """Back to the defaults (for tests)."""
    _SETTINGS.__init__()  # type: ignore[misc]


def _severity(value: EventSeverity | str) -> EventSeverity:
    if isinstance(value, EventSeverity):
        return value
    try:
        return EventSeverity.coerce(value)
    except ValueError:
        allowed = ", ".join(s.value for s in EventSeverity)
        raise ValueError(f"severity={value!r} is not one of: {allowed}") from None


# --------------------------------------------------------------------------------------------
# Bound once: the per-call path reads module globals, not attribute chains.
# --------------------------------------------------------------------------------------------


def _context_var() -> ContextVar[Any] | None:
    """The ContextVar behind OpenTelemetry's default runtime context, or None for another one."""
    try:
        from opentelemetry.context import _RUNTIME_CONTEXT
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    except ImportError:  # pragma: no cover - an API without them: use the public functions
        return None
    var = getattr(_RUNTIME_CONTEXT, "_current_context", None)
    if type(_RUNTIME_CONTEXT) is ContextVarsRuntimeContext and isinstance(var, ContextVar):
        return var
    return None  # pragma: no cover - OTEL_PYTHON_CONTEXT names another implementation


# The OTel runtime-context fast path: with the default runtime context, attach/detach are its
# ContextVar's set/reset, which opentelemetry.context.attach/detach reach two Python calls deeper.
# Measured with make bench (3 runs each side, sync/async/generator, 2026-12-02): through the
# public attach/detach a sampled-out sync call went from 0.98x to 1.07x a like-for-like raw span,
# a generator item from 1.92x to 2.19x sampled out and from 1.33x to 1.52x recorded. A failed
# reset raises here and is reported.
_OTEL_CONTEXT_VAR = _context_var()
_attach: Callable[[Any], Any] = (
    _OTEL_CONTEXT_VAR.set if _OTEL_CONTEXT_VAR is not None else otel_context.attach
)
_detach: Callable[[Any], Any] = (
    _OTEL_CONTEXT_VAR.reset if _OTEL_CONTEXT_VAR is not None else otel_context.detach
)
_time_ns = time.time_ns
_set_span_in_context = trace.set_span_in_context
_new_call = object.__new__
_get_graph = CURRENT_GRAPH.get
_set_node = CURRENT_NODE.set
_reset_node = CURRENT_NODE.reset
_set_graph = CURRENT_GRAPH.set
_reset_graph = CURRENT_GRAPH.reset
_set_model = CURRENT_MODEL.set
_reset_model = CURRENT_MODEL.reset
_getrecursionlimit = sys.getrecursionlimit
_setrecursionlimit = sys.setrecursionlimit
#: Frames lent to the error path of a call that failed with RecursionError: the user's code has
#: used the stack up, and recording the error (span, metrics, event) needs a few dozen frames.
_RECURSION_HEADROOM = 200


# --------------------------------------------------------------------------------------------
# One observed callable: the plan, and the lifecycle of each of its calls
# --------------------------------------------------------------------------------------------


def _code_location(func: Any) -> tuple[str, str]:
    target = getattr(func, "__func__", func)
    name = getattr(target, "__qualname__", None)
    if name is None:  # a callable object
        name = type(target).__qualname__
    module = getattr(target, "__module__", None) or type(target).__module__
    return name, module


#: Names a receiver conventionally has; see _signature_of.
_RECEIVER_NAMES = frozenset({"self", "cls", "mcs", "mcls", "metacls"})


class _Call:
    """The state of one observed call in flight; a stream keeps it across its items."""

    __slots__ = (
        "observer",
        "span",
        "start_ns",
        "graph",
        "context",
        "tokens",
        "wants_debug",
        "items",
        "first_item_ns",
    )

    # Set by _Observer.start, and the tokens by _Observer.resume, before anything reads them.
    tokens: tuple[Any, Any, Any, Any]  # OTel context, node, graph, model

    observer: _Observer
    span: Any
    start_ns: int
    graph: str | None
    context: Any  # the OTel Context holding the span: each step of a stream attaches it again
    wants_debug: bool
    items: int
    first_item_ns: int


class _Observer(CallLifecycle):
    """What one decorated callable does per call, decided when decorating, and each call's
    lifecycle: start, end ok, end with error (or closed early), and context restore.
    """

    __slots__ = (
        "node",
        "static_graph",
        "span_name",
        "span_attributes",
        "capture_input",
        "capture_output",
        "model",
        "event_prefix",
        "signature",
        "receiver",
        "is_stream",
        "handles",
        "_graph_attributes",
    )

    def __init__(
        self,
        func: Any,
        kind: str,
        *,
        node: str | None,
        graph: str | None,
        name: str | None,
        attributes: dict[str, Any] | None,
        capture_input: bool,
        capture_output: bool,
        model: str | None,
    ) -> None:
        qualname, module = _code_location(func)
        for label, value in (("node", node), ("graph", graph), ("name", name), ("model", model)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"@observe({label}={value!r}): {label} must be a non-empty string")
        if attributes is not None and not isinstance(attributes, dict):
            raise ValueError(f"@observe(attributes={attributes!r}): attributes must be a dict")
        is_graph = graph is not None and node is None
        self.node = None if is_graph else (node or qualname)
        self.static_graph = graph
        span_name = name or (graph if is_graph else self.node)
        assert span_name is not None  # node defaults to the qualname
        self.span_name: str = span_name
        attrs: dict[str, Any] = {"code.function": qualname, "code.namespace": module}
        if self.node is not None:
            attrs["tinyllm.node"] = self.node
        if graph is not None:
            attrs["tinyllm.graph"] = graph
        if model is not None:
            attrs["gen_ai.request.model"] = model
        if attributes:
            attrs.update(attributes)
        self.span_attributes = prepare_attributes(attrs) or {}
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.model = model
        self.event_prefix = "graph.execution." if is_graph else "node.execution."
        self.signature: inspect.Signature | None = None
        self.receiver: str | None = None
        if capture_input:
            self.signature, self.receiver = _signature_of(func)
        self.is_stream = kind in (GENERATOR, ASYNC_GENERATOR)
        stream_name = (self.node or span_name) if self.is_stream else None
        self.handles = HandleCache(self.node, graph, model, stream_name)
        self._graph_attributes: dict[str, dict[str, Any]] = {}

    # -- decided per graph label, cached ---------------------------------------------------------

    def attributes_for(self, graph: str | None) -> dict[str, Any]:
        """The span's start attributes: the static ones, plus the graph a node is called in."""
        if graph is None or self.static_graph is not None:
            return self.span_attributes
        attrs = self._graph_attributes.get(graph)
        if attrs is None:
            attrs = dict(self.span_attributes)
            attrs["tinyllm.graph"] = graph
            if len(self._graph_attributes) < MAX_CACHED_GRAPHS:
                self._graph_attributes[graph] = attrs
        return attrs

    # -- the lifecycle (see _calls.CallLifecycle); none of these raises --------------------------

    def start(self, args: tuple, kwargs: dict) -> _Call | None:
        """Start the span and make the call current; None (run unobserved) if the kit fails."""
        static_graph = self.static_graph
        span = None
        try:
            graph = static_graph if static_graph is not None else _get_graph()
            start_ns = _time_ns()
            span = get_tracer().start_span(
                self.span_name,
                attributes=self.span_attributes if graph is None else self.attributes_for(graph),
                start_time=start_ns,
            )
            # Filled in here rather than by an __init__, which would cost a frame per call.
            call = _new_call(_Call)
            call.observer = self
            call.span = span
            call.start_ns = start_ns
            call.graph = graph
            call.context = _set_span_in_context(span)
            call.wants_debug = False
            call.items = -1  # made current through resume(), which counts
            call.first_item_ns = 0
            if self.capture_input and span.is_recording():
                span.set_attribute("tinyllm.input", self._captured_input(args, kwargs))
        except Exception as exc:
            try:
                _report(Stage.OBSERVE_BEGIN, exc)
                if span is not None:
                    _end_quietly(span)
            except RecursionError:  # pragma: no cover - at the limit not even the report fits
                pass
            return None
        # The context is attached last, so a failure above leaves nothing current.
        self.resume(call)
        try:
            if self.model is not None:
                self.handles.get(graph).model_active.inc()
            call.wants_debug = get_event_emitter().wants(_DEBUG)
            if call.wants_debug:
                self._emit(call, "started", _DEBUG, None, None)
        except Exception as exc:
            _report(Stage.OBSERVE_BEGIN, exc)
        return call

    def resume(self, call: _Call) -> None:
        """Make the call's span, node, graph and model current; :meth:`pause` undoes it.

        A stream resumes after each item it produced (to go on, be closed, or have something
        thrown in), so the resumes are its item count whenever it ends.
        """
        graph = call.graph
        model = self.model
        call.tokens = (
            _attach(call.context),
            _set_node(self.node),
            # A node inherits the graph of the context it runs in: setting the same value
            # again would cost a set and a reset and change nothing.
            _set_graph(graph) if _get_graph() is not graph else None,
            _set_model(model) if model is not None else None,
        )
        call.items += 1

    def pause(self, call: _Call) -> None:
        """Restore what :meth:`resume` made current: the one context reset, also of every end.

        A stream pauses when it produced an item: the first time, that is its first item.
        """
        if not call.first_item_ns and self.is_stream:
            call.first_item_ns = _time_ns()  # at a call's end, after anything reads it: unused
        otel_token, node_token, graph_token, model_token = call.tokens
        try:
            if model_token is not None:
                _reset_model(model_token)
            if graph_token is not None:
                _reset_graph(graph_token)
            _reset_node(node_token)
            _detach(otel_token)
        except Exception as exc:  # a stream closed in another Context (garbage collector)
            _report(Stage.OBSERVE_CONTEXT, exc)

    def end_ok(self, call: _Call, result: Any) -> None:
        """The call returned (a stream: was exhausted). One clock read serves span and histogram."""
        end_ns = _time_ns()
        try:
            span = call.span
            if self.is_stream:
                if span.is_recording():
                    span.set_attributes(_stream_attributes(call))
            else:
                if self.capture_output and span.is_recording():
                    span.set_attribute("tinyllm.output", _captured(result))
                if type(result) not in PLAIN_RESULT_TYPES:
                    record_usage_of(span, self.model, call.graph, result)
            severity = _SETTINGS.completed_severity
            # A DEBUG completed event (the default) follows the answer start() had for DEBUG.
            if call.wants_debug if severity is _DEBUG else get_event_emitter().wants(severity):
                self._emit(call, "completed", severity, (end_ns - call.start_ns) / 1e6, None)
        except Exception as exc:
            _report(Stage.OBSERVE_FINISH, exc)
        self._end(call, end_ns)

    def end_closed(self, call: _Call) -> None:
        """A stream closed before its end: not an error."""
        end_ns = _time_ns()
        try:
            span = call.span
            if span.is_recording():
                attrs = _stream_attributes(call)
                attrs["tinyllm.generator.closed_early"] = True
                span.set_attributes(attrs)
            severity = _SETTINGS.completed_severity
            if get_event_emitter().wants(severity):
                self._emit(call, "completed", severity, (end_ns - call.start_ns) / 1e6, None)
        except Exception as exc:
            _report(Stage.OBSERVE_FINISH, exc)
        self._end(call, end_ns)

    def end_error(self, call: _Call, exc: BaseException) -> None:
        """The call raised. User exceptions are errors; cancellation and exits are not."""
        limit = 0
        try:
            if exc.__class__ is RecursionError:
                # The user's recursion used the stack up; recording the error takes a few dozen
                # frames, so lend them. Setting the limit to itself raises when this frame is at
                # the limit, where lowering it again afterwards would fail too: then nothing is
                # lent, and this one span is lost rather than the limit left raised.
                current = _getrecursionlimit()
                _setrecursionlimit(current)
                _setrecursionlimit(current + _RECURSION_HEADROOM)
                limit = current
            end_ns = _time_ns()
            self._record_failure(call, exc, end_ns)
            self._end(call, end_ns)
        except RecursionError:  # pragma: no cover - depends on the depth the stack ran out at
            pass  # at the limit with nothing lent: the user's exception still goes on unchanged
        finally:
            if limit:
                _setrecursionlimit(limit)

    def _record_failure(self, call: _Call, exc: BaseException, end_ns: int) -> None:
        try:
            span = call.span
            recording = span.is_recording()
            if self.is_stream and recording:
                span.set_attributes(_stream_attributes(call))
            if isinstance(exc, Exception):
                if recording:
                    record_error(span, exc)
                if self.node is not None:
                    graph = call.graph if call.graph is not None else NO_GRAPH
                    collector = get_metrics_collector()
                    error_type = type(exc).__name__
                    collector.node_errors.labels(self.node, graph, error_type).inc()
                    if self.model is not None:
                        collector.errors_total.labels(error_type, self.model, graph).inc()
                if get_event_emitter().wants(_ERROR) and not _failed_inside(call, exc):
                    self._emit(call, "failed", _ERROR, (end_ns - call.start_ns) / 1e6, exc)
            elif not recording:
                pass
            elif isinstance(exc, asyncio.CancelledError):
                span.set_attribute("tinyllm.cancelled", True)
                span.add_event("cancelled")
            else:  # SystemExit, KeyboardInterrupt, GeneratorExit: an exit, not a failure
                span.set_attribute("tinyllm.interrupted", type(exc).__name__)
        except Exception as kit_exc:
            _report(Stage.OBSERVE_FAIL, kit_exc)

    def _end(self, call: _Call, end_ns: int) -> None:
        """End the span, count the call, restore the context: the last step of every ending."""
        try:
            span = call.span
            span.end(end_time=end_ns)
            handles = self.handles.get(call.graph)
            handles.record(call.start_ns, end_ns, span)
            if call.first_item_ns:
                handles.first_item.observe((call.first_item_ns - call.start_ns) / 1e9)
        except Exception as exc:
            _report(Stage.OBSERVE_FINISH, exc)
        self.pause(call)

    # -- helpers of the lifecycle ----------------------------------------------------------------

    def _emit(
        self,
        call: _Call,
        what: str,
        severity: EventSeverity,
        duration_ms: float | None,
        exc: BaseException | None,
    ) -> None:
        graph = call.graph
        data: dict[str, Any] = {"graph": graph if graph is not None else NO_GRAPH}
        if self.node is not None:
            data["node"] = self.node
        if duration_ms is not None:
            data["duration_ms"] = round(duration_ms, 3)
        if exc is not None:
            data["error_type"] = type(exc).__name__
            data["error_message"] = safe_str(exc)  # redacted by emit_event, like all its data
        emit_event(
            self.event_prefix + what, _EXECUTION, severity, f"{self.span_name} {what}", data=data
        )

    def _captured_input(self, args: tuple, kwargs: dict) -> str:
        """The call's arguments by parameter name, without a method's receiver, as JSON."""
        data: Any = {"args": list(args), "kwargs": kwargs}
        sig = self.signature
        if sig is not None:
            try:
                data = dict(sig.bind_partial(*args, **kwargs).arguments)
                if self.receiver is not None:
                    data.pop(self.receiver, None)
            except TypeError:
                pass
        return _captured(data)


def _signature_of(func: Any) -> tuple[inspect.Signature | None, str | None]:
    """The signature arguments are bound to, and the name of the receiver to leave out, if any.

    The wrapper of a method receives ``self`` (or ``cls``) among the arguments, as the function
    does. A function defined in a class body whose first parameter has a receiver's name is a
    method; so is whatever sits in a classmethod. A staticmethod or a callable object has none.
    """
    target = getattr(func, "__func__", func)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None, None
    params = list(signature.parameters)
    if not params or not inspect.isfunction(target) or isinstance(func, staticmethod):
        return signature, None
    owner = target.__qualname__.rpartition(".")[0]
    in_class_body = bool(owner) and not owner.endswith("<locals>")
    if isinstance(func, classmethod) or (in_class_body and params[0] in _RECEIVER_NAMES):
        return signature, params[0]
    return signature, None


def _captured(value: Any) -> str:
    return json_attribute(value, _SETTINGS.capture_bytes)


def _stream_attributes(call: _Call) -> dict[str, Any]:
    attrs: dict[str, Any] = {"tinyllm.generator.items": call.items}
    if call.first_item_ns:
        attrs["tinyllm.time_to_first_item_ms"] = (call.first_item_ns - call.start_ns) / 1e6
    return attrs


def _failed_inside(call: _Call, exc: BaseException) -> bool:
    """Whether a call of the same observed callable inside this one already failed with ``exc``.

    One exception unwinding through many observed frames (a RecursionError through a recursive
    node) then makes one ``failed`` event per callable it passes, not one per frame; every span
    still records it. The frames it passed are in its traceback, innermost last.
    """
    observer = call.observer
    tb = exc.__traceback__
    while tb is not None:
        inner = call_in_frame(tb.tb_frame)
        if inner is not call and type(inner) is _Call and inner.observer is observer:
            return True
        tb = tb.tb_next
    return False


def _end_quietly(span: Any) -> None:
    try:
        span.end()
    except Exception:  # pragma: no cover - reported already as the failure that got us here
        pass


def _report(stage: str, exc: BaseException) -> None:
    """report_internal_error, never raising into a wrapper (at the recursion limit it could).

    A RecursionError here is the user's recursion using the stack up while the kit started or
    ended a call; the report gets the same loan of frames as :meth:`_Observer.end_error`.
    """
    limit = 0
    try:
        if exc.__class__ is RecursionError:
            current = _getrecursionlimit()
            _setrecursionlimit(current)  # raises at the limit, where it could not be lowered again
            _setrecursionlimit(current + _RECURSION_HEADROOM)
            limit = current
        report_internal_error(stage, exc)
    except RecursionError:  # pragma: no cover - at the limit with nothing lent: not counted
        pass
    finally:
        if limit:
            _setrecursionlimit(limit)


# --------------------------------------------------------------------------------------------
# Choosing the role per call (patching): graph when no graph is current, node otherwise
# --------------------------------------------------------------------------------------------

#: Roles of :func:`observe_as`.
NODE, GRAPH, GRAPH_OR_NODE = "node", "graph", "graph_or_node"


class _Dispatch(CallLifecycle):
    """Picks the observer of each call: ``outermost`` when no graph is current, else ``inner``."""

    __slots__ = ("outermost", "inner", "is_active")

    def __init__(
        self, outermost: _Observer, inner: _Observer, is_active: Callable[[], bool] | None
    ) -> None:
        self.outermost = outermost
        self.inner = inner
        self.is_active = is_active

    def start(self, args: tuple, kwargs: dict) -> _Call | None:
        try:
            if self.is_active is not None and not self.is_active():
                return None
        except Exception as exc:
            _report(Stage.OBSERVE_BEGIN, exc)
            return None
        observer = self.outermost if _get_graph() is None else self.inner
        return observer.start(args, kwargs)

    def end_ok(self, call: _Call, result: Any) -> None:
        call.observer.end_ok(call, result)

    def end_error(self, call: _Call, exc: BaseException) -> None:
        call.observer.end_error(call, exc)

    def end_closed(self, call: _Call) -> None:
        call.observer.end_closed(call)

    def resume(self, call: _Call) -> None:
        call.observer.resume(call)

    def pause(self, call: _Call) -> None:
        call.observer.pause(call)


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
        name: the span name (default: the node or graph name).
        attributes: extra span attributes, redacted like every other attribute.
        capture_input: record the arguments as the JSON attribute ``tinyllm.input``.
        capture_output: record the result as the JSON attribute ``tinyllm.output``.
        model: the model a node calls; labels the token metrics.

    Returns:
        The wrapped callable with the same signature, or a decorator when called with options.

    Raises:
        ValueError: an option of the wrong type, at decoration time.
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
    kind = kind_of(func)
    return _wrap(func, _Observer(func, kind, **options), _config.STATE, kind)


def observe_as(
    func: Any,
    role: str = NODE,
    *,
    graph: str | None = None,
    is_active: Callable[[], bool] | None = None,
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

    Returns:
        The observed callable, as :func:`observe` returns it.

    Raises:
        ValueError: an unknown role.
        TypeError: ``func`` is not callable.

    Example:
        >>> wrapper = observe_as(agent_step, GRAPH_OR_NODE, is_active=lambda: patch.active)
    """
    _check_callable(func)
    if role not in (NODE, GRAPH, GRAPH_OR_NODE):
        raise ValueError(f"role={role!r}: use NODE, GRAPH or GRAPH_OR_NODE")
    kind = kind_of(func)
    graph_name = graph or _code_location(func)[0]
    no_options: dict[str, Any] = dict(
        name=None, attributes=None, capture_input=False, capture_output=False, model=None
    )
    as_node = _Observer(func, kind, node=None, graph=None, **no_options)
    as_graph = _Observer(func, kind, node=None, graph=graph_name, **no_options)
    if role == NODE:
        outermost = inner = as_node
    elif role == GRAPH:
        outermost = inner = as_graph
    else:
        outermost, inner = as_graph, as_node
    return _wrap(func, _Dispatch(outermost, inner, is_active), _config.STATE, kind)
