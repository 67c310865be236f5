"""The one span layer: attribute conversion, error recording and span helpers used by every caller.

``observe``, ``traced``, events and the CLI convert attribute values and record exceptions here,
through the kit's one redaction policy, so a secret in an exception message, a stack trace or an
object's ``str()`` is redacted the same way on every path.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from enum import Enum
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._calls import CallLifecycle, wrap
from .._errors import Stage, report_internal_error
from ..redaction import REDACTED, get_redaction_policy, safe_str
from .provider import get_tracer

__all__ = [
    "attribute_text",
    "attribute_value",
    "end_span",
    "format_stacktrace",
    "get_current_span_id",
    "get_current_trace_id",
    "prepare_attributes",
    "record_error",
    "record_span_event",
    "redact_text",
    "set_span_attribute",
    "set_span_error",
    "start_span",
    "trace_span",
    "traced",
]


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------------------------------
# Text of user objects, and attribute values
# --------------------------------------------------------------------------------------------------


def redact_text(text: str) -> str:
    """``text`` with the process-wide redaction policy applied; ``[REDACTED]`` if that fails.

    Example:
        >>> redact_text("login with password=hunter2")
        'login with password=[REDACTED]'
    """
    try:
        return get_redaction_policy().redact_text(text)
    except Exception as exc:  # fail closed: nothing that was not checked goes out
        report_internal_error(Stage.REDACTION, exc)
        return REDACTED


def attribute_text(value: object) -> str:
    """What any sink may show of a user object: its ``str()``, redacted; never raises.

    An object whose ``__str__`` raises becomes ``"<unprintable T>"`` and is counted in
    ``tinyllm_instrumentation_errors_total{stage="span_attribute"}``.

    Example:
        >>> class Client:
        ...     def __repr__(self):
        ...         return "Client(api_key='sk-live-abcdef123456')"
        >>> attribute_text(Client())
        "Client(api_key='[REDACTED]')"
    """
    text = safe_str(value)
    if text == _unprintable(value):
        report_internal_error(Stage.SPAN_ATTRIBUTE, _Unprintable(type(value).__name__))
    return redact_text(text)


class _Unprintable(Exception):
    """Stands for the error of a ``__str__`` that raised (safe_str swallowed the original)."""

    def __init__(self, type_name: str) -> None:
        super().__init__(f"str() of a {type_name} raised")


def _unprintable(value: object) -> str:
    return f"<unprintable {type(value).__name__}>"


def _scalar(value: object) -> str | bool | int | float | None:
    """A valid OTel scalar for ``value``; None for None. Never raises."""
    kind = type(value)
    if kind is str or kind is bool or kind is float:
        return cast(Any, value)
    if kind is int:
        # OTLP carries 64-bit ints; a bigger one would make the encoder drop the key.
        return cast(int, value) if _INT64_MIN <= cast(int, value) <= _INT64_MAX else str(value)
    if value is None:
        return None
    if isinstance(value, Enum):
        return _scalar(value.value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)  # a plain str, whatever the subclass's __str__ says
    if isinstance(value, int):
        return _scalar(int(value))
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, Mapping):
        return _dumps(value)  # keys and strings inside were redacted by prepare_attributes
    return attribute_text(value)


def attribute_value(value: object) -> Any:
    """Convert a value to a valid OTel attribute value; None stays None (drop it). Never raises.

    Scalars keep their type, except ints outside 64 bits, which become strings; sequences stay
    homogeneous (mixed ones become strings); mappings become JSON; anything else becomes its
    redacted ``str()``. Strings are *not* redacted here: :func:`prepare_attributes` redacts the
    whole mapping first (by key and by value).

    Example:
        >>> attribute_value(2**70), attribute_value([1, "a"]), attribute_value(3)
        ('1180591620717411303424', ('1', 'a'), 3)
    """
    if isinstance(value, (list, tuple)):
        items = [_scalar(v) if not isinstance(v, (list, tuple)) else safe_str(v) for v in value]
        items = [v for v in items if v is not None]
        types = {type(v) for v in items}
        if len(types) > 1:
            items = [v if type(v) is str else safe_str(v) for v in items]
        return tuple(items)
    return _scalar(value)


def prepare_attributes(attributes: Mapping[Any, Any] | None) -> dict[str, Any] | None:
    """Redact and convert attributes for a span or span event: the one conversion of the kit.

    Returns None for nothing to set. A failing redaction drops them all (fail closed); a hostile
    mapping is reported and dropped. Never raises.

    Example:
        >>> prepare_attributes({"api_key": "abc", "top_k": 3, "big": 2**70, "none": None})
        {'api_key': '[REDACTED]', 'top_k': 3, 'big': '1180591620717411303424'}
    """
    if not attributes:
        return None
    try:
        try:
            redacted = get_redaction_policy().redact(dict(attributes))
        except Exception as exc:
            report_internal_error(Stage.REDACTION, exc)
            return None
        if not isinstance(redacted, Mapping) or not redacted:
            return None
        out: dict[str, Any] = {}
        for key, value in redacted.items():
            converted = attribute_value(value)
            if converted is not None:
                out[key if type(key) is str else safe_str(key)] = converted
        return out
    except Exception as exc:  # a hostile Mapping: the user's call goes on without attributes
        report_internal_error(Stage.SPAN_ATTRIBUTE, exc)
        return None


def _dumps(redacted: Any) -> str:
    """JSON of an already redacted value; objects as their redacted ``str()``. Never raises."""
    try:
        return json.dumps(redacted, default=attribute_text, ensure_ascii=False)
    except Exception as exc:  # cycles the policy cut, keys JSON refuses, hostile containers
        report_internal_error(Stage.CAPTURE, exc)
        return json.dumps(attribute_text(redacted), ensure_ascii=False)


# --------------------------------------------------------------------------------------------------
# Span helpers
# --------------------------------------------------------------------------------------------------


def _already_recorded(span: trace.Span, exc: BaseException, message: str) -> bool:
    """Whether ``set_span_error(exc)`` already put this exception on the span (no double events)."""
    events = getattr(span, "events", ())
    if not events:
        return False
    exc_type = type(exc).__qualname__
    for event in events:
        attributes = event.attributes
        if event.name == "exception" and attributes is not None:
            if attributes.get("exception.message") == message and str(
                attributes.get("exception.type", "")
            ).endswith(exc_type):
                return True
    return False


def record_error(span: trace.Span, exc: BaseException) -> None:
    """Set ERROR status and add the ``exception`` event, message and stack trace redacted.

    The event carries OpenTelemetry's ``exception.*`` attributes, as ``Span.record_exception``
    makes them, but the stack trace is redacted too (it quotes the messages of chained exceptions
    and the source lines that raised) and bounded (see :func:`format_stacktrace`), so an exception
    that unwinds through many spans costs each of them the same. Recording the same exception
    twice on a span adds one event. Never raises.

    Example:
        >>> record_error(span, ValueError("bad key sk-proj-abcdefghijkl"))
        >>> span.status.description
        'ValueError: bad key [REDACTED]'
    """
    try:
        if not span.is_recording():
            return
        message = redact_text(safe_str(exc))
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"))
        if not _already_recorded(span, exc, message):
            cls = type(exc)
            module = cls.__module__
            span.add_event(
                "exception",
                {
                    "exception.type": f"{module}.{cls.__qualname__}"
                    if module and module != "builtins"
                    else cls.__qualname__,
                    "exception.message": message,
                    "exception.stacktrace": redact_text(format_stacktrace(exc)),
                    "exception.escaped": "False",
                },
            )
    except Exception as err:
        report_internal_error(Stage.SPAN_ERROR, err)


#: Frames of each exception a recorded stack trace keeps: the innermost, where it was raised.
MAX_STACK_FRAMES = 64
#: Exceptions of a ``__cause__`` / ``__context__`` chain a recorded stack trace shows.
_MAX_CHAIN = 8
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_stacktrace(exc: BaseException) -> str:
    """``traceback.format_exception(exc)``, bounded: the innermost ``MAX_STACK_FRAMES`` frames of
    each exception in its chain (repeated frames folded as ``traceback`` folds them), at most
    eight chained exceptions, and no column carets. Not redacted.

    The cost depends on those bounds, not on the depth the exception unwound from: recording a
    RecursionError on each of a thousand spans it passed must not read a thousand frames each.

    Example:
        >>> print(format_stacktrace(ValueError("boom")))
        ValueError: boom
    """
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for error, link in reversed(chain):
        parts.extend(_format_one(error))
        parts.append(link)
    return "".join(parts)


def _format_one(error: BaseException) -> list[str]:
    tb = error.__traceback__
    lines: list[str] = []
    if tb is not None:
        depth = 0
        probe: TracebackType | None = tb
        while probe is not None:
            depth += 1
            probe = probe.tb_next
        for _ in range(depth - MAX_STACK_FRAMES):
            tb = tb.tb_next  # type: ignore[union-attr]
        omitted = max(0, depth - MAX_STACK_FRAMES)
        lines.append(
            "Traceback (most recent call last):\n"
            if not omitted
            else f"Traceback (most recent call last; {omitted} outer frames omitted):\n"
        )
        # Line numbers only, no column positions: the carets would parse each line again.
        lines.extend(traceback.StackSummary.extract(traceback.walk_tb(tb)).format())
    lines.extend(traceback.format_exception_only(type(error), error))
    return lines


def start_span(
    name: str, attributes: Mapping[str, Any] | None = None, kind: SpanKind = SpanKind.INTERNAL
) -> trace.Span:
    """Start a span of the kit's tracer (not made current); attributes prepared as above.

    Never raises: a failure is reported and gives the invalid (non-recording) span.

    Example:
        >>> span = start_span("work", {"top_k": 3})
        >>> end_span(span)
    """
    try:
        return get_tracer().start_span(name, kind=kind, attributes=prepare_attributes(attributes))
    except Exception as exc:
        report_internal_error(Stage.SPAN_START, exc)
        return trace.INVALID_SPAN


def end_span(span: trace.Span) -> None:
    """End ``span``; a failure is reported, never raised."""
    try:
        span.end()
    except Exception as exc:
        report_internal_error(Stage.SPAN_END, exc)


class _SpanScope:
    """``with trace_span(...)``: one call of the ``traced`` lifecycle around a block. A class, not
    a generator context manager: this sits on every traced call (see PERFORMANCE-NOTES).
    """

    __slots__ = ("_lifecycle", "_call")

    def __init__(self, name: str, attributes: Mapping[str, Any] | None, kind: SpanKind) -> None:
        self._lifecycle = _Traced(name, attributes, kind)

    def __enter__(self) -> trace.Span:
        call = self._call = self._lifecycle.start((), {})
        return trace.INVALID_SPAN if call is None else call.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        call = self._call
        if call is None:
            return
        if exc is None:
            self._lifecycle.end_ok(call, None)
        else:
            self._lifecycle.end_error(call, exc)


def trace_span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[trace.Span]:
    """A context manager that runs its body in a new current span and yields that span.

    The span is never None: with tracing off it is a non-recording span on which every call is a
    no-op.
    Attribute values keep their types (int stays int); values that OpenTelemetry cannot store are
    converted with ``str()``, None values are dropped, and all go through the redaction policy. An
    exception raised by the body is recorded, sets the status to ERROR, and propagates unchanged.

    Args:
        name: span name.
        attributes: initial attributes.
        kind: the OpenTelemetry SpanKind.

    Returns:
        A context manager yielding the span.

    Example:
        >>> with trace_span("node_execution", attributes={"node_id": "entry", "try": 1}) as span:
        ...     span.set_attribute("result_size", 3)
    """
    return _SpanScope(name, attributes, kind)


# --------------------------------------------------------------------------------------------------
# @traced: a span per call, through the kit's one set of wrappers
# --------------------------------------------------------------------------------------------------


class _TracedCall:
    __slots__ = ("span", "context", "token")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.context = trace.set_span_in_context(span)
        self.token: Any = otel_context.attach(self.context)


class _Traced(CallLifecycle):
    """A span per call of the traced callable (or ``trace_span`` block), current while it runs."""

    __slots__ = ("name", "attributes", "kind")

    def __init__(
        self,
        name: str,
        attributes: Mapping[str, Any] | None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        self.name = name
        self.attributes = attributes
        self.kind = kind

    def start(self, args: tuple, kwargs: dict) -> _TracedCall | None:
        span = start_span(self.name, self.attributes, self.kind)
        try:
            return _TracedCall(span)
        except Exception as exc:  # pragma: no cover - attach of a broken runtime context
            report_internal_error(Stage.SPAN_START, exc)
            end_span(span)
            return None

    def end_ok(self, call: _TracedCall, result: Any) -> None:
        end_span(call.span)
        self.pause(call)

    def end_error(self, call: _TracedCall, exc: BaseException) -> None:
        # Like OpenTelemetry's use_span: only Exception is an error; GeneratorExit,
        # KeyboardInterrupt and cancellation are not.
        if isinstance(exc, Exception):
            record_error(call.span, exc)
        self.end_ok(call, None)

    def end_closed(self, call: _TracedCall) -> None:
        self.end_ok(call, None)

    def resume(self, call: _TracedCall) -> None:
        call.token = otel_context.attach(call.context)

    def pause(self, call: _TracedCall) -> None:
        otel_context.detach(call.token)  # logs and swallows a token from another Context


@overload
def traced(name: F) -> F: ...
@overload
def traced(
    name: str | None = None, attributes: Mapping[str, Any] | None = None
) -> Callable[[F], F]: ...


def traced(
    name: str | Callable[..., Any] | None = None, attributes: Mapping[str, Any] | None = None
) -> Any:
    """Decorate a function, coroutine function, generator or async generator to run in a span.

    One wrapper per kind of callable, chosen at decoration time (the same wrappers as
    ``@observe``), so ``inspect.iscoroutinefunction`` and friends still answer truly and name,
    docstring and signature are kept. A generator's span covers its whole iteration, and the span
    is current only while the generator's own code runs (not in the caller between items); a
    generator called with bad arguments raises at the call. Usable bare (``@traced``) or called.

    Args:
        name: span name; default the function's ``__qualname__`` (``Class.method``), without the
            ``outer.<locals>.`` prefix of nested functions.
        attributes: attributes set on every span.

    Returns:
        The decorator (or the wrapped function, when used bare).

    Example:
        >>> @traced(attributes={"component": "executor"})
        ... async def execute_graph(graph_id: str) -> str:
        ...     return graph_id
    """
    if callable(name):
        return traced()(name)

    def decorate(func: F) -> F:
        # "outer.<locals>.inner" names the defining function, not the span's work: keep the tail.
        qualname = (
            getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
        )
        span_name = name or qualname.rsplit("<locals>.", 1)[-1]
        static = dict(attributes) if attributes else None
        return cast(F, wrap(func, _Traced(span_name, static)))

    return decorate


def _current_recording_span() -> trace.Span | None:
    span = trace.get_current_span()
    return span if span.is_recording() else None


def record_span_event(name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Add an event to the current span (no-op outside a recording span).

    Example:
        >>> with trace_span("processing"):
        ...     record_span_event("cache_miss", attributes={"cache_key": "abc"})
    """
    span = _current_recording_span()
    if span is None:
        return
    try:
        span.add_event(name, attributes=prepare_attributes(attributes))
    except Exception as exc:
        report_internal_error(Stage.SPAN_EVENT, exc)


def set_span_attribute(key: str, value: Any) -> None:
    """Set one attribute on the current span, converted and redacted like ``trace_span``'s.

    Example:
        >>> with trace_span("processing"):
        ...     set_span_attribute("user_id", "user-123")
    """
    span = _current_recording_span()
    if span is None:
        return
    prepared = prepare_attributes({key: value})
    if not prepared:
        return
    try:
        span.set_attributes(prepared)
    except Exception as exc:
        report_internal_error(Stage.SPAN_ATTRIBUTE, exc)


def set_span_error(error: BaseException) -> None:
    """Record ``error`` on the current span and set its status to ERROR with the error's message.

    ``trace_span`` and ``traced`` will not record the same exception a second time when it
    propagates.

    Example:
        >>> with trace_span("risky_operation"):
        ...     try:
        ...         raise ValueError("boom")
        ...     except ValueError as e:
        ...         set_span_error(e)
    """
    span = _current_recording_span()
    if span is not None:
        record_error(span, error)


def get_current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a recording span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    return format(span.get_span_context().trace_id, "032x")


def get_current_span_id() -> str | None:
    """The current span's id as 16 hex digits, or None outside a recording span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    return format(span.get_span_context().span_id, "016x")
