"""The one span layer: attribute conversion, error recording and span helpers used by every caller.

``observe``, ``traced``, events and the CLI convert attribute values and record exceptions here,
through the kit's one redaction policy, so a secret in an exception message or an object's
``str()`` is redacted the same way on every path.
"""

from __future__ import annotations

import functools
import inspect
import json
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from enum import Enum
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._errors import Stage, report_internal_error
from ..redaction import REDACTED, get_redaction_policy
from .provider import get_tracer

__all__ = [
    "get_current_span_id",
    "get_current_trace_id",
    "record_span_event",
    "set_span_attribute",
    "set_span_error",
    "trace_span",
    "traced",
]


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------------------------------
# Attributes: redaction and type conversion
# --------------------------------------------------------------------------------------------------


def _redact(attributes: dict[str, Any]) -> dict[str, Any] | None:
    """Apply the kit's one redaction policy; None means "drop them all" (it failed: fail closed).

    Objects pass through untouched here; ``_scalar`` redacts the ``str()`` that replaces them.
    """
    try:
        redacted = get_redaction_policy().redact(attributes)
    except Exception as exc:
        report_internal_error(Stage.REDACTION, exc)
        return None
    return dict(redacted) if isinstance(redacted, Mapping) else None


def _redact_text(text: str) -> str:
    try:
        return get_redaction_policy().redact_text(text)
    except Exception as exc:
        report_internal_error(Stage.REDACTION, exc)
        return REDACTED


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception as exc:
        report_internal_error(Stage.SPAN_ATTRIBUTE, exc)
        return f"<unprintable {type(value).__name__}>"


def _scalar(value: object) -> str | bool | int | float | None:
    """A valid OTel scalar for ``value``; None for None. Never raises."""
    kind = type(value)
    if kind is str or kind is bool or kind is float:
        return cast(Any, value)
    if kind is int:
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
        # Keys and strings inside were redacted already; the objects' str() were not.
        try:
            text = json.dumps(value, default=_safe_str, ensure_ascii=False, sort_keys=True)
        except Exception:
            text = _safe_str(value)
        return _redact_text(text)
    return _redact_text(_safe_str(value))


def _attribute_value(value: object) -> Any:
    """Convert a value to a valid OTel attribute value: scalars keep their type, sequences stay
    homogeneous (mixed ones become strings), anything else becomes ``str(value)``; None stays None.
    """
    if isinstance(value, (list, tuple)):
        items = [_scalar(v) if not isinstance(v, (list, tuple)) else _safe_str(v) for v in value]
        items = [v for v in items if v is not None]
        types = {type(v) for v in items}
        if len(types) > 1:
            items = [v if type(v) is str else _safe_str(v) for v in items]
        return tuple(items)
    return _scalar(value)


def _prepare_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    try:
        redacted = _redact(dict(attributes))
        if not redacted:
            return None
        out: dict[str, Any] = {}
        for key, value in redacted.items():
            converted = _attribute_value(value)
            if converted is not None:
                out[key if type(key) is str else _safe_str(key)] = converted
        return out
    except Exception as exc:  # a hostile Mapping: the user's call goes on without attributes
        report_internal_error(Stage.SPAN_ATTRIBUTE, exc)
        return None


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


def _record_error(span: trace.Span, exc: BaseException) -> None:
    """Exception event plus ERROR status, with secrets in the message redacted like attributes."""
    try:
        if not span.is_recording():
            return
        raw = _safe_str(exc)
        message = _redact_text(raw)
        if not _already_recorded(span, exc, message):
            overrides = None
            if message != raw:  # the SDK would copy the raw message into message and stacktrace
                stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                overrides = {
                    "exception.message": message,
                    "exception.stacktrace": _redact_text(stacktrace),
                }
            span.record_exception(exc, attributes=overrides)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"))
    except Exception as err:
        report_internal_error(Stage.SPAN_ERROR, err)


def _start_span(name: str, attributes: Mapping[str, Any] | None, kind: SpanKind) -> trace.Span:
    try:
        return get_tracer().start_span(name, kind=kind, attributes=_prepare_attributes(attributes))
    except Exception as exc:
        report_internal_error(Stage.SPAN_START, exc)
        return trace.INVALID_SPAN


def _end_span(span: trace.Span) -> None:
    try:
        span.end()
    except Exception as exc:
        report_internal_error(Stage.SPAN_END, exc)


class _SpanScope:
    """``with trace_span(...)``: start a span, make it current, end it. A class, not a generator
    context manager: this sits on every traced call (see PERFORMANCE-NOTES).
    """

    __slots__ = ("_name", "_attributes", "_kind", "_span", "_token")

    def __init__(self, name: str, attributes: Mapping[str, Any] | None, kind: SpanKind) -> None:
        self._name = name
        self._attributes = attributes
        self._kind = kind

    def __enter__(self) -> trace.Span:
        span = self._span = _start_span(self._name, self._attributes, self._kind)
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        # Like OpenTelemetry's use_span: only Exception is an error; GeneratorExit,
        # KeyboardInterrupt and cancellation are not.
        if isinstance(exc, Exception):
            _record_error(span, exc)
        _end_span(span)
        otel_context.detach(self._token)


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

    One wrapper per kind of callable, chosen at decoration time, so ``inspect.iscoroutinefunction``
    and friends still answer truly and ``functools.wraps`` keeps name, docstring and signature. A
    generator's span covers its whole iteration, and the span is current only while the generator's
    own code runs (not in the caller between items). Usable bare (``@traced``) or called.

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
        kind = SpanKind.INTERNAL

        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def asyncgen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                span = _start_span(span_name, static, kind)
                try:
                    agen = func(*args, **kwargs)
                    send: Any = agen.asend
                    arg: Any = None
                    while True:
                        token = otel_context.attach(trace.set_span_in_context(span))
                        try:
                            item = await send(arg)
                        except StopAsyncIteration:
                            return
                        finally:
                            otel_context.detach(token)
                        try:
                            arg = yield item
                            send = agen.asend
                        except GeneratorExit:
                            token = otel_context.attach(trace.set_span_in_context(span))
                            try:
                                await agen.aclose()
                            finally:
                                otel_context.detach(token)
                            raise
                        except BaseException as exc:
                            send, arg = agen.athrow, exc
                except Exception as exc:
                    _record_error(span, exc)
                    raise
                finally:
                    _end_span(span)

            return cast(F, asyncgen_wrapper)

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                span = _start_span(span_name, static, kind)
                try:
                    gen = func(*args, **kwargs)
                    send: Any = gen.send
                    arg: Any = None
                    while True:
                        token = otel_context.attach(trace.set_span_in_context(span))
                        try:
                            item = send(arg)
                        except StopIteration as stop:
                            return stop.value
                        finally:
                            otel_context.detach(token)
                        try:
                            arg = yield item
                            send = gen.send
                        except GeneratorExit:
                            token = otel_context.attach(trace.set_span_in_context(span))
                            try:
                                gen.close()
                            finally:
                                otel_context.detach(token)
                            raise
                        except BaseException as exc:
                            send, arg = gen.throw, exc
                except Exception as exc:
                    _record_error(span, exc)
                    raise
                finally:
                    _end_span(span)

            return cast(F, gen_wrapper)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _SpanScope(span_name, static, kind):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _SpanScope(span_name, static, kind):
                return func(*args, **kwargs)

        return cast(F, sync_wrapper)

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
        span.add_event(name, attributes=_prepare_attributes(attributes))
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
    prepared = _prepare_attributes({key: value})
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
        _record_error(span, error)


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
