"""What ``using_attributes`` costs per span on the kit's provider (pytest-benchmark).

    .venv/bin/python -m pytest -q benchmarks/test_sessions.py --benchmark-only \\
        --benchmark-columns=median --bench-rounds=5

Each runner does ``LOOPS`` units; divide the figure by ``extra_info["per_call"]``. Two families,
measured side by side in each round:

- ``span_*``: a real SDK span started and ended on the kit's provider (sampled, through the
  kit's fan-out and the benchmarks' BatchSpanProcessor), with no scope, inside a scope (session,
  user, two tags, metadata), and inside a session received with ``extract_context``.
  ``span_same_attributes_given`` is the like-for-like reference for ``span_in_scope``: no
  scope, the same five attributes passed to ``start_span`` (what the SDK charges for them).
- ``fanout_*``: the fan-out's ``on_start`` alone, on a span that takes attributes and does
  nothing: the hook's own cost. ``fanout_before`` is the fan-out as it was before the hook (its
  ``on_start`` body without the session line), the reference for ``fanout_no_scope``.

Until a session has come in from outside, spans without a scope skip the lookup of a received
one; each runner sets that process-wide flag as its case needs (``*_after_received``: a process
that has received a session, running a span outside any).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from tinyllm_instrument import using_attributes
from tinyllm_instrument.genai.sessions import RECEIVED
from tinyllm_instrument.telemetry import extract_context, inject_context, trace_span
from tinyllm_instrument.telemetry.provider import _STATE, _KitSpanProcessor, report_internal_error
from tinyllm_instrument.telemetry.provider import Stage as _Stage

LOOPS = 1000


class _Span:
    """Takes attributes, keeps nothing: what on_start costs without the SDK span's own work."""

    def set_attributes(self, attributes: Any) -> None:
        pass

    def get_span_context(self) -> Any:
        return _CTX


_CTX = trace.SpanContext(1, 1, is_remote=False)


class _Before(_KitSpanProcessor):
    """The fan-out's on_start before using_attributes was wired (the reference)."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        fan = self._fan
        open_spans = fan.open
        if open_spans is not None:
            open_spans[span.get_span_context().span_id] = None
        for processor in fan.starting:
            try:
                processor.on_start(span, parent_context=parent_context)
            except Exception as exc:
                report_internal_error(_Stage.SPAN_PROCESSOR, exc)


def _scope() -> using_attributes:
    return using_attributes(
        session_id="chat-42", user_id="u-7", tags=["beta", "eu"], metadata={"plan": "pro"}
    )


def _cases() -> dict[str, Callable[[], None]]:
    tracer = trace.get_tracer("bench.sessions")
    fanout = _STATE.processor
    before = _Before()
    before._fan = fanout._fan  # the same processors behind both
    span = _Span()
    scope = _scope()
    with scope, trace_span("sender"):
        received_headers = inject_context({})
    received = extract_context(received_headers)

    def spans(received_any: bool = False) -> Callable[[], None]:
        def run() -> None:
            RECEIVED.any = received_any
            for _ in range(LOOPS):
                tracer.start_span("s").end()

        return run

    attributes = dict(scope._root.span_attributes)

    def spans_given() -> None:
        RECEIVED.any = False
        for _ in range(LOOPS):
            tracer.start_span("s", attributes=attributes).end()

    def spans_in_scope() -> None:
        with scope:
            spans()()

    def spans_in_received() -> None:
        token = otel_context.attach(received)
        try:
            spans(received_any=True)()
        finally:
            otel_context.detach(token)

    def fan(processor: _KitSpanProcessor, received_any: bool = False) -> Callable[[], None]:
        def run() -> None:
            RECEIVED.any = received_any
            on_start = processor.on_start
            for _ in range(LOOPS):
                on_start(span, None)

        return run

    def fan_in_scope() -> None:
        with scope:
            fan(fanout)()

    def fan_in_received() -> None:
        token = otel_context.attach(received)
        try:
            fan(fanout, received_any=True)()
        finally:
            otel_context.detach(token)

    return {
        "span_no_scope": spans(),
        "span_in_scope": spans_in_scope,
        "span_same_attributes_given": spans_given,
        "span_in_received_session": spans_in_received,
        "span_no_scope_after_received": spans(received_any=True),
        "fanout_before": fan(before),
        "fanout_no_scope": fan(fanout),
        "fanout_in_scope": fan_in_scope,
        "fanout_in_received_session": fan_in_received,
        "fanout_no_scope_after_received": fan(fanout, received_any=True),
    }


@pytest.fixture(scope="module")
def cases() -> dict[str, Callable[[], None]]:
    return _cases()


@pytest.mark.parametrize(
    "session_case",
    [
        "span_no_scope",
        "span_in_scope",
        "span_same_attributes_given",
        "span_in_received_session",
        "span_no_scope_after_received",
        "fanout_before",
        "fanout_no_scope",
        "fanout_in_scope",
        "fanout_in_received_session",
        "fanout_no_scope_after_received",
    ],
)
def test_sessions(benchmark, cases, session_case: str, bench_round: int) -> None:
    run = cases[session_case]
    run()
    benchmark.group = f"sessions r{bench_round}"
    benchmark.extra_info.update(session_case=session_case, round=bench_round, per_call=LOOPS)
    benchmark(run)
