"""``using_attributes``: session, user, tags and metadata on every span, log line and event inside.

The scope lives in one ContextVar, so it follows the code exactly as OpenTelemetry's context does:
into ``asyncio`` tasks, into threads and pools that copy the context (the kit's thread
propagation does), and, through `inject_session` / `session_from_carrier`, into child processes.
Everything a reader needs is computed when the scope is entered: a span start pays one
ContextVar read and one ``set_attributes``; with no scope, one ContextVar read.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry.sdk.trace import SpanProcessor

from .._errors import Stage, report_internal_error
from ..redaction import REDACTED, get_redaction_policy, safe_str
from . import conventions as c
from .payloads import TRUNCATION_MARKER, bounded_text, json_string_within, to_json_safe

__all__ = [
    "ENV_SESSION",
    "SESSION_CARRIER_KEY",
    "SessionSpanProcessor",
    "add_session_fields",
    "inject_session",
    "on_start",
    "session_attributes",
    "session_fields",
    "session_from_carrier",
    "using_attributes",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The key of a propagation carrier (the dict ``inject_context`` fills) that holds the scope.
SESSION_CARRIER_KEY = "tinyllm-session"
#: The environment variable that hands the scope to a child process (beside ``TRACEPARENT``).
ENV_SESSION = "TINYLLM_INSTRUMENT_SESSION"

#: Byte budgets: an id, one tag, the metadata JSON; and at most this many tags.
ID_BYTES = 256
TAG_BYTES = 128
METADATA_BYTES = 4096
MAX_TAGS = 64


class _Scope:
    """One entered scope: its merged values and everything readers need, computed once."""

    __slots__ = (
        "session_id",
        "user_id",
        "tags",
        "metadata",
        "span_attributes",
        "log_fields",
        "previous",
        "owner",
    )

    def __init__(
        self,
        session_id: str | None,
        user_id: str | None,
        tags: tuple[str, ...],
        metadata: dict[str, Any],
        previous: _Scope | None,
        owner: object,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.tags = tags
        self.metadata = metadata
        self.previous = previous
        self.owner = owner
        attrs: dict[str, Any] = {}
        fields: dict[str, str] = {}
        if session_id is not None:
            attrs[c.SESSION_ID] = session_id
            attrs[c.GEN_AI_CONVERSATION_ID] = session_id
            fields["session_id"] = session_id
        if user_id is not None:
            attrs[c.USER_ID] = user_id
            fields["user_id"] = user_id
        if tags:
            attrs[c.TAG_TAGS] = list(tags)
        if metadata:
            attrs[c.METADATA] = _metadata_json(metadata)
        self.span_attributes = attrs
        self.log_fields = fields


_SCOPE: ContextVar[_Scope | None] = ContextVar("tinyllm_instrument_session", default=None)


def _metadata_json(metadata: dict[str, Any]) -> str:
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) <= METADATA_BYTES:
        return text
    return json_string_within(text, METADATA_BYTES)


def _check_id(value: Any, name: str) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else safe_str(value)  # ids may be ints, UUIDs
    if not text:
        return None
    if get_redaction_policy().is_sensitive_key(name):  # the app declared it a secret
        return REDACTED
    return bounded_text(text, ID_BYTES)


def _check_tags(tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, (str, bytes, bytearray, Mapping)) or not isinstance(tags, Iterable):
        raise TypeError(
            f"using_attributes(tags={tags!r}): tags must be a list (or other iterable) of "
            f"strings, not {type(tags).__name__}; e.g. tags=['beta', 'checkout']"
        )
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(
                f"using_attributes(tags=...): every tag must be a string, got "
                f"{type(tag).__name__} {safe_str(tag)[:40]!r}"
            )
        if tag:
            out.append(bounded_text(tag, TAG_BYTES))
    return _merge_tags((), tuple(out))  # no duplicates, at most MAX_TAGS


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"using_attributes(metadata=...): metadata must be a mapping (a dict), not "
            f"{type(metadata).__name__}; e.g. metadata={{'plan': 'pro'}}"
        )
    safe = to_json_safe(metadata, METADATA_BYTES)
    return safe if isinstance(safe, dict) else {}


def _merge_tags(outer: tuple[str, ...], inner: tuple[str, ...]) -> tuple[str, ...]:
    if not inner:
        return outer
    if not outer and len(inner) <= MAX_TAGS and len(set(inner)) == len(inner):
        return inner
    merged = dict.fromkeys(outer)
    merged.update(dict.fromkeys(inner))
    tags = tuple(merged)
    if len(tags) > MAX_TAGS:  # kept bounded, and visibly so
        tags = (*tags[: MAX_TAGS - 1], TRUNCATION_MARKER)
    return tags


class using_attributes:  # noqa: N801 - the name OpenInference users know
    """Put a session, user, tags and metadata on everything that happens inside.

    Every span started inside carries ``session.id`` (and ``gen_ai.conversation.id``),
    ``user.id``, ``tag.tags`` and ``metadata`` (JSON); log lines get ``session_id`` /
    ``user_id``; events too. Nesting merges: inner values win, tags are united (order kept, no
    duplicates), metadata keys of the inner scope win. Values are redacted and bounded (ids 256
    bytes, tags 128 bytes each and 64 in all, metadata 4 KiB of JSON); a non-string id is
    converted with ``str()``; an empty id is no id.

    Use it as a context manager (``with`` or ``async with``) or as a decorator of a function,
    a coroutine function, a generator or an async generator function. On a generator the scope
    holds while the generator's own code runs (each resume), not in the consumer between
    items, so the consumer's spans are not tagged with the generator's session.

    Args:
        session_id: the conversation / session, e.g. a chat thread id.
        user_id: the end user.
        tags: an iterable of strings (not a bare string).
        metadata: a mapping, stored as JSON.

    Raises:
        TypeError: ``tags`` is a string or not an iterable of strings; ``metadata`` is not a
            mapping; or it decorates a function without being called (``@using_attributes``).

    Example:
        >>> with using_attributes(session_id="chat-42", user_id=7, tags=["beta"]):
        ...     session_fields()
        {'session_id': 'chat-42', 'user_id': '7'}
    """

    __slots__ = ("_session_id", "_user_id", "_tags", "_metadata", "_root")

    def __init__(
        self,
        session_id: Any = None,
        user_id: Any = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if callable(session_id) and user_id is None and tags is None and metadata is None:
            raise TypeError(
                "using_attributes is used with arguments: write @using_attributes(session_id=...)"
                " above the function, not @using_attributes"
            )
        self._tags = _check_tags(tags)
        self._metadata = _check_metadata(metadata)
        self._session_id = _check_id(session_id, "session_id")
        self._user_id = _check_id(user_id, "user_id")
        self._root = _Scope(self._session_id, self._user_id, self._tags, self._metadata, None, self)

    # -- as a context manager --------------------------------------------------------------

    def __enter__(self) -> using_attributes:
        outer = _SCOPE.get()
        if outer is None:
            scope = self._root  # the same for every entry with nothing around it
        else:
            scope = _Scope(
                self._session_id if self._session_id is not None else outer.session_id,
                self._user_id if self._user_id is not None else outer.user_id,
                _merge_tags(outer.tags, self._tags),
                {**outer.metadata, **self._metadata} if self._metadata else outer.metadata,
                outer,
                self,
            )
        _SCOPE.set(scope)
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Restore what was current when this scope was entered. The scope records it, so one
        # object may be entered in many threads or tasks at once (a decorator does that).
        scope = _SCOPE.get()
        while scope is not None and scope.owner is not self:
            scope = scope.previous  # an inner scope left open (a generator never finished)
        if scope is not None:
            _SCOPE.set(scope.previous)

    async def __aenter__(self) -> using_attributes:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)

    # -- as a decorator --------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        if inspect.isasyncgenfunction(func):
            return functools.wraps(func)(self._async_generator(func))  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            return functools.wraps(func)(self._generator(func))  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):

            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)

            return functools.wraps(func)(run_async)  # type: ignore[return-value]

        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return functools.wraps(func)(run)  # type: ignore[return-value]

    def _generator(self, func: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            gen = func(*args, **kwargs)  # runs none of its code yet
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                with self:  # the scope holds while the generator's own code runs
                    try:
                        if thrown is not None:
                            item = gen.throw(thrown)
                        else:
                            item = gen.send(sent)
                    except StopIteration as stop:
                        return stop.value
                    finally:
                        thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    with self:
                        gen.close()
                    raise
                except BaseException as exc:  # thrown in by the consumer: pass it on
                    thrown = exc
                    sent = None

        return wrapper

    def _async_generator(self, func: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            agen = func(*args, **kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                with self:
                    try:
                        if thrown is not None:
                            item = await agen.athrow(thrown)
                        else:
                            item = await agen.asend(sent)
                    except StopAsyncIteration:
                        return
                    finally:
                        thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    with self:
                        await agen.aclose()
                    raise
                except BaseException as exc:
                    thrown = exc
                    sent = None

        return wrapper


# --------------------------------------------------------------------------------------------
# Readers: spans, log lines, events
# --------------------------------------------------------------------------------------------

_EMPTY: Mapping[str, Any] = {}


def session_attributes() -> Mapping[str, Any]:
    """The span attributes of the current scope (empty outside any); do not mutate.

    Example:
        >>> with using_attributes(session_id="s1"):
        ...     dict(session_attributes())
        {'session.id': 's1', 'gen_ai.conversation.id': 's1'}
    """
    scope = _SCOPE.get()
    return _EMPTY if scope is None else scope.span_attributes


def on_start(span: Any, parent_context: Any = None) -> None:
    """Put the current scope's attributes on a span that is starting (a span processor's job).

    Cheap without a scope: one ContextVar read. Never raises.

    Args:
        span: the starting span (anything with ``set_attributes``).
        parent_context: ignored; the scope is the one current where the span starts.
    """
    scope = _SCOPE.get()
    if scope is None:
        return
    try:
        span.set_attributes(scope.span_attributes)
    except Exception as exc:
        report_internal_error(Stage.SPAN_PROCESSOR, exc)


class SessionSpanProcessor(SpanProcessor):
    """A span processor that applies `on_start` to every span started on its provider.

    Installed in the kit's provider, it reaches the kit's spans and every other
    instrumentation's (HTTP clients, databases, LLM SDK instrumentors) started inside a scope.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> TracerProvider().add_span_processor(SessionSpanProcessor())
    """

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        on_start(span, parent_context)


def add_session_fields(logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
    """A structlog processor: ``session_id`` / ``user_id`` of the current scope on each line.

    A value the line already has is kept.

    Example:
        >>> with using_attributes(user_id="u1"):
        ...     add_session_fields(None, "info", {"event": "hi"})
        {'event': 'hi', 'user_id': 'u1'}
    """
    scope = _SCOPE.get()
    if scope is not None:
        for key, value in scope.log_fields.items():
            event_dict.setdefault(key, value)
    return event_dict


def session_fields() -> dict[str, str]:
    """``session_id`` / ``user_id`` of the current scope, for events (only those set).

    Example:
        >>> session_fields()
        {}
    """
    scope = _SCOPE.get()
    return {} if scope is None else dict(scope.log_fields)


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------


def inject_session(carrier: dict[str, str]) -> dict[str, str]:
    """Add the current scope to a propagation carrier, under `SESSION_CARRIER_KEY`.

    The carrier is the one ``inject_context`` fills for a child process (its ``traceparent``
    becomes ``TRACEPARENT``); this key becomes `ENV_SESSION`. The scope does not travel as W3C
    ``baggage``: HTTP instrumentations forward baggage to every service the app calls, and a
    user id must not reach an LLM provider that way. The values are already redacted.

    Returns:
        The carrier (unchanged outside any scope).

    Example:
        >>> with using_attributes(session_id="s1"):
        ...     inject_session({})
        {'tinyllm-session': '{"session_id":"s1"}'}
    """
    scope = _SCOPE.get()
    if scope is None:
        return carrier
    data: dict[str, Any] = {}
    if scope.session_id is not None:
        data["session_id"] = scope.session_id
    if scope.user_id is not None:
        data["user_id"] = scope.user_id
    if scope.tags:
        data["tags"] = list(scope.tags)
    if scope.metadata:
        data["metadata"] = scope.metadata
    if data:
        carrier[SESSION_CARRIER_KEY] = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return carrier


def session_from_carrier(carrier: Mapping[str, str]) -> using_attributes | None:
    """The scope a parent process handed over (see `inject_session`), to enter in the child.

    Enter it for the life of the process (``scope.__enter__()``, never exited) or around the
    work. Never raises: a carrier that is not what `inject_session` writes is counted as an
    internal error (stage ``propagation``) and ignored.

    Example:
        >>> scope = session_from_carrier({"tinyllm-session": '{"session_id": "s1"}'})
        >>> with scope:
        ...     session_fields()
        {'session_id': 's1'}
    """
    text = carrier.get(SESSION_CARRIER_KEY)
    if not text:
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the session carrier is not a JSON object")
        return using_attributes(
            session_id=data.get("session_id"),
            user_id=data.get("user_id"),
            tags=data.get("tags"),
            metadata=data.get("metadata"),
        )
    except (ValueError, TypeError) as exc:
        report_internal_error(Stage.PROPAGATION, exc)
        return None
