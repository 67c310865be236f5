"""The vocabulary: our names are the conventions' own, and redaction leaves every one alone."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tinyllm_instrument.genai
from tinyllm_instrument.genai import conventions as c
from tinyllm_instrument.redaction import RedactionPolicy, get_redaction_policy, reset_redaction

semconv = pytest.importorskip(
    "opentelemetry.semconv._incubating.attributes.gen_ai_attributes",
    reason="opentelemetry-semantic-conventions (a dependency of opentelemetry-sdk) is too old",
)
openinference = pytest.importorskip(
    "openinference.semconv.trace",
    reason="openinference-semantic-conventions is in the test extra: pip install -e '.[test]'",
)

# Names the kit writes that neither package defines, each with the reason.
NOT_IN_SEMCONV = {
    c.GEN_AI_USAGE_COST: "Langfuse reads a call's cost from it; the GenAI conventions have none",
}


def _ours(prefix: str) -> dict[str, str]:
    return {
        name: value
        for name, value in vars(c).items()
        if name.isupper() and isinstance(value, str) and value.startswith(prefix)
    }


def test_every_gen_ai_name_is_the_semantic_conventions_own():
    theirs = {v for k, v in vars(semconv).items() if k.startswith("GEN_AI_") and isinstance(v, str)}
    for name, value in _ours("gen_ai.").items():
        if value in NOT_IN_SEMCONV:
            continue
        assert value in theirs, f"{name}={value!r} is not a GenAI semantic-conventions attribute"
        assert getattr(semconv, name) == value  # and under the same constant name


def test_operation_and_provider_values_are_the_conventions_own():
    operations = {m.value for m in semconv.GenAiOperationNameValues}
    for name, value in vars(c).items():
        if name.startswith("OPERATION_"):
            assert value in operations, name
    providers = {m.value for m in semconv.GenAiProviderNameValues}
    from tinyllm_instrument.genai.providers import SDK_PACKAGES

    assert set(SDK_PACKAGES.values()) <= providers


def test_every_openinference_name_is_openinference_own():
    theirs: set[str] = set()
    for cls_name in (
        "SpanAttributes",
        "MessageAttributes",
        "DocumentAttributes",
        "ToolCallAttributes",
        "RerankerAttributes",
        "EmbeddingAttributes",
    ):
        cls = getattr(openinference, cls_name)
        theirs |= {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}
    not_openinference = ("GEN_AI_", "OPERATION_", "MIME_", "TINYLLM_", "GENAI_", "OPENINFERENCE_V")
    ours = {
        value
        for name, value in vars(c).items()
        if name.isupper() and isinstance(value, str) and not name.startswith(not_openinference)
    }
    assert ours, "no OpenInference names found"
    assert ours <= theirs, sorted(ours - theirs)
    kinds = {m.value for m in openinference.OpenInferenceSpanKindValues}
    from tinyllm_instrument.genai.kinds import KINDS

    assert {k.upper() for k in KINDS} <= kinds
    mimes = {m.value for m in openinference.OpenInferenceMimeTypeValues}
    assert {c.MIME_JSON, c.MIME_TEXT} == mimes


def test_flattened_names_are_the_ones_openinference_builds():
    SA = openinference.SpanAttributes
    MA = openinference.MessageAttributes
    TA = openinference.ToolCallAttributes
    DA = openinference.DocumentAttributes
    assert c.message_key("input", 3, "role") == f"{SA.LLM_INPUT_MESSAGES}.3.{MA.MESSAGE_ROLE}"
    assert c.tool_call_key("output", 0, 1, "function.arguments") == (
        f"{SA.LLM_OUTPUT_MESSAGES}.0.{MA.MESSAGE_TOOL_CALLS}.1.{TA.TOOL_CALL_FUNCTION_ARGUMENTS_JSON}"
    )
    assert c.document_key(2, "content") == f"{SA.RETRIEVAL_DOCUMENTS}.2.{DA.DOCUMENT_CONTENT}"


def test_the_list_of_all_names_holds_every_name_written():
    names = c.all_attribute_names()
    assert list(names) == sorted(set(names))
    for required in (
        "session.id",
        "user.id",
        "tag.tags",
        "metadata",
        "input.value",
        "output.value",
        "llm.token_count.prompt",
        "llm.token_count.completion_details.reasoning",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.token.type",
        "llm.input_messages.0.message.content",
        "retrieval.documents.0.document.metadata",
    ):
        assert required in names


# --------------------------------------------------------------------------------------------
# Issue 15 #5: redaction must not eat the vocabulary
# --------------------------------------------------------------------------------------------


#: Judged sensitive by redaction.py today: the word "token" with no quantity word beside it.
#: The fix is /work/wt/_notes/redaction-vocabulary.patch (redaction.py is not this branch's).
@pytest.fixture
def default_policy():
    reset_redaction()
    yield get_redaction_policy()
    reset_redaction()


@pytest.mark.parametrize("name", c.all_attribute_names())
def test_no_attribute_name_of_the_vocabulary_is_judged_sensitive(default_policy, name):
    assert not default_policy.is_sensitive_key(name)
    assert not RedactionPolicy().is_sensitive_key(name)


def test_values_of_the_vocabulary_pass_redaction_untouched(default_policy):
    # Token counts, model names, ids and finish reasons are data, not secrets.
    values = {
        "gen_ai.usage.input_tokens": 1234,
        "gen_ai.usage.output_tokens": 56,
        "llm.token_count.total": 1290,
        "llm.token_count.prompt_details.cache_read": 1000,
        "gen_ai.request.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.model": "claude-3-5-sonnet-20241022",
        "llm.model_name": "gemini-2.0-flash",
        "gen_ai.response.id": "chatcmpl-AbCdEf0123456789",
        "gen_ai.response.finish_reasons": ["stop", "length"],
        "gen_ai.provider.name": "gcp.gen_ai",
        "llm.cost.total": 0.0123,
        "session.id": "chat-2f1c9a7e-5d3b-4f6a-9c1e-7a8b9c0d1e2f",
        "user.id": "user-42",
        "tag.tags": ["beta", "checkout"],
        "openinference.span.kind": "LLM",
    }
    for key, value in values.items():
        assert default_policy.redact({key: value}) == {key: value}, key


def test_a_secret_under_a_vocabulary_name_is_still_caught_by_the_value_patterns(default_policy):
    # Not judging the key sensitive does not switch off the value patterns.
    leaked = "my key is sk-proj-abcdefghijklmnopqrstuvwx"
    assert default_policy.redact({"input.value": leaked}) == {"input.value": "my key is [REDACTED]"}


# --------------------------------------------------------------------------------------------
# The examples in the docstrings run
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [m.name for m in pkgutil.iter_modules(tinyllm_instrument.genai.__path__)],
)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"tinyllm_instrument.genai.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
