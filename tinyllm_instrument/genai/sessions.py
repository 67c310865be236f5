"""``using_attributes``: session, user, tags and metadata on every span, log line and event inside.

The scope lives in one ContextVar, so it follows the code exactly as OpenTelemetry's context does:
into ``asyncio`` tasks, into threads and pools that copy the context (the kit's thread
propagation does), and into other processes and services as W3C baggage (`session_baggage` on
the way out, `take_session` on the way in; ``inject_context`` / ``extract_context`` call them).
A session that arrived that way lives in the OpenTelemetry context it was extracted into, so it
applies wherever that context is attached, as the remote parent span does.

Everything a reader needs is computed when the scope is entered: a span start pays one
ContextVar read and one ``set_attributes``; with no scope, one ContextVar read (plus one
attribute read once this process has received a session from outside).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import quote_plus

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from .._errors import Stage, report_internal_error
from ..redaction import REDACTED, get_redaction_policy, safe_str
from . import conventions as c
from .payloads import TRUNCATION_MARKER, bounded_text, json_string_within, to_json_safe

__all__ = [
    "BAGGAGE_BYTES",
    "BAGGAGE_KEYS",
    "SessionSpanProcessor",
    "add_session_fields",
    "check_id",
    "has_scope",
    "inject_session",
    "on_start",
    "session_attributes",
    "session_baggage",
    "session_fields",
    "session_from_carrier",
    "take_session",
    "using_attributes",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Byte budgets: an id, one tag, the metadata JSON; and at most this many tags.
ID_BYTES = 256
TAG_BYTES = 128
METADATA_BYTES = 4096
MAX_TAGS = 64

#: The W3C baggage members a scope travels in: the span attribute names, so that a service
#: without the kit that copies baggage onto its spans (opentelemetry-processor-baggage's
#: BaggageSpanProcessor) shows the same ``session.id`` / ``user.id``. Tags are a JSON array,
#: metadata a JSON object.
BAGGAGE_KEYS = (c.SESSION_ID, c.USER_ID, c.TAG_TAGS, c.METADATA)
#: At most this many bytes of a baggage header are the session's (percent-encoded members and
#: their commas): half of the 8192 the W3C allows, the other half left to the app's own baggage.
BAGGAGE_BYTES = 4096


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
        "baggage",
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
        self.baggage: dict[str, str] | None = None  # its baggage members, made on first use


_SCOPE: ContextVar[_Scope | None] = ContextVar("tinyllm_instrument_session", default=None)
#: This process's own scope, None outside any: what the span path reads first, directly.
SCOPE_VAR = _SCOPE
#: Where a session received from outside lives: in the OpenTelemetry context it was extracted
#: into (see `take_session`), so it is current exactly where that context is attached.
_RECEIVED_KEY = otel_context.create_key("tinyllm_instrument.session")


class _Received:
    """Whether any session ever arrived from outside: until one has, readers skip the lookup."""

    __slots__ = ("any",)

    def __init__(self) -> None:
        self.any = False


RECEIVED = _Received()


def _current(context: otel_context.Context | None = None) -> _Scope | None:
    """The scope in effect: this process's own, else one received in ``context`` (or the
    current OpenTelemetry context)."""
    scope = _SCOPE.get()
    if scope is None and RECEIVED.any:
        return _received(context)
    return scope


def _received(context: otel_context.Context | None) -> _Scope | None:
    # get_current().get(): a frame fewer than get_value(), on a path every span may take.
    found = (context if context is not None else otel_context.get_current()).get(_RECEIVED_KEY)
    return found if isinstance(found, _Scope) else None


def has_scope() -> bool:
    """Whether a scope is in effect here (entered in this process, or received and attached).

    Example:
        >>> has_scope()
        False
    """
    return _current() is not None


def _metadata_json(metadata: dict[str, Any]) -> str:
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) <= METADATA_BYTES:
        return text
    return json_string_within(text, METADATA_BYTES)


def check_id(value: Any, name: str) -> str | None:
    """An id as a scope keeps it: converted to text, redacted, at most 256 bytes; "" is None.

    Args:
        value: the id (any object; ``str()`` of a non-string, never raising).
        name: ``"session_id"`` or ``"user_id"``: a name the redaction policy declares
            sensitive makes the whole id ``[REDACTED]``.

    Example:
        >>> check_id(42, "user_id")
        '42'
    """
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
        self._session_id = check_id(session_id, "session_id")
        self._user_id = check_id(user_id, "user_id")
        self._root = _Scope(self._session_id, self._user_id, self._tags, self._metadata, None, self)

    # -- as a context manager --------------------------------------------------------------

    def __enter__(self) -> using_attributes:
        previous = _SCOPE.get()
        # Merged with the scope in effect, which may be one received from outside; but only
        # this process's own is restored on exit (a received one stays in its context).
        outer = previous if previous is not None else _current()
        if outer is None:
            scope = self._root  # the same for every entry with nothing around it
        else:
            scope = _Scope(
                self._session_id if self._session_id is not None else outer.session_id,
                self._user_id if self._user_id is not None else outer.user_id,
                _merge_tags(outer.tags, self._tags),
                {**outer.metadata, **self._metadata} if self._metadata else outer.metadata,
                previous,
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
    """The span attributes of the scope in effect (empty outside any); do not mutate.

    Example:
        >>> with using_attributes(session_id="s1"):
        ...     dict(session_attributes())
        {'session.id': 's1', 'gen_ai.conversation.id': 's1'}
    """
    scope = _current()
    return _EMPTY if scope is None else scope.span_attributes


def on_start(span: Any, parent_context: otel_context.Context | None = None) -> None:
    """Put the scope's attributes on a span that is starting (a span processor's job).

    Cheap without a scope: one ContextVar read. Never raises.

    Args:
        span: the starting span (anything with ``set_attributes``).
        parent_context: the context the span was started in (None: the current one); a
            session received from outside is looked up there. This process's own scope is the
            one current where the span starts.
    """
    scope = _SCOPE.get()
    if scope is None:
        if not RECEIVED.any:
            return
        scope = _received(parent_context)
        if scope is None:
            return
    try:
        span.set_attributes(scope.span_attributes)
    except Exception as exc:
        report_internal_error(Stage.SPAN_PROCESSOR, exc)


class SessionSpanProcessor:
    """A span processor that applies `on_start` to every span started on its provider.

    The kit's own provider does this already (its span processor calls `on_start` first, so
    every other processor sees the attributes); add this one to a provider of your own. A span
    processor by duck typing, so that this module does not import the OpenTelemetry SDK.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> TracerProvider().add_span_processor(SessionSpanProcessor())
    """

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        on_start(span, parent_context)

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def log_fields() -> Mapping[str, str]:
    """``session_id`` / ``user_id`` of the scope in effect, for the log chain; do not mutate."""
    scope = _current()
    return _EMPTY if scope is None else scope.log_fields


def add_session_fields(logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
    """A structlog processor: ``session_id`` / ``user_id`` of the scope in effect on each line.

    A value the line already has is kept. The kit's own log chain does this already.

    Example:
        >>> with using_attributes(user_id="u1"):
        ...     add_session_fields(None, "info", {"event": "hi"})
        {'event': 'hi', 'user_id': 'u1'}
    """
    scope = _current()
    if scope is not None:
        for key, value in scope.log_fields.items():
            event_dict.setdefault(key, value)
    return event_dict


def session_fields() -> dict[str, str]:
    """``session_id`` / ``user_id`` of the scope in effect, for events (only those set).

    Example:
        >>> session_fields()
        {}
    """
    scope = _current()
    return {} if scope is None else dict(scope.log_fields)


# --------------------------------------------------------------------------------------------
# Across processes and services: W3C baggage
# --------------------------------------------------------------------------------------------

_BAGGAGE = W3CBaggagePropagator()


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _encoded(text: str) -> int:
    """Bytes of ``text`` as OpenTelemetry's baggage propagator writes it (``quote_plus``)."""
    return len(quote_plus(text))


def _tags_within(tags: tuple[str, ...], room: int) -> str | None:
    n = len(tags)
    text = _compact(list(tags))
    while _encoded(text) > room and n > 0:
        n -= 1  # the last tags go, and the marker says so
        text = _compact([*tags[:n], TRUNCATION_MARKER])
    return text if _encoded(text) <= room else None


def _metadata_within(metadata: dict[str, Any], room: int) -> str | None:
    text = _compact(metadata)
    budget = METADATA_BYTES
    while _encoded(text) > room:
        budget //= 2  # strings cut shorter, each with the marker
        if budget < 64:
            return None
        text = _compact(to_json_safe(metadata, budget))
    return text


def _baggage_members(scope: _Scope) -> dict[str, str]:
    """The scope's baggage members, within `BAGGAGE_BYTES` encoded; made once per scope."""
    members = scope.baggage
    if members is not None:
        return members
    members = {}
    room = BAGGAGE_BYTES
    for key, value in ((c.SESSION_ID, scope.session_id), (c.USER_ID, scope.user_id)):
        if value is not None:  # at most 256 bytes each: never more than a fifth of the room
            members[key] = value
            room -= len(key) + 2 + _encoded(value)
    if scope.tags:
        share = room // 2 if scope.metadata else room
        tags = _tags_within(scope.tags, share - len(c.TAG_TAGS) - 2)
        if tags is not None:
            members[c.TAG_TAGS] = tags
            room -= len(c.TAG_TAGS) + 2 + _encoded(tags)
    if scope.metadata:
        metadata = _metadata_within(scope.metadata, room - len(c.METADATA) - 2)
        if metadata is not None:
            members[c.METADATA] = metadata
    scope.baggage = members
    return members


def session_baggage(context: otel_context.Context | None = None) -> otel_context.Context | None:
    """``context`` (None: the current one) with the scope in effect first in its baggage.

    The members are `BAGGAGE_KEYS`: ``session.id`` and ``user.id`` as they are, ``tag.tags`` a
    JSON array, ``metadata`` a JSON object; already redacted as the scope is, and together at
    most `BAGGAGE_BYTES` once percent-encoded: past that the last tags give way to a
    ``...[truncated]`` tag, and metadata strings are cut, each ending with that marker.

    Returns:
        The new context; ``context`` itself when no scope is in effect.

    Example:
        >>> from opentelemetry import baggage
        >>> with using_attributes(session_id="s1"):
        ...     baggage.get_all(session_baggage())
        mappingproxy({'session.id': 's1'})
    """
    scope = _current(context)
    if scope is None:
        return context
    members = _baggage_members(scope)
    if not members:
        return context
    others = otel_baggage.get_all(context)
    out = otel_baggage.clear(context)
    for key, value in members.items():
        out = otel_baggage.set_baggage(key, value, out)
    for key, other in others.items():
        if key not in members:
            out = otel_baggage.set_baggage(key, other, out)
    return out


def _parse(entries: Mapping[str, object]) -> tuple[using_attributes | None, list[str], list[str]]:
    """A scope from baggage entries, the keys it was made of, and what could not be read."""
    problems: list[str] = []
    taken = [key for key in (c.SESSION_ID, c.USER_ID) if key in entries]
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    if c.TAG_TAGS in entries:
        try:
            value = json.loads(str(entries[c.TAG_TAGS]))
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(t, str) for t in value):
            tags = value
            taken.append(c.TAG_TAGS)
        else:
            problems.append(f"baggage {c.TAG_TAGS} is not a JSON array of strings")
    if c.METADATA in entries:
        try:
            value = json.loads(str(entries[c.METADATA]))
        except ValueError:
            value = None
        if isinstance(value, dict):
            metadata = value
            taken.append(c.METADATA)
        else:
            problems.append(f"baggage {c.METADATA} is not a JSON object")
    if not taken:
        return None, taken, problems
    scope = using_attributes(
        session_id=entries.get(c.SESSION_ID),
        user_id=entries.get(c.USER_ID),
        tags=tags,
        metadata=metadata,
    )
    return scope, taken, problems


def take_session(context: otel_context.Context) -> tuple[otel_context.Context, list[str]]:
    """Move a session out of ``context``'s baggage into the context itself.

    For a context just extracted from incoming headers. The members of `BAGGAGE_KEYS` that hold
    what `session_baggage` writes become the scope in effect wherever the returned context is
    attached (or is the parent of a span), and leave the baggage: HTTP instrumentations inject
    the current baggage into every request the service makes, and the session must not reach
    a third party (an LLM provider) that way. ``inject_context`` still carries it on, from the
    scope. Values are validated, redacted and bounded again, as any ``using_attributes``.

    Returns:
        The context, and a sentence for each member that was left alone because it is not what
        the kit writes (another library's ``metadata`` member, say).
    """
    entries = otel_baggage.get_all(context)
    if not any(key in entries for key in BAGGAGE_KEYS):
        return context, []
    scope, taken, problems = _parse(entries)
    if scope is None:
        return context, problems
    for key in taken:
        context = otel_baggage.remove_baggage(key, context)
    RECEIVED.any = True
    return otel_context.set_value(_RECEIVED_KEY, scope._root, context), problems


def inject_session(
    carrier: dict[str, str], context: otel_context.Context | None = None
) -> dict[str, str]:
    """Write the W3C ``baggage`` header of ``context`` with the scope in effect into ``carrier``.

    ``inject_context`` does this along with ``traceparent``; this is for a transport of your
    own that carries only the session.

    Returns:
        The carrier (without a ``baggage`` entry when there is neither scope nor baggage).

    Example:
        >>> with using_attributes(session_id="s1", user_id="u 1"):
        ...     inject_session({})
        {'baggage': 'session.id=s1,user.id=u+1'}
    """
    _BAGGAGE.inject(carrier, context=session_baggage(context))
    return carrier


def session_from_carrier(carrier: Mapping[str, str]) -> using_attributes | None:
    """The scope a ``baggage`` header carries (see `inject_session`), to enter on this side.

    Enter it around the work (``with``), or for the life of a process (``__enter__()``, never
    exited). Never raises: members that are not what `inject_session` writes are counted as an
    internal error (stage ``propagation``) and left out.

    Returns:
        A ``using_attributes``, or None when the carrier holds no session.

    Example:
        >>> scope = session_from_carrier({"baggage": "session.id=s1"})
        >>> with scope:
        ...     session_fields()
        {'session_id': 's1'}
    """
    try:
        entries = otel_baggage.get_all(_BAGGAGE.extract(carrier, context=otel_context.Context()))
        scope, _taken, problems = _parse(entries)
        for problem in problems:
            report_internal_error(Stage.PROPAGATION, ValueError(problem))
        return scope
    except Exception as exc:
        report_internal_error(Stage.PROPAGATION, exc)
        return None
