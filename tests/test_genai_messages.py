"""llm.input_messages / llm.output_messages from OpenAI- and Anthropic-shaped calls and replies."""

from __future__ import annotations

import json
from typing import Any

import anthropic.types as anthropic_types
import openai.types.chat as openai_chat
import openai.types.responses as openai_responses
import pytest

from tinyllm_instrument.genai import input_message_attributes, output_message_attributes
from tinyllm_instrument.redaction import reset_redaction

IN = "llm.input_messages"
OUT = "llm.output_messages"


@pytest.fixture(autouse=True)
def _default_redaction():
    reset_redaction()
    yield
    reset_redaction()


def msg(attrs: dict[str, Any], prefix: str, i: int, field: str) -> Any:
    return attrs.get(f"{prefix}.{i}.message.{field}")


def test_openai_messages_with_string_and_part_contents():
    attrs = input_message_attributes(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                        {"type": "text", "text": "this picture?"},
                    ],
                },
            ],
        }
    )
    assert attrs == {
        f"{IN}.0.message.role": "system",
        f"{IN}.0.message.content": "Be brief.",
        f"{IN}.1.message.role": "user",
        f"{IN}.1.message.content": "What is in\n[image_url]\nthis picture?",
    }


def test_openai_assistant_tool_calls_and_tool_results():
    attrs = input_message_attributes(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "rainy, 14C"},
            ]
        }
    )
    call = f"{IN}.1.message.tool_calls.0.tool_call"
    assert attrs[f"{call}.id"] == "call_1"
    assert attrs[f"{call}.function.name"] == "get_weather"
    assert json.loads(attrs[f"{call}.function.arguments"]) == {"city": "Paris"}
    assert f"{IN}.1.message.content" not in attrs
    assert msg(attrs, IN, 2, "content") == "rainy, 14C"


def test_anthropic_system_and_content_blocks():
    attrs = input_message_attributes(
        {
            "system": [{"type": "text", "text": "You are terse."}],
            "messages": [
                {"role": "user", "content": "Search for cats"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Searching."},
                        {
                            "type": "tool_use",
                            "id": "tu_1",
                            "name": "search",
                            "input": {"q": "cats"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "tu_1", "content": "3 hits"}
                    ],
                },
            ],
        }
    )
    assert (msg(attrs, IN, 0, "role"), msg(attrs, IN, 0, "content")) == ("system", "You are terse.")
    assert msg(attrs, IN, 2, "content") == "Searching."
    call = f"{IN}.2.message.tool_calls.0.tool_call"
    assert attrs[f"{call}.function.name"] == "search"
    assert json.loads(attrs[f"{call}.function.arguments"]) == {"q": "cats"}
    assert msg(attrs, IN, 3, "content") == "3 hits"


def test_responses_api_instructions_and_input():
    attrs = input_message_attributes({"instructions": "Answer in French.", "input": "Hello"})
    assert [msg(attrs, IN, i, "role") for i in range(2)] == ["system", "user"]
    assert msg(attrs, IN, 1, "content") == "Hello"
    items = input_message_attributes(
        {
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"type": "function_call_output", "call_id": "c", "output": "42"},
            ]
        }
    )
    assert msg(items, IN, 0, "content") == "Hi"
    assert msg(items, IN, 1, "role") is None  # not a message


def test_no_messages_no_attributes():
    assert input_message_attributes({"prompt": "hi"}) == {}
    assert input_message_attributes({"messages": "not a list"}) == {}


def test_bounded_first_n_per_content_and_in_total():
    messages = [{"role": "user", "content": f"m{i} " + "x" * 5000} for i in range(100)]
    attrs = input_message_attributes(
        {"messages": messages}, max_messages=10, content_bytes=1000, total_bytes=3000
    )
    roles = [k for k in attrs if k.endswith(".role")]
    assert len(roles) == 10  # the first 10 messages
    contents = [v for k, v in attrs.items() if k.endswith(".content")]
    assert all(len(v.encode()) <= 1000 for v in contents)
    assert sum(len(v.encode()) for v in contents) <= 3000
    assert contents[0].startswith("m0 ") and contents[0].endswith("...[truncated]")


def test_contents_and_arguments_are_redacted():
    attrs = input_message_attributes(
        {
            "messages": [
                {"role": "user", "content": "my key is sk-ant-api03-abcdefghijklmnop"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "function": {"name": "login", "arguments": '{"password": "pw1"}'},
                        }
                    ],
                },
            ]
        }
    )
    assert msg(attrs, IN, 0, "content") == "my key is [REDACTED]"
    args = attrs[f"{IN}.1.message.tool_calls.0.tool_call.function.arguments"]
    assert "pw1" not in args


# --------------------------------------------------------------------------------------------
# The reply
# --------------------------------------------------------------------------------------------


def test_openai_chat_completion_reply():
    completion = openai_chat.ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "Let me check.",
                        "tool_calls": [
                            {
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": "{}"},
                            }
                        ],
                    },
                }
            ],
        }
    )
    attrs = output_message_attributes(completion)
    assert (msg(attrs, OUT, 0, "role"), msg(attrs, OUT, 0, "content")) == (
        "assistant",
        "Let me check.",
    )
    assert attrs[f"{OUT}.0.message.tool_calls.0.tool_call.function.name"] == "lookup"


def test_anthropic_message_reply():
    message = anthropic_types.Message.model_validate(
        {
            "id": "msg",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [
                {"type": "text", "text": "Part one."},
                {"type": "tool_use", "id": "tu", "name": "search", "input": {"q": "x"}},
                {"type": "text", "text": "Part two."},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )
    attrs = output_message_attributes(message)
    assert msg(attrs, OUT, 0, "content") == "Part one.\nPart two."
    assert attrs[f"{OUT}.0.message.tool_calls.0.tool_call.id"] == "tu"


def test_responses_api_reply():
    response = openai_responses.Response.model_validate(
        {
            "id": "r",
            "object": "response",
            "created_at": 1.0,
            "model": "m",
            "output": [
                {
                    "type": "message",
                    "id": "m1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Voilà", "annotations": []}],
                },
                {
                    "type": "function_call",
                    "id": "f1",
                    "call_id": "call_3",
                    "name": "book",
                    "arguments": '{"n": 2}',
                },
            ],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
        }
    )
    attrs = output_message_attributes(response)
    assert msg(attrs, OUT, 0, "content") == "Voilà"
    assert attrs[f"{OUT}.0.message.tool_calls.0.tool_call.id"] == "call_3"
    assert attrs[f"{OUT}.0.message.tool_calls.0.tool_call.function.name"] == "book"


def test_a_string_result_and_a_streamed_text():
    assert output_message_attributes("The answer.") == {
        f"{OUT}.0.message.role": "assistant",
        f"{OUT}.0.message.content": "The answer.",
    }
    assert msg(output_message_attributes(None, text="streamed"), OUT, 0, "content") == "streamed"
    # a generator node's result is not the reply: the streamed text is
    assert msg(output_message_attributes([1, 2], text="tok tok"), OUT, 0, "content") == "tok tok"


def test_a_reply_is_bounded_and_redacted():
    attrs = output_message_attributes("password=hunter2 " + "y" * 100_000, content_bytes=128)
    content = msg(attrs, OUT, 0, "content")
    assert "hunter2" not in content and len(content.encode()) <= 128


def test_hostile_messages_never_reach_the_caller():
    class Hostile:
        @property
        def role(self):
            raise RuntimeError("boom")

    attrs = input_message_attributes({"messages": [{"role": "user", "content": "ok"}, Hostile()]})
    assert msg(attrs, IN, 0, "content") == "ok"
    assert output_message_attributes(Hostile()) == {}
