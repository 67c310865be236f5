"""The kit's head sampler decides exactly as OpenTelemetry's ParentBased over the same root."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from tinyllm_instrument.telemetry import configure_telemetry, reset_telemetry

_STATES = [TraceState(), TraceState([("vendor", "x")])]


@pytest.fixture(autouse=True)
def _clean():
    yield
    reset_telemetry()


def _parent_context(kind: str, sampled: bool, state: TraceState):
    if kind == "none":
        return None
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span_context = SpanContext(
        0x1234, 0x5678, is_remote=kind == "remote", trace_flags=flags, trace_state=state
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    parent=st.sampled_from(["none", "local", "remote"]),
    sampled=st.booleans(),
    state=st.sampled_from(_STATES),
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
    attributes=st.sampled_from([None, {}, {"k": "v", "n": 1}]),
)
def test_the_kits_sampler_decides_as_parent_based_of_the_same_root(
    rate, parent, sampled, state, trace_id, attributes
):
    configure_telemetry(enable_tracing=True, exporter="none", sampling_rate=rate)
    kit = trace.get_tracer_provider().sampler  # type: ignore[attr-defined]
    reference = ParentBased(kit._root)
    context = _parent_context(parent, sampled, state)
    got = kit.should_sample(context, trace_id, "span", attributes=attributes)
    want = reference.should_sample(context, trace_id, "span", attributes=attributes)
    assert got.decision is want.decision
    assert dict(got.attributes) == dict(want.attributes)
    assert got.trace_state == want.trace_state
    assert kit.get_description() == reference.get_description()
