"""Usage from streams: OpenAI chat chunks and Responses events, Anthropic events, any usage.

Each stream is driven as the llm node wrapper will drive it: every yielded item goes to the
accumulator, and the result is taken in a ``finally`` when the stream ends, fails or is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import anthropic.types as anthropic_types
import openai.types.chat as openai_chat
import openai.types.responses as openai_responses
import pytest

from tinyllm_instrument.genai import LLMResult, StreamAccumulator
from tinyllm_instrument.metrics import get_metrics_collector


def chunk(**fields: Any) -> dict[str, Any]:
    base = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    base.update(fields)
    return base


def delta(text: str, finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "delta": {"content": text}, "finish_reason": finish}


OPENAI_CHUNKS = [
    chunk(
        choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    ),
    chunk(choices=[delta("Hel")]),
    chunk(choices=[delta("lo")]),
    chunk(choices=[delta("", "stop")]),
    # stream_options={"include_usage": True}: a last chunk with no choices and the usage
    chunk(
        choices=[],
        usage={
            "prompt_tokens": 17,
            "completion_tokens": 2,
            "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    ),
]

ANTHROPIC_EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_7",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "output_tokens": 1,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 0,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Bon"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "jour"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 6},
    },
    {"type": "message_stop"},
]

OPENAI_STREAM_RESULT = LLMResult(
    provider="openai",
    model="gpt-4o",
    response_id="chatcmpl-9",
    finish_reasons=("stop",),
    input_tokens=17,
    output_tokens=2,
    total_tokens=19,
    cache_read_tokens=0,
)
ANTHROPIC_STREAM_RESULT = LLMResult(
    provider="anthropic",
    model="claude-haiku-4-5",
    response_id="msg_7",
    finish_reasons=("end_turn",),
    input_tokens=125,
    output_tokens=6,
    total_tokens=131,
    cache_read_tokens=100,
    cache_creation_tokens=0,
)


def openai_objects() -> list[Any]:
    return [openai_chat.ChatCompletionChunk.model_validate(c) for c in OPENAI_CHUNKS]


def anthropic_objects() -> list[Any]:
    adapter = {
        "message_start": anthropic_types.RawMessageStartEvent,
        "content_block_start": anthropic_types.RawContentBlockStartEvent,
        "content_block_delta": anthropic_types.RawContentBlockDeltaEvent,
        "content_block_stop": anthropic_types.RawContentBlockStopEvent,
        "message_delta": anthropic_types.RawMessageDeltaEvent,
        "message_stop": anthropic_types.RawMessageStopEvent,
    }
    return [adapter[e["type"]].model_validate(e) for e in ANTHROPIC_EVENTS]


class Recorded:
    result: LLMResult | None = None
    text: str | None = None


def observed(items: Iterable[Any], recorded: Recorded, fail_after: int | None = None) -> Iterator:
    """What an llm generator node's wrapper does: feed each item, take the result at the end."""
    acc = StreamAccumulator(capture_text=True)
    try:
        for n, item in enumerate(items):
            if fail_after is not None and n == fail_after:
                raise ConnectionError("stream dropped")
            acc.add(item)
            yield item
    finally:
        recorded.result = acc.result()
        recorded.text = acc.text


@pytest.mark.parametrize(
    ("items", "expected", "text"),
    [
        (OPENAI_CHUNKS, OPENAI_STREAM_RESULT._replace(provider=None), "Hello"),
        (openai_objects(), OPENAI_STREAM_RESULT, "Hello"),
        (ANTHROPIC_EVENTS, ANTHROPIC_STREAM_RESULT._replace(provider=None), "Bonjour"),
        (anthropic_objects(), ANTHROPIC_STREAM_RESULT, "Bonjour"),
    ],
    ids=["openai-dicts", "openai-sdk", "anthropic-dicts", "anthropic-sdk"],
)
def test_a_complete_stream(items, expected, text):
    recorded = Recorded()
    assert list(observed(items, recorded)) == list(items)
    assert recorded.result == expected
    assert recorded.text == text


@pytest.mark.parametrize(
    ("items", "seen"),
    [(openai_objects(), 3), (anthropic_objects(), 4)],
    ids=["openai", "anthropic"],
)
def test_a_stream_that_fails_midway_keeps_what_was_seen(items, seen):
    recorded = Recorded()
    with pytest.raises(ConnectionError):
        list(observed(items, recorded, fail_after=seen))
    result = recorded.result
    assert result is not None
    assert result.model is not None and result.response_id is not None
    assert result.output_tokens is None or result.output_tokens <= 1  # the final count never came


def test_an_anthropic_stream_closed_early_keeps_the_input_tokens():
    recorded = Recorded()
    stream = observed(anthropic_objects(), recorded)
    next(stream)  # message_start
    next(stream)
    stream.close()  # the consumer stopped reading
    assert recorded.result.input_tokens == 125
    assert recorded.result.output_tokens == 1  # what message_start said so far
    assert recorded.result.finish_reasons == ()


def test_an_openai_stream_closed_before_the_usage_chunk_has_no_tokens_but_its_model():
    recorded = Recorded()
    stream = observed(openai_objects(), recorded)
    for _ in range(2):
        next(stream)
    stream.close()
    assert recorded.result.model == "gpt-4o"
    assert not recorded.result.has_usage
    assert recorded.text == "Hel"


def test_responses_api_stream_events():
    response = {
        "id": "resp_5",
        "object": "response",
        "created_at": 1.0,
        "model": "gpt-4.1",
        "output": [],
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "status": "in_progress",
    }
    done = dict(
        response,
        status="completed",
        usage={
            "input_tokens": 30,
            "output_tokens": 5,
            "total_tokens": 35,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    )
    events = [
        openai_responses.ResponseCreatedEvent.model_validate(
            {"type": "response.created", "sequence_number": 0, "response": response}
        ),
        openai_responses.ResponseTextDeltaEvent.model_validate(
            {
                "type": "response.output_text.delta",
                "sequence_number": 1,
                "item_id": "m",
                "output_index": 0,
                "content_index": 0,
                "delta": "Salut",
                "logprobs": [],
            }
        ),
        openai_responses.ResponseCompletedEvent.model_validate(
            {"type": "response.completed", "sequence_number": 2, "response": done}
        ),
    ]
    recorded = Recorded()
    list(observed(events, recorded))
    result = recorded.result
    assert (result.provider, result.model, result.response_id) == ("openai", "gpt-4.1", "resp_5")
    assert (result.input_tokens, result.output_tokens, result.total_tokens) == (30, 5, 35)
    assert recorded.text == "Salut"


def test_any_item_with_a_usage_attribute_or_key():
    class Part:
        def __init__(self, text: str, usage: Any = None) -> None:
            self.text = text
            self.usage = usage

    acc = StreamAccumulator()
    for item in (Part("a"), Part("b"), {"usage": {"input_tokens": 4, "output_tokens": 2}}):
        acc.add(item)
    assert (acc.result().input_tokens, acc.result().output_tokens) == (4, 2)
    acc.add(Part("c", usage={"input_tokens": 4, "output_tokens": 3}))  # a later report wins
    assert acc.result().output_tokens == 3


def test_plain_items_and_no_usage_say_nothing():
    acc = StreamAccumulator()
    for item in ("tok", b"x", 3, None, [1], ("a", "b"), 2.5):
        acc.add(item)
    assert acc.result() is None
    assert acc.text is None  # text is gathered only when asked for


def test_a_stream_of_plain_strings_is_the_reply_text_when_asked():
    acc = StreamAccumulator(capture_text=True)
    for token in ("The ", "answer ", "is ", "42"):
        acc.add(token)
    assert acc.text == "The answer is 42"
    assert acc.result() is None


def test_gathered_text_is_bounded():
    acc = StreamAccumulator(capture_text=True, text_bytes=100)
    for _ in range(10_000):
        acc.add("x" * 10)
    assert 100 <= len(acc.text) <= 100 + 256  # the budget plus the redaction margin


def test_multiple_choices_keep_their_finish_reasons_in_order():
    acc = StreamAccumulator()
    acc.add(chunk(choices=[delta("", "length", index=1)]))
    acc.add(chunk(choices=[delta("", "stop", index=0)]))
    assert acc.result().finish_reasons == ("stop", "length")


def test_groq_reports_stream_usage_in_x_groq():
    acc = StreamAccumulator()
    acc.add(
        chunk(
            choices=[delta("", "stop")],
            x_groq={
                "id": "req",
                "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
            },
        )
    )
    assert acc.result().total_tokens == 10


def test_malformed_usage_in_a_stream_is_counted_and_skipped():
    acc = StreamAccumulator()
    registry = get_metrics_collector().registry
    key = ("tinyllm_instrumentation_errors_total", {"stage": "usage"})
    before = registry.get_sample_value(*key) or 0.0
    acc.add(chunk(choices=[], usage={"prompt_tokens": -5, "completion_tokens": 2}))
    result = acc.result()
    assert (result.input_tokens, result.output_tokens) == (None, 2)
    assert registry.get_sample_value(*key) == before + 1


def test_an_item_whose_fields_raise_is_skipped_and_counted():
    class Hostile:
        @property
        def type(self):
            raise RuntimeError("boom")

    acc = StreamAccumulator()
    registry = get_metrics_collector().registry
    key = ("tinyllm_instrumentation_errors_total", {"stage": "usage"})
    before = registry.get_sample_value(*key) or 0.0
    acc.add(Hostile())
    acc.add({"usage": {"input_tokens": 1, "output_tokens": 1}})
    assert acc.result().total_tokens == 2
    assert registry.get_sample_value(*key) == before + 1


async def _agen(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        await asyncio.sleep(0)
        yield item


def test_an_async_stream_closed_early():
    async def main() -> Recorded:
        recorded = Recorded()
        acc = StreamAccumulator()

        async def node() -> AsyncIterator[Any]:
            try:
                async for item in _agen(anthropic_objects()):
                    acc.add(item)
                    yield item
            finally:
                recorded.result = acc.result()

        stream = node()
        async for item in stream:
            if item.type == "content_block_delta":
                break
        await stream.aclose()
        return recorded

    recorded = asyncio.run(main())
    assert recorded.result.input_tokens == 125 and recorded.result.provider == "anthropic"
