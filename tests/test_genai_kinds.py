"""kind=: validation, defaults, the static attributes of each kind, span kind and span names."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tinyllm_instrument.genai import KINDS, check_kind, default_kind, plan_kind
from tinyllm_instrument.genai.kinds import graph_node_attributes, spec_span_name


@pytest.mark.parametrize("bad", ["LLM", "llm ", "workflow", "", None, 3, ["llm"]])
def test_an_unknown_kind_is_one_clear_error_naming_the_allowed_values(bad):
    with pytest.raises(ValueError) as info:
        check_kind(bad)
    message = str(info.value)
    assert repr(bad) in message
    for kind in KINDS:
        assert kind in message


def test_plan_kind_validates_too():
    with pytest.raises(ValueError, match="not one of: llm, embedding, retriever"):
        plan_kind("prompt", name="n", is_graph=False)


@pytest.mark.parametrize(
    ("is_graph", "model", "expected"),
    [(True, None, "chain"), (False, "gpt-4o", "llm"), (False, None, "chain")],
)
def test_defaults(is_graph, model, expected):
    assert default_kind(is_graph=is_graph, model=model) == expected
    assert plan_kind(None, name="x", is_graph=is_graph, model=model).kind == expected


def test_a_graph_with_a_model_is_still_a_chain_without_model_attributes():
    # model= on a graph names what its nodes use; a model attribute on a parent span makes
    # back-ends take it for a model call (Langfuse: a generation) and count tokens twice.
    plan = plan_kind(None, name="rag", is_graph=True, model="gpt-4o")
    assert plan.kind == "chain"
    assert not {"llm.model_name", "gen_ai.request.model"} & set(plan.attributes)


@pytest.mark.parametrize("kind", ["llm", "embedding"])
def test_a_graph_cannot_be_a_model_call(kind):
    with pytest.raises(ValueError, match="give the kind to the node that calls the model"):
        plan_kind(kind, name="rag", is_graph=True)


def test_llm_attributes_span_kind_and_capabilities():
    plan = plan_kind(None, name="generate", is_graph=False, model="gpt-4o", provider="openai")
    assert plan.span_kind is SpanKind.CLIENT
    assert plan.span_name == "generate"
    assert dict(plan.attributes) == {
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "llm.model_name": "gpt-4o",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "llm.provider": "openai",
        "llm.system": "openai",
        "graph.node.id": "generate",
        "graph.node.name": "generate",
    }
    assert plan.reads_usage and plan.reads_messages and plan.documents_prefix is None


def test_llm_without_model_or_provider_writes_neither():
    attrs = plan_kind("llm", name="generate", is_graph=False).attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert not {"gen_ai.request.model", "llm.model_name", "gen_ai.provider.name"} & set(attrs)


def test_provider_names_follow_each_vocabulary():
    attrs = plan_kind("llm", name="g", is_graph=False, provider="gcp.gen_ai").attributes
    assert attrs["gen_ai.provider.name"] == "gcp.gen_ai"
    assert attrs["gen_ai.system"] == "gcp.gen_ai"
    assert attrs["llm.provider"] == "google"
    assert "llm.system" not in attrs  # OpenInference's llm.system has no value for it
    custom = plan_kind("llm", name="g", is_graph=False, provider="my-gateway").attributes
    assert custom["llm.provider"] == custom["gen_ai.provider.name"] == "my-gateway"


def test_embedding():
    plan = plan_kind("embedding", name="embed", is_graph=False, model="text-embedding-3-small")
    assert plan.span_kind is SpanKind.CLIENT
    attrs = plan.attributes
    assert attrs["openinference.span.kind"] == "EMBEDDING"
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.request.model"] == "text-embedding-3-small"
    assert attrs["embedding.model_name"] == "text-embedding-3-small"
    assert plan.reads_usage and not plan.reads_messages


def test_retriever_and_reranker():
    retriever = plan_kind("retriever", name="search", is_graph=False)
    assert retriever.span_kind is SpanKind.INTERNAL
    assert retriever.attributes["openinference.span.kind"] == "RETRIEVER"
    assert retriever.attributes["gen_ai.operation.name"] == "retrieval"
    assert retriever.documents_prefix == "retrieval.documents"
    reranker = plan_kind("reranker", name="rerank", is_graph=False)
    assert reranker.attributes["openinference.span.kind"] == "RERANKER"
    assert "gen_ai.operation.name" not in reranker.attributes  # the conventions have none
    assert reranker.documents_prefix == "reranker.output_documents"


def test_tool_and_agent():
    tool = plan_kind("tool", name="web_search", is_graph=False)
    assert tool.span_kind is SpanKind.INTERNAL
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == tool.attributes["tool.name"] == "web_search"
    agent = plan_kind("agent", name="planner", is_graph=False)
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == agent.attributes["agent.name"] == "planner"
    assert not agent.reads_usage


def test_only_model_calls_and_agents_name_their_model():
    tool = plan_kind("tool", name="t", is_graph=False, model="gpt-4o").attributes
    assert not {"llm.model_name", "gen_ai.request.model"} & set(tool)
    agent = plan_kind("agent", name="a", is_graph=False, model="gpt-4o").attributes
    assert agent["gen_ai.request.model"] == "gpt-4o"  # the conventions' invoke_agent has it
    assert "llm.model_name" not in agent


@pytest.mark.parametrize("kind", ["chain", "guardrail", "evaluator"])
def test_kinds_with_only_the_span_kind(kind):
    attrs = plan_kind(kind, name="step", is_graph=False).attributes
    assert attrs == {
        "openinference.span.kind": kind.upper(),
        "graph.node.id": "step",
        "graph.node.name": "step",
    }


def test_every_kind_has_its_upper_case_span_kind():
    for kind in KINDS:
        is_graph = False
        assert (
            plan_kind(kind, name="n", is_graph=is_graph).attributes["openinference.span.kind"]
            == kind.upper()
        )


def test_graph_node_parent_is_per_call():
    assert graph_node_attributes("rag") == {"graph.node.parent_id": "rag"}
    assert graph_node_attributes(None) == {}
    assert graph_node_attributes("") == {}


def test_spec_span_names_are_an_option():
    assert plan_kind("llm", name="gen", is_graph=False, model="gpt-4o").span_name == "gen"
    names = {
        kind: plan_kind(
            kind, name="step", is_graph=False, model="m-1", spec_span_names=True
        ).span_name
        for kind in KINDS
    }
    assert names == {
        "llm": "chat m-1",
        "embedding": "embeddings m-1",
        "retriever": "step",
        "reranker": "step",
        "tool": "execute_tool step",
        "agent": "invoke_agent step",
        "chain": "step",
        "guardrail": "step",
        "evaluator": "step",
    }
    assert spec_span_name("llm", "gen", None) == "chat"


@pytest.mark.parametrize("field", ["name", "model", "provider"])
@pytest.mark.parametrize("bad", ["", 3])
def test_bad_names_are_clear_errors(field, bad):
    kwargs = {"name": "n", "is_graph": False, field: bad}
    with pytest.raises(ValueError, match=f"{field} must be a non-empty string"):
        plan_kind("llm", **kwargs)


def test_the_plan_starts_a_real_span_with_its_attributes_and_kind():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plan = plan_kind("tool", name="lookup", is_graph=False)
    with provider.get_tracer("t").start_as_current_span(
        plan.span_name, kind=plan.span_kind, attributes=plan.attributes
    ):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.INTERNAL
    assert span.attributes["openinference.span.kind"] == "TOOL"
    assert span.attributes["gen_ai.tool.name"] == "lookup"
