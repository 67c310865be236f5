"""What an LLM call's result tells: provider, response model and id, finish reasons, token usage.

Reads the SDKs' own objects (OpenAI chat / completions / embeddings / Responses, Anthropic
messages, google-genai, Mistral, Cohere, Groq, LangChain messages), dicts of the same shapes, and
any object or dict with a ``usage``. No SDK is imported: objects are read by their fields. A
result of a plain type costs one set lookup. Malformed usage never reaches the caller: it is
counted as an internal error (stage ``usage``) and the bad field is skipped.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple

from .._errors import Stage, report_internal_error
from . import conventions as c
from .providers import provider_attributes, provider_of_type

__all__ = [
    "PLAIN_RESULT_TYPES",
    "LLMResult",
    "UsageCounts",
    "get_field",
    "read_result",
    "read_usage",
    "result_attributes",
]

#: Above this a token count is not believed (and would not fit every back-end's integers).
MAX_TOKENS = 2**53 - 1
_MAX_TEXT = 256  # model names and response ids longer than this are cut
_MAX_FINISH_REASONS = 32
_MAX_TYPES = 1024  # per-type caches stop growing here (types made on the fly)

#: Results of these types cannot carry usage: one set lookup and out.
PLAIN_RESULT_TYPES: frozenset[type] = frozenset(
    {type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, set, frozenset}
)
_PLAIN = PLAIN_RESULT_TYPES


class LLMResult(NamedTuple):
    """What the kit read from one LLM result (or one stream).

    Token counts follow the GenAI conventions: ``input_tokens`` includes the cached ones (for
    Anthropic, whose ``input_tokens`` excludes them, the cache read and cache creation counts are
    added), ``output_tokens`` includes the reasoning ones. Every field may be None: not given.

    Attributes:
        provider: ``gen_ai.provider.name`` of the SDK the result comes from, if one is known.
        model: the model that answered (``gen_ai.response.model``); also what labels metrics
            when the decorator has no ``model=``.
        response_id: ``gen_ai.response.id``.
        finish_reasons: one per choice / candidate, in order.
        input_tokens: prompt tokens, cached ones included.
        output_tokens: completion tokens, reasoning ones included.
        total_tokens: as reported, or input + output.
        cache_read_tokens: input tokens served from the provider's cache.
        cache_creation_tokens: input tokens written to the provider's cache.
        reasoning_tokens: output tokens spent on reasoning.

    A NamedTuple, not a dataclass: built once per LLM call, it costs a tenth as much.
    """

    provider: str | None = None
    model: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def has_usage(self) -> bool:
        """Whether any token count was read."""
        return self.input_tokens is not None or self.output_tokens is not None


class UsageCounts:
    """Raw token counts as a provider reports them, merged field by field (streams add to it).

    ``input_excludes_cache`` is set for Anthropic-shaped usage, whose ``input_tokens`` does not
    count the cache read / creation tokens; `final` adds them.
    """

    __slots__ = (
        "input",
        "output",
        "total",
        "cache_read",
        "cache_creation",
        "reasoning",
        "input_excludes_cache",
    )

    def __init__(self) -> None:
        self.input: int | None = None
        self.output: int | None = None
        self.total: int | None = None
        self.cache_read: int | None = None
        self.cache_creation: int | None = None
        self.reasoning: int | None = None
        self.input_excludes_cache = False

    def merge(self, other: UsageCounts) -> None:
        """Take every count ``other`` has (a later, cumulative report wins field by field)."""
        for name in ("input", "output", "total", "cache_read", "cache_creation", "reasoning"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)
        self.input_excludes_cache = self.input_excludes_cache or other.input_excludes_cache

    def final(self) -> tuple[int | None, int | None, int | None]:
        """``(input, output, total)`` as the GenAI conventions count them."""
        inp = self.input
        if inp is not None and self.input_excludes_cache:
            inp = min(MAX_TOKENS, inp + (self.cache_read or 0) + (self.cache_creation or 0))
        out = self.output
        total = self.total
        if total is None and (inp is not None or out is not None):
            total = (inp or 0) + (out or 0)
        return inp, out, total


# type -> how to read a field of its instances, decided once per type: a key of a mapping; a
# field of a Pydantic model (every SDK's objects) straight from its __dict__, since a missing one
# through getattr goes through Pydantic's __getattr__, which costs ~2 us per miss; or getattr.
_MAPPING, _PYDANTIC, _ATTRIBUTE = 1, 2, 3
_ACCESS: dict[type, int] = {dict: _MAPPING}


def _access_of(obj: Any, cls: type) -> int:
    if isinstance(obj, Mapping):
        access = _MAPPING
    elif hasattr(cls, "__pydantic_fields__") and isinstance(getattr(obj, "__dict__", None), dict):
        access = _PYDANTIC
    else:
        access = _ATTRIBUTE
    if len(_ACCESS) < _MAX_TYPES:
        _ACCESS[cls] = access
    return access


def get_field(obj: Any, name: str) -> Any:
    """A key of a mapping or an attribute of an object; None when absent.

    Example:
        >>> get_field({"model": "m"}, "model"), get_field(3, "model")
        ('m', None)
    """
    cls = type(obj)
    access = _ACCESS.get(cls) or _access_of(obj, cls)
    if access == _MAPPING:
        return obj.get(name)
    if access == _PYDANTIC:
        value = obj.__dict__.get(name)
        if value is None:
            extra = getattr(obj, "__pydantic_extra__", None)  # undeclared fields (x_groq...)
            if extra:
                value = extra.get(name)
        return value
    return getattr(obj, name, None)


class _Problems:
    """The first malformed field of one result, reported once when the reading ends."""

    __slots__ = ("first",)

    def __init__(self) -> None:
        self.first: str | None = None

    def count(self, value: Any, field: str) -> int | None:
        if value is None:
            return None
        if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
            if 0 <= value <= MAX_TOKENS:
                return int(value)
        if self.first is None:
            shown = repr(value) if type(value) in (int, float, bool, str) else type(value).__name__
            self.first = f"usage field {field}={shown[:40]} is not a token count (0..2**53-1)"
        return None

    def report(self) -> None:
        if self.first is not None:
            report_internal_error(Stage.USAGE, ValueError(self.first))


def _sub(details: Any, name: str, problems: _Problems, field: str) -> int | None:
    if details is None:
        return None
    return problems.count(get_field(details, name), field)


def read_usage(usage: Any) -> UsageCounts | None:
    """Read one usage object or dict of any supported shape; None when it holds no count.

    Shapes: OpenAI chat / completions / embeddings (``prompt_tokens``...), OpenAI Responses and
    Anthropic (``input_tokens``...), google-genai (``prompt_token_count``...), Cohere v2
    (``tokens.input_tokens``), LangChain ``usage_metadata``. A malformed count is counted as an
    internal error and skipped; this never raises.

    Example:
        >>> u = read_usage({"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 5})
        >>> u.final()
        (100, 5, 105)
    """
    problems = _Problems()
    try:
        counts = _read_usage(usage, problems, 0)
    except Exception as exc:  # a usage object whose fields raise: the app's, not ours to break
        report_internal_error(Stage.USAGE, exc)
        return None
    problems.report()
    return counts


def _read_usage(usage: Any, problems: _Problems, depth: int) -> UsageCounts | None:
    counts = UsageCounts()
    count = problems.count
    prompt = get_field(usage, "prompt_tokens")
    completion = get_field(usage, "completion_tokens")
    if prompt is not None or completion is not None:  # OpenAI chat, completions, embeddings
        counts.input = count(prompt, "prompt_tokens")
        counts.output = count(completion, "completion_tokens")
        counts.total = count(get_field(usage, "total_tokens"), "total_tokens")
        details = get_field(usage, "prompt_tokens_details")
        counts.cache_read = _sub(details, "cached_tokens", problems, "cached_tokens")
        counts.cache_creation = _sub(details, "cache_write_tokens", problems, "cache_write_tokens")
        details = get_field(usage, "completion_tokens_details")
        counts.reasoning = _sub(details, "reasoning_tokens", problems, "reasoning_tokens")
        return counts
    inp = get_field(usage, "input_tokens")
    out = get_field(usage, "output_tokens")
    if inp is not None or out is not None:  # OpenAI Responses, Anthropic, LangChain
        counts.input = count(inp, "input_tokens")
        counts.output = count(out, "output_tokens")
        counts.total = count(get_field(usage, "total_tokens"), "total_tokens")
        read = count(get_field(usage, "cache_read_input_tokens"), "cache_read_input_tokens")
        made = count(get_field(usage, "cache_creation_input_tokens"), "cache_creation_input_tokens")
        if read is not None or made is not None:  # Anthropic: input_tokens excludes these
            counts.cache_read, counts.cache_creation = read, made
            counts.input_excludes_cache = True
        details = get_field(usage, "input_tokens_details")  # Responses
        if details is not None:
            counts.cache_read = _sub(details, "cached_tokens", problems, "cached_tokens")
            counts.cache_creation = _sub(
                details, "cache_write_tokens", problems, "cache_write_tokens"
            )
        details = get_field(usage, "input_token_details")  # LangChain
        if details is not None:
            counts.cache_read = _sub(details, "cache_read", problems, "cache_read")
            counts.cache_creation = _sub(details, "cache_creation", problems, "cache_creation")
        details = get_field(usage, "output_tokens_details")  # Responses; Anthropic: thinking_tokens
        if details is not None:
            reasoning = get_field(details, "reasoning_tokens")
            if reasoning is None:
                reasoning = get_field(details, "thinking_tokens")
            counts.reasoning = problems.count(reasoning, "reasoning_tokens")
        details = get_field(usage, "output_token_details")  # LangChain
        if details is not None:
            counts.reasoning = _sub(details, "reasoning", problems, "reasoning")
        return counts
    prompt = get_field(usage, "prompt_token_count")
    if prompt is not None or get_field(usage, "candidates_token_count") is not None:  # google-genai
        counts.input = count(prompt, "prompt_token_count")
        out = count(get_field(usage, "candidates_token_count"), "candidates_token_count")
        thoughts = count(get_field(usage, "thoughts_token_count"), "thoughts_token_count")
        # Gemini counts thoughts apart; the conventions count them in the output.
        counts.output = (out or 0) + thoughts if thoughts is not None else out
        counts.total = count(get_field(usage, "total_token_count"), "total_token_count")
        counts.cache_read = count(
            get_field(usage, "cached_content_token_count"), "cached_content_token_count"
        )
        counts.reasoning = thoughts
        return counts
    tokens = get_field(usage, "tokens")  # Cohere v2: usage.tokens.input_tokens
    if tokens is not None and depth == 0:
        return _read_usage(tokens, problems, 1)
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, enum.Enum):
        value = value.value
    if type(value) is not str or not value:
        return None
    return value[:_MAX_TEXT]


def _finish_reasons(result: Any) -> tuple[str, ...]:
    reasons: list[str] = []
    for field in ("choices", "candidates"):  # OpenAI, google-genai
        items = get_field(result, field)
        if isinstance(items, (list, tuple)):
            for item in items[:_MAX_FINISH_REASONS]:
                reason = _text(get_field(item, "finish_reason"))
                if reason is not None:
                    reasons.append(reason)
            if reasons:
                return tuple(reasons)
    for field in ("stop_reason", "finish_reason"):  # Anthropic, Cohere v2
        reason = _text(get_field(result, field))
        if reason is not None:
            return (reason,)
    details = get_field(result, "incomplete_details")  # Responses, when cut short
    if details is not None:
        reason = _text(get_field(details, "reason"))
        if reason is not None:
            return (reason,)
    return ()


def _read(
    result: Any, usage: Any, model: Any, provider: str | None, metadata: Any = None
) -> LLMResult | None:
    counts = read_usage(usage) if usage is not None else None
    model_name = _text(model)
    finish = _finish_reasons(result)
    response_id = _text(get_field(result, "id")) or _text(get_field(result, "response_id"))
    if metadata is not None:  # LangChain: response_metadata holds what the provider said
        model_name = (
            model_name
            or _text(get_field(metadata, "model_name"))
            or _text(get_field(metadata, "model"))
        )
        if not finish:
            reason = _text(get_field(metadata, "finish_reason")) or _text(
                get_field(metadata, "stop_reason")
            )
            finish = (reason,) if reason else ()
    if counts is None and model_name is None and provider is None:
        return None
    inp = out = total = None
    if counts is not None:
        inp, out, total = counts.final()
    return LLMResult(
        provider=provider,
        model=model_name,
        response_id=response_id,
        finish_reasons=finish,
        input_tokens=inp,
        output_tokens=out,
        total_tokens=total,
        cache_read_tokens=counts.cache_read if counts is not None else None,
        cache_creation_tokens=counts.cache_creation if counts is not None else None,
        reasoning_tokens=counts.reasoning if counts is not None else None,
    )


# type -> how to read its instances, decided once per type (bounded).
_SDK, _USAGE_METADATA, _GENERIC = 1, 2, 3
_READERS: dict[type, int] = {}


def _reader_for(cls: type) -> int:
    module = getattr(cls, "__module__", None) or ""
    if not isinstance(module, str):
        module = ""
    if module.startswith("langchain_core."):
        kind = _USAGE_METADATA
    elif provider_of_type(cls) is not None:
        kind = _SDK
    else:
        kind = _GENERIC
    if len(_READERS) < _MAX_TYPES:
        _READERS[cls] = kind
    return kind


def read_result(result: Any) -> LLMResult | None:
    """Read what a call's result says about the LLM call; None when it says nothing.

    Args:
        result: what the decorated function returned (or a stream's final response), or an
            `LLMResult` read already (it is returned as it is).

    Returns:
        An `LLMResult`, or None for a plain value (None, str, numbers, lists...), a dict with
        neither ``usage`` nor ``model``, or an object with neither.

    Never raises: a failure while reading counts as an internal error (stage ``usage``).

    Example:
        >>> r = read_result({"model": "gpt-4o", "usage": {"prompt_tokens": 3,
        ...                  "completion_tokens": 2}})
        >>> r.model, r.input_tokens, r.output_tokens, r.total_tokens
        ('gpt-4o', 3, 2, 5)
    """
    cls = type(result)
    if cls in _PLAIN:
        return None
    if cls is LLMResult:  # read already (a stream's items, gathered by its caller)
        return result
    try:
        if cls is dict:
            usage = result.get("usage")
            model = result.get("model")
            if usage is None and model is None:
                return None
            return _read(result, usage, model, None)
        kind = _READERS.get(cls) or _reader_for(cls)
        if kind == _SDK:
            usage = get_field(result, "usage")
            if usage is None:
                usage = get_field(result, "usage_metadata")  # google-genai
            model = get_field(result, "model")
            if model is None:
                model = get_field(result, "model_version")  # google-genai
            return _read(result, usage, model, provider_of_type(cls))
        if kind == _USAGE_METADATA:
            return _read(
                result,
                get_field(result, "usage_metadata"),
                None,
                None,
                get_field(result, "response_metadata"),
            )
        usage = get_field(result, "usage")
        model = get_field(result, "model")
        if usage is None and model is None:
            return None
        return _read(result, usage, model, None)
    except Exception as exc:
        report_internal_error(Stage.USAGE, exc)
        return None


def result_attributes(info: LLMResult, *, include_provider: bool = True) -> dict[str, Any]:
    """The span attributes of both vocabularies for what was read from a result.

    ``gen_ai.response.*``, ``gen_ai.usage.*`` and ``llm.token_count.*``; ``llm.model_name`` is
    the response model (as OpenInference's own instrumentations write it); the provider
    attributes when ``include_provider`` and the provider is known (leave them out when the
    decorator named the provider).

    Example:
        >>> result_attributes(LLMResult(input_tokens=3, output_tokens=2, total_tokens=5))
        ... # doctest: +NORMALIZE_WHITESPACE
        {'gen_ai.usage.input_tokens': 3, 'llm.token_count.prompt': 3,
         'gen_ai.usage.output_tokens': 2, 'llm.token_count.completion': 2,
         'llm.token_count.total': 5}
    """
    attrs: dict[str, Any] = {}
    if include_provider and info.provider is not None:
        attrs.update(provider_attributes(info.provider))
    if info.model is not None:
        attrs[c.GEN_AI_RESPONSE_MODEL] = info.model
        attrs[c.LLM_MODEL_NAME] = info.model
    if info.response_id is not None:
        attrs[c.GEN_AI_RESPONSE_ID] = info.response_id
    if info.finish_reasons:
        attrs[c.GEN_AI_RESPONSE_FINISH_REASONS] = list(info.finish_reasons)
    if info.input_tokens is not None:
        attrs[c.GEN_AI_USAGE_INPUT_TOKENS] = info.input_tokens
        attrs[c.LLM_TOKEN_COUNT_PROMPT] = info.input_tokens
    if info.output_tokens is not None:
        attrs[c.GEN_AI_USAGE_OUTPUT_TOKENS] = info.output_tokens
        attrs[c.LLM_TOKEN_COUNT_COMPLETION] = info.output_tokens
    if info.total_tokens is not None:
        attrs[c.LLM_TOKEN_COUNT_TOTAL] = info.total_tokens
    if info.cache_read_tokens is not None:
        attrs[c.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = info.cache_read_tokens
        attrs[c.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ] = info.cache_read_tokens
    if info.cache_creation_tokens is not None:
        attrs[c.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = info.cache_creation_tokens
        attrs[c.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE] = info.cache_creation_tokens
    if info.reasoning_tokens is not None:
        attrs[c.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = info.reasoning_tokens
        attrs[c.LLM_TOKEN_COUNT_COMPLETION_DETAILS_REASONING] = info.reasoning_tokens
    return attrs
