"""The benchmark cases: one callable per (kind, case), and the process-wide modes they run under.

Every case wraps the same tiny body (``x + 1``; a generator yields ``ITEMS`` ints), so the
differences between cases are the decorators alone. Raw OpenTelemetry and ``@observe`` share one
TracerProvider (the kit's, installed by ``configure_telemetry``), one sampler and the same kind
of span pipeline: a ``BatchSpanProcessor`` feeding an exporter that drops what it gets.

A *mode* is the process-wide configuration a case needs; ``set_mode`` switches it in place:

The ``otel_stock`` case alone runs on a provider of its own, not the kit's: a stock SDK
``TracerProvider`` (``ALWAYS_ON``, a ``BatchSpanProcessor`` on the same dropping exporter), the
reference an app without the kit pays for a span.

- ``full``: tracing on, ``sampling_rate=1.0``, kit enabled, logging at INFO to os.devnull, the
  default event handlers (which take INFO and above).
- ``sampled_out``: as ``full`` but ``sampling_rate=0.0`` (metrics are still counted); the kit's
  sampler is then ``ParentBased(TraceIdRatioBased(0.0))``, which costs more than ``ALWAYS_OFF``.
- ``always_off``: the provider's sampler is OpenTelemetry's ``ALWAYS_OFF``
  (``configure_telemetry(enable_tracing=False)``), for the raw OTel reference.
- ``disabled``: ``tinyllm_instrument.configure(enabled=False)``.

Runners take no arguments and do one unit of work; ``per_call`` says how many units of the
reported figure one run is (a generator run yields ``ITEMS`` items, reported per item).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client import CollectorRegistry, Histogram

import tinyllm_instrument
from tinyllm_instrument import observe
from tinyllm_instrument.events import EventCategory, EventSeverity, emit_event
from tinyllm_instrument.logging import configure_logging
from tinyllm_instrument.telemetry import add_span_processor, configure_telemetry, flush_telemetry

KINDS = ("sync", "async", "generator", "method")
#: Items a generator case yields per call; generator figures are per item.
ITEMS = 10

#: case -> (mode it runs under, label in the table)
CASES: dict[str, tuple[str, str]] = {
    "bare": ("full", "bare call"),
    "wrapt": ("full", "wrapt pass-through"),
    "otel": ("full", "raw OTel span (always on)"),
    "otel_stock": ("full", "raw OTel span, stock SDK provider (ALWAYS_ON + BatchSpanProcessor)"),
    "otel_off": ("always_off", "raw OTel, sampler ALWAYS_OFF"),
    "otel_attrs": (
        "full",
        "raw OTel span + the 3 attributes @observe sets (generator: attached per item)",
    ),
    "otel_sampled_out": ("sampled_out", "raw OTel, sampled out by sampling_rate=0.0"),
    "naive": ("full", "naive span+histogram+bound_contextvars+event"),
    "observe": ("full", "@observe, four pillars"),
    "observe_sampled_out": ("sampled_out", "@observe, sampled out"),
    "observe_disabled": ("disabled", "@observe, kit disabled"),
}
#: case -> (reference case, target ratio or None)
REFERENCES: dict[str, tuple[str, float | None]] = {
    "naive": ("otel", None),
    "observe": ("otel", 1.0),
    "observe_sampled_out": ("otel_off", 1.0),
    "observe_disabled": ("wrapt", 1.2),
}
#: case -> (second reference, target): the raw span on a provider the kit has not touched.
STOCK_REFERENCES: dict[str, tuple[str, float | None]] = {"observe": ("otel_stock", 1.0)}
#: Targets that differ by kind: a generator's span is made current around each item it yields
#: (never in the consumer), which a raw span held across the iteration does not do.
KIND_TARGETS: dict[tuple[str, str], float] = {
    ("generator", "observe"): 1.3,
    ("generator", "observe_sampled_out"): 1.3,
}


class DropSpanExporter(SpanExporter):
    """Counts the spans it is given and keeps none of them."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_EXPORTER: DropSpanExporter | None = None
_STOCK_PROVIDER: Any = None
_PROCESSOR: BatchSpanProcessor | None = None
_DEVNULL: Any = None
_MODE: str | None = None


def setup_kit() -> DropSpanExporter:
    """Configure the kit once per process (idempotent); returns the span-dropping exporter."""
    global _EXPORTER, _PROCESSOR, _DEVNULL
    if _EXPORTER is None:
        _DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - closed by teardown_kit()
        configure_logging(log_level="INFO", log_format="json", stream=_DEVNULL)
        configure_telemetry(enable_tracing=True, exporter="none", sampling_rate=1.0)
        _EXPORTER = DropSpanExporter()
        _PROCESSOR = BatchSpanProcessor(_EXPORTER)
        add_span_processor(_PROCESSOR)
    return _EXPORTER


def teardown_kit() -> None:
    """Undo ``setup_kit`` (for the smoke test, which shares a process with the unit tests)."""
    global _EXPORTER, _PROCESSOR, _DEVNULL, _MODE, _STOCK_PROVIDER
    from tinyllm_instrument.logging import reset_logging
    from tinyllm_instrument.telemetry import remove_span_processor, reset_telemetry

    if _STOCK_PROVIDER is not None:
        _STOCK_PROVIDER.shutdown()
        _STOCK_PROVIDER = None
    if _PROCESSOR is not None:
        remove_span_processor(_PROCESSOR)
        _PROCESSOR.shutdown()
    reset_telemetry()
    reset_logging()
    tinyllm_instrument.configure(enabled=None)
    if _DEVNULL is not None:
        _DEVNULL.close()
    _EXPORTER = _PROCESSOR = _DEVNULL = _MODE = None


def set_mode(mode: str) -> None:
    """Switch the process-wide configuration to ``mode`` (see the module docstring)."""
    global _MODE
    setup_kit()
    if mode == _MODE:
        return
    flush_telemetry()
    if mode == "full":
        configure_telemetry(enable_tracing=True, exporter="none", sampling_rate=1.0)
        tinyllm_instrument.configure(enabled=True)
    elif mode == "sampled_out":
        configure_telemetry(enable_tracing=True, exporter="none", sampling_rate=0.0)
        tinyllm_instrument.configure(enabled=True)
    elif mode == "always_off":
        configure_telemetry(enable_tracing=False, exporter="none")
        tinyllm_instrument.configure(enabled=True)
    elif mode == "disabled":
        configure_telemetry(enable_tracing=True, exporter="none", sampling_rate=1.0)
        tinyllm_instrument.configure(enabled=False)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    _MODE = mode


# ------------------------------------------------------------------------------------ bodies


def _sync(x: int) -> int:
    return x + 1


async def _async(x: int) -> int:
    return x + 1


def _gen(n: int) -> Any:
    yield from range(n)


class _Bare:
    def m(self, x: int) -> int:
        return x + 1


# ------------------------------------------------------------------------------ decorators


def _passthrough(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    return wrapped(*args, **kwargs)


def _wrapt(func: Any) -> Any:
    return wrapt.FunctionWrapper(func, _passthrough)


#: The span attributes @observe(node=...) starts a node's span with, for the like-for-like case.
def _kit_attributes(name: str) -> dict[str, str]:
    return {"code.function": name, "code.namespace": __name__, "tinyllm.node": name}


def _tracer() -> trace.Tracer:
    # The global provider is the kit's: the same sampler and span pipeline as @observe.
    return trace.get_tracer_provider().get_tracer("benchmarks")


def _stock_tracer() -> trace.Tracer:
    """A tracer of a plain SDK provider, as an app without the kit has one: ALWAYS_ON sampler,
    a BatchSpanProcessor feeding an exporter that drops what it gets. Not the global provider."""
    global _STOCK_PROVIDER
    if _STOCK_PROVIDER is None:
        _STOCK_PROVIDER = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
        _STOCK_PROVIDER.add_span_processor(BatchSpanProcessor(setup_kit()))
    return _STOCK_PROVIDER.get_tracer("benchmarks-stock")


def flush_stock() -> None:
    """Export what the stock provider's BatchSpanProcessor holds (for the smoke test)."""
    if _STOCK_PROVIDER is not None:
        _STOCK_PROVIDER.force_flush()


_NAIVE_REGISTRY = CollectorRegistry()
_NAIVE_HIST = Histogram(
    "bench_naive_duration_seconds", "naive four-pillar", ["node", "graph"], registry=_NAIVE_REGISTRY
)


def _naive_finish(span: Any, name: str, start: float) -> None:
    seconds = time.perf_counter() - start
    ctx = span.get_span_context()
    _NAIVE_HIST.labels(name, "none").observe(seconds, {"trace_id": format(ctx.trace_id, "032x")})
    emit_event(
        "node.execution.completed",
        EventCategory.EXECUTION,
        EventSeverity.DEBUG,
        f"{name} completed",
        data={"node": name, "graph": "none", "duration_ms": seconds * 1000},
    )


def _naive_sync(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """What one writes by hand: context managers, structlog's bind API, an event per call."""
    tracer = _tracer()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        with (
            tracer.start_as_current_span(name) as span,
            structlog.contextvars.bound_contextvars(node=name, graph="none"),
        ):
            try:
                return func(*args, **kwargs)
            finally:
                _naive_finish(span, name, start)

    return wrapper


def _naive_async(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    tracer = _tracer()

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        with (
            tracer.start_as_current_span(name) as span,
            structlog.contextvars.bound_contextvars(node=name, graph="none"),
        ):
            try:
                return await func(*args, **kwargs)
            finally:
                _naive_finish(span, name, start)

    return wrapper


def _naive_gen(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    tracer = _tracer()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        with (
            tracer.start_as_current_span(name) as span,
            structlog.contextvars.bound_contextvars(node=name, graph="none"),
        ):
            try:
                yield from func(*args, **kwargs)
            finally:
                _naive_finish(span, name, start)

    return wrapper


def _otel_gen(
    func: Callable[..., Any],
    name: str,
    attributes: dict[str, Any] | None = None,
    tracer: trace.Tracer | None = None,
) -> Callable[..., Any]:
    # start_as_current_span as a decorator would end the span when the generator is created;
    # the raw equivalent keeps it open around the iteration (and, unlike @observe, leaves it
    # current in the consumer between items).
    tracer = tracer or _tracer()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(name, attributes=attributes):
            yield from func(*args, **kwargs)

    return wrapper


def _otel_gen_per_item(
    func: Callable[..., Any], name: str, attributes: dict[str, Any]
) -> Callable[..., Any]:
    # What @observe does for a generator, by hand: the span is current only while the
    # generator's own code runs (attached and detached around each step), never in the consumer.
    tracer = _tracer()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = tracer.start_span(name, attributes=attributes)
        ctx = trace.set_span_in_context(span)
        gen = func(*args, **kwargs)
        try:
            while True:
                token = otel_context.attach(ctx)
                try:
                    item = next(gen)
                except StopIteration:
                    return
                finally:
                    otel_context.detach(token)
                yield item
        finally:
            span.end()

    return wrapper


def _decorated(kind: str, case: str) -> Any:
    """The decorated callable of ``case`` for ``kind`` (for "method": the class)."""
    name = f"bench_{kind}"
    if kind == "method":
        if case == "bare":
            return _Bare
        if case == "wrapt":
            deco: Callable[[Any], Any] = _wrapt
        elif case in ("otel", "otel_off", "otel_sampled_out"):
            deco = _tracer().start_as_current_span(name)
        elif case == "otel_stock":
            deco = _stock_tracer().start_as_current_span(name)
        elif case == "otel_attrs":
            deco = _tracer().start_as_current_span(name, attributes=_kit_attributes(name))
        elif case == "naive":

            def deco(f: Any) -> Any:
                return _naive_sync(f, name)

        else:
            deco = observe(node=name)

        class Decorated:
            @deco
            def m(self, x: int) -> int:
                return x + 1

        return Decorated

    body = {"sync": _sync, "async": _async, "generator": _gen}[kind]
    if case == "bare":
        return body
    if case == "wrapt":
        return _wrapt(body)
    if case in ("otel", "otel_off", "otel_sampled_out"):
        if kind == "generator":
            return _otel_gen(body, name)
        return _tracer().start_as_current_span(name)(body)
    if case == "otel_stock":
        if kind == "generator":
            return _otel_gen(body, name, tracer=_stock_tracer())
        return _stock_tracer().start_as_current_span(name)(body)
    if case == "otel_attrs":
        if kind == "generator":  # like for like: also keeps the span out of the consumer
            return _otel_gen_per_item(body, name, _kit_attributes(name))
        return _tracer().start_as_current_span(name, attributes=_kit_attributes(name))(body)
    if case == "naive":
        return {"sync": _naive_sync, "async": _naive_async, "generator": _naive_gen}[kind](
            body, name
        )
    return observe(node=name)(body)


@dataclass
class Runner:
    """One benchmark case: ``run()`` does one unit of work, ``per_call`` units of the figure."""

    kind: str
    case: str
    mode: str
    run: Callable[[], Any]
    per_call: int = 1


def make_runner(kind: str, case: str) -> Runner:
    """Build the runner of ``case`` for ``kind``; nothing is configured until ``set_mode``."""
    mode = CASES[case][0]
    target = _decorated(kind, case)
    if kind == "sync":
        f = target

        def run() -> Any:
            return f(1)

    elif kind == "async":
        f = target

        def run() -> Any:
            # Drive the coroutine by hand: the cost of the wrappers, not of an event loop.
            coro = f(1)
            try:
                coro.send(None)
            except StopIteration as stop:
                return stop.value
            raise RuntimeError("the coroutine suspended")

    elif kind == "generator":
        g = target

        def run() -> Any:
            for _ in g(ITEMS):
                pass

        return Runner(kind, case, mode, run, ITEMS)
    elif kind == "method":
        obj = target()

        def run() -> Any:
            return obj.m(1)

    else:
        raise ValueError(kind)
    return Runner(kind, case, mode, run)


def all_runners() -> list[Runner]:
    return [make_runner(kind, case) for kind in KINDS for case in CASES]
