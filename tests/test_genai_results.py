"""Reading LLM results: the SDKs' own objects, dicts of their shapes, anything with a usage."""

from __future__ import annotations

import anthropic.types as anthropic_types
import openai.types as openai_types
import openai.types.chat as openai_chat
import openai.types.responses as openai_responses
import pytest

from tinyllm_instrument.genai import LLMResult, provider_of, read_result, result_attributes
from tinyllm_instrument.genai.results import read_usage
from tinyllm_instrument.metrics import get_metrics_collector

CHAT = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}},
        {"index": 1, "finish_reason": "length", "message": {"role": "assistant", "content": "H"}},
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 12},
    },
}
ANTHROPIC = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hello"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "output_tokens": 8,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 50,
    },
}
RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1.0,
    "model": "gpt-4.1-mini",
    "output": [
        {
            "type": "message",
            "id": "m1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}],
        }
    ],
    "parallel_tool_calls": False,
    "tool_choice": "auto",
    "tools": [],
    "status": "completed",
    "usage": {
        "input_tokens": 40,
        "output_tokens": 9,
        "total_tokens": 49,
        "input_tokens_details": {"cached_tokens": 32, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 4},
    },
}


def internal_errors(stage: str = "usage") -> float:
    value = get_metrics_collector().registry.get_sample_value(
        "tinyllm_instrumentation_errors_total", {"stage": stage}
    )
    return value or 0.0


# --------------------------------------------------------------------------------------------
# The SDKs' own objects
# --------------------------------------------------------------------------------------------


def test_openai_chat_completion():
    result = read_result(openai_chat.ChatCompletion.model_validate(CHAT))
    assert result == LLMResult(
        provider="openai",
        model="gpt-4o-2024-08-06",
        response_id="chatcmpl-123",
        finish_reasons=("stop", "length"),
        input_tokens=120,
        output_tokens=30,
        total_tokens=150,
        cache_read_tokens=100,
        cache_creation_tokens=None,
        reasoning_tokens=12,
    )


def test_openai_legacy_completion():
    completion = openai_types.Completion.model_validate(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "gpt-3.5-turbo-instruct",
            "choices": [{"index": 0, "text": "x", "finish_reason": "length", "logprobs": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        }
    )
    result = read_result(completion)
    assert (result.provider, result.finish_reasons) == ("openai", ("length",))
    assert (result.input_tokens, result.output_tokens, result.total_tokens) == (5, 7, 12)


def test_openai_embeddings_have_input_tokens_only():
    embeddings = openai_types.CreateEmbeddingResponse.model_validate(
        {
            "object": "list",
            "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
    )
    result = read_result(embeddings)
    assert (result.provider, result.model) == ("openai", "text-embedding-3-small")
    assert (result.input_tokens, result.output_tokens, result.total_tokens) == (8, None, 8)
    attrs = result_attributes(result)
    assert attrs["gen_ai.usage.input_tokens"] == attrs["llm.token_count.prompt"] == 8
    assert "gen_ai.usage.output_tokens" not in attrs


def test_openai_responses_api():
    result = read_result(openai_responses.Response.model_validate(RESPONSE))
    assert result.provider == "openai"
    assert (result.model, result.response_id) == ("gpt-4.1-mini", "resp_1")
    assert (result.input_tokens, result.output_tokens, result.total_tokens) == (40, 9, 49)
    assert (result.cache_read_tokens, result.reasoning_tokens) == (32, 4)


def test_openai_responses_cut_short_say_why():
    incomplete = dict(
        RESPONSE, status="incomplete", incomplete_details={"reason": "max_output_tokens"}
    )
    result = read_result(openai_responses.Response.model_validate(incomplete))
    assert result.finish_reasons == ("max_output_tokens",)


def test_anthropic_message_input_counts_the_cache_as_the_conventions_say():
    result = read_result(anthropic_types.Message.model_validate(ANTHROPIC))
    assert result.provider == "anthropic"
    assert (result.model, result.response_id, result.finish_reasons) == (
        "claude-sonnet-4-5",
        "msg_01",
        ("end_turn",),
    )
    # Anthropic's input_tokens excludes the cache; gen_ai.usage.input_tokens includes it.
    assert result.input_tokens == 20 + 1000 + 50
    assert (result.output_tokens, result.total_tokens) == (8, 1078)
    assert (result.cache_read_tokens, result.cache_creation_tokens) == (1000, 50)


def test_anthropic_thinking_tokens_are_reasoning_tokens():
    message = dict(
        ANTHROPIC,
        usage={
            "input_tokens": 3,
            "output_tokens": 90,
            "output_tokens_details": {"thinking_tokens": 70},
        },
    )
    result = read_result(anthropic_types.Message.model_validate(message))
    assert (result.output_tokens, result.reasoning_tokens) == (90, 70)


# --------------------------------------------------------------------------------------------
# Dicts of those shapes, and any usage
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (CHAT, (120, 30, 150, 100, 12)),
        (ANTHROPIC, (1070, 8, 1078, 1000, None)),
        (RESPONSE, (40, 9, 49, 32, 4)),
    ],
)
def test_dicts_of_the_sdk_shapes_read_the_same_without_a_provider(shape, expected):
    result = read_result(shape)
    assert result.provider is None  # a dict does not say which SDK made it
    assert result.model == shape["model"]
    got = (
        result.input_tokens,
        result.output_tokens,
        result.total_tokens,
        result.cache_read_tokens,
        result.reasoning_tokens,
    )
    assert got == expected


def test_any_object_with_a_usage_attribute():
    class Usage:
        input_tokens = 11
        output_tokens = 4

    class Reply:
        usage = Usage()
        model = "local-llama"

    result = read_result(Reply())
    assert (result.model, result.input_tokens, result.output_tokens, result.total_tokens) == (
        "local-llama",
        11,
        4,
        15,
    )
    assert result.provider is None


def test_a_model_alone_labels_the_call():
    # issue 17 #4: a result's model labels metrics when model= was not given
    result = read_result({"model": "gpt-4o-mini", "text": "hi"})
    assert result.model == "gpt-4o-mini" and not result.has_usage


@pytest.mark.parametrize(
    "plain",
    [None, "text", 3, 2.5, True, b"x", [1, 2], (1,), {"a": 1}, {"usage": None}, object()],
)
def test_plain_results_say_nothing(plain):
    assert read_result(plain) is None


def test_usage_shapes_of_other_sdks():
    gemini = read_usage(
        {
            "prompt_token_count": 10,
            "candidates_token_count": 5,
            "thoughts_token_count": 7,
            "total_token_count": 22,
            "cached_content_token_count": 4,
        }
    )
    # Gemini counts thoughts apart; the conventions count them in the output.
    assert gemini.final() == (10, 12, 22) and gemini.reasoning == 7 and gemini.cache_read == 4
    cohere = read_usage(
        {"billed_units": {"input_tokens": 1}, "tokens": {"input_tokens": 9, "output_tokens": 2}}
    )
    assert cohere.final() == (9, 2, 11)
    langchain = read_usage(
        {
            "input_tokens": 50,
            "output_tokens": 5,
            "total_tokens": 55,
            "input_token_details": {"cache_read": 40},
            "output_token_details": {"reasoning": 3},
        }
    )
    assert langchain.final() == (50, 5, 55) and (langchain.cache_read, langchain.reasoning) == (
        40,
        3,
    )


def test_provider_comes_from_the_sdk_package_of_the_type():
    def made_in(module: str) -> object:
        return type("Reply", (), {"__module__": module})()

    assert provider_of(made_in("google.genai.types")) == "gcp.gen_ai"
    assert provider_of(made_in("mistralai.models.chatcompletionresponse")) == "mistral_ai"
    assert provider_of(made_in("groq.types.chat")) == "groq"
    assert provider_of(made_in("cohere.v2.types")) == "cohere"
    assert provider_of(made_in("google.protobuf")) is None
    assert provider_of(made_in("openai_compatible_gateway")) is None
    assert provider_of(made_in("myapp.openai")) is None


def test_langchain_messages_read_usage_metadata_and_response_metadata():
    AIMessage = type("AIMessage", (), {"__module__": "langchain_core.messages.ai"})
    message = AIMessage()
    message.id = "run-1"
    message.usage_metadata = {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
    message.response_metadata = {"model_name": "gpt-4o-mini", "finish_reason": "stop"}
    result = read_result(message)
    assert (result.model, result.finish_reasons, result.input_tokens) == (
        "gpt-4o-mini",
        ("stop",),
        12,
    )


# --------------------------------------------------------------------------------------------
# Malformed usage: counted, skipped, never raised
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [-1, True, 2.5, "12", 2**60, None.__class__, [3]],
    ids=["negative", "bool", "float", "str", "huge", "type", "list"],
)
def test_a_malformed_count_is_counted_and_skipped_the_rest_kept(bad):
    before = internal_errors()
    result = read_result({"model": "m", "usage": {"prompt_tokens": bad, "completion_tokens": 4}})
    assert result.input_tokens is None
    assert result.output_tokens == 4
    assert internal_errors() == before + 1


def test_a_usage_whose_fields_raise_does_not_reach_the_caller():
    class Exploding:
        @property
        def prompt_tokens(self):
            raise RuntimeError("boom")

    before = internal_errors()
    assert read_usage(Exploding()) is None
    result = read_result({"model": "m", "usage": Exploding()})
    assert result.model == "m" and not result.has_usage
    assert internal_errors() == before + 2


def test_an_object_whose_usage_property_raises_does_not_reach_the_caller():
    class Reply:
        @property
        def usage(self):
            raise RuntimeError("boom")

    before = internal_errors()
    assert read_result(Reply()) is None
    assert internal_errors() == before + 1


def test_a_malformed_count_message_does_not_carry_the_value_in_full(caplog):
    read_result({"model": "m", "usage": {"prompt_tokens": "sk-proj-" + "a" * 5000}})
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "a" * 100 not in text  # bounded
    assert "sk-proj-aaaa" not in text  # and redacted


def test_model_and_ids_are_bounded_and_must_be_strings():
    result = read_result({"model": "m" * 10_000, "id": 42, "usage": {"input_tokens": 1}})
    assert len(result.model) == 256
    assert result.response_id is None


# --------------------------------------------------------------------------------------------
# The attributes of both vocabularies
# --------------------------------------------------------------------------------------------


def test_result_attributes_of_both_vocabularies():
    attrs = result_attributes(read_result(openai_chat.ChatCompletion.model_validate(CHAT)))
    assert attrs == {
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "llm.provider": "openai",
        "llm.system": "openai",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "llm.model_name": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-123",
        "gen_ai.response.finish_reasons": ["stop", "length"],
        "gen_ai.usage.input_tokens": 120,
        "llm.token_count.prompt": 120,
        "gen_ai.usage.output_tokens": 30,
        "llm.token_count.completion": 30,
        "llm.token_count.total": 150,
        "gen_ai.usage.cache_read.input_tokens": 100,
        "llm.token_count.prompt_details.cache_read": 100,
        "gen_ai.usage.reasoning.output_tokens": 12,
        "llm.token_count.completion_details.reasoning": 12,
    }


def test_anthropic_cache_creation_attributes():
    attrs = result_attributes(read_result(ANTHROPIC))
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 50
    assert attrs["llm.token_count.prompt_details.cache_write"] == 50


def test_provider_attributes_can_be_left_to_the_decorator():
    info = read_result(anthropic_types.Message.model_validate(ANTHROPIC))
    attrs = result_attributes(info, include_provider=False)
    assert not {"gen_ai.provider.name", "gen_ai.system", "llm.provider"} & set(attrs)


def test_the_apps_own_pydantic_models_and_dataclasses():
    import pydantic

    @pydantic.dataclasses.dataclass
    class Reply:
        model: str
        usage: dict

    class Loose(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        model: str

    assert read_result(Reply("m", {"input_tokens": 1, "output_tokens": 2})).total_tokens == 3
    loose = Loose(model="x", usage={"prompt_tokens": 3, "completion_tokens": 1})
    assert read_result(loose).total_tokens == 4  # an undeclared usage field is read too
