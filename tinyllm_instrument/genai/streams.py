"""Token usage, model, id and finish reasons gathered from the items a streaming LLM node yields.

Feed every yielded item to `StreamAccumulator.add`; ask `StreamAccumulator.result` when the
stream ends, fails or is closed early: it holds what was seen so far. Understood items:

* OpenAI chat chunks (``ChatCompletionChunk`` or dicts with ``"object": "chat.completion.chunk"``):
  id and model from the chunks, finish reasons per choice, usage from the final chunk that
  ``stream_options={"include_usage": True}`` adds;
* OpenAI Responses stream events: ``response.created`` / ``response.in_progress`` (id, model),
  ``response.completed`` / ``response.incomplete`` / ``response.failed`` (the whole response);
* Anthropic stream events: ``message_start`` (id, model, input and cache tokens),
  ``message_delta`` (stop reason, cumulative output tokens);
* any item with a ``usage`` attribute or key (a later report replaces an earlier one).

An item of a plain type (str, bytes, numbers, None, lists, tuples) costs one set lookup. With
``capture_text``, the reply's text is gathered too (chat deltas, Responses text deltas,
Anthropic text deltas, or the str items themselves), bounded, for ``llm.output_messages``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from .._errors import Stage, report_internal_error
from .payloads import DEFAULT_PAYLOAD_BYTES, SCAN_MARGIN
from .providers import provider_of_type
from .results import LLMResult, UsageCounts, get_field, read_result, read_usage

__all__ = ["StreamAccumulator"]

_PLAIN: frozenset[type] = frozenset(
    {type(None), bool, int, float, complex, bytes, bytearray, list, tuple, set, frozenset}
)
_MAX_TEXT = 256
_MAX_CHOICES = 32


class StreamAccumulator:
    """What a stream of LLM items said, gathered item by item.

    Never raises: a failure while reading an item counts as an internal error (stage
    ``usage``) and the item is skipped. One accumulator per stream; not shared across threads.

    Args:
        capture_text: also gather the reply's text (for ``llm.output_messages``).
        text_bytes: byte budget of that text; it stops growing past the budget.

    Example:
        >>> acc = StreamAccumulator()
        >>> for item in ({"object": "chat.completion.chunk", "model": "gpt-4o", "choices": []},
        ...              {"usage": {"prompt_tokens": 7, "completion_tokens": 3}}):
        ...     acc.add(item)
        >>> r = acc.result()
        >>> r.model, r.input_tokens, r.output_tokens
        ('gpt-4o', 7, 3)
    """

    __slots__ = (
        "provider",
        "model",
        "response_id",
        "finish",
        "counts",
        "capture_text",
        "_text",
        "_text_left",
        "_final",
        "items",
    )

    def __init__(
        self, *, capture_text: bool = False, text_bytes: int = DEFAULT_PAYLOAD_BYTES
    ) -> None:
        self.provider: str | None = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish: dict[int, str] = {}
        self.counts: UsageCounts | None = None
        self.capture_text = capture_text
        self._text: list[str] = []
        # Characters still gathered: the budget plus a margin, so redaction of the text sees a
        # secret across the cut whole (see payloads.bounded_text).
        self._text_left = text_bytes + SCAN_MARGIN
        self._final: LLMResult | None = None  # a whole response seen in the stream
        self.items = 0

    def add(self, item: Any) -> None:
        """Read one yielded item. Cheap for items that cannot carry anything."""
        cls = type(item)
        if cls is str:
            if self.capture_text:
                self._add_text(item)
            return
        if cls in _PLAIN:
            return
        try:
            self.items += 1
            self._dispatch(item, cls)
        except Exception as exc:
            report_internal_error(Stage.USAGE, exc)

    @property
    def text(self) -> str | None:
        """The reply's text gathered so far (unredacted, bounded), or None when none was seen."""
        return "".join(self._text) if self._text else None

    def result(self) -> LLMResult | None:
        """What the stream said so far, or None when it said nothing.

        Call it when the stream ends, fails or is closed early; it may be called again.
        """
        final = self._final  # a whole response carried by the stream (Responses, google-genai)
        counts = self.counts
        if counts is not None:
            inp, out, total = counts.final()
            cache_read, cache_creation = counts.cache_read, counts.cache_creation
            reasoning = counts.reasoning
        elif final is not None:
            inp, out, total = final.input_tokens, final.output_tokens, final.total_tokens
            cache_read, cache_creation = final.cache_read_tokens, final.cache_creation_tokens
            reasoning = final.reasoning_tokens
        else:
            inp = out = total = cache_read = cache_creation = reasoning = None
        finish = tuple(self.finish[i] for i in sorted(self.finish))
        if final is not None:
            provider = self.provider or final.provider
            model = self.model or final.model
            response_id = self.response_id or final.response_id
            finish = finish or final.finish_reasons
        else:
            provider, model, response_id = self.provider, self.model, self.response_id
        if inp is None and out is None and model is None and provider is None and not finish:
            return None
        return LLMResult(
            provider=provider,
            model=model,
            response_id=response_id,
            finish_reasons=finish,
            input_tokens=inp,
            output_tokens=out,
            total_tokens=total,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_creation,
            reasoning_tokens=reasoning,
        )

    # -- what each kind of item adds --------------------------------------------------------

    def _dispatch(self, item: Any, cls: type) -> None:
        kind = get_field(item, "type")
        method = _BY_TYPE_FIELD.get(kind) if type(kind) is str else None
        if method is None:
            kind = get_field(item, "object")
            method = _BY_TYPE_FIELD.get(kind) if type(kind) is str else None
        provider = provider_of_type(cls)
        if provider is not None and self.provider is None:
            self.provider = provider
        if method is not None:
            method(self, item)
        elif provider is not None:
            self._sdk_item(item)
        else:
            self._usage(get_field(item, "usage"))

    def _add_text(self, text: Any) -> None:
        if type(text) is not str or self._text_left <= 0 or not text:
            return
        if len(text) > self._text_left:
            text = text[: self._text_left]
        self._text.append(text)
        self._text_left -= len(text)

    def _identity(self, item: Any) -> None:
        if self.response_id is None:
            self.response_id = _text(get_field(item, "id"))
        if self.model is None:
            self.model = _text(get_field(item, "model"))

    def _usage(self, usage: Any) -> None:
        if usage is None:
            return
        counts = read_usage(usage)
        if counts is None:
            return
        if self.counts is None:
            self.counts = counts
        else:
            self.counts.merge(counts)

    def _finish(self, index: Any, reason: Any) -> None:
        reason = _text(reason.value if isinstance(reason, enum.Enum) else reason)
        if reason is not None and len(self.finish) < _MAX_CHOICES:
            self.finish[index if type(index) is int else len(self.finish)] = reason

    def _chat_chunk(self, item: Any) -> None:
        self._identity(item)
        choices = get_field(item, "choices")
        if choices:
            for choice in choices[:_MAX_CHOICES]:
                reason = get_field(choice, "finish_reason")
                if reason is not None:
                    self._finish(get_field(choice, "index"), reason)
                if self.capture_text:
                    delta = get_field(choice, "delta")
                    if delta is not None:
                        self._add_text(get_field(delta, "content"))
        usage = get_field(item, "usage")
        if usage is None:  # Groq reports a stream's usage in x_groq on the last chunk
            extra = get_field(item, "x_groq")
            usage = get_field(extra, "usage") if extra is not None else None
        self._usage(usage)

    def _anthropic_start(self, item: Any) -> None:
        message = get_field(item, "message")
        if message is not None:
            self._identity(message)
            self._usage(get_field(message, "usage"))

    def _anthropic_delta(self, item: Any) -> None:
        delta = get_field(item, "delta")
        if delta is not None:
            reason = get_field(delta, "stop_reason")
            if reason is not None:
                self._finish(0, reason)
        self._usage(get_field(item, "usage"))

    def _anthropic_block_delta(self, item: Any) -> None:
        if self.capture_text:
            delta = get_field(item, "delta")
            if delta is not None and get_field(delta, "type") == "text_delta":
                self._add_text(get_field(delta, "text"))

    def _responses_started(self, item: Any) -> None:
        response = get_field(item, "response")
        if response is not None:
            self._identity(response)

    def _responses_done(self, item: Any) -> None:
        response = get_field(item, "response")
        if response is None:
            return
        self._identity(response)
        final = read_result(response)
        if final is not None:
            self._final = final
        if get_field(response, "usage") is not None:
            self.counts = None  # the whole response's usage replaces any partial report
        self._usage(get_field(response, "usage"))

    def _responses_text(self, item: Any) -> None:
        if self.capture_text:
            self._add_text(get_field(item, "delta"))

    def _cohere_end(self, item: Any) -> None:
        delta = get_field(item, "delta")
        if delta is not None:
            self._finish(0, get_field(delta, "finish_reason"))
            self._usage(get_field(delta, "usage"))

    def _sdk_item(self, item: Any) -> None:
        # Streams whose items are partial responses (google-genai chunks) or wrap one (Mistral's
        # CompletionEvent.data): the latest cumulative reading wins.
        data = get_field(item, "data")
        if data is not None and type(data) not in _PLAIN:
            self._dispatch(data, type(data))
            return
        final = read_result(item)
        if final is None:
            return
        if final.has_usage or self._final is None:
            self._final = final
        if self.model is None:
            self.model = final.model
        if self.response_id is None:
            self.response_id = final.response_id
        for index, reason in enumerate(final.finish_reasons):
            self._finish(index, reason)


def _text(value: Any) -> str | None:
    if type(value) is not str or not value:
        return None
    return value[:_MAX_TEXT]


# The "type" (or "object") field of an item -> what it adds.
_BY_TYPE_FIELD: dict[str, Callable[[StreamAccumulator, Any], None]] = {
    "chat.completion.chunk": StreamAccumulator._chat_chunk,
    "message_start": StreamAccumulator._anthropic_start,
    "message_delta": StreamAccumulator._anthropic_delta,
    "content_block_delta": StreamAccumulator._anthropic_block_delta,
    "response.created": StreamAccumulator._responses_started,
    "response.in_progress": StreamAccumulator._responses_started,
    "response.completed": StreamAccumulator._responses_done,
    "response.incomplete": StreamAccumulator._responses_done,
    "response.failed": StreamAccumulator._responses_done,
    "response.output_text.delta": StreamAccumulator._responses_text,
    "message-end": StreamAccumulator._cohere_end,
}
