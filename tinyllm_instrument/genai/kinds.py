"""What kind of step a span is (llm, tool, retriever...), turned once into its static attributes.

Everything here runs when a function is decorated, never per call: ``plan_kind`` returns the
attributes a span of that kind carries from its start (so samplers and span processors see
them), the OpenTelemetry span kind, and the span name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind

from . import conventions as c
from .providers import provider_attributes

__all__ = [
    "KINDS",
    "KindPlan",
    "check_kind",
    "default_kind",
    "graph_node_attributes",
    "plan_kind",
    "spec_span_name",
]

#: The values ``@observe(kind=...)`` accepts; OpenInference's span kinds, lower case.
KINDS: tuple[str, ...] = (
    "llm",
    "embedding",
    "retriever",
    "reranker",
    "tool",
    "agent",
    "chain",
    "guardrail",
    "evaluator",
)
_KIND_SET = frozenset(KINDS)

_OPERATIONS = {
    "llm": c.OPERATION_CHAT,
    "embedding": c.OPERATION_EMBEDDINGS,
    "retriever": c.OPERATION_RETRIEVAL,
    "tool": c.OPERATION_EXECUTE_TOOL,
    "agent": c.OPERATION_INVOKE_AGENT,
}
# The spec's span names: "{operation} {model}" for model calls, "{operation} {name}" otherwise.
_SPEC_NAME_BY_MODEL = frozenset({"llm", "embedding"})
_SPEC_NAME_BY_NAME = frozenset({"tool", "agent"})


@dataclass(frozen=True)
class KindPlan:
    """What a span of one kind carries, decided when decorating.

    Attributes:
        kind: one of `KINDS`.
        span_kind: CLIENT for ``llm`` and ``embedding`` (a call to a model server), INTERNAL
            otherwise, as the GenAI conventions ask.
        span_name: the node or graph name, or the spec's name when asked for.
        attributes: the static span attributes (a new dict per plan; do not mutate).
        reads_usage: the result (or streamed items) may carry token usage: ``llm``, ``embedding``.
        reads_messages: a ``messages`` argument and the reply are captured as messages: ``llm``.
        documents_prefix: where a sequence-of-documents result goes (``retrieval.documents`` for
            a retriever, ``reranker.output_documents`` for a reranker), or None.
    """

    kind: str
    span_kind: SpanKind
    span_name: str
    attributes: Mapping[str, Any]
    reads_usage: bool
    reads_messages: bool
    documents_prefix: str | None


def check_kind(kind: object) -> str:
    """Return ``kind`` if it is one of `KINDS`.

    Raises:
        ValueError: any other value, naming the allowed ones.

    Example:
        >>> check_kind("tool")
        'tool'
    """
    if isinstance(kind, str) and kind in _KIND_SET:
        return kind
    raise ValueError(f"kind={kind!r} is not one of: {', '.join(KINDS)}")


def default_kind(*, is_graph: bool, model: str | None) -> str:
    """The kind of a span when ``kind=`` is not given.

    A graph is a ``chain``; a node with ``model=`` is an ``llm``; any other node a ``chain``.

    Example:
        >>> default_kind(is_graph=False, model="gpt-4o")
        'llm'
    """
    if not is_graph and model is not None:
        return "llm"
    return "chain"


def spec_span_name(kind: str, name: str, model: str | None) -> str:
    """The GenAI conventions' span name: ``chat {model}``, ``execute_tool {name}``...

    Kinds the conventions give no name keep ``name``. A model call without a known model is
    named by its operation alone (``chat``), as the conventions say.

    Example:
        >>> spec_span_name("llm", "generate", "gpt-4o"), spec_span_name("tool", "search", None)
        ('chat gpt-4o', 'execute_tool search')
    """
    operation = _OPERATIONS.get(kind)
    if operation is None:
        return name
    if kind in _SPEC_NAME_BY_MODEL:
        return f"{operation} {model}" if model else operation
    if kind in _SPEC_NAME_BY_NAME:
        return f"{operation} {name}"
    return name


def plan_kind(
    kind: str | None,
    *,
    name: str,
    is_graph: bool,
    model: str | None = None,
    provider: str | None = None,
    spec_span_names: bool = False,
) -> KindPlan:
    """Validate a kind and decide the static attributes, span kind and span name of its spans.

    Args:
        kind: one of `KINDS`, or None for the default (see `default_kind`).
        name: the node name, or the graph name for a graph.
        is_graph: the span is a graph's (``@observe(graph=...)`` without ``node=``).
        model: ``model=`` of the decorator, if any.
        provider: ``provider=`` of the decorator, if any (``"openai"``, ``"anthropic"``...).
        spec_span_names: name spans as the GenAI conventions do (``chat gpt-4o``) instead of by
            node and graph name (the default: a graph view needs the node names).

    Returns:
        The `KindPlan`.

    Raises:
        ValueError: an unknown kind, a graph of kind ``llm`` / ``embedding``, or a
            ``name`` / ``model`` / ``provider`` that is not a non-empty string.

    Example:
        >>> plan = plan_kind(None, name="generate", is_graph=False, model="gpt-4o")
        >>> plan.kind, plan.span_kind.name, plan.attributes["gen_ai.operation.name"]
        ('llm', 'CLIENT', 'chat')
    """
    for label, value in (("name", name), ("model", model), ("provider", provider)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{label}={value!r}: {label} must be a non-empty string")
    kind = default_kind(is_graph=is_graph, model=model) if kind is None else check_kind(kind)
    if is_graph and kind in ("llm", "embedding"):
        # Back-ends take a span with model attributes for a model call and would count the
        # graph's tokens twice (Langfuse makes any such parent a generation).
        raise ValueError(
            f"kind={kind!r} on a graph: a graph is not one model call; give the kind to the "
            "node that calls the model (a graph is a 'chain' by default, or e.g. an 'agent')"
        )
    attrs: dict[str, Any] = {c.OPENINFERENCE_SPAN_KIND: kind.upper()}
    operation = _OPERATIONS.get(kind)
    if operation is not None:
        attrs[c.GEN_AI_OPERATION_NAME] = operation
    if kind in ("llm", "embedding"):
        if model is not None:
            attrs[c.GEN_AI_REQUEST_MODEL] = model
            attrs[c.LLM_MODEL_NAME] = model
            if kind == "embedding":
                attrs[c.EMBEDDING_MODEL_NAME] = model
        if provider is not None:
            attrs.update(provider_attributes(provider))
    elif kind == "agent" and model is not None:
        # The conventions' invoke_agent span names the agent's model; no llm.* model name, or
        # a back-end would take the agent for one model call and count its tokens twice.
        attrs[c.GEN_AI_REQUEST_MODEL] = model
    if kind == "tool":
        attrs[c.GEN_AI_TOOL_NAME] = name
        attrs[c.TOOL_NAME] = name
    elif kind == "agent":
        attrs[c.GEN_AI_AGENT_NAME] = name
        attrs[c.AGENT_NAME] = name
    # Every node and graph is a node of the execution graph Phoenix draws; the parent (the
    # graph a node runs in) is known per call, see graph_node_attributes.
    attrs[c.GRAPH_NODE_ID] = name
    attrs[c.GRAPH_NODE_NAME] = name
    return KindPlan(
        kind=kind,
        span_kind=SpanKind.CLIENT if kind in ("llm", "embedding") else SpanKind.INTERNAL,
        span_name=spec_span_name(kind, name, model) if spec_span_names else name,
        attributes=attrs,
        reads_usage=kind in ("llm", "embedding"),
        reads_messages=kind == "llm",
        documents_prefix=(
            c.RETRIEVAL_DOCUMENTS
            if kind == "retriever"
            else c.RERANKER_OUTPUT_DOCUMENTS
            if kind == "reranker"
            else None
        ),
    )


def graph_node_attributes(parent_id: str | None) -> dict[str, str]:
    """The per-call part of the execution graph: ``graph.node.parent_id``.

    A node's parent is the node that called it, or else the graph it runs in; a graph's parent
    is the graph that called it. Unset means a root. Ids are names (not span ids), so a graph
    view shows one box per node however often it ran.

    Args:
        parent_id: the enclosing node or graph name, or None for a root.

    Returns:
        The attributes to add to the static ones (empty for a root).

    Example:
        >>> graph_node_attributes("rag")
        {'graph.node.parent_id': 'rag'}
    """
    if not parent_id:
        return {}
    return {c.GRAPH_NODE_PARENT_ID: parent_id}
