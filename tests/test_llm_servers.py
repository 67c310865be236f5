"""The test peers themselves: the official SDKs against the local provider servers, and Phoenix."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import anthropic
import openai
import pytest
from llm_servers import AnthropicServer, OpenAIServer
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from phoenix_server import PhoenixServer

USER = [{"role": "user", "content": "How long do refunds take?"}]
REPLY = "Refunds take five days."


def _openai_usage(server: OpenAIServer) -> dict[str, Any]:
    return {
        "prompt_tokens": server.input_tokens,
        "completion_tokens": server.output_tokens,
        "total_tokens": server.input_tokens + server.output_tokens,
        "cached_tokens": server.cached_tokens,
        "reasoning_tokens": server.reasoning_tokens,
    }


def _usage_of(usage: Any) -> dict[str, Any]:
    """The token counts of an SDK ``CompletionUsage``, in the shape of ``_openai_usage``."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": usage.prompt_tokens_details.cached_tokens,
        "reasoning_tokens": usage.completion_tokens_details.reasoning_tokens,
    }


@pytest.fixture
def tuned_openai() -> Any:
    """An OpenAI server with every count distinct, so a swapped field cannot pass."""
    with OpenAIServer(
        reply=REPLY, input_tokens=31, output_tokens=7, cached_tokens=11, reasoning_tokens=3,
        served_model="gpt-4o-mini-2024-07-18",
    ) as server:  # fmt: skip
        yield server


# -- OpenAI: chat completions ----------------------------------------------------------------------


def test_openai_chat_answers_with_the_configured_reply_model_and_usage(tuned_openai):
    with tuned_openai.client() as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.id.startswith("chatcmpl-")
    assert _usage_of(completion.usage) == _openai_usage(tuned_openai)


def test_openai_echoes_the_requested_model_unless_a_served_model_is_set(openai_server):
    with openai_server.client() as client:
        completion = client.chat.completions.create(model="gpt-4.1-nano", messages=USER)
    assert completion.model == "gpt-4.1-nano"


def test_openai_chat_stream_with_include_usage_ends_with_a_usage_chunk(tuned_openai):
    with tuned_openai.client() as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = list(stream)

    *content, last = chunks
    assert last.choices == []
    assert _usage_of(last.usage) == _openai_usage(tuned_openai)
    assert all(chunk.usage is None for chunk in content)
    assert "".join(c.choices[0].delta.content or "" for c in content) == REPLY
    assert len(content) > 3  # a role chunk, several deltas, the finish chunk
    assert content[0].choices[0].delta.role == "assistant"
    assert content[-1].choices[0].finish_reason == "stop"
    assert {chunk.id for chunk in chunks} == {chunks[0].id}


def test_openai_chat_stream_without_include_usage_carries_no_usage(openai_server):
    with openai_server.client() as client:
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)


def test_openai_async_chat_plain_and_streamed(tuned_openai):
    async def run() -> tuple[Any, list[Any]]:
        async with tuned_openai.async_client() as client:
            plain = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=USER, stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
            return plain, [chunk async for chunk in stream]

    plain, chunks = asyncio.run(run())
    assert plain.choices[0].message.content == REPLY
    assert _usage_of(plain.usage) == _openai_usage(tuned_openai)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert _usage_of(chunks[-1].usage) == _openai_usage(tuned_openai)


def test_openai_chat_stream_helper_gives_the_final_completion(tuned_openai):
    with tuned_openai.client() as client:
        with client.chat.completions.stream(
            model="gpt-4o-mini", messages=USER, stream_options={"include_usage": True}
        ) as stream:
            deltas = [e.delta for e in stream if e.type == "content.delta"]
            final = stream.get_final_completion()
    assert "".join(deltas) == REPLY
    assert final.choices[0].message.content == REPLY
    assert _usage_of(final.usage) == _openai_usage(tuned_openai)


def test_stream_deltas_reach_the_client_as_they_are_sent(openai_server):
    openai_server.chunk_delay = 0.15  # before each of the 5 deltas
    with openai_server.client() as client:
        arrivals = [
            time.monotonic()
            for chunk in client.chat.completions.create(model="m", messages=USER, stream=True)
            if chunk.choices and chunk.choices[0].delta.content
        ]
    assert len(arrivals) == 5
    # A buffered body would deliver every delta at once; sleeps only set a lower bound.
    assert arrivals[-1] - arrivals[0] >= 4 * 0.15 * 0.9


# -- OpenAI: embeddings, responses, legacy completions ---------------------------------------------


def test_openai_embeddings_are_deterministic_in_either_encoding_with_usage(openai_server):
    with openai_server.client() as client:
        default = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        floats = client.embeddings.create(
            model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
        )
        sized = client.embeddings.create(model="text-embedding-3-small", input="a", dimensions=3)

    # The SDK asks for base64 unless told otherwise and decodes it: both give the same vectors.
    assert openai_server.requests[0].body["encoding_format"] == "base64"
    for decoded, plain in zip(default.data, floats.data, strict=True):
        assert decoded.embedding == pytest.approx(plain.embedding, rel=1e-6)
    assert default.data[0].embedding != default.data[1].embedding
    assert len(default.data[0].embedding) == 8
    assert len(sized.data[0].embedding) == 3
    assert default.usage.prompt_tokens == default.usage.total_tokens == openai_server.input_tokens
    assert default.model == "text-embedding-3-small"


def test_openai_responses_plain_answer_with_usage(tuned_openai):
    with tuned_openai.client() as client:
        response = client.responses.create(model="gpt-4o-mini", input="Refunds?")

    assert response.output_text == REPLY
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.model == "gpt-4o-mini-2024-07-18"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (31, 7, 38)
    assert usage.input_tokens_details.cached_tokens == 11
    assert usage.output_tokens_details.reasoning_tokens == 3


def test_openai_responses_stream_sends_deltas_then_completed_with_usage(tuned_openai):
    with tuned_openai.client() as client:
        events = list(client.responses.create(model="gpt-4o-mini", input="Refunds?", stream=True))

    types = [event.type for event in events]
    assert types[:4] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
    ]  # fmt: skip
    assert types[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == REPLY and len(deltas) > 1
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.output_text == REPLY
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (31, 7)
    assert events[0].response.usage is None


def test_openai_legacy_completions_plain_and_streamed(tuned_openai):
    with tuned_openai.client() as client:
        plain = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Refunds?")
        chunks = list(
            client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt="Refunds?", stream=True,
                stream_options={"include_usage": True},
            )
        )  # fmt: skip

    assert plain.choices[0].text == REPLY
    assert plain.choices[0].finish_reason == "stop"
    assert _usage_of(plain.usage) == _openai_usage(tuned_openai)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == REPLY
    assert chunks[-1].choices == []
    assert _usage_of(chunks[-1].usage) == _openai_usage(tuned_openai)


# -- Anthropic -------------------------------------------------------------------------------------


@pytest.fixture
def tuned_anthropic() -> Any:
    with AnthropicServer(
        reply=REPLY, input_tokens=23, output_tokens=9, cached_tokens=4,
        served_model="claude-sonnet-4-5-20250929",
    ) as server:  # fmt: skip
        yield server


def test_anthropic_create_answers_with_the_configured_reply_and_usage(tuned_anthropic):
    with tuned_anthropic.client() as client:
        message = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)

    assert [block.text for block in message.content] == [REPLY]
    assert message.stop_reason == "end_turn"
    assert message.model == "claude-sonnet-4-5-20250929"
    assert message.id.startswith("msg_")
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (23, 9, 4)


def test_anthropic_create_stream_sends_the_real_event_sequence(tuned_anthropic):
    with tuned_anthropic.client() as client:
        events = list(
            client.messages.create(
                model="claude-sonnet-4-5", max_tokens=64, messages=USER, stream=True
            )
        )

    types = [event.type for event in events]
    n_deltas = types.count("content_block_delta")
    assert types == [
        "message_start", "content_block_start",
        *["content_block_delta"] * n_deltas,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert n_deltas > 1
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == REPLY
    assert events[0].message.usage.input_tokens == 23
    assert events[-2].usage.output_tokens == 9  # cumulative, as the real API reports it
    assert events[-2].delta.stop_reason == "end_turn"


def test_anthropic_stream_helper_gives_text_and_final_usage(tuned_anthropic):
    with tuned_anthropic.client() as client:
        with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=USER
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()

    assert text == REPLY
    assert final.content[0].text == REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (23, 9)
    assert final.stop_reason == "end_turn"


def test_anthropic_async_create_stream_and_helper(tuned_anthropic):
    async def run() -> tuple[Any, list[Any], Any]:
        async with tuned_anthropic.async_client() as client:
            plain = await client.messages.create(
                model="claude-sonnet-4-5", max_tokens=64, messages=USER
            )
            stream = await client.messages.create(
                model="claude-sonnet-4-5", max_tokens=64, messages=USER, stream=True
            )
            events = [event async for event in stream]
            async with client.messages.stream(
                model="claude-sonnet-4-5", max_tokens=64, messages=USER
            ) as helper:
                async for _ in helper.text_stream:
                    pass
                final = await helper.get_final_message()
            return plain, events, final

    plain, events, final = asyncio.run(run())
    assert plain.content[0].text == REPLY
    assert [e.type for e in events][-2:] == ["message_delta", "message_stop"]
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (23, 9)


def test_anthropic_message_delta_can_repeat_the_full_usage(tuned_anthropic):
    tuned_anthropic.full_delta_usage = True
    with tuned_anthropic.client() as client:
        events = list(client.messages.create(model="m", max_tokens=64, messages=USER, stream=True))
    delta = next(e for e in events if e.type == "message_delta")
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == (23, 9)
    assert delta.usage.cache_read_input_tokens == 4


# -- failures --------------------------------------------------------------------------------------


def test_a_simulated_error_status_surfaces_as_the_sdks_typed_exception(
    openai_server, anthropic_server
):
    openai_server.fail(429, times=1)
    anthropic_server.fail(529, times=1)
    with openai_server.client() as oai, anthropic_server.client() as claude:
        with pytest.raises(openai.RateLimitError) as oai_error:
            oai.chat.completions.create(model="m", messages=USER)
        with pytest.raises(anthropic.OverloadedError) as claude_error:
            claude.messages.create(model="m", max_tokens=8, messages=USER)
        # times=1: the next request is answered again.
        assert oai.chat.completions.create(model="m", messages=USER).choices
        assert claude.messages.create(model="m", max_tokens=8, messages=USER).content

    assert oai_error.value.status_code == 429
    assert oai_error.value.body["type"] == "rate_limit_error"
    assert oai_error.value.request_id
    assert claude_error.value.status_code == 529
    assert claude_error.value.body["error"]["type"] == "overloaded_error"
    assert len(openai_server.requests) == len(anthropic_server.requests) == 2  # no retries


@pytest.mark.parametrize("status, error", [(400, openai.BadRequestError),
                                           (500, openai.InternalServerError)])  # fmt: skip
def test_openai_fail_until_recover(openai_server, status, error):
    openai_server.fail(status, message="simulated")
    with openai_server.client() as client:
        for _ in range(2):
            with pytest.raises(error, match="simulated"):
                client.chat.completions.create(model="m", messages=USER)
        openai_server.recover()
        assert client.chat.completions.create(model="m", messages=USER).choices


def test_a_wrong_api_key_is_refused_like_the_provider_does(openai_server, anthropic_server):
    with openai.OpenAI(**openai_server.client_kwargs(api_key="sk-wrong")) as client:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="m", messages=USER)
    with anthropic.Anthropic(**anthropic_server.client_kwargs(api_key="sk-wrong")) as client:
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(model="m", max_tokens=8, messages=USER)


def test_a_stream_can_break_mid_way_with_the_providers_error(openai_server, anthropic_server):
    openai_server.stream_error_after = 2
    anthropic_server.stream_error_after = 2
    received: list[str] = []
    with openai_server.client() as client:
        with pytest.raises(openai.APIError, match="while streaming"):
            for chunk in client.chat.completions.create(model="m", messages=USER, stream=True):
                received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert received == openai_server.chunks()[:2]

    received = []
    with anthropic_server.client() as client:
        with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
            with client.messages.stream(model="m", max_tokens=8, messages=USER) as stream:
                received.extend(stream.text_stream)
    assert received == anthropic_server.chunks()[:2]


# -- the request record ----------------------------------------------------------------------------


def test_every_request_is_recorded_with_path_headers_and_parsed_body(
    openai_server, anthropic_server
):
    with openai_server.client() as oai, anthropic_server.client() as claude:
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0.2)
        oai.embeddings.create(model="text-embedding-3-small", input="a")
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=USER)

    chat, embed = openai_server.requests
    assert (chat.method, chat.path) == ("POST", "/v1/chat/completions")
    assert chat.body == {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.2}
    assert chat.headers["authorization"] == f"Bearer {openai_server.api_key}"
    assert embed.path == "/v1/embeddings"
    [message] = anthropic_server.requests
    assert message.path == "/v1/messages"
    assert message.body["max_tokens"] == 8
    # anthropic 2.x sends the key as a bearer token, not x-api-key: a redactor must know both.
    assert anthropic_server.api_key in (
        message.headers.get("x-api-key"), message.headers["authorization"].removeprefix("Bearer ")
    )  # fmt: skip
    # The key travels in the header only: a test can assert it shows up nowhere else.
    for request in [chat, embed, message]:
        assert openai_server.api_key.encode() not in request.raw
        assert anthropic_server.api_key.encode() not in request.raw
    assert openai_server.wait_for_requests(2) == [chat, embed]
    openai_server.clear()
    assert openai_server.requests == []


def test_an_unknown_path_is_the_providers_404(openai_server):
    with openai_server.client() as client:
        with pytest.raises(openai.NotFoundError):
            client.models.list()
    assert openai_server.requests[0].path == "/v1/models"


# -- Phoenix ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_phoenix_receives_an_llm_span_over_otlp_http_and_serves_it_over_rest(
    phoenix: PhoenixServer,
):
    project = f"infra-smoke-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": project}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=phoenix.otlp_http_endpoint, timeout=10))
    )
    attributes: dict[str, Any] = {
        "openinference.span.kind": "LLM",
        "llm.token_count.prompt": 12,
        "llm.token_count.completion": 5,
        "session.id": "s1",
    }
    tracer = provider.get_tracer("infra-smoke")
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes=attributes) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()

    [received] = phoenix.wait_for_spans(project, count=1, timeout=60)
    print("Phoenix REST span:", json.dumps(received, indent=2))
    assert received["name"] == "chat gpt-4o-mini"
    assert received["context"]["trace_id"] == trace_id
    assert received["span_kind"] == "LLM"
    assert received["attributes"]["llm.token_count.prompt"] == 12
    assert received["attributes"]["llm.token_count.completion"] == 5
    assert received["attributes"]["session.id"] == "s1"
    # The endpoint's own filters work too: by kind and by attribute.
    assert phoenix.spans(project, span_kind=["LLM"], attribute=["session.id:s1"]) == [received]
    assert phoenix.spans(project, span_kind=["CHAIN"]) == []
