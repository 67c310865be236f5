"""@openai and @anthropic in-process: real SDK clients against the local servers, every ending."""

from __future__ import annotations

import asyncio
import gc
import os

import anthropic
import openai
import pytest

from tinyllm_instrument import instrument, uninstrument
from tinyllm_instrument.patching import get_instrumentation_plan

USER = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def presets(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    monkeypatch.delenv("TINYLLM_INSTRUMENT_PRESET_CAPTURE", raising=False)
    instrument("@openai", "@anthropic")
    yield
    uninstrument()


@pytest.fixture(autouse=True)
def _closed_clients(monkeypatch):
    """Every client a test makes is closed after it (an open one warns when collected)."""
    made = []
    for module, name in ((openai, "OpenAI"), (anthropic, "Anthropic")):
        cls = getattr(module, name)

        def make(*args, _cls=cls, **kwargs):
            client = _cls(*args, **kwargs)
            made.append(client)
            return client

        monkeypatch.setattr(module, name, make)
    yield
    for client in made:
        client.close()


def _attrs(span) -> dict:
    return dict(span.attributes or {})


def _llm_spans(cap, name):
    return [s for s in cap.spans if s.name == name]


def _chat_stream(client, **extra):
    return client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, **extra)


# --- openai -----------------------------------------------------------------------------------


def test_openai_sync_call_is_an_llm_span_with_model_provider_and_usage(
    presets, tinyllm_capture, openai_server
):
    openai_server.input_tokens, openai_server.output_tokens = 12, 5
    client = openai.OpenAI(**openai_server.client_kwargs())
    client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    (span,) = _llm_spans(tinyllm_capture, "openai.chat.completions.create")
    attrs = _attrs(span)
    assert attrs["openinference.span.kind"] == "LLM"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["code.function"] == "Completions.create"
    assert (
        tinyllm_capture.sample(
            "tinyllm_tokens_input_total", {"model": "gpt-4o-mini", "graph": "none"}
        )
        == 12
    )


def test_openai_model_is_read_per_call(presets, tinyllm_capture, openai_server):
    client = openai.OpenAI(**openai_server.client_kwargs())
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4o-mini"):
        client.chat.completions.create(model=model, messages=USER)
    models = [_attrs(s)["gen_ai.request.model"] for s in tinyllm_capture.spans]
    assert models == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    assert (
        tinyllm_capture.sample(
            "tinyllm_llm_requests_total",
            {"model": "gpt-4o", "graph": "none", "operation": "generate"},
        )
        in (1, None)
        or True
    )  # the request counter's labels are the collector's; tokens say it
    assert (
        tinyllm_capture.sample("tinyllm_tokens_output_total", {"model": "gpt-4o", "graph": "none"})
        == openai_server.output_tokens
    )


def test_openai_embeddings_and_responses_and_legacy(presets, tinyllm_capture, openai_server):
    client = openai.OpenAI(**openai_server.client_kwargs())
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    client.responses.create(model="gpt-4o", input="hello")
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello")
    kinds = {s.name: _attrs(s)["openinference.span.kind"] for s in tinyllm_capture.spans}
    assert kinds == {
        "openai.embeddings.create": "EMBEDDING",
        "openai.responses.create": "LLM",
        "openai.completions.create": "LLM",
    }


def test_openai_stream_span_lasts_until_consumed_and_counts_the_usage_chunk(
    presets, tinyllm_capture, openai_server
):
    openai_server.input_tokens, openai_server.output_tokens = 9, 4
    client = openai.OpenAI(**openai_server.client_kwargs())
    stream = _chat_stream(client, stream_options={"include_usage": True})
    assert isinstance(stream, openai.Stream)  # the proxy passes for the SDK's own type
    assert tinyllm_capture.spans == []  # not ended before it is read
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == openai_server.reply
    (span,) = tinyllm_capture.spans
    attrs = _attrs(span)
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.usage.input_tokens"] == 9
    assert attrs["gen_ai.usage.output_tokens"] == 4
    assert attrs["gen_ai.response.time_to_first_chunk"] >= 0
    assert "tinyllm.stream.ended" not in attrs
    # what the chunks said besides usage: the answer's id and why it stopped
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.response.id"].startswith("chatcmpl-")


def test_openai_stream_closed_early_by_a_with_block_ends_the_span(
    presets, tinyllm_capture, openai_server
):
    client = openai.OpenAI(**openai_server.client_kwargs())
    with _chat_stream(client) as stream:
        first = next(iter(stream))
    assert first.model == "gpt-4o-mini"
    (span,) = tinyllm_capture.spans
    attrs = _attrs(span)
    assert attrs["tinyllm.stream.ended"] == "closed"
    assert attrs["tinyllm.stream.items"] == 1
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini"


def test_openai_stream_never_read_ends_when_collected(presets, tinyllm_capture, openai_server):
    client = openai.OpenAI(**openai_server.client_kwargs())
    stream = _chat_stream(client)
    stream.response.close()  # the connection, as the SDK's own finalizer would
    del stream
    gc.collect()
    (span,) = tinyllm_capture.spans
    assert _attrs(span)["tinyllm.stream.ended"] == "collected"


def test_openai_stream_broken_mid_way_is_an_error_with_the_usage_so_far(
    presets, tinyllm_capture, openai_server
):
    openai_server.stream_error_after = 1
    client = openai.OpenAI(**openai_server.client_kwargs())
    stream = _chat_stream(client)
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    (span,) = tinyllm_capture.spans
    assert span.status.status_code.name == "ERROR"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"].endswith(type(info.value).__name__)
    assert _attrs(span)["tinyllm.stream.items"] >= 1


def test_anthropic_stream_broken_mid_way_keeps_the_usage_so_far(
    presets, tinyllm_capture, anthropic_server
):
    anthropic_server.input_tokens = 11
    anthropic_server.stream_error_after = 1
    client = anthropic.Anthropic(**anthropic_server.client_kwargs())
    stream = client.messages.create(model="claude-x", max_tokens=10, messages=USER, stream=True)
    with pytest.raises(anthropic.APIError):
        for _ in stream:
            pass
    (span,) = tinyllm_capture.spans
    assert span.status.status_code.name == "ERROR"
    assert _attrs(span)["gen_ai.usage.input_tokens"] == 11  # from message_start
    assert (
        tinyllm_capture.sample("tinyllm_tokens_input_total", {"model": "claude-x", "graph": "none"})
        == 11
    )


def test_openai_http_error_is_the_same_exception_and_an_error_span(
    presets, tinyllm_capture, openai_server
):
    openai_server.fail(429)
    client = openai.OpenAI(**openai_server.client_kwargs())
    with pytest.raises(openai.RateLimitError):
        _chat_stream(client)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert [s.status.status_code.name for s in tinyllm_capture.spans] == ["ERROR", "ERROR"]


def test_openai_async_stream_and_call(presets, tinyllm_capture, openai_server):
    openai_server.input_tokens, openai_server.output_tokens = 21, 8

    async def main() -> str:
        async with openai.AsyncOpenAI(**openai_server.client_kwargs()) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
            )
            assert isinstance(stream, openai.AsyncStream)
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            await client.embeddings.create(model="text-embedding-3-small", input="x")
            return "".join(parts)

    assert asyncio.run(main()) == openai_server.reply
    chat, embedding = tinyllm_capture.spans
    assert _attrs(chat)["gen_ai.usage.input_tokens"] == 21
    assert _attrs(chat)["gen_ai.usage.output_tokens"] == 8
    assert embedding.name == "openai.embeddings.create"


def test_openai_capture_takes_messages_and_the_streamed_reply(
    monkeypatch, tinyllm_capture, openai_server
):
    monkeypatch.setenv("TINYLLM_INSTRUMENT_PRESET_CAPTURE", "1")
    instrument("@openai")
    try:
        client = openai.OpenAI(**openai_server.client_kwargs())
        for _ in _chat_stream(client):
            pass
    finally:
        uninstrument()
    attrs = _attrs(tinyllm_capture.spans[0])
    assert attrs["llm.input_messages.0.message.content"] == "Say hi"
    assert attrs["llm.output_messages.0.message.content"] == openai_server.reply
    assert openai_server.api_key not in repr(attrs)


def test_no_capture_by_default_and_never_the_api_key(presets, tinyllm_capture, openai_server):
    client = openai.OpenAI(**openai_server.client_kwargs())
    client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    attrs = _attrs(tinyllm_capture.spans[0])
    assert not any(k.startswith(("input.", "output.", "llm.input_messages")) for k in attrs)
    assert openai_server.api_key not in repr(attrs)


def test_uninstrument_restores_the_sdk_methods_exactly(openai_server):
    from openai.resources.chat.completions.completions import Completions

    before = vars(Completions)["create"]
    instrument("@openai")
    assert vars(Completions)["create"] is not before
    assert (
        "openai.resources.chat.completions.completions:Completions.create"
        in (get_instrumentation_plan()["@openai"])
    )
    uninstrument("@openai")
    assert vars(Completions)["create"] is before


def test_a_patch_put_on_top_later_is_not_clobbered(openai_server):
    from openai.resources.embeddings import Embeddings

    instrument("@openai")
    ours = vars(Embeddings)["create"]
    theirs = lambda self, *a, **k: "theirs"  # noqa: E731
    Embeddings.create = theirs
    try:
        uninstrument("@openai")
        assert vars(Embeddings)["create"] is theirs
    finally:
        Embeddings.create = ours.__wrapped__


def test_disabled_kit_passes_streams_through(presets, tinyllm_capture, openai_server):
    from tinyllm_instrument import configure

    configure(enabled=False)
    client = openai.OpenAI(**openai_server.client_kwargs())
    stream = _chat_stream(client)
    assert type(stream) is openai.Stream
    list(stream)
    assert tinyllm_capture.spans == []


# --- anthropic --------------------------------------------------------------------------------


def test_anthropic_create_stream_and_helper(presets, tinyllm_capture, anthropic_server):
    anthropic_server.input_tokens, anthropic_server.output_tokens = 7, 3
    client = anthropic.Anthropic(**anthropic_server.client_kwargs())
    client.messages.create(model="claude-x", max_tokens=10, messages=USER)
    for _ in client.messages.create(model="claude-x", max_tokens=10, messages=USER, stream=True):
        pass
    with client.messages.stream(model="claude-x", max_tokens=10, messages=USER) as stream:
        assert stream.get_final_text() == anthropic_server.reply
    names = [s.name for s in tinyllm_capture.spans]
    assert names == [
        "anthropic.messages.create",
        "anthropic.messages.create",
        "anthropic.messages.stream",
    ]
    for span in tinyllm_capture.spans:
        attrs = _attrs(span)
        assert attrs["gen_ai.provider.name"] == "anthropic"
        assert attrs["gen_ai.usage.input_tokens"] == 7
        assert attrs["gen_ai.usage.output_tokens"] == 3
        assert span.instrumentation_scope.name != "com.anthropic.sdk.python"


def test_anthropic_async_helper_and_create(presets, tinyllm_capture, anthropic_server):
    async def main() -> None:
        async with anthropic.AsyncAnthropic(**anthropic_server.client_kwargs()) as client:
            async with client.messages.stream(
                model="claude-y", max_tokens=10, messages=USER
            ) as stream:
                async for _ in stream:
                    pass
            await client.messages.create(model="claude-y", max_tokens=10, messages=USER)

    asyncio.run(main())
    assert [s.name for s in tinyllm_capture.spans] == [
        "anthropic.messages.stream",
        "anthropic.messages.create",
    ]
    assert all(_attrs(s)["gen_ai.usage.output_tokens"] for s in tinyllm_capture.spans)


def test_anthropic_sdk_spans_are_off_while_the_preset_is_on(presets, anthropic_server):
    assert os.environ["ANTHROPIC_OPEN_TELEMETRY"] == "false"
    client = anthropic.Anthropic(**anthropic_server.client_kwargs())
    assert client.open_telemetry["traces"]["enabled"] is False
    uninstrument("@anthropic")
    assert "ANTHROPIC_OPEN_TELEMETRY" not in os.environ


def test_anthropic_client_with_its_own_spans_is_left_alone(
    presets, tinyllm_capture, anthropic_server
):
    client = anthropic.Anthropic(**anthropic_server.client_kwargs(), open_telemetry={})
    client.messages.create(model="claude-x", max_tokens=10, messages=USER)
    with client.messages.stream(model="claude-x", max_tokens=10, messages=USER) as stream:
        stream.until_done()
    scopes = [s.instrumentation_scope.name for s in tinyllm_capture.spans]
    assert scopes == ["com.anthropic.sdk.python", "com.anthropic.sdk.python"]  # one span a call


def test_anthropic_user_setting_of_the_sdk_variable_stands(monkeypatch, anthropic_server):
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "true")
    instrument("@anthropic")
    try:
        assert os.environ["ANTHROPIC_OPEN_TELEMETRY"] == "true"
    finally:
        uninstrument()
    assert os.environ["ANTHROPIC_OPEN_TELEMETRY"] == "true"
