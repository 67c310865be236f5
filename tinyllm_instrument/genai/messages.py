"""An LLM call's messages and reply as ``llm.input_messages.*`` / ``llm.output_messages.*``.

Input: the call's ``messages`` argument (OpenAI / Anthropic shape: ``{role, content}`` where
content is a string or a list of parts), Anthropic's ``system=``, the Responses API's
``instructions=`` and ``input=``, LangChain messages. Output: OpenAI ``choices[0].message``,
Anthropic text and tool-use blocks, Responses output, LangChain ``AIMessage``, a plain string
result, or the text gathered from a stream. Bounded (the first N messages, a byte budget per
content and for the whole) and redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import Stage, report_internal_error
from . import conventions as c
from .payloads import DEFAULT_PAYLOAD_BYTES, bounded_text, serialize_payload
from .results import get_field

__all__ = [
    "DEFAULT_MAX_MESSAGES",
    "DEFAULT_MESSAGES_BYTES",
    "input_message_attributes",
    "output_message_attributes",
]

#: Messages written per call (the first ones).
DEFAULT_MAX_MESSAGES = 32
#: Byte budget of all message contents of one call together.
DEFAULT_MESSAGES_BYTES = 16384
_MAX_TOOL_CALLS = 16
_SHORT = 256  # roles, ids, tool names
_MIN_CONTENT = 64
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_LANGCHAIN_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class _Writer:
    """Writes flattened messages into one dict within the byte budgets."""

    __slots__ = ("attrs", "direction", "content_bytes", "left", "index")

    def __init__(self, direction: str, content_bytes: int, total_bytes: int) -> None:
        self.attrs: dict[str, Any] = {}
        self.direction = direction
        self.content_bytes = content_bytes
        self.left = total_bytes
        self.index = 0

    def message(self, role: Any, content: Any, tool_calls: Any = None) -> None:
        key = c.message_key
        i = self.index
        self.index += 1
        if isinstance(role, str) and role:
            self.attrs[key(self.direction, i, "role")] = bounded_text(role, _SHORT)
        text = _content_text(content)
        if text is not None and self.left >= _MIN_CONTENT:
            text = bounded_text(text, min(self.content_bytes, self.left))
            self.left -= len(text.encode("utf-8"))
            self.attrs[key(self.direction, i, "content")] = text
        if tool_calls:
            self.tool_calls(i, tool_calls)

    def tool_calls(self, i: int, calls: Any) -> None:
        key = c.tool_call_key
        for j, call in enumerate(list(calls)[:_MAX_TOOL_CALLS]):
            # OpenAI: {id, function: {name, arguments}}; Anthropic tool_use: {id, name, input};
            # LangChain: {id, name, args}; Responses function_call: {call_id, name, arguments}.
            function = get_field(call, "function")
            source = function if function is not None else call
            name = get_field(source, "name")
            arguments = get_field(source, "arguments")
            if arguments is None:
                arguments = get_field(call, "input")
                if arguments is None:
                    arguments = get_field(call, "args")
            call_id = get_field(call, "call_id") or get_field(call, "id")  # Responses: call_id
            if isinstance(call_id, str) and call_id:
                self.attrs[key(self.direction, i, j, "id")] = bounded_text(call_id, _SHORT)
            if isinstance(name, str) and name:
                self.attrs[key(self.direction, i, j, "function.name")] = bounded_text(name, _SHORT)
            if arguments is not None and self.left >= _MIN_CONTENT:
                budget = min(self.content_bytes, self.left)
                text = (
                    bounded_text(arguments, budget)
                    if isinstance(arguments, str)
                    else serialize_payload(arguments, budget)[0]
                )
                self.left -= len(text.encode("utf-8"))
                self.attrs[key(self.direction, i, j, "function.arguments")] = text


def _content_text(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list joined."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        pieces = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
                continue
            kind = get_field(part, "type")
            if kind in _TEXT_PARTS:
                text = get_field(part, "text")
                if isinstance(text, str):
                    pieces.append(text)
            elif kind == "tool_result":  # Anthropic: the tool's answer, inside a user turn
                inner = _content_text(get_field(part, "content"))
                if inner is not None:
                    pieces.append(inner)
            elif isinstance(kind, str) and kind not in ("tool_use", "function_call"):
                pieces.append(f"[{kind[:32]}]")  # an image, audio...: say it was there
        return "\n".join(pieces) if pieces else None
    return None


def _role(message: Any) -> Any:
    role = get_field(message, "role")
    if role is None:  # LangChain messages name their role "type"
        role = _LANGCHAIN_ROLES.get(get_field(message, "type"))
    return role


def _tool_calls_of(message: Any) -> Any:
    calls = get_field(message, "tool_calls")
    if calls:
        return calls
    content = get_field(message, "content")
    if isinstance(content, (list, tuple)):  # Anthropic tool_use blocks
        uses = [part for part in content if get_field(part, "type") == "tool_use"]
        return uses or None
    return None


def input_message_attributes(
    arguments: Mapping[str, Any],
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    content_bytes: int = DEFAULT_PAYLOAD_BYTES,
    total_bytes: int = DEFAULT_MESSAGES_BYTES,
) -> dict[str, Any]:
    """``llm.input_messages.{i}.message.*`` from an LLM call's arguments, by parameter name.

    Args:
        arguments: the call's arguments by name (``messages``, and ``system`` /
            ``instructions`` / ``input`` when present).
        max_messages: write at most this many messages, the first ones (a separate ``system``
            counts as one).
        content_bytes: byte budget of each content (and each tool call's arguments).
        total_bytes: byte budget of all contents together.

    Returns:
        The attributes; empty when the arguments hold no messages.

    Never raises: a failure is counted as an internal error (stage ``capture``) and what was
    written so far is returned.

    Example:
        >>> input_message_attributes({"system": "Be brief.",
        ...                           "messages": [{"role": "user", "content": "Hi"}]})
        ... # doctest: +NORMALIZE_WHITESPACE
        {'llm.input_messages.0.message.role': 'system',
         'llm.input_messages.0.message.content': 'Be brief.',
         'llm.input_messages.1.message.role': 'user',
         'llm.input_messages.1.message.content': 'Hi'}
    """
    writer = _Writer("input", content_bytes, total_bytes)
    try:
        system = arguments.get("system")
        if system is None:
            system = arguments.get("instructions")  # Responses API
        if system is not None and _content_text(system) is not None:
            writer.message("system", system)
        messages = arguments.get("messages")
        if messages is None:
            messages = arguments.get("input")  # Responses API: a string or a list of items
            if isinstance(messages, str):
                messages = [{"role": "user", "content": messages}]
        if isinstance(messages, (list, tuple)):
            for message in messages:
                if writer.index >= max_messages:
                    break
                role = _role(message)
                if role is None:
                    continue  # a Responses item that is not a message (a function call output)
                writer.message(role, get_field(message, "content"), _tool_calls_of(message))
    except Exception as exc:
        report_internal_error(Stage.CAPTURE, exc)
    return writer.attrs


def output_message_attributes(
    result: Any = None,
    *,
    text: str | None = None,
    content_bytes: int = DEFAULT_PAYLOAD_BYTES,
) -> dict[str, Any]:
    """``llm.output_messages.0.message.*``: the model's reply.

    Args:
        result: the call's result (OpenAI ``ChatCompletion`` / ``Completion`` / Responses
            ``Response``, Anthropic ``Message``, LangChain ``AIMessage``, a dict of those
            shapes, or a plain string).
        text: the reply's text gathered from a stream, used when ``result`` gives none.
        content_bytes: byte budget of the content (and of each tool call's arguments).

    Returns:
        The attributes; empty when no reply could be read.

    Never raises (a failure is counted as an internal error, stage ``capture``).

    Example:
        >>> output_message_attributes({"choices": [{"message": {"role": "assistant",
        ...                            "content": "Hello"}}]})
        ... # doctest: +NORMALIZE_WHITESPACE
        {'llm.output_messages.0.message.role': 'assistant',
         'llm.output_messages.0.message.content': 'Hello'}
    """
    writer = _Writer("output", content_bytes, content_bytes * 4)
    try:
        if not _write_reply(writer, result) and text is not None:
            writer.message("assistant", text)
    except Exception as exc:
        report_internal_error(Stage.CAPTURE, exc)
    return writer.attrs


def _write_reply(writer: _Writer, result: Any) -> bool:
    if result is None:
        return False
    if isinstance(result, str):
        writer.message("assistant", result)
        return True
    choices = get_field(result, "choices")
    if isinstance(choices, (list, tuple)) and choices:  # OpenAI chat / completions
        first = choices[0]
        message = get_field(first, "message")
        if message is not None:
            writer.message(
                _role(message) or "assistant",
                get_field(message, "content"),
                get_field(message, "tool_calls"),
            )
        else:
            writer.message("assistant", get_field(first, "text"))
        return True
    output = get_field(result, "output")
    if isinstance(output, (list, tuple)):  # Responses API
        texts: list[Any] = []
        calls = []
        for item in output:
            kind = get_field(item, "type")
            if kind == "message":
                texts.extend(get_field(item, "content") or ())
            elif kind == "function_call":
                calls.append(item)
        writer.message("assistant", texts, calls)
        return True
    candidates = get_field(result, "candidates")
    if isinstance(candidates, (list, tuple)) and candidates:  # google-genai
        content = get_field(candidates[0], "content")
        parts = get_field(content, "parts") if content is not None else None
        texts = [get_field(p, "text") for p in parts or ()]
        writer.message("assistant", "".join(t for t in texts if isinstance(t, str)) or None)
        return True
    content = get_field(result, "content")
    if content is not None and _role(result) is not None:  # Anthropic Message, LangChain
        writer.message(_role(result), content, _tool_calls_of(result))
        return True
    return False
