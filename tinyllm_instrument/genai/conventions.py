"""The attribute names the kit writes from the GenAI conventions and OpenInference, with versions.

Two public vocabularies tell LLM back-ends what a span is:

* the OpenTelemetry **GenAI semantic conventions** (``gen_ai.*``), followed as published in
  ``open-telemetry/semantic-conventions-genai`` (``model/gen-ai/registry.yaml``, May 2026,
  stability "Development"); the names are the same as in ``opentelemetry-semantic-conventions``
  0.66b2 (``opentelemetry.semconv._incubating.attributes.gen_ai_attributes``);
* **OpenInference** (``openinference.span.kind``, ``llm.*``, ``input.value``, ``session.id``...),
  followed as in ``Arize-ai/openinference`` ``spec/semantic_conventions.md`` and the
  ``openinference-semantic-conventions`` 0.1.42 package.

The kit's runtime dependencies do not include either package, so the names live here, once;
``tests/test_genai_conventions.py`` compares them with both packages where they are installed.
``tinyllm.*`` names are only for what neither vocabulary names.
"""

from __future__ import annotations

__all__ = [
    "GENAI_SEMCONV_VERSION",
    "OPENINFERENCE_VERSION",
    "all_attribute_names",
    "document_key",
    "message_key",
    "tool_call_key",
]

#: Where the ``gen_ai.*`` names below come from.
GENAI_SEMCONV_VERSION = "semantic-conventions-genai registry, May 2026 (= semconv Python 0.66b2)"
#: Where the OpenInference names below come from.
OPENINFERENCE_VERSION = "openinference-semantic-conventions 0.1.42"

# --------------------------------------------------------------------------------------------
# OpenTelemetry GenAI semantic conventions
# --------------------------------------------------------------------------------------------

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
#: Deprecated by the spec in favour of ``gen_ai.provider.name``, still read first by Logfire.
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
#: The label of the spec's token metrics (``input`` / ``output``).
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
#: Not in the GenAI conventions: Langfuse reads a call's cost from it (and Logfire shows it).
GEN_AI_USAGE_COST = "gen_ai.usage.cost"

# gen_ai.operation.name values
OPERATION_CHAT = "chat"
OPERATION_EMBEDDINGS = "embeddings"
OPERATION_RETRIEVAL = "retrieval"
OPERATION_EXECUTE_TOOL = "execute_tool"
OPERATION_INVOKE_AGENT = "invoke_agent"

# --------------------------------------------------------------------------------------------
# OpenInference
# --------------------------------------------------------------------------------------------

OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"
MIME_JSON = "application/json"
MIME_TEXT = "text/plain"

LLM_MODEL_NAME = "llm.model_name"
LLM_PROVIDER = "llm.provider"
LLM_SYSTEM = "llm.system"
LLM_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
LLM_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"
LLM_TOKEN_COUNT_TOTAL = "llm.token_count.total"
LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ = "llm.token_count.prompt_details.cache_read"
LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
LLM_TOKEN_COUNT_COMPLETION_DETAILS_REASONING = "llm.token_count.completion_details.reasoning"
LLM_COST_PROMPT = "llm.cost.prompt"
LLM_COST_COMPLETION = "llm.cost.completion"
LLM_COST_TOTAL = "llm.cost.total"
# Fragments of flattened names: llm.input_messages.{i}.message.role, ... (see the key functions)
LLM_INPUT_MESSAGES = "llm.input_messages"
LLM_OUTPUT_MESSAGES = "llm.output_messages"
MESSAGE_ROLE = "message.role"
MESSAGE_CONTENT = "message.content"
MESSAGE_TOOL_CALLS = "message.tool_calls"
TOOL_CALL_ID = "tool_call.id"
TOOL_CALL_FUNCTION_NAME = "tool_call.function.name"
TOOL_CALL_FUNCTION_ARGUMENTS = "tool_call.function.arguments"

EMBEDDING_MODEL_NAME = "embedding.model_name"
# Fragments of retrieval.documents.{i}.document.id, ...
RETRIEVAL_DOCUMENTS = "retrieval.documents"
RERANKER_OUTPUT_DOCUMENTS = "reranker.output_documents"
DOCUMENT_ID = "document.id"
DOCUMENT_CONTENT = "document.content"
DOCUMENT_SCORE = "document.score"
DOCUMENT_METADATA = "document.metadata"
TOOL_NAME = "tool.name"
AGENT_NAME = "agent.name"

SESSION_ID = "session.id"
USER_ID = "user.id"
TAG_TAGS = "tag.tags"
METADATA = "metadata"

GRAPH_NODE_ID = "graph.node.id"
GRAPH_NODE_NAME = "graph.node.name"
GRAPH_NODE_PARENT_ID = "graph.node.parent_id"

# --------------------------------------------------------------------------------------------
# The kit's own, for what neither vocabulary names
# --------------------------------------------------------------------------------------------

#: How many documents a retriever returned (the span carries only the first N of them).
TINYLLM_RETRIEVAL_DOCUMENTS = "tinyllm.retrieval.documents"


def message_key(direction: str, index: int, field: str) -> str:
    """``llm.{direction}_messages.{index}.message.{field}``, OpenInference's flattened message.

    Example:
        >>> message_key("input", 0, "role")
        'llm.input_messages.0.message.role'
    """
    return f"llm.{direction}_messages.{index}.message.{field}"


def tool_call_key(direction: str, index: int, call: int, field: str) -> str:
    """The flattened name of one tool call of one message.

    Example:
        >>> tool_call_key("output", 0, 1, "function.name")
        'llm.output_messages.0.message.tool_calls.1.tool_call.function.name'
    """
    return f"llm.{direction}_messages.{index}.message.tool_calls.{call}.tool_call.{field}"


def document_key(index: int, field: str, prefix: str = RETRIEVAL_DOCUMENTS) -> str:
    """``retrieval.documents.{index}.document.{field}`` (or under another documents prefix).

    Example:
        >>> document_key(2, "score")
        'retrieval.documents.2.document.score'
    """
    return f"{prefix}.{index}.document.{field}"


def all_attribute_names() -> tuple[str, ...]:
    """Every attribute name the GenAI layer writes, flattened names shown with index 0.

    For tests that must hold for the whole vocabulary (redaction must not judge any of them
    sensitive, back-ends must recognise them).

    Returns:
        Sorted, without duplicates.

    Example:
        >>> "gen_ai.usage.input_tokens" in all_attribute_names()
        True
    """
    names = set(_WRITTEN)
    for direction in ("input", "output"):
        for field in ("role", "content"):
            names.add(message_key(direction, 0, field))
        for field in ("id", "function.name", "function.arguments"):
            names.add(tool_call_key(direction, 0, 0, field))
    for prefix in (RETRIEVAL_DOCUMENTS, RERANKER_OUTPUT_DOCUMENTS):
        for field in ("id", "content", "score", "metadata"):
            names.add(document_key(0, field, prefix))
    return tuple(sorted(names))


# The names written as they are (the flattened message, tool call and document names are built
# from the fragments above by the key functions).
_WRITTEN = (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_SYSTEM,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_STREAM,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    GEN_AI_TOKEN_TYPE,
    GEN_AI_TOOL_NAME,
    GEN_AI_AGENT_NAME,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_USAGE_COST,
    OPENINFERENCE_SPAN_KIND,
    INPUT_VALUE,
    INPUT_MIME_TYPE,
    OUTPUT_VALUE,
    OUTPUT_MIME_TYPE,
    LLM_MODEL_NAME,
    LLM_PROVIDER,
    LLM_SYSTEM,
    LLM_TOKEN_COUNT_PROMPT,
    LLM_TOKEN_COUNT_COMPLETION,
    LLM_TOKEN_COUNT_TOTAL,
    LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ,
    LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE,
    LLM_TOKEN_COUNT_COMPLETION_DETAILS_REASONING,
    LLM_COST_PROMPT,
    LLM_COST_COMPLETION,
    LLM_COST_TOTAL,
    EMBEDDING_MODEL_NAME,
    TOOL_NAME,
    AGENT_NAME,
    SESSION_ID,
    USER_ID,
    TAG_TAGS,
    METADATA,
    GRAPH_NODE_ID,
    GRAPH_NODE_NAME,
    GRAPH_NODE_PARENT_ID,
    TINYLLM_RETRIEVAL_DOCUMENTS,
)
