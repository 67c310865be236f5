"""The example graph in a real Arize Phoenix: each step shows as what it is, with tokens and cost.

examples/graph_app.py exports over OTLP/gRPC to the ``phoenix`` fixture (tests/phoenix_server.py),
into a project of this test's own. Phoenix's REST API (``/v1/projects/{project}/spans``, what its
UI lists) then shows the graph as a CHAIN, the model node as an LLM with the call's token counts
and its cost, the retriever as a RETRIEVER with its documents, and the citing tool as a TOOL.
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from pathlib import Path

import pytest

from tinyllm_instrument import configure_observe
from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    configure_telemetry,
    get_current_trace_id,
    shutdown_telemetry,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# USD per million input / output tokens, as configure_observe(prices=...) takes them.
PRICE_IN, PRICE_OUT = 0.15, 0.60


def _graph_app():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import graph_app
    finally:
        sys.path.remove(str(EXAMPLES))
    return graph_app


@pytest.fixture
def priced():
    configure_observe(prices={"gpt-4o-mini": (PRICE_IN, PRICE_OUT)})
    yield
    configure_observe(prices=True)


def test_phoenix_shows_the_example_graph_as_chain_llm_retriever_and_tool(phoenix, priced):
    graph_app = _graph_app()
    project = f"genai-{uuid.uuid4().hex[:8]}"
    configure_telemetry(
        TelemetryConfig(
            enable_tracing=True,
            exporter="otlp",
            otlp_endpoint=phoenix.otlp_grpc_endpoint,
            service_name="genai-phoenix",
            resource_attributes={"openinference.project.name": project},
        )
    )
    question = "How do refunds work?"

    async def one_call() -> str:
        answer = await graph_app.answer(question, random.Random(0))  # seed 0: no failure
        return answer

    answer = asyncio.run(one_call())
    assert answer.startswith("Answer to")
    shutdown_telemetry()  # everything exported before we look

    spans = phoenix.wait_for_spans(project, count=6, timeout=60)
    by_name = {s["name"]: s for s in spans}
    print("Phoenix REST spans of one call of the example graph:")
    for span in spans:
        attrs = span["attributes"]
        print(
            f"  {span['name']}: {span['span_kind']} parent={span.get('parent_id')} "
            f"tokens={attrs.get('llm.token_count.prompt')}/{attrs.get('llm.token_count.completion')}"
            f"/{attrs.get('llm.token_count.total')} cost={attrs.get('llm.cost.total')} "
            f"documents={attrs.get('tinyllm.retrieval.documents')}"
        )
    traces = {s["context"]["trace_id"] for s in spans}
    assert len(traces) == 1, "one graph call is one trace"
    assert {s["name"]: s["span_kind"] for s in spans} == {
        "rag": "CHAIN",
        "router": "CHAIN",
        "retriever": "RETRIEVER",
        "llm": "LLM",
        "cite_sources": "TOOL",
        "stream_answer": "CHAIN",
    }
    root = by_name["rag"]
    assert root.get("parent_id") is None
    for name in ("router", "retriever", "llm", "cite_sources", "stream_answer"):
        assert by_name[name]["parent_id"] == root["context"]["span_id"], name

    llm = by_name["llm"]["attributes"]
    prompt_tokens = len(question.split()) + 20
    assert llm["llm.model_name"] == "gpt-4o-mini"
    assert llm["llm.token_count.prompt"] == prompt_tokens
    completion_tokens = llm["llm.token_count.completion"]
    assert completion_tokens == len(answer.rsplit(" [", 1)[0].split())
    assert llm["llm.token_count.total"] == prompt_tokens + completion_tokens
    expected_cost = (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / 1e6
    assert llm["llm.cost.total"] == pytest.approx(expected_cost)
    assert llm["input.value"].startswith('{"question": "How do refunds work?"')

    # Phoenix's REST API gives attributes flat, as OpenInference writes them; its documents tab
    # reads the same keys.
    retriever = by_name["retriever"]["attributes"]
    doc = "retrieval.documents.{}.document.{}".format
    assert [retriever[doc(i, "id")] for i in (0, 1)] == ["billing-0", "billing-1"]
    assert [retriever[doc(i, "score")] for i in (0, 1)] == [1.0, 0.9]
    assert retriever[doc(1, "content")] == "Refunds take 5 days."
    assert doc(2, "id") not in retriever and retriever["tinyllm.retrieval.documents"] == 2

    tool = by_name["cite_sources"]["attributes"]
    assert tool["tool.name"] == "cite_sources"
    assert get_current_trace_id() is None
