"""Sessions in a real Arize Phoenix: a call of the example graph made inside ``using_attributes``.

The kit exports over OTLP/gRPC to the ``phoenix`` fixture (tests/phoenix_server.py), to a project
of this test's own. Phoenix's REST API then shows ``session.id`` / ``user.id`` on every span of the
call (the graph, its nodes, and a span of another tracer inside it), none on a call made outside
the scope, and lists the session with the call's trace in its sessions endpoints.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from pathlib import Path

from opentelemetry import trace

from tinyllm_instrument import observe, using_attributes
from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    configure_telemetry,
    get_current_trace_id,
    shutdown_telemetry,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _graph_app():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import graph_app
    finally:
        sys.path.remove(str(EXAMPLES))
    return graph_app


def test_every_span_of_a_call_inside_using_attributes_shows_the_session_in_phoenix(phoenix):
    graph_app = _graph_app()
    project = f"sessions-{uuid.uuid4().hex[:8]}"
    session_id = f"chat-{uuid.uuid4().hex[:8]}"
    configure_telemetry(
        TelemetryConfig(
            enable_tracing=True,
            exporter="otlp",
            otlp_endpoint=phoenix.otlp_grpc_endpoint,
            service_name="sessions-phoenix",
            resource_attributes={"openinference.project.name": project},
        )
    )

    @observe(graph="turn")
    async def turn(question: str, seed: int) -> tuple[str, str | None]:
        trace.get_tracer("another.library").start_span("another library's span").end()
        answer = await graph_app.answer(question, random.Random(seed))  # seed 0: no failure
        return answer, get_current_trace_id()

    with using_attributes(
        session_id=session_id, user_id="user-phoenix", tags=["phoenix"], metadata={"plan": "pro"}
    ):
        answer, inside_trace = asyncio.run(turn("How do refunds work?", 0))
    assert answer.startswith("Answer to")
    _answer, outside_trace = asyncio.run(turn("How do refunds work?", 0))
    shutdown_telemetry()  # everything exported before we look

    spans = phoenix.wait_for_spans(project, count=16, timeout=60)
    inside = [s for s in spans if s["context"]["trace_id"] == inside_trace]
    outside = [s for s in spans if s["context"]["trace_id"] == outside_trace]
    expected = {"turn", "rag", "router", "retriever", "llm", "cite_sources", "stream_answer",
                "another library's span"}  # fmt: skip
    assert {s["name"] for s in inside} == expected
    assert {s["name"] for s in outside} == expected
    print("Phoenix REST spans of the call:")
    for span in inside:
        attrs = span["attributes"]
        print(f"  {span['name']}: {span['span_kind']} session.id={attrs.get('session.id')} "
              f"user.id={attrs.get('user.id')} tag.tags={attrs.get('tag.tags')} "
              f"metadata.plan={attrs.get('metadata.plan')}")  # fmt: skip
        assert attrs["session.id"] == session_id, span["name"]
        assert attrs["user.id"] == "user-phoenix", span["name"]
        assert attrs["tag.tags"] == ["phoenix"], span["name"]
        # Phoenix reads the metadata JSON string as OpenInference's metadata object.
        assert attrs["metadata.plan"] == "pro", span["name"]
    for span in outside:
        assert "session.id" not in span["attributes"], span["name"]
        assert "user.id" not in span["attributes"], span["name"]
    # Phoenix's own filter finds the call by its session.
    by_filter = phoenix.spans(project, attribute=[f"session.id:{json.dumps(session_id)}"])
    assert {s["context"]["span_id"] for s in by_filter} == {s["context"]["span_id"] for s in inside}

    # Phoenix groups traces into sessions by session.id: the session, with the call's one trace.
    sessions = phoenix.api(f"projects/{project}/sessions")["data"]
    print("Phoenix REST sessions:", json.dumps(sessions, indent=2))
    assert [s["session_id"] for s in sessions] == [session_id]
    session = phoenix.api(f"sessions/{session_id}")["data"]
    assert [t["trace_id"] for t in session["traces"]] == [inside_trace]
