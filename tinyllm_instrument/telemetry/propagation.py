"""Context across boundaries: W3C headers in and out, and into threads and pools the app starts."""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .._context import CURRENT_GRAPH, CURRENT_NODE
from .._errors import Stage, report_internal_error

__all__ = ["extract_context", "inject_context"]

_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def inject_context(
    carrier: dict[str, str] | None = None, context: otel_context.Context | None = None
) -> dict[str, str]:
    """Write the W3C ``traceparent``, ``tracestate`` and ``baggage`` headers into ``carrier``.

    Independent of ``OTEL_PROPAGATORS``: always W3C trace context plus W3C baggage.

    Args:
        carrier: a dict to fill (e.g. outgoing HTTP headers); a new one when None.
        context: the context to propagate; default the current one.

    Returns:
        The carrier.

    Example:
        >>> with trace_span("client_call"):
        ...     headers = inject_context({})
    """
    if carrier is None:
        carrier = {}
    try:
        _PROPAGATOR.inject(carrier, context=context)
    except Exception as exc:
        report_internal_error(Stage.PROPAGATION, exc)
    return carrier


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """Read W3C trace context and baggage from ``carrier`` (e.g. incoming HTTP headers).

    Returns:
        A Context to pass to ``opentelemetry.context.attach`` or ``tracer.start_span(context=...)``;
        an empty one when the carrier holds nothing valid.

    Example:
        >>> ctx = extract_context({"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"})
        >>> token = otel_context.attach(ctx)
    """
    try:
        return _PROPAGATOR.extract(carrier)
    except Exception as exc:
        report_internal_error(Stage.PROPAGATION, exc)
        return otel_context.Context()


# --------------------------------------------------------------------------------------------
# Context across threads
# --------------------------------------------------------------------------------------------


class _ThreadPropagation:
    """Carries the caller's contextvars (span, log context, graph) into threads it starts.

    ``ThreadPoolExecutor.submit`` runs each work item in a copy of the submitter's context, and
    ``Thread.start`` runs the thread in a copy of the starter's context when the starter is inside
    a span or an observed call. Threads started outside any (pool workers, for instance) keep a
    fresh context, so nothing stale is carried.
    """

    def __init__(self) -> None:
        self.installed = False
        self.original_submit: Any = None
        self.original_start: Any = None

    def install(self) -> None:
        if self.installed:
            return
        original_submit = ThreadPoolExecutor.submit
        original_start = threading.Thread.start

        @functools.wraps(original_submit)  # type: ignore[arg-type]
        def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

        @functools.wraps(original_start)
        def start(self: threading.Thread) -> None:
            if _inside_observed_work():
                run = self.run
                context = contextvars.copy_context()
                self.run = lambda: context.run(run)  # type: ignore[method-assign]
            original_start(self)

        self.original_submit, self.original_start = original_submit, original_start
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
        threading.Thread.start = start  # type: ignore[method-assign]
        self.installed = True

    def uninstall(self) -> None:
        if not self.installed:
            return
        ThreadPoolExecutor.submit = self.original_submit  # type: ignore[method-assign]
        threading.Thread.start = self.original_start  # type: ignore[method-assign]
        self.installed = False


def _inside_observed_work() -> bool:
    return (
        trace.get_current_span().get_span_context().is_valid
        or CURRENT_GRAPH.get() is not None
        or CURRENT_NODE.get() is not None
    )


_THREADS = _ThreadPropagation()


def set_thread_propagation(on: bool) -> None:
    if on:
        _THREADS.install()
    else:
        _THREADS.uninstall()


# --------------------------------------------------------------------------------------------
