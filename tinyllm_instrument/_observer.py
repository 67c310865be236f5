"""The lifecycle of an observed call: a plan per decorated callable, decided when decorating,
and the start / end / restore of each of its calls.

:class:`_Observer` is what one ``@observe`` decided (span name and start attributes, metric
handles, what the result is read for); the wrappers of :mod:`._calls` call its ``start`` /
``end_ok`` / ``end_error`` / ``end_closed`` / ``resume`` / ``pause``, written here once.
:mod:`.observe` is the public decorator above it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, INVALID_SPAN_CONTEXT, Link, NonRecordingSpan

from ._calls import ASYNC_GENERATOR, GENERATOR, CallLifecycle, call_in_frame
from ._context import CURRENT_CALL, NO_GRAPH
from ._errors import Stage, report_internal_error
from ._observe_genai import INFER, NOTHING, GenAIPlan
from ._observe_metrics import MAX_CACHED_GRAPHS, HandleCache
from ._observe_settings import SETTINGS
from .events import EventCategory, EventSeverity, emit_event, get_event_emitter
from .genai import conventions as c
from .genai.kinds import plan_kind, spec_span_name
from .genai.results import PLAIN_RESULT_TYPES
from .metrics import get_metrics_collector
from .redaction import safe_str
from .telemetry import get_tracer
from .telemetry.spans import prepare_attributes, record_error

__all__ = ["Observer", "code_location", "report"]

_DEBUG = EventSeverity.DEBUG
_ERROR = EventSeverity.ERROR
_EXECUTION = EventCategory.EXECUTION
_SETTINGS = SETTINGS


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


def _span_key() -> str | None:
    """The key under which ``trace.set_span_in_context`` puts a span, found by asking it (the
    API keeps the name private); None if it does not behave as one plain key."""
    sentinel = NonRecordingSpan(INVALID_SPAN_CONTEXT)
    keys = list(trace.set_span_in_context(sentinel, Context()))
    if len(keys) == 1 and trace.get_current_span(Context({keys[0]: sentinel})) is sentinel:
        return keys[0]
    return None  # pragma: no cover - another API: use set_span_in_context


# A call's context is the current one plus its span. set_span_in_context builds it four Python
# calls deep (set_value, get_current, the runtime context); with the default runtime context the
# call copies the ContextVar's value itself. Measured (fastest of 300 interleaved rounds): 313 ns
# through set_span_in_context, 186 ns copied by a function, less inline: about 1% of a recorded
# call, 3% of a sampled-out one.
_SPAN_KEY = _span_key()
_get_otel_context: Callable[[], Any] | None = (
    _OTEL_CONTEXT_VAR.get if _OTEL_CONTEXT_VAR is not None and _SPAN_KEY is not None else None
)
_time_ns = time.time_ns
_set_span_in_context = trace.set_span_in_context
_new_call = object.__new__
_get_scope = CURRENT_CALL.get
_set_scope = CURRENT_CALL.set
_reset_scope = CURRENT_CALL.reset
_get_current_span = trace.get_current_span
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


class _Call:
    """The state of one observed call in flight; a stream keeps it across its items."""

    __slots__ = (
        "observer",
        "span",
        "start_ns",
        "graph",
        "context",
        "scope",
        "otel_token",
        "scope_token",
        "wants_debug",
        "items",
        "first_item_ns",
        "acc",
    )

    # Set by _Observer.start, and the tokens by _Observer.resume, before anything reads them.
    scope: tuple[str | None, str | None, str | None]  # what the call makes CURRENT_CALL
    otel_token: Any
    scope_token: Any

    observer: _Observer
    span: Any
    start_ns: int
    graph: str | None
    context: Any  # the OTel Context holding the span: each step of a stream attaches it again
    wants_debug: bool
    items: int
    first_item_ns: int
    acc: Any  # an LLM stream's StreamAccumulator (set only by observers that see items)


class _Observer(CallLifecycle):
    """What one decorated callable does per call, decided when decorating, and each call's
    lifecycle: start, end ok, end with error (or closed early), and context restore.
    """

    __slots__ = (
        "node",
        "static_graph",
        "span_name",
        "spec_name",
        "span_kind",
        "span_attributes",
        "capture_input",
        "capture_output",
        "model",
        "event_prefix",
        "is_stream",
        "sees_items",
        "new_trace",
        "genai",
        "result_reader",
        "reads_plain",
        "in_graph_view",
        "handles",
        "_graph_attributes",
        "control_flow",
    )

    def __init__(
        self,
        func: Any,
        call_kind: str,
        *,
        node: str | None,
        graph: str | None,
        name: str | None,
        attributes: dict[str, Any] | None,
        capture_input: bool,
        capture_output: bool,
        model: str | None,
        kind: str | None = None,
        provider: str | None = None,
        new_trace: bool = False,
        control_flow: tuple[type[BaseException], ...] = (),
    ) -> None:
        qualname, module = _code_location(func)
        for label, value in (
            ("node", node),
            ("graph", graph),
            ("name", name),
            ("model", model),
            ("provider", provider),
        ):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"@observe({label}={value!r}): {label} must be a non-empty string")
        if attributes is not None and not isinstance(attributes, dict):
            raise ValueError(f"@observe(attributes={attributes!r}): attributes must be a dict")
        is_graph = graph is not None and node is None
        if new_trace is not False and (new_trace is not True or not is_graph):
            raise ValueError(
                f"@observe(new_trace={new_trace!r}): only a graph (graph= without node=) starts "
                "a trace of its own; use new_trace=True there"
            )
        self.node = None if is_graph else (node or qualname)
        self.static_graph = graph
        own_name = graph if is_graph else self.node
        assert own_name is not None  # node defaults to the qualname
        try:
            plan = plan_kind(kind, name=own_name, is_graph=is_graph, model=model, provider=provider)
        except ValueError as exc:
            raise ValueError(f"@observe: {exc}") from None
        self.span_name: str = name or plan.span_name
        # The conventions' name (configure_observe(span_names="spec")), when it differs.
        spec = None if name else spec_span_name(plan.kind, own_name, model)
        self.spec_name = spec if spec != self.span_name else None
        self.span_kind = plan.span_kind
        self.is_stream = call_kind in (GENERATOR, ASYNC_GENERATOR)
        attrs: dict[str, Any] = {"code.function": qualname, "code.namespace": module}
        if self.node is not None:
            attrs["tinyllm.node"] = self.node
        if graph is not None:
            attrs["tinyllm.graph"] = graph
        kind_attributes = dict(plan.attributes)
        # A node of no declared kind is a plain step: it carries only its OpenInference kind, so
        # that what every call of a plain node costs stays as it was (each attribute the SDK
        # validates, per span). Declared kinds and graphs join Phoenix's graph view.
        self.in_graph_view = kind is not None or is_graph or model is not None
        if not self.in_graph_view:
            kind_attributes = {c.OPENINFERENCE_SPAN_KIND: plan.kind.upper()}
        elif graph is not None and not is_graph:
            kind_attributes[c.GRAPH_NODE_PARENT_ID] = graph
        attrs.update(kind_attributes)
        if self.is_stream and plan.reads_usage:
            attrs[c.GEN_AI_REQUEST_STREAM] = True
        if attributes:
            attrs.update(attributes)
        self.span_attributes = prepare_attributes(attrs) or {}
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.model = model
        self.new_trace = new_trace
        # Exceptions a library raises through the call to steer it (LangGraph's interrupt()):
        # recorded as an interruption, not a failure.
        self.control_flow = control_flow
        self.event_prefix = "graph.execution." if is_graph else "node.execution."
        self.genai = GenAIPlan(
            func,
            plan,
            declared=kind is not None,
            is_graph=is_graph,
            is_stream=self.is_stream,
            model=model,
            provider=provider,
            capture_input=capture_input,
            capture_output=capture_output,
        )
        self.sees_items = self.genai.sees_items
        reads = self.genai.reads
        self.result_reader = None if reads == NOTHING or self.is_stream else self.genai.on_result
        self.reads_plain = reads != INFER  # a node of no kind reads only results of other types
        stream_name = (self.node or self.span_name) if self.is_stream else None
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
            if self.in_graph_view and self.node is not None:
                attrs[c.GRAPH_NODE_PARENT_ID] = graph
            if len(self._graph_attributes) < MAX_CACHED_GRAPHS:
                self._graph_attributes[graph] = attrs
        return attrs

    # -- the lifecycle (see _calls.CallLifecycle); none of these raises --------------------------

    def start(self, args: tuple, kwargs: dict) -> _Call | None:
        """Start the span and make the call current; None (run unobserved) if the kit fails."""
        static_graph = self.static_graph
        span = None
        try:
            _, outer_graph, outer_model = _get_scope()
            # A node inherits the graph (and, declaring none, the model) of the call around it.
            graph = static_graph if static_graph is not None else outer_graph
            start_ns = _time_ns()
            name = self.span_name
            if self.spec_name is not None and _SETTINGS.spec_span_names:
                name = self.spec_name
            attributes = self.span_attributes if graph is None else self.attributes_for(graph)
            if self.new_trace:
                span = self._start_trace(name, attributes, start_ns)
            else:
                span = get_tracer().start_span(
                    name, kind=self.span_kind, attributes=attributes, start_time=start_ns
                )
            # Filled in here rather than by an __init__, which would cost a frame per call.
            call = _new_call(_Call)
            call.observer = self
            call.span = span
            call.start_ns = start_ns
            call.graph = graph
            if _get_otel_context is not None:
                values = _get_otel_context().copy()
                values[_SPAN_KEY] = span
                call.context = Context(values)
            else:  # pragma: no cover - another runtime context
                call.context = _set_span_in_context(span)
            model = self.model
            call.scope = (self.node, graph, model if model is not None else outer_model)
            call.wants_debug = False
            call.items = 0  # a stream's resumes count its items
            call.first_item_ns = 0
            if self.sees_items:
                call.acc = self.genai.new_accumulator()
            if self.capture_input and span.is_recording():
                span.set_attributes(self.genai.input_attributes(args, kwargs))
        except Exception as exc:
            try:
                _report(Stage.OBSERVE_BEGIN, exc)
                if span is not None:
                    _end_quietly(span)
            except RecursionError:  # pragma: no cover - at the limit not even the report fits
                pass
            return None
        # The context is attached last, so a failure above leaves nothing current. What
        # resume() does, without its frame.
        call.otel_token = _attach(call.context)
        call.scope_token = _set_scope(call.scope)
        try:
            if self.model is not None:
                self.handles.get(graph).model_active.inc()
            call.wants_debug = get_event_emitter().wants(_DEBUG)
            if call.wants_debug:
                self._emit(call, "started", _DEBUG, None, None)
        except Exception as exc:
            _report(Stage.OBSERVE_BEGIN, exc)
        return call

    def _start_trace(self, name: str, attributes: dict[str, Any], start_ns: int) -> Any:
        """Start a graph's span as the root of a trace of its own, when it is called inside
        another observed call (a wrapped ``main()``, a loop): each graph call is then one trace.
        The enclosing span and the graph's are linked both ways. A parent from another process
        (a remote one) or from another instrumentation (no observed call around: an HTTP
        server's span) stays the parent, so distributed traces are not cut.
        """
        tracer = get_tracer()
        parent = _get_current_span()
        parent_context = parent.get_span_context()
        if (
            not parent_context.is_valid
            or parent_context.is_remote
            or _get_scope()[:2] == (None, None)
        ):
            return tracer.start_span(
                name, kind=self.span_kind, attributes=attributes, start_time=start_ns
            )
        # The current context without its span: baggage and every other value stay.
        context = _set_span_in_context(INVALID_SPAN)
        span = tracer.start_span(
            name,
            context=context,
            kind=self.span_kind,
            attributes=attributes,
            links=[Link(parent_context, _LINK_TO_CALLER)],
            start_time=start_ns,
        )
        if parent.is_recording():
            try:
                parent.add_link(span.get_span_context(), _LINK_TO_GRAPH)
            except Exception as exc:  # an SDK before Span.add_link (1.23): one link only
                _report(Stage.OBSERVE_BEGIN, exc)
        return span

    def resume(self, call: _Call) -> None:
        """Make the call's span, node, graph and model current; :meth:`pause` undoes it.

        A stream resumes after each item it produced (to go on, be closed, or have something
        thrown in), so the resumes are its item count whenever it ends.
        """
        call.otel_token = _attach(call.context)
        call.scope_token = _set_scope(call.scope)
        call.items += 1

    def pause_item(self, call: _Call, item: Any) -> None:
        """A stream of an LLM node produced ``item``: read it for usage, then :meth:`pause`."""
        if self.sees_items:
            try:
                call.acc.add(item)
            except Exception as exc:  # pragma: no cover - the accumulator reports its own
                _report(Stage.OBSERVE_FINISH, exc)
        self.pause(call)

    def pause(self, call: _Call) -> None:
        """Restore what :meth:`resume` made current: the one context reset, also of every end.

        A stream pauses when it produced an item: the first time, that is its first item.
        """
        if not call.first_item_ns and self.is_stream:
            call.first_item_ns = _time_ns()  # at a call's end, after anything reads it: unused
        try:
            _reset_scope(call.scope_token)
            _detach(call.otel_token)
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
                if self.sees_items:
                    self._stream_end(call, end_ns)
            else:
                if self.capture_output and span.is_recording():
                    span.set_attributes(self.genai.output_attributes(result))
                reader = self.result_reader
                if reader is not None and (self.reads_plain or type(result) not in _PLAIN):
                    reader(span, call.graph, (end_ns - call.start_ns) / 1e9, result)
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
            if self.sees_items:
                self._stream_end(call, end_ns)
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
            if self.is_stream:
                if recording:
                    span.set_attributes(_stream_attributes(call))
                if self.sees_items:
                    self._stream_end(call, end_ns)
            if isinstance(exc, Exception) and not isinstance(exc, self.control_flow):
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
            elif isinstance(exc, SystemExit) and (exc.code is None or exc.code == 0):
                pass  # sys.exit(0) inside a node: the program ends as it meant to, normally
            else:  # SystemExit, KeyboardInterrupt, GeneratorExit: an exit, not a failure
                span.set_attribute("tinyllm.interrupted", type(exc).__name__)
        except Exception as kit_exc:
            _report(Stage.OBSERVE_FAIL, kit_exc)

    def _stream_end(self, call: _Call, end_ns: int) -> None:
        """What an LLM node's stream said, when it ended however it ended. Never raises."""
        try:
            first = call.first_item_ns
            self.genai.on_stream_end(
                call.span,
                call.graph,
                (end_ns - call.start_ns) / 1e9,
                (first - call.start_ns) / 1e9 if first else None,
                call.acc,
            )
        except Exception as exc:
            _report(Stage.OBSERVE_FINISH, exc)

    def _end(self, call: _Call, end_ns: int) -> None:
        """End the span, count the call, restore the context: the last step of every ending."""
        try:
            span = call.span
            span.end(end_time=end_ns)
            handles = self.handles.get(call.graph)
            handles.record(call.start_ns, end_ns, span)
            if call.first_item_ns:
                handles.first_item_after((call.first_item_ns - call.start_ns) / 1e9)
        except Exception as exc:
            _report(Stage.OBSERVE_FINISH, exc)
        try:  # what pause() restores, without its frame
            _reset_scope(call.scope_token)
            _detach(call.otel_token)
        except Exception as exc:  # a stream closed in another Context (garbage collector)
            _report(Stage.OBSERVE_CONTEXT, exc)

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


#: Result types no model answer has: a node of no declared kind reads nothing else.
_PLAIN = PLAIN_RESULT_TYPES
#: Attributes of the links between a graph's own trace and the call it was made in.
_LINK_TO_CALLER = {"tinyllm.link": "called_by"}
_LINK_TO_GRAPH = {"tinyllm.link": "graph_call"}


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


#: The names :mod:`.observe` uses (the class and helpers keep their private spelling here).
Observer = _Observer
code_location = _code_location
report = _report
