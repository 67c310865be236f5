"""@observe: a plan built once at decoration time, one wrapper per callable kind."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from bisect import bisect_left
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, SupportsIndex, TypeVar, overload

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Status, StatusCode

from . import _config
from ._context import CURRENT_GRAPH, CURRENT_MODEL, CURRENT_NODE, NO_GRAPH
from ._errors import Stage, report_internal_error
from .events import EventCategory, EventSeverity, emit_event, get_event_emitter
from .metrics import get_metrics_collector
from .redaction import get_redaction_policy
from .telemetry import get_tracer

__all__ = [
    "DEFAULT_CAPTURE_BYTES",
    "ObservedFunction",
    "configure_observe",
    "observe",
    "record_usage",
    "reset_observe_settings",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Byte budget of one captured input or output attribute (after redaction, as JSON).
DEFAULT_CAPTURE_BYTES = 4096
_TRUNCATION_MARKER = "...[truncated]"
#: At most one exemplar per histogram bucket per this many ns. prometheus_client keeps only the
#: last exemplar of each bucket, so more would cost ~0.9 us per call and be overwritten anyway.
_EXEMPLAR_INTERVAL_NS = 100_000_000
#: Graph names a plan keeps prebound handles and attributes for; more are bound per call (the
#: metrics' own cardinality guard still applies), so a flood of graph names cannot grow memory.
_MAX_CACHED_GRAPHS = 256

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
# The plan: everything decided once, when decorating.
# --------------------------------------------------------------------------------------------

_SYNC, _ASYNC, _GEN, _ASYNCGEN = "sync", "async", "generator", "asyncgen"


def _kind_of(func: Any) -> str:
    target = getattr(func, "__func__", func)  # classmethod / staticmethod / bound method
    for candidate in (target, _call_method(target)):
        if candidate is None:
            continue
        if inspect.isasyncgenfunction(candidate):
            return _ASYNCGEN
        if inspect.iscoroutinefunction(candidate):
            return _ASYNC
        if inspect.isgeneratorfunction(candidate):
            return _GEN
    return _SYNC


def _call_method(target: Any) -> Any:
    """``type(obj).__call__`` of a callable object, which decides its kind; None otherwise."""
    if inspect.isroutine(target) or isinstance(target, type):
        return None
    return getattr(type(target), "__call__", None)  # noqa: B004 - the method itself is wanted


def _code_location(func: Any) -> tuple[str, str]:
    target = getattr(func, "__func__", func)
    name = getattr(target, "__qualname__", None)
    if name is None:  # a callable object
        name = type(target).__qualname__
    module = getattr(target, "__module__", None) or type(target).__module__
    return name, module


class _Plan:
    """What one decorated callable does per call, decided when decorating."""

    __slots__ = (
        "node",
        "static_graph",
        "is_graph",
        "span_name",
        "span_attributes",
        "capture_input",
        "capture_output",
        "model",
        "event_prefix",
        "signature",
        "receiver",
        "is_stream",
        "_children",
        "_collector",
        "_generation",
        "_graph_attributes",
    )

    def __init__(
        self,
        func: Any,
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
        self.is_graph = graph is not None and node is None
        self.node = None if self.is_graph else (node or qualname)
        self.static_graph = graph
        span_name = name or (graph if self.is_graph else self.node)
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
        self.span_attributes = _attribute_values(get_redaction_policy().redact(attrs))
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.model = model
        self.event_prefix = "graph.execution." if self.is_graph else "node.execution."
        self.signature: inspect.Signature | None = None
        self.receiver: str | None = None
        if capture_input:
            target = getattr(func, "__func__", func)
            try:
                self.signature = inspect.signature(target)
            except (TypeError, ValueError):
                self.signature = None
            params = list(self.signature.parameters) if self.signature is not None else []
            # A plain function defined in a class body names its receiver first (self / cls);
            # a bound method's signature does not.
            if params and inspect.isfunction(target) and not isinstance(func, staticmethod):
                self.receiver = params[0]
        self.is_stream = False
        self._collector: Any = None
        self._generation = -1
        self._children: dict[str | None, _Children] = {}
        self._graph_attributes: dict[str, dict[str, Any]] = {}

    def attributes_for(self, graph: str | None) -> dict[str, Any]:
        """The span's start attributes: the static ones, plus the graph a node is called in."""
        if graph is None or self.static_graph is not None:
            return self.span_attributes
        attrs = self._graph_attributes.get(graph)
        if attrs is None:
            attrs = dict(self.span_attributes)
            attrs["tinyllm.graph"] = graph
            if len(self._graph_attributes) < _MAX_CACHED_GRAPHS:
                self._graph_attributes[graph] = attrs
        return attrs

    def children(self, graph: str | None) -> _Children:
        """The prebound metric handles for this call's graph label (one dict lookup when warm)."""
        collector = get_metrics_collector()
        if collector is self._collector and collector.generation == self._generation:
            children = self._children.get(graph)
            if children is not None:
                return children
        return self._bind(collector, graph)

    def _bind(self, collector: Any, graph: str | None) -> _Children:
        if collector is not self._collector or collector.generation != self._generation:
            # a swapped collector (tests, testing.capture) or reset_metrics(): rebind the handles
            self._collector = collector
            self._generation = collector.generation
            self._children = {}
        label = graph if graph is not None else NO_GRAPH
        if self.is_graph:
            hist = collector.graph_execution_duration.labels(self.static_graph)
            counter = None
        else:
            hist = collector.node_execution_duration.labels(self.node, label)
            counter = collector.node_executions.labels(self.node, label)
        children = _Children(hist, counter, label)
        if self.model is not None:  # a model-calling node also feeds the guide's request metrics
            children.model_requests = collector.requests_total.labels(self.model, label, "generate")
            children.model_latency = collector.request_latency.labels(self.model, label)
            children.model_active = collector.active_requests.labels(self.model, label)
        if self.is_stream:
            children.first_item = collector.node_time_to_first_item.labels(
                self.node or self.span_name, label
            )
        if len(self._children) < _MAX_CACHED_GRAPHS:
            self._children[graph] = children
        return children


class _Children:
    """The metric handles of one plan for one graph label, bound once and reused per call."""

    __slots__ = (
        "hist",
        "counter",
        "graph_label",
        "bounds",
        "last_exemplar",
        "model_requests",
        "model_latency",
        "model_active",
        "first_item",
        "_sum",
        "_buckets",
        "_count",
    )

    def __init__(self, hist: Any, counter: Any, graph_label: str) -> None:
        self.hist = hist
        self.counter = counter
        self.graph_label = graph_label
        self.model_requests: Any = None
        self.model_latency: Any = None
        self.model_active: Any = None
        self.first_item: Any = None
        self.bounds: list[float] = list(getattr(hist, "_upper_bounds", ()))
        self.last_exemplar = [0] * (len(self.bounds) + 1)
        # The values behind the prometheus children, when they look as expected (prometheus_client
        # has kept them so since 0.4): the call then adds to them directly, skipping the public
        # methods' checks that a labelled child always passes. Otherwise the public API is used.
        buckets = getattr(hist, "_buckets", None)
        value_sum = getattr(hist, "_sum", None)
        if (
            isinstance(buckets, list)
            and len(buckets) == len(self.bounds)
            and self.bounds
            and self.bounds[-1] == float("inf")
            and all(callable(getattr(b, "inc", None)) for b in buckets)
            and callable(getattr(value_sum, "inc", None))
        ):
            self._sum: Any = value_sum
            self._buckets: list[Any] | None = buckets
        else:
            self._sum = self._buckets = None
        value = getattr(counter, "_value", None)
        self._count: Any = value if callable(getattr(value, "inc", None)) else None

    def record(self, start_ns: int, end_ns: int, span: Any) -> None:
        """Count one finished call: duration histogram (with a rationed exemplar) and counters."""
        seconds = (end_ns - start_ns) / 1e9
        idx = bisect_left(self.bounds, seconds)
        last = self.last_exemplar
        if end_ns - last[idx] >= _EXEMPLAR_INTERVAL_NS and span.__class__ is not NonRecordingSpan:
            ctx = span.get_span_context()
            if ctx.trace_flags.sampled:
                last[idx] = end_ns
                self.hist.observe(seconds, {"trace_id": format(ctx.trace_id, "032x")})
            else:
                self.hist.observe(seconds)
        elif self._buckets is not None:
            self._sum.inc(seconds)
            self._buckets[idx].inc(1)
        else:
            self.hist.observe(seconds)
        if self._count is not None:
            self._count.inc(1)
        elif self.counter is not None:
            self.counter.inc()
        if self.model_requests is not None:
            self.model_requests.inc()
            self.model_latency.observe(seconds)
            self.model_active.dec()


def _attribute_values(attrs: dict[str, Any]) -> dict[str, Any]:
    """Keep OTel-valid attribute types as they are; turn anything else into a safe string."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float)):
            out[str(key)] = value
        elif isinstance(value, (list, tuple)) and all(
            isinstance(v, (str, bool, int, float)) for v in value
        ):
            out[str(key)] = list(value)
        else:
            out[str(key)] = _safe_repr(value)
    return out


def _safe_repr(value: Any) -> str:
    try:
        return str(value)
    except Exception as exc:
        report_internal_error(Stage.ATTRIBUTE, exc)
        return f"<unprintable {type(value).__name__}>"


def _capture_json(value: Any) -> str:
    """Redact, serialise and cap one captured value; the result is always valid JSON."""
    budget = _SETTINGS.capture_bytes
    try:
        text = json.dumps(
            get_redaction_policy().redact(value), default=_safe_repr, ensure_ascii=False
        )
    except Exception as exc:  # a value json cannot walk (cycles, ...)
        report_internal_error(Stage.CAPTURE, exc)
        text = json.dumps(_safe_repr(value))
    if len(text.encode("utf-8")) <= budget:
        return text
    # Too big: keep a JSON string holding the head of the serialisation plus a marker.
    head = text.encode("utf-8")[: max(0, budget - 64)].decode("utf-8", "ignore")
    return json.dumps(head + _TRUNCATION_MARKER, ensure_ascii=False)


def _bound_arguments(plan: _Plan, instance: Any, args: tuple, kwargs: dict) -> Any:
    """The call's arguments by parameter name, without the method's receiver."""
    sig = plan.signature
    if sig is None:
        return {"args": list(args), "kwargs": kwargs}
    # wrapt hands a method's receiver over separately; the function's signature still names it
    receiver = plan.receiver if instance is not None else None
    try:
        if receiver is not None:
            bound = sig.bind_partial(instance, *args, **kwargs)
        else:
            bound = sig.bind_partial(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    data = dict(bound.arguments)
    if receiver is not None:
        data.pop(receiver, None)
    return data


# --------------------------------------------------------------------------------------------
# Per call: begin, then finish or fail. Locals only, nothing stored on the wrapper.
# --------------------------------------------------------------------------------------------


class _Call:
    """The state of one stream in flight (sync and async calls keep theirs in locals)."""

    __slots__ = (
        "plan",
        "span",
        "start_ns",
        "graph",
        "context",
        "tokens",
        "items",
        "first_item_ns",
    )

    def __init__(self, plan: _Plan, span: Any, start_ns: int, graph: str | None) -> None:
        self.plan = plan
        self.span = span
        self.start_ns = start_ns
        self.graph = graph
        # The OTel Context holding the span, made once: each step of a stream attaches it again.
        self.context: Any = None
        self.tokens: tuple = ()
        self.items = 0
        self.first_item_ns = 0


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


# Bound once: the hot path reads module globals, not attribute chains. With the default runtime
# context, attach/detach are its ContextVar's set/reset (what opentelemetry.context.attach and
# detach come down to, two Python calls deeper); a failed reset raises here and is reported.
_time_ns = time.time_ns
_OTEL_CONTEXT_VAR = _context_var()
_attach: Callable[[Any], Any] = (
    _OTEL_CONTEXT_VAR.set if _OTEL_CONTEXT_VAR is not None else otel_context.attach
)
_detach_otel: Callable[[Any], Any] = (
    _OTEL_CONTEXT_VAR.reset if _OTEL_CONTEXT_VAR is not None else otel_context.detach
)
_set_span_in_context = trace.set_span_in_context
_get_graph = CURRENT_GRAPH.get
_set_node = CURRENT_NODE.set
_reset_node = CURRENT_NODE.reset
_set_graph = CURRENT_GRAPH.set
_reset_graph = CURRENT_GRAPH.reset
_set_model = CURRENT_MODEL.set
_reset_model = CURRENT_MODEL.reset


def _enter(call: _Call) -> None:
    """Make the stream's span, node, graph and model current; ``call.tokens`` undo it."""
    graph = call.graph
    model = call.plan.model
    call.tokens = (
        _attach(call.context),
        _set_node(call.plan.node),
        _set_graph(graph) if _get_graph() is not graph else None,
        _set_model(model) if model is not None else None,
    )


def _begin(plan: _Plan, instance: Any, args: tuple, kwargs: dict) -> _Call:
    """Start a stream's call: span, context, gauge and the started event."""
    graph = plan.static_graph if plan.static_graph is not None else _get_graph()
    start_ns = _time_ns()
    span = get_tracer().start_span(
        plan.span_name, attributes=plan.attributes_for(graph), start_time=start_ns
    )
    if plan.capture_input and span.is_recording():
        span.set_attribute(
            "tinyllm.input", _capture_json(_bound_arguments(plan, instance, args, kwargs))
        )
    call = _Call(plan, span, start_ns, graph)
    call.context = _set_span_in_context(span)
    _enter(call)
    try:  # the context is attached now: a failure from here on must not leave the call half-begun
        if plan.model is not None:
            plan.children(graph).model_active.inc()
        if get_event_emitter().wants(_DEBUG):
            _emit(plan, graph, "started", _DEBUG, None, None)
    except Exception as exc:
        report_internal_error(Stage.OBSERVE_BEGIN, exc)
    return call


def _detach(call: _Call) -> None:
    otel_token, node_token, graph_token, model_token = call.tokens
    if model_token is not None:
        _reset_model(model_token)
    if graph_token is not None:
        _reset_graph(graph_token)
    _reset_node(node_token)
    _detach_otel(otel_token)


def _emit(
    plan: _Plan,
    graph: str | None,
    what: str,
    severity: EventSeverity,
    duration_ms: float | None,
    exc: Any,
) -> None:
    data: dict[str, Any] = {"graph": graph if graph is not None else NO_GRAPH}
    if plan.node is not None:
        data["node"] = plan.node
    if duration_ms is not None:
        data["duration_ms"] = round(duration_ms, 3)
    if exc is not None:
        data["error_type"] = type(exc).__name__
        data["error_message"] = _safe_repr(exc)
    emit_event(
        plan.event_prefix + what,
        _EXECUTION,
        severity,
        f"{plan.span_name} {what}",
        data=data,
    )


def _complete(
    plan: _Plan, span: Any, start_ns: int, graph: str | None, result: Any, wants_debug: bool
) -> None:
    """End a sync or async call that returned: one clock read for the span and the histogram.

    ``wants_debug`` is the emitter's answer for DEBUG when the call started; a DEBUG completed
    event (the default) follows it rather than asking again.
    """
    end_ns = _time_ns()
    try:
        if plan.capture_output and span.is_recording():
            span.set_attribute("tinyllm.output", _capture_json(result))
        if type(result) not in _PLAIN_RESULT_TYPES:
            _record_usage_of(span, plan.model, graph, result)
        severity = _SETTINGS.completed_severity
        if wants_debug if severity is _DEBUG else get_event_emitter().wants(severity):
            _emit(plan, graph, "completed", severity, (end_ns - start_ns) / 1e6, None)
    finally:
        span.end(end_time=end_ns)
        plan.children(graph).record(start_ns, end_ns, span)


def _stream_attributes(call: _Call) -> dict[str, Any]:
    attrs: dict[str, Any] = {"tinyllm.generator.items": call.items}
    if call.first_item_ns:
        attrs["tinyllm.time_to_first_item_ms"] = (call.first_item_ns - call.start_ns) / 1e6
    return attrs


def _finish(call: _Call, result: Any, *, closed_early: bool = False) -> None:
    """End a stream that ended or was closed."""
    end_ns = _time_ns()
    span = call.span
    plan = call.plan
    try:
        if span.is_recording():
            attrs = _stream_attributes(call)
            if plan.capture_output and not closed_early and result is not _NO_RESULT:
                attrs["tinyllm.output"] = _capture_json(result)
            if closed_early:
                attrs["tinyllm.generator.closed_early"] = True
            span.set_attributes(attrs)
        if result is not _NO_RESULT:
            _record_usage_of(span, plan.model, call.graph, result)
        severity = _SETTINGS.completed_severity
        if get_event_emitter().wants(severity):
            _emit(plan, call.graph, "completed", severity, (end_ns - call.start_ns) / 1e6, None)
    finally:
        span.end(end_time=end_ns)
        _record_duration(call, end_ns)


def _fail(call: _Call, exc: BaseException) -> None:
    """End a call that raised. User exceptions are errors; cancellation and exits are not."""
    end_ns = _time_ns()
    span = call.span
    plan = call.plan
    try:
        recording = span.is_recording()
        if plan.is_stream and recording:
            span.set_attributes(_stream_attributes(call))
        if isinstance(exc, Exception):
            if recording:
                span.record_exception(exc)
                span.set_status(
                    Status(StatusCode.ERROR, f"{type(exc).__name__}: {_safe_repr(exc)}")
                )
            if plan.node is not None:
                graph = call.graph if call.graph is not None else NO_GRAPH
                collector = get_metrics_collector()
                error_type = type(exc).__name__
                collector.node_errors.labels(plan.node, graph, error_type).inc()
                if plan.model is not None:
                    collector.errors_total.labels(error_type, plan.model, graph).inc()
            if get_event_emitter().wants(_ERROR):
                _emit(plan, call.graph, "failed", _ERROR, (end_ns - call.start_ns) / 1e6, exc)
        elif not recording:
            pass
        elif isinstance(exc, asyncio.CancelledError):
            span.set_attribute("tinyllm.cancelled", True)
            span.add_event("cancelled")
        else:  # SystemExit, KeyboardInterrupt, GeneratorExit: an exit, not a failure of the node
            span.set_attribute("tinyllm.interrupted", type(exc).__name__)
    finally:
        span.end(end_time=end_ns)
        _record_duration(call, end_ns)


def _record_duration(call: _Call, end_ns: int) -> None:
    plan = call.plan
    children = plan.children(call.graph)
    children.record(call.start_ns, end_ns, call.span)
    if call.first_item_ns:
        children.first_item.observe((call.first_item_ns - call.start_ns) / 1e9)


_NO_RESULT = object()


def _finish_safely(call: _Call, result: Any, closed_early: bool = False) -> None:
    try:
        _finish(call, result, closed_early=closed_early)
    except Exception as exc:
        report_internal_error(Stage.OBSERVE_FINISH, exc)


def _fail_safely(call: _Call, exc: BaseException) -> None:
    try:
        _fail(call, exc)
    except Exception as kit_exc:
        report_internal_error(Stage.OBSERVE_FAIL, kit_exc)


def _detach_safely(call: _Call) -> None:
    try:
        _detach(call)
    except Exception as exc:
        report_internal_error(Stage.OBSERVE_CONTEXT, exc)


def _begin_safely(plan: _Plan, instance: Any, args: tuple, kwargs: dict) -> _Call | None:
    try:
        return _begin(plan, instance, args, kwargs)
    except Exception as exc:
        report_internal_error(Stage.OBSERVE_BEGIN, exc)
        return None


# --------------------------------------------------------------------------------------------
# Token usage
# --------------------------------------------------------------------------------------------

_PLAIN_RESULT_TYPES = frozenset({type(None), bool, int, float, str, bytes, list, tuple, set})


def _usage_of(result: Any) -> tuple[int, int] | None:
    """Find (input, output) tokens in the common shapes of an LLM result, or None."""
    if type(result) in _PLAIN_RESULT_TYPES:
        return None
    if isinstance(result, dict):
        usage = result.get("usage", result)
        get = usage.get if isinstance(usage, dict) else (lambda k, d=None: getattr(usage, k, d))
    else:
        usage = getattr(result, "usage", None)
        if usage is None:
            usage = result
        if isinstance(usage, dict):
            get = usage.get
        else:

            def get(key: str, default: Any = None) -> Any:
                return getattr(usage, key, default)

    inp = get("prompt_tokens")
    out = get("completion_tokens")
    if inp is None and out is None:
        inp = get("input_tokens")
        out = get("output_tokens")
    if inp is None and out is None:
        return None
    return _token_count(inp), _token_count(out)


def _token_count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"token count {value!r} is not a non-negative integer")
    return value


def _record_usage_of(span: Any, model: str | None, graph: str | None, result: Any) -> None:
    try:
        usage = _usage_of(result)
    except Exception as exc:  # a malformed usage field is the app's business, not a crash
        report_internal_error(Stage.USAGE, exc)
        return
    if usage is None:
        return
    _record_tokens(span, usage[0], usage[1], model, graph)


def _record_tokens(span: Any, inp: int, out: int, model: str | None, graph: str | None) -> None:
    if span.is_recording():
        span.set_attribute("gen_ai.usage.input_tokens", inp)
        span.set_attribute("gen_ai.usage.output_tokens", out)
    get_metrics_collector().record_tokens(
        inp,
        out,
        model if model is not None else "unknown",
        graph if graph is not None else NO_GRAPH,
    )


def record_usage(
    input_tokens: int = 0, output_tokens: int = 0, *, model: str | None = None
) -> None:
    """Record token usage for the current observed call, for nodes that stream.

    Adds to ``tinyllm_tokens_input_total`` / ``tinyllm_tokens_output_total{model,graph}`` and sets
    ``gen_ai.usage.input_tokens`` / ``output_tokens`` on the current span.

    Args:
        input_tokens: prompt tokens to add.
        output_tokens: completion tokens to add.
        model: the model label; by default the ``model=`` of the enclosing ``@observe``.

    Raises:
        ValueError: a count is negative or not an integer.

    Example:
        >>> @observe(node="generate", model="fake-1")
        ... def generate(prompt):
        ...     for word in prompt.split():
        ...         yield word
        ...     record_usage(input_tokens=3, output_tokens=3)
    """
    inp, out = _token_count(input_tokens), _token_count(output_tokens)
    if not _config.STATE.enabled:
        return
    try:
        _record_tokens(
            trace.get_current_span(),
            inp,
            out,
            model if model is not None else CURRENT_MODEL.get(),
            CURRENT_GRAPH.get(),
        )
    except Exception as exc:
        report_internal_error(Stage.USAGE, exc)


# --------------------------------------------------------------------------------------------
# One wrapper per callable kind
# --------------------------------------------------------------------------------------------


def _sync_wrapper(plan: _Plan) -> Callable[..., Any]:
    # Everything the call needs is read here, once; the call itself keeps its state in locals.
    span_name = plan.span_name
    span_attributes = plan.span_attributes
    static_graph = plan.static_graph
    node = plan.node
    model = plan.model
    capture_input = plan.capture_input
    # A node inherits the graph from the context it runs in: setting the same value again would
    # cost a set and a reset and change nothing.
    sets_graph = static_graph is not None

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        try:
            graph = static_graph if sets_graph else _get_graph()
            start_ns = _time_ns()
            span = get_tracer().start_span(
                span_name,
                attributes=span_attributes if graph is None else plan.attributes_for(graph),
                start_time=start_ns,
            )
            if capture_input and span.is_recording():
                span.set_attribute(
                    "tinyllm.input", _capture_json(_bound_arguments(plan, instance, args, kwargs))
                )
            otel_token = _attach(_set_span_in_context(span))
            node_token = _set_node(node)
            graph_token = _set_graph(graph) if sets_graph else None
            model_token = _set_model(model) if model is not None else None
        except Exception as exc:
            report_internal_error(Stage.OBSERVE_BEGIN, exc)
            return wrapped(*args, **kwargs)
        wants_debug = False
        try:
            if model is not None:
                plan.children(graph).model_active.inc()
            wants_debug = get_event_emitter().wants(_DEBUG)
            if wants_debug:
                _emit(plan, graph, "started", _DEBUG, None, None)
        except Exception as exc:
            report_internal_error(Stage.OBSERVE_BEGIN, exc)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call = _Call(plan, span, start_ns, graph)
            _fail_safely(call, exc)
            _reset_safely(otel_token, node_token, graph_token, model_token)
            raise
        try:
            _complete(plan, span, start_ns, graph, result, wants_debug)
        except Exception as exc:
            report_internal_error(Stage.OBSERVE_FINISH, exc)
        try:
            if model_token is not None:
                _reset_model(model_token)
            if graph_token is not None:
                _reset_graph(graph_token)
            _reset_node(node_token)
            _detach_otel(otel_token)
        except Exception as exc:
            report_internal_error(Stage.OBSERVE_CONTEXT, exc)
        return result

    return wrapper


def _async_wrapper(plan: _Plan) -> Callable[..., Any]:
    # The same as _sync_wrapper, with an await: a coroutine resumes in the Context it started
    # in, so the tokens set before the await are reset in that same Context.
    span_name = plan.span_name
    span_attributes = plan.span_attributes
    static_graph = plan.static_graph
    node = plan.node
    model = plan.model
    capture_input = plan.capture_input
    sets_graph = static_graph is not None

    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        try:
            graph = static_graph if sets_graph else _get_graph()
            start_ns = _time_ns()
            span = get_tracer().start_span(
                span_name,
                attributes=span_attributes if graph is None else plan.attributes_for(graph),
                start_time=start_ns,
            )
            if capture_input and span.is_recording():
                span.set_attribute(
                    "tinyllm.input", _capture_json(_bound_arguments(plan, instance, args, kwargs))
                )
            otel_token = _attach(_set_span_in_context(span))
            node_token = _set_node(node)
            graph_token = _set_graph(graph) if sets_graph else None
            model_token = _set_model(model) if model is not None else None
        except Exception as exc:
            report_internal_error(Stage.OBSERVE_BEGIN, exc)
            return await wrapped(*args, **kwargs)
        wants_debug = False
        try:
            if model is not None:
                plan.children(graph).model_active.inc()
            wants_debug = get_event_emitter().wants(_DEBUG)
            if wants_debug:
                _emit(plan, graph, "started", _DEBUG, None, None)
        except Exception as exc:
            report_internal_error(Stage.OBSERVE_BEGIN, exc)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call = _Call(plan, span, start_ns, graph)
            _fail_safely(call, exc)
            _reset_safely(otel_token, node_token, graph_token, model_token)
            raise
        try:
            _complete(plan, span, start_ns, graph, result, wants_debug)
        except Exception as exc:
            report_internal_error(Stage.OBSERVE_FINISH, exc)
        try:
            if model_token is not None:
                _reset_model(model_token)
            if graph_token is not None:
                _reset_graph(graph_token)
            _reset_node(node_token)
            _detach_otel(otel_token)
        except Exception as exc:
            report_internal_error(Stage.OBSERVE_CONTEXT, exc)
        return result

    return wrapper


def _reset_safely(otel_token: Any, node_token: Any, graph_token: Any, model_token: Any) -> None:
    try:
        if model_token is not None:
            _reset_model(model_token)
        if graph_token is not None:
            _reset_graph(graph_token)
        _reset_node(node_token)
        _detach_otel(otel_token)
    except Exception as exc:
        report_internal_error(Stage.OBSERVE_CONTEXT, exc)


def _end_stream(call: _Call, closed_early: bool) -> None:
    _finish_safely(call, _NO_RESULT, closed_early)


def _generator_wrapper(plan: _Plan) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        return _observed_generator(plan, wrapped, instance, args, kwargs)

    return wrapper


def _observed_generator(
    plan: _Plan, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
) -> Any:
    # A generator of our own drives the user's, so that the span starts at the first next() and
    # the context is attached only while the user's code runs: never across a yield. Each step
    # attaches the Context made at the start and sets the node/graph/model variables; the steps
    # are inlined here because they run once per item.
    call = _begin_safely(plan, instance, args, kwargs)
    if call is None:
        return (yield from wrapped(*args, **kwargs))
    try:
        gen = wrapped(*args, **kwargs)
    except BaseException as exc:
        _fail_safely(call, exc)
        _detach_safely(call)
        raise
    send = gen.send
    node = plan.node
    graph = call.graph
    model = plan.model
    context = call.context
    send_value: Any = None
    to_throw: BaseException | None = None
    first = True
    while True:
        if first:
            first = False
            otel_token, node_token, graph_token, model_token = call.tokens
        else:
            otel_token = _attach(context)
            node_token = _set_node(node)
            graph_token = _set_graph(graph) if _get_graph() is not graph else None
            model_token = _set_model(model) if model is not None else None
        try:
            if to_throw is not None:
                exc_in, to_throw = to_throw, None
                item = gen.throw(exc_in)
            else:
                item = send(send_value)
        except StopIteration as stop:
            call.tokens = (otel_token, node_token, graph_token, model_token)
            _end_stream(call, False)
            _detach_safely(call)
            return stop.value
        except BaseException as exc:
            call.tokens = (otel_token, node_token, graph_token, model_token)
            _fail_safely(call, exc)
            _detach_safely(call)
            raise
        if not call.items:
            call.first_item_ns = _time_ns()
        call.items += 1
        try:
            if model_token is not None:
                _reset_model(model_token)
            if graph_token is not None:
                _reset_graph(graph_token)
            _reset_node(node_token)
            _detach_otel(otel_token)
        except Exception as kit_exc:
            report_internal_error(Stage.OBSERVE_CONTEXT, kit_exc)
        try:
            send_value = yield item
        except GeneratorExit:
            _enter(call)
            try:
                gen.close()
            except BaseException as exc:
                _fail_safely(call, exc)
                _detach_safely(call)
                raise
            _end_stream(call, True)
            _detach_safely(call)
            raise
        except BaseException as exc:  # forwarded by throw()
            to_throw = exc
            send_value = None


def _asyncgen_wrapper(plan: _Plan) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        return _observed_asyncgen(plan, wrapped, instance, args, kwargs)

    return wrapper


async def _observed_asyncgen(
    plan: _Plan, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
) -> Any:
    call = _begin_safely(plan, instance, args, kwargs)
    agen = wrapped(*args, **kwargs)
    if call is None:
        async for item in agen:
            yield item
        return
    asend = agen.asend
    node = plan.node
    graph = call.graph
    model = plan.model
    context = call.context
    send_value: Any = None
    to_throw: BaseException | None = None
    first = True
    while True:
        if first:
            first = False
            otel_token, node_token, graph_token, model_token = call.tokens
        else:
            otel_token = _attach(context)
            node_token = _set_node(node)
            graph_token = _set_graph(graph) if _get_graph() is not graph else None
            model_token = _set_model(model) if model is not None else None
        try:
            if to_throw is not None:
                exc_in, to_throw = to_throw, None
                item = await agen.athrow(exc_in)
            else:
                item = await asend(send_value)
        except StopAsyncIteration:
            call.tokens = (otel_token, node_token, graph_token, model_token)
            _end_stream(call, False)
            _detach_safely(call)
            return
        except BaseException as exc:
            call.tokens = (otel_token, node_token, graph_token, model_token)
            _fail_safely(call, exc)
            _detach_safely(call)
            raise
        if not call.items:
            call.first_item_ns = _time_ns()
        call.items += 1
        try:
            if model_token is not None:
                _reset_model(model_token)
            if graph_token is not None:
                _reset_graph(graph_token)
            _reset_node(node_token)
            _detach_otel(otel_token)
        except Exception as kit_exc:
            report_internal_error(Stage.OBSERVE_CONTEXT, kit_exc)
        try:
            send_value = yield item
        except GeneratorExit:
            _enter(call)
            try:
                await agen.aclose()
            except BaseException as exc:
                _fail_safely(call, exc)
                _detach_safely(call)
                raise
            _end_stream(call, True)
            _detach_safely(call)
            raise
        except BaseException as exc:
            to_throw = exc
            send_value = None


_WRAPPER_FACTORIES = {
    _SYNC: _sync_wrapper,
    _ASYNC: _async_wrapper,
    _GEN: _generator_wrapper,
    _ASYNCGEN: _asyncgen_wrapper,
}


class ObservedFunction(wrapt.FunctionWrapper):
    """The object ``@observe`` returns: a descriptor-correct wrapt proxy of the user's callable."""

    # wrapt looks this up on every binding of a subclass (obj.method); absent, the lookup raises
    # and clears an AttributeError each time (~0.5 us). It is the type wrapt would use anyway.
    __bound_function_wrapper__ = wrapt.BoundFunctionWrapper

    def __reduce_ex__(self, protocol: SupportsIndex) -> str:
        # Pickle by reference, as pickle does for a plain module-level function: the name resolves
        # to this same wrapper in its module, so multiprocessing pools can ship it.
        return self.__qualname__

    def __repr__(self) -> str:
        return f"<observed {self.__wrapped__!r}>"


def _is_observed(func: Any) -> bool:
    return isinstance(func, ObservedFunction) or isinstance(
        getattr(func, "__func__", None), ObservedFunction
    )


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
    staticmethods (above or below those decorators) and callable objects.

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


def _decorate(func: Any, options: dict[str, Any]) -> Any:
    if not callable(func) and not isinstance(func, (classmethod, staticmethod)):
        raise TypeError(
            f"@observe needs a function, method or callable object, not {type(func).__name__}"
        )
    if _is_observed(func):
        return func
    plan = _Plan(func, **options)
    kind = _kind_of(func)
    plan.is_stream = kind in (_GEN, _ASYNCGEN)
    wrapper = _WRAPPER_FACTORIES[kind](plan)
    return ObservedFunction(func, wrapper, enabled=_config.is_enabled)
