"""Real clients: @observe nodes calling the openai and anthropic SDKs against local servers.

The servers (tests/llm_servers.py) speak each provider's HTTP API, streaming included, with token
counts set per test, so the span must carry exactly the counts the server reported. One case
goes to a real OTLP receiver, to see the attributes as a back-end receives them: typed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llm_servers import AnthropicServer, OpenAIServer
from otlp_receivers import GrpcTraceReceiver

from tinyllm_instrument import configure_observe, observe
from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    configure_telemetry,
    flush_telemetry,
    reset_telemetry,
)

USER = [{"role": "user", "content": "How long do refunds take?"}]
REPLY = "Refunds take five days."


@pytest.fixture
def openai_api() -> Any:
    """An OpenAI server with every count distinct, so a swapped field cannot pass."""
    with OpenAIServer(
        reply=REPLY, input_tokens=31, output_tokens=7, cached_tokens=11, reasoning_tokens=3,
        served_model="gpt-4o-mini-2024-07-18",
    ) as server:  # fmt: skip
        yield server


@pytest.fixture
def anthropic_api() -> Any:
    with AnthropicServer(
        reply=REPLY, input_tokens=23, output_tokens=9, cached_tokens=40,
        served_model="claude-haiku-4-5-20251001",
    ) as server:  # fmt: skip
        yield server


OPENAI_EXPECTED = {
    "openinference.span.kind": "LLM",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.provider.name": "openai",
    "gen_ai.system": "openai",
    "llm.provider": "openai",
    "llm.system": "openai",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 31,
    "llm.token_count.prompt": 31,
    "gen_ai.usage.output_tokens": 7,
    "llm.token_count.completion": 7,
    "llm.token_count.total": 38,
    "gen_ai.usage.cache_read.input_tokens": 11,
    "llm.token_count.prompt_details.cache_read": 11,
    "gen_ai.usage.reasoning.output_tokens": 3,
    "llm.token_count.completion_details.reasoning": 3,
}


def _check_openai(attrs: Any, *, stream: bool) -> None:
    assert dict(attrs).items() >= OPENAI_EXPECTED.items()
    assert attrs["gen_ai.response.id"].startswith("chatcmpl-")
    assert list(attrs["gen_ai.response.finish_reasons"]) == ["stop"]
    assert attrs["llm.cost.total"] > 0  # genai-prices knows gpt-4o-mini
    assert ("gen_ai.response.time_to_first_chunk" in attrs) is stream


def test_an_openai_call_carries_the_servers_token_counts_and_provider(tinyllm_capture, openai_api):
    with openai_api.client() as client:

        @observe(node="generate", model="gpt-4o-mini")
        def generate(messages):
            return client.chat.completions.create(model="gpt-4o-mini", messages=messages)

        assert generate(USER).choices[0].message.content == REPLY
    _check_openai(tinyllm_capture.span("generate").attributes, stream=False)
    labels = {"model": "gpt-4o-mini", "graph": "none"}
    assert tinyllm_capture.sample("tinyllm_tokens_input_total", labels) == 31
    assert tinyllm_capture.sample("tinyllm_tokens_output_total", labels) == 7
    assert tinyllm_capture.sample("tinyllm_cost_usd_total", labels) > 0


def test_an_openai_stream_with_include_usage_carries_the_servers_token_counts(
    tinyllm_capture, openai_api
):
    with openai_api.client() as client:

        @observe(node="generate", model="gpt-4o-mini", capture_output=True)
        def generate(messages):
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
            yield from stream

        text = "".join(c.choices[0].delta.content or "" for c in generate(USER) if c.choices)
    assert text == REPLY
    attrs = tinyllm_capture.span("generate").attributes
    _check_openai(attrs, stream=True)
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["llm.output_messages.0.message.content"] == REPLY
    labels = {"model": "gpt-4o-mini", "graph": "none"}
    assert tinyllm_capture.sample("tinyllm_tokens_input_total", labels) == 31


def test_an_async_openai_stream_of_a_node_without_model_is_labelled_by_the_servers_model(
    tinyllm_capture, openai_api
):
    @observe(node="generate", kind="llm")
    async def generate(client):
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async for chunk in stream:
            yield chunk

    async def main() -> int:
        async with openai_api.async_client() as client:
            return len([chunk async for chunk in generate(client)])

    assert asyncio.run(main()) > 3
    labels = {"model": "gpt-4o-mini-2024-07-18", "graph": "none"}
    assert tinyllm_capture.sample("tinyllm_tokens_output_total", labels) == 7
    assert tinyllm_capture.sample("tinyllm_requests_total", {**labels, "request_type": "generate"})


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_an_anthropic_call_carries_the_servers_token_counts_and_provider(
    tinyllm_capture, anthropic_api, stream
):
    configure_observe(prices={"claude-haiku-4-5": (1.0, 5.0)})
    with anthropic_api.client() as client:
        if stream:

            @observe(node="claude", model="claude-haiku-4-5")
            def claude(messages):
                yield from client.messages.create(
                    model="claude-haiku-4-5", max_tokens=64, messages=messages, stream=True
                )

            list(claude(USER))
        else:

            @observe(node="claude", model="claude-haiku-4-5")
            def claude(messages):
                return client.messages.create(
                    model="claude-haiku-4-5", max_tokens=64, messages=messages
                )

            claude(USER)
    attrs = tinyllm_capture.span("claude").attributes
    assert attrs["gen_ai.provider.name"] == attrs["llm.provider"] == "anthropic"
    assert attrs["gen_ai.response.model"] == "claude-haiku-4-5-20251001"
    assert attrs["gen_ai.response.id"].startswith("msg_")
    # Anthropic reports the cache apart; the conventions count it in the input
    assert attrs["gen_ai.usage.input_tokens"] == attrs["llm.token_count.prompt"] == 63
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 40
    assert attrs["gen_ai.usage.output_tokens"] == 9
    assert list(attrs["gen_ai.response.finish_reasons"]) == ["end_turn"]
    # (63 - 40) uncached at 1.0 and 40 cached at 1.0 (the mapping has one input price)
    assert attrs["llm.cost.total"] == pytest.approx((63 * 1.0 + 9 * 5.0) / 1e6)


def test_at_a_real_otlp_receiver_the_llm_attributes_arrive_typed(openai_api):
    with GrpcTraceReceiver() as receiver, openai_api.client() as client:

        @observe(node="generate", model="gpt-4o-mini", capture_input=True)
        def generate(messages):
            return client.chat.completions.create(model="gpt-4o-mini", messages=messages)

        @observe(node="search", kind="retriever", capture_output=True)
        def search(question):
            return [{"page_content": "Refunds take five days.", "id": "kb-1", "score": 0.9}]

        @observe(graph="qa")
        def qa(question):
            search(question)
            return generate(USER)

        configure_telemetry(
            TelemetryConfig(enable_tracing=True, exporter="otlp", otlp_endpoint=receiver.endpoint)
        )
        try:
            qa("refunds?")
            assert flush_telemetry(5.0)
            spans = {s.name: s for s in receiver.wait_for(3)}
        finally:
            reset_telemetry()
    llm = spans["generate"]
    assert llm.kind == "CLIENT"
    for key, value in OPENAI_EXPECTED.items():
        assert llm.attributes[key] == value and type(llm.attributes[key]) is type(value), key
    assert llm.attributes["gen_ai.response.finish_reasons"] == ["stop"]  # a string array
    assert type(llm.attributes["llm.cost.total"]) is float
    assert llm.attributes["llm.input_messages.0.message.content"] == USER[0]["content"]
    retriever = spans["search"]
    assert retriever.attributes["openinference.span.kind"] == "RETRIEVER"
    assert retriever.attributes["tinyllm.retrieval.documents"] == 1
    assert retriever.attributes["retrieval.documents.0.document.score"] == 0.9
    graph = spans["qa"]
    assert graph.attributes["openinference.span.kind"] == "CHAIN" and graph.kind == "INTERNAL"
