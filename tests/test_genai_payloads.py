"""input.value / output.value: redacted, bounded, always valid JSON, cost bounded by the budget."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections import OrderedDict
from typing import Any

import openai.types.chat as openai_chat
import pytest

from tinyllm_instrument.genai import payload_attributes, serialize_payload
from tinyllm_instrument.genai.payloads import (
    SCAN_MARGIN,
    TRUNCATION_MARKER,
    bounded_text,
    check_budget,
    to_json_safe,
)
from tinyllm_instrument.redaction import configure_redaction, get_redaction_policy, reset_redaction

SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"


@pytest.fixture(autouse=True)
def _default_redaction():
    reset_redaction()
    yield
    reset_redaction()


def test_a_string_is_text_plain_and_redacted():
    assert payload_attributes(f"use {SECRET}", "input") == {
        "input.value": "use [REDACTED]",
        "input.mime_type": "text/plain",
    }


def test_anything_else_is_application_json_and_redacted():
    attrs = payload_attributes({"question": "hi", "api_key": "abc", "n": 3}, "output")
    assert attrs["output.mime_type"] == "application/json"
    assert json.loads(attrs["output.value"]) == {"question": "hi", "api_key": "[REDACTED]", "n": 3}


def test_direction_is_checked():
    with pytest.raises(ValueError, match="use 'input' or 'output'"):
        payload_attributes(1, "inbound")


@pytest.mark.parametrize("budget", [64, 100, 1000, 4096])
@pytest.mark.parametrize(
    "value",
    [
        "x" * 100_000,
        "é" * 50_000,
        '"' * 50_000,
        ["a" * 1000] * 1000,
        {f"k{i}": "v" * 100 for i in range(10_000)},
        list(range(1_000_000)),
        {"nested": [[["\x01" * 5000]]]},
    ],
    ids=["ascii", "utf8", "quotes", "list", "dict", "ints", "control"],
)
def test_every_result_is_within_budget_and_valid(value, budget):
    text, mime = serialize_payload(value, budget)
    assert len(text.encode("utf-8")) <= budget
    if mime == "application/json":
        json.loads(text)
    if len(text.encode("utf-8")) >= budget - 64 or not isinstance(value, str):
        assert TRUNCATION_MARKER in text or len(json.dumps(value)) <= budget


def test_a_secret_across_the_cut_is_redacted_whole():
    # The budget falls inside the secret: the margin lets the pattern see it whole.
    text = "a" * 90 + SECRET + " tail" * 1000
    out = bounded_text(text, 100)
    assert "sk-proj" not in out
    assert out.endswith(TRUNCATION_MARKER)


def test_redaction_never_scans_more_than_the_budget_and_margin(monkeypatch):
    seen: list[int] = []
    policy = get_redaction_policy()
    original = policy.redact_text

    def spy(text: str) -> str:
        seen.append(len(text))
        return original(text)

    monkeypatch.setattr(policy, "redact_text", spy)
    bounded_text("password=" + "x" * 10_000_000, 4096)
    serialize_payload({"doc": "y" * 10_000_000, "more": ["z" * 1_000_000] * 100}, 4096)
    assert seen and max(seen) <= 4096 + SCAN_MARGIN


def test_values_under_sensitive_keys_and_user_patterns_are_redacted():
    configure_redaction(extra_keys=["ssn"], extra_patterns=[r"\b\d{3}-\d{2}-\d{4}\b"])
    value = {"ssn": "123-45-6789", "note": "call 987-65-4321", "Authorization": "Bearer abcdefghij"}
    assert json.loads(serialize_payload(value)[0]) == {
        "ssn": "[REDACTED]",
        "note": "call [REDACTED]",
        "Authorization": "[REDACTED]",
    }


def test_a_key_json_cannot_take_becomes_its_redacted_text_not_an_error():
    value = {("user", SECRET): 1, 2: "two", None: 0, 1.5: "x"}
    text, mime = serialize_payload(value)
    assert mime == "application/json"
    decoded = json.loads(text)
    assert decoded["('user', '[REDACTED]')"] == 1
    assert decoded["2"] == "two"


def test_nan_and_infinity_are_valid_json():
    text, _ = serialize_payload({"a": math.nan, "b": [math.inf, -math.inf]})
    assert json.loads(text) == {"a": "nan", "b": ["inf", "-inf"]}


def test_objects_become_their_redacted_text_never_the_raw_str():
    class Credentials:
        def __str__(self) -> str:
            return f"Credentials(key={SECRET})"

    class Plain:  # default str(): a bounded repr, no secret to show
        pass

    text, _ = serialize_payload({"c": Credentials(), "p": Plain()})
    decoded = json.loads(text)
    assert decoded["c"] == "Credentials(key=[REDACTED])"
    assert decoded["p"].startswith("<") and "Plain" in decoded["p"]
    assert SECRET not in text


def test_an_object_whose_str_raises_or_is_huge():
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    class Huge:
        def __str__(self) -> str:
            return "password=hunter2 " + "x" * 1_000_000

    decoded = json.loads(serialize_payload([Broken(), Huge()], 512)[0])
    assert decoded[0] == "<unprintable Broken>"
    assert "hunter2" not in decoded[1] and decoded[1].endswith(TRUNCATION_MARKER)


def test_a_string_subclass_is_its_characters():
    class Sneaky(str):
        def __str__(self) -> str:
            return "something else"

    assert serialize_payload(Sneaky("password=hunter2")) == ("password=[REDACTED]", "text/plain")


def test_pydantic_models_dataclasses_enums_and_bytes_keep_their_structure():
    @dataclasses.dataclass
    class Query:
        text: str
        top_k: int

    class Color(enum.IntEnum):
        RED = 1

    completion = openai_chat.ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": f"key {SECRET}"},
                }
            ],
        }
    )
    decoded = json.loads(
        serialize_payload(
            {
                "q": Query("paris", 3),
                "c": Color.RED,
                "b": b"password=hunter2",
                "o": OrderedDict(a=1),
                "r": completion,
            }
        )[0]
    )
    assert decoded["q"] == {"text": "paris", "top_k": 3}
    assert decoded["c"] == 1
    assert decoded["b"] == "password=[REDACTED]"
    assert decoded["o"] == {"a": 1}
    assert decoded["r"]["choices"][0]["message"]["content"] == "key [REDACTED]"


def test_cycles_end_at_a_depth_limit():
    loop: list[Any] = []
    loop.append(loop)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    for value in (loop, cyclic):
        text, _ = serialize_payload(value)
        assert "too deep" in text
        json.loads(text)


def test_a_mapping_that_fails_while_iterated_keeps_what_was_read():
    class Flaky(dict):
        def items(self):
            yield "a", 1
            raise RuntimeError("gone")

    assert to_json_safe(Flaky()) == {"a": 1, TRUNCATION_MARKER: TRUNCATION_MARKER}


@pytest.mark.parametrize("bad", [0, 63, -1, True, 1.5, "4096", None])
def test_budgets_are_validated(bad):
    with pytest.raises(ValueError, match=r"capture_bytes=.*whole number of bytes >= 64"):
        check_budget(bad, "capture_bytes")
    assert check_budget(64, "capture_bytes") == 64


@pytest.mark.parametrize(
    "value",
    [
        {"text": "x" * 1000, "author": "me"},
        {"a": {"b": {"c": "y" * 5000, "d": 1}, "e": [1, 2]}, "f": "g"},
        [{"page": "z" * 3000}, {"page": "w" * 3000}, {"page": "v"}],
    ],
    ids=["flat", "nested", "list"],
)
def test_a_value_over_budget_stays_structured_json_within_it(value):
    # What a user reads in a trace view: the value's own shape with its long text cut, not a
    # JSON string holding the head of its serialisation.
    text, mime = serialize_payload(value, 256)
    assert mime == "application/json" and len(text.encode()) <= 256
    data = json.loads(text)
    assert type(data) is type(value), text
    assert "...[truncated]" in text


def test_the_short_fields_of_a_mapping_survive_a_long_one_before_them():
    # An LLM call's arguments: the messages are long, the settings after them short; the budget
    # goes to the short ones first, and the key order stays the caller's.
    value = {"messages": [{"role": "user", "content": "x" * 10_000}], "temperature": 0.2,
             "model": "gpt-4o", "note": "n" * 5_000, "top_k": 3}  # fmt: skip
    text, _mime = serialize_payload(value, 512)
    data = json.loads(text)
    assert list(data) == ["messages", "temperature", "model", "note", "top_k"]
    assert (data["temperature"], data["model"], data["top_k"]) == (0.2, "gpt-4o", 3)
    assert len(text.encode()) <= 512 and "...[truncated]" in text
