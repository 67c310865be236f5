"""Context across boundaries: W3C headers in and out, and into threads and pools the app starts."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .._context import CURRENT_CALL, NO_CALL
from .._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from ..genai.sessions import has_scope, session_baggage, take_session
from ..redaction import safe_text
from .drops import one_line
from .otel_logs import captured, watch

__all__ = ["extract_context", "inject_context"]

_log = logging.getLogger(KIT_LOGGER_NAME)

_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def inject_context(
    carrier: dict[str, str] | None = None,
    context: otel_context.Context | None = None,
    *,
    session: bool = True,
) -> dict[str, str]:
    """Write the W3C ``traceparent``, ``tracestate`` and ``baggage`` headers into ``carrier``.

    Independent of ``OTEL_PROPAGATORS``: always W3C trace context plus W3C baggage. Inside a
    ``using_attributes`` scope, the baggage also carries the session: ``session.id``,
    ``user.id``, ``tag.tags`` (a JSON array) and ``metadata`` (a JSON object), redacted as on
    spans and at most 4096 bytes in all, ahead of the context's own baggage. Whoever receives
    the headers can read them: send them to your own services, not to third parties, or pass
    ``session=False``.

    Args:
        carrier: a dict to fill (e.g. outgoing HTTP headers); a new one when None.
        context: the context to propagate; default the current one.
        session: add the session of the scope in effect to the baggage.

    Returns:
        The carrier.

    Example:
        >>> with trace_span("client_call"):
        ...     headers = inject_context({})
    """
    if carrier is None:
        carrier = {}
    try:
        if session:
            context = session_baggage(context)
        _PROPAGATOR.inject(carrier, context=context)
    except Exception as exc:
        report_internal_error(Stage.PROPAGATION, exc)
    return carrier


# --------------------------------------------------------------------------------------------
# Incoming headers, bounded
# --------------------------------------------------------------------------------------------

#: Longest ``traceparent`` read (OpenTelemetry's own bound; version 00 is 55 characters).
MAX_TRACEPARENT = 512
#: W3C trace context: at most 32 list-members, keys and values of at most 256 characters.
MAX_TRACESTATE_MEMBERS = 32
_MAX_TRACESTATE_MEMBER = 256 + 1 + 256
#: W3C baggage: at most 180 list-members, 4096 bytes each, 8192 bytes in all.
MAX_BAGGAGE_MEMBERS = 180
MAX_BAGGAGE_MEMBER = 4096
MAX_BAGGAGE = 8192
#: Characters of a header shown at most in the kit's one report about it.
_SHOWN = 160
#: The propagators' loggers: they echo what they reject (the whole header, for an oversized
#: baggage), on every extract.
_PROPAGATOR_LOGGERS = (
    "opentelemetry.baggage.propagation",
    "opentelemetry.trace.propagation.tracecontext",
    "opentelemetry.trace.span",
)

_reported: set[str] = set()
_reported_lock = threading.Lock()
_watching = False


def _report_once(kind: str, detail: str) -> None:
    """One warning per kind of rejected header in the process's life, short and redacted."""
    with _reported_lock:
        if kind in _reported:
            return
        _reported.add(kind)
    _log.warning(
        "tinyllm_instrument: extract_context ignored part of an incoming header: %s "
        "(reported once)",
        one_line(safe_text(detail), _SHOWN),
    )


def _first(value: Any, joined: bool) -> str | None:
    """A header value as the default getter reads it: a string, or the first (``joined``: all,
    comma-joined) of a list."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        items = [v for v in value if isinstance(v, str)]
        if not items:
            return None
        if not joined:
            return items[0]
        return ",".join(items[: MAX_TRACESTATE_MEMBERS + 1])
    return None


def _members(header: str, max_members: int, max_member: int, max_total: int) -> tuple[str, bool]:
    """The leading list-members of ``header`` that fit the bounds, comma-joined, and whether any
    was left out. Only the first ``max_total`` characters are ever looked at."""
    window = header[: max_total + 1]
    parts = window.split(",")
    dropped = len(header) > max_total
    if dropped:
        parts.pop()  # cut in the middle: incomplete
    kept: list[str] = []
    total = 0
    for part in parts:
        member = part.strip(" \t")
        if not member:
            continue
        total += len(member) + (1 if kept else 0)
        if len(member) > max_member:
            dropped = True
            continue
        if len(kept) >= max_members or total > max_total:
            return ",".join(kept), True
        kept.append(member)
    return ",".join(kept), dropped


def _bounded(carrier: Mapping[str, Any]) -> dict[str, str]:
    """The three W3C headers of ``carrier``, each cut to what the specification allows."""
    out: dict[str, str] = {}
    traceparent = _first(carrier.get("traceparent"), joined=False)
    if traceparent is not None:
        if len(traceparent) > MAX_TRACEPARENT:
            _report_once("traceparent", f"a traceparent longer than {MAX_TRACEPARENT} characters")
        else:
            out["traceparent"] = traceparent
    tracestate = _first(carrier.get("tracestate"), joined=True)
    if tracestate:
        limit = MAX_TRACESTATE_MEMBERS * (_MAX_TRACESTATE_MEMBER + 1)
        out["tracestate"], dropped = _members(
            tracestate, MAX_TRACESTATE_MEMBERS, _MAX_TRACESTATE_MEMBER, limit
        )
        if dropped:
            _report_once(
                "tracestate-bounds",
                f"tracestate members past the first {MAX_TRACESTATE_MEMBERS} or longer than "
                f"{_MAX_TRACESTATE_MEMBER} characters",
            )
    baggage = _first(carrier.get("baggage"), joined=False)
    if baggage:
        out["baggage"], dropped = _members(
            baggage, MAX_BAGGAGE_MEMBERS, MAX_BAGGAGE_MEMBER, MAX_BAGGAGE
        )
        if dropped:
            _report_once(
                "baggage-bounds",
                f"baggage members past {MAX_BAGGAGE} bytes or {MAX_BAGGAGE_MEMBERS} members, or "
                f"longer than {MAX_BAGGAGE_MEMBER} bytes",
            )
    return out


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """Read W3C trace context and baggage from ``carrier`` (e.g. incoming HTTP headers).

    What is read is bounded as the W3C specifications allow: ``traceparent`` up to 512
    characters, the first 32 ``tracestate`` members, and the leading ``baggage`` members within
    180 members and 8192 bytes (each at most 4096). Valid parts of an oversized header are kept.
    What is rejected is reported once per kind in the process's life, in one short redacted
    line, never echoed per request.

    A session the sender put in the baggage (see `inject_context`) moves out of the baggage
    into the returned context: wherever that context is attached (or is the parent of a span),
    the session is in effect, as if inside ``using_attributes``, on spans, log lines and events.
    Out of the baggage, it is not forwarded by HTTP instrumentations to the services this one
    calls; `inject_context` carries it on. Its values are bounded and redacted again.

    Returns:
        A Context to pass to ``opentelemetry.context.attach`` or ``tracer.start_span(context=...)``;
        an empty one when the carrier holds nothing valid.

    Example:
        >>> ctx = extract_context({"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"})
        >>> token = otel_context.attach(ctx)
    """
    global _watching
    try:
        if not _watching:
            watch(_PROPAGATOR_LOGGERS)
            _watching = True
        headers = _bounded(carrier)
        with captured() as records:
            context = _PROPAGATOR.extract(headers)
        for record in records:
            _report_once(str(record.msg), record.getMessage())
        context, problems = take_session(context)
        for problem in problems:
            _report_once(problem, problem)
        return context
    except Exception as exc:
        report_internal_error(Stage.PROPAGATION, exc)
        return otel_context.Context()


# --------------------------------------------------------------------------------------------
# Context across threads
# --------------------------------------------------------------------------------------------


class _Patch:
    """One method of a class wrapped by the kit with wrapt, removable without harm to others.

    Uninstalling restores the attribute only while the kit's wrapper is still what the class
    holds. When another library has patched on top of it since (a closure or a wrapt wrapper over
    the kit's), the kit's wrapper stays in their chain as a pass-through, switched off, so their
    patch keeps working and is never clobbered; installing again switches it back on rather than
    adding a second layer.
    """

    def __init__(self, owner: type, name: str, wrapper: Callable[..., Any]) -> None:
        self.owner, self.name, self.wrapper = owner, name, wrapper
        self.active = False
        self.installed: Any = None  # the kit's FunctionWrapper, while somewhere in the chain
        self.original: Any = None

    def _enabled(self) -> bool:
        return self.active

    def _in_chain(self) -> bool:
        current = vars(self.owner).get(self.name)
        for _ in range(64):  # a bounded walk down the __wrapped__ links
            if current is None:
                return False
            if current is self.installed:
                return True
            current = getattr(current, "__wrapped__", None)
        return False

    def install(self) -> None:
        if self.installed is None or not self._in_chain():
            self.original = vars(self.owner)[self.name]
            self.installed = wrapt.FunctionWrapper(
                self.original, self.wrapper, enabled=self._enabled
            )
            setattr(self.owner, self.name, self.installed)
        self.active = True

    def uninstall(self) -> None:
        self.active = False
        if self.installed is not None and vars(self.owner).get(self.name) is self.installed:
            setattr(self.owner, self.name, self.original)
            self.installed = self.original = None


def _inside_observed_work() -> bool:
    return (
        trace.get_current_span().get_span_context().is_valid
        or CURRENT_CALL.get()[:2] != NO_CALL[:2]
        or has_scope()  # a using_attributes scope alone: its threads belong to the session
    )


# Both wrappers are called with ``instance`` None and the object first in ``args`` when a patch
# of another library sits above the kit's and calls it as a plain function (``saved(self)``).


def _start(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    thread = instance if instance is not None else (args[0] if args else None)
    # Threads started outside any span, observed call or session scope (pool workers, for
    # instance) keep a fresh context, so nothing stale is carried.
    if isinstance(thread, threading.Thread) and _inside_observed_work():
        run = thread.run
        context = contextvars.copy_context()
        thread.run = lambda: context.run(run)  # type: ignore[method-assign]
    return wrapped(*args, **kwargs)


def _submit(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    head = 0 if instance is not None else 1  # where the submitted callable is in ``args``
    if len(args) <= head:  # let submit() raise its own error
        return wrapped(*args, **kwargs)
    run = contextvars.copy_context().run
    return wrapped(*args[:head], run, *args[head:], **kwargs)


class _ThreadPropagation:
    """Carries the caller's contextvars (span, log context, graph, session) into threads it starts.

    ``ThreadPoolExecutor.submit`` runs each work item in a copy of the submitter's context, and
    ``Thread.start`` runs the thread in a copy of the starter's context when the starter is inside
    a span, an observed call or a ``using_attributes`` scope.
    """

    def __init__(self) -> None:
        self.patches = (
            _Patch(ThreadPoolExecutor, "submit", _submit),
            _Patch(threading.Thread, "start", _start),
        )

    @property
    def installed(self) -> bool:
        return any(p.active for p in self.patches)

    def install(self) -> None:
        for patch in self.patches:
            patch.install()

    def uninstall(self) -> None:
        for patch in self.patches:
            patch.uninstall()


_THREADS = _ThreadPropagation()


def set_thread_propagation(on: bool) -> None:
    if on:
        _THREADS.install()
    else:
        _THREADS.uninstall()
