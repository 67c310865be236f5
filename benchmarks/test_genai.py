"""What the GenAI building blocks cost per call / per streamed item (pytest-benchmark).

    .venv/bin/python -m pytest -q benchmarks/test_genai.py --benchmark-only

Each runner does ``LOOPS`` units of work, so a figure of a few ns is not lost in the timer's own
cost; ``extra_info["per_call"]`` says so and the table at the end divides by it. ``loop`` (an
empty loop over the same items) is the reference to subtract. The cases a plain node would pay
(a plain result, a plain streamed item, a span start without a session) are the ones that must
stay near it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic.types as anthropic_types
import openai.types.chat as openai_chat
import pytest

from tinyllm_instrument.genai import (
    LLMResult,
    StreamAccumulator,
    genai_prices_pricer,
    make_pricer,
    read_result,
    result_attributes,
    serialize_payload,
    using_attributes,
)
from tinyllm_instrument.genai.sessions import on_start

LOOPS = 1000
#: Cases slower than the rest run fewer units per call.
PER_CALL = {"cost_genai_prices": 50}

CHAT = openai_chat.ChatCompletion.model_validate(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
    }
)
ANTHROPIC = anthropic_types.Message.model_validate(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 8, "cache_read_input_tokens": 100},
    }
)
CHUNK = openai_chat.ChatCompletionChunk.model_validate(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "tok"}, "finish_reason": None}],
    }
)
ANTHROPIC_DELTA = anthropic_types.RawContentBlockDeltaEvent.model_validate(
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "tok"}}
)
INFO = LLMResult(input_tokens=1200, output_tokens=300, total_tokens=1500, model="gpt-4o")


class _Span:
    """The cheapest span: what on_start costs on its own, without the SDK's own work."""

    def set_attributes(self, attributes: Any) -> None:
        pass


def _each(items: list[Any], fn: Callable[[Any], Any]) -> Callable[[], None]:
    def run() -> None:
        for item in items:
            fn(item)

    return run


def _cases() -> dict[str, Callable[[], None]]:
    plain_results: list[Any] = [None, "text", 3, [1, 2], {"answer": 42}] * (LOOPS // 5)
    span = _Span()
    spans = [span] * LOOPS
    acc_plain = StreamAccumulator()
    acc_text = StreamAccumulator(capture_text=True, text_bytes=10**9)
    acc_sdk = StreamAccumulator()
    scope = using_attributes(session_id="s", user_id="u", tags=["a"])
    pricer = make_pricer({"gpt-4o": (2.5, 10.0)})
    genai_prices = genai_prices_pricer()
    assert genai_prices is not None

    def inside_scope() -> None:
        with scope:
            for s in spans:
                on_start(s)

    def enter_exit(_: Any) -> None:
        with scope:
            pass

    return {
        "loop": _each(plain_results, lambda x: x),
        "result_plain": _each(plain_results, read_result),
        "result_chat_completion": _each([CHAT] * LOOPS, read_result),
        "result_anthropic_message": _each([ANTHROPIC] * LOOPS, read_result),
        "result_attributes": _each([INFO] * LOOPS, result_attributes),
        "stream_item_str": _each(["tok"] * LOOPS, acc_plain.add),
        "stream_item_str_text": _each(["tok"] * LOOPS, acc_text.add),
        "stream_item_openai_chunk": _each([CHUNK] * LOOPS, acc_sdk.add),
        "stream_item_anthropic_delta": _each([ANTHROPIC_DELTA] * LOOPS, acc_sdk.add),
        "span_start_no_session": _each(spans, on_start),
        "span_start_in_session": inside_scope,
        "using_attributes_enter_exit": _each(spans, enter_exit),
        "payload_small_dict": _each([{"q": "hello", "k": 3}] * LOOPS, serialize_payload),
        "cost_mapping": _each([INFO] * LOOPS, lambda i: pricer.price("gpt-4o", None, i)),
        "cost_genai_prices": _each(
            [INFO] * PER_CALL["cost_genai_prices"],
            lambda i: genai_prices.price("gpt-4o", "openai", i),
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("genai_case", list(CASES))
def test_genai(benchmark, genai_case: str, bench_round: int) -> None:
    run = CASES[genai_case]
    run()  # warm the per-type caches
    benchmark.group = f"genai r{bench_round}"
    benchmark.extra_info.update(
        genai_case=genai_case, round=bench_round, per_call=PER_CALL.get(genai_case, LOOPS)
    )
    benchmark(run)
