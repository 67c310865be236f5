"""A user value as a bounded, redacted span attribute: ``input.value`` / ``output.value`` and kin.

The cost is bounded by the byte budget, not by the value: text is cut to the budget (plus a
small margin) *before* the redaction patterns scan it, containers are walked only until the
budget is spent, and the JSON is cut again after redaction. The result is always valid JSON for
``application/json``, and nothing of a user object reaches it without redaction.
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
from collections.abc import Mapping
from typing import Any

from .._errors import Stage, report_internal_error
from ..redaction import REDACTED, RedactionPolicy, get_redaction_policy, safe_str
from . import conventions as c

__all__ = [
    "DEFAULT_PAYLOAD_BYTES",
    "TRUNCATION_MARKER",
    "bounded_text",
    "check_budget",
    "json_string_within",
    "payload_attributes",
    "serialize_payload",
    "to_json_safe",
]

#: Byte budget of one captured value (as observe's ``capture_bytes`` default).
DEFAULT_PAYLOAD_BYTES = 4096
#: Ends every value that was cut.
TRUNCATION_MARKER = "...[truncated]"
#: Characters beyond the budget that the redaction patterns still see, so that a secret lying
#: across the cut is recognised whole and replaced (a secret longer than this, straddling the
#: cut, would show its head).
SCAN_MARGIN = 256
_MIN_BUDGET = 64
_MIN_TEXT = 16  # below this, a text is replaced by the marker alone
_CLOSING_ROOM = 32
_MAX_DEPTH = 32
_SHORT = 64  # characters of a string walked first in a mapping
_WALKS = 3  # walks of a value over budget before it becomes a JSON string of its head
_DEPTH_MARKER = "...[too deep]"

_repr = reprlib.Repr()
_repr.maxstring = 512
_repr.maxother = 512
_repr.maxlevel = 4


def check_budget(value: object, name: str) -> int:
    """Validate a byte budget given by the user.

    Raises:
        ValueError: not a whole number >= 64.

    Example:
        >>> check_budget(1024, "capture_bytes")
        1024
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < _MIN_BUDGET:
        raise ValueError(f"{name}={value!r}: use a whole number of bytes >= {_MIN_BUDGET}")
    return value


def bounded_text(text: str, budget: int = DEFAULT_PAYLOAD_BYTES) -> str:
    """``text`` redacted and at most ``budget`` UTF-8 bytes; a cut text ends with the marker.

    Only the first ``budget + SCAN_MARGIN`` characters are ever scanned, whatever the length.

    Args:
        text: any string (a ``str`` subclass is read as its characters).
        budget: the byte budget, at least 64.

    Returns:
        The redacted, bounded text.

    Example:
        >>> bounded_text("key sk-proj-abcdefghijklmnop", 64)
        'key [REDACTED]'
    """
    return _bounded_text(str.__str__(text), budget, get_redaction_policy())


def _bounded_text(text: str, budget: int, policy: RedactionPolicy) -> str:
    limit = budget + SCAN_MARGIN
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    red = policy.redact_text(text)
    if not cut and len(red) * 4 <= budget:  # cannot be over budget, whatever the characters
        return red
    encoded = red.encode("utf-8")
    if not cut and len(encoded) <= budget:
        return red
    keep = max(0, budget - len(TRUNCATION_MARKER))
    return encoded[:keep].decode("utf-8", "ignore") + TRUNCATION_MARKER


class _Walk:
    """One bounded, redacting walk of a value into what ``json.dumps`` accepts."""

    __slots__ = ("left", "policy", "truncated")

    def __init__(self, budget: int, policy: RedactionPolicy) -> None:
        self.left = budget  # characters still allowed; every item spends at least one
        self.policy = policy
        self.truncated = False

    def text(self, value: str) -> str:
        # Room is kept for what closes the enclosing containers, so that a value slightly
        # over budget is cut inside and stays structured JSON rather than becoming one string.
        room = self.left - _CLOSING_ROOM
        if room < _MIN_TEXT:
            self.truncated = True
            self.left -= len(TRUNCATION_MARKER) + 2
            return TRUNCATION_MARKER
        out = _bounded_text(value, room, self.policy)
        self.left -= len(out.encode("utf-8")) + 2
        return out

    def value(self, value: Any, depth: int) -> Any:
        cls = type(value)
        if cls is str:
            return self.text(value)
        if value is None or cls is bool or cls is int:
            self.left -= 8
            return value
        if cls is float:
            self.left -= 8
            return value if math.isfinite(value) else repr(value)  # NaN is not JSON
        if depth >= _MAX_DEPTH:
            self.truncated = True
            return _DEPTH_MARKER
        depth += 1
        if isinstance(value, Mapping):
            return self.mapping(value, depth)
        if isinstance(value, (list, tuple, set, frozenset)):
            return self.sequence(value, depth)
        if isinstance(value, str):
            return self.text(str.__str__(value))
        if isinstance(value, int):  # IntEnum and kin: the number, as JSON would write it
            self.left -= 8
            return int(value)
        if isinstance(value, float):
            return self.value(float(value), depth)
        if isinstance(value, (bytes, bytearray, memoryview)):
            head = bytes(value[: max(0, self.left) + SCAN_MARGIN])
            return self.text(head.decode("utf-8", "replace"))
        return self.obj(value, depth)

    def mapping(self, value: Mapping[Any, Any], depth: int) -> Any:
        # Short values first, long ones (texts, containers) with what budget is left: an LLM
        # call's settings survive its long messages. The keys keep their order.
        out: dict[Any, Any] = {}
        deferred: list[tuple[Any, Any]] = []
        try:
            items = iter(value.items())
            for key, item in items:
                if self.left <= _CLOSING_ROOM:
                    self.truncated = True
                    out[TRUNCATION_MARKER] = TRUNCATION_MARKER
                    break
                if self.policy.is_sensitive_key(key):
                    out[self.key(key)] = REDACTED
                    self.left -= len(REDACTED)
                elif _is_short(item):
                    out[self.key(key)] = self.value(item, depth)
                else:
                    name = self.key(key)
                    out[name] = None  # its place, filled below
                    deferred.append((name, item))
        except Exception:  # a mapping whose iteration fails: keep what was read
            self.truncated = True
            out[TRUNCATION_MARKER] = TRUNCATION_MARKER
        for name, item in deferred:
            if self.left <= _CLOSING_ROOM:
                self.truncated = True
                out[name] = TRUNCATION_MARKER
                self.left -= len(TRUNCATION_MARKER)
            else:
                out[name] = self.value(item, depth)
        return out

    def key(self, key: Any) -> Any:
        if type(key) is str:
            self.left -= len(key) + 3
            return self.policy.redact_text(key) if len(key) < 256 else self.text(key)
        if key is None or type(key) in (bool, int):
            self.left -= 8
            return key
        if type(key) is float:
            return key if math.isfinite(key) else repr(key)
        # JSON keys are strings: a tuple or object key becomes its redacted, bounded text.
        return self.text(_object_text(key))

    def sequence(self, value: Any, depth: int) -> list[Any]:
        out: list[Any] = []
        try:
            for item in value:
                if self.left <= _CLOSING_ROOM:
                    self.truncated = True
                    out.append(TRUNCATION_MARKER)
                    break
                out.append(self.value(item, depth))
        except Exception:
            self.truncated = True
            out.append(TRUNCATION_MARKER)
        return out

    def obj(self, value: Any, depth: int) -> Any:
        # Pydantic models (every SDK's responses) and dataclasses have a structure worth keeping;
        # anything else is its str(), cut and redacted.
        dump = getattr(type(value), "model_dump", None)
        if callable(dump):
            try:
                return self.value(dump(value, mode="json", exclude_none=True), depth)
            except Exception:
                pass
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            try:
                fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            except Exception:
                fields = None
            if fields is not None:
                return self.mapping(fields, depth)
        return self.text(_object_text(value))


class UnprintableValue(Exception):
    """Counted when a captured object's ``str()`` (or repr) raised: it shows as unprintable."""


def _is_short(value: Any) -> bool:
    """A value that costs a few bytes whatever happens: walked before the long ones."""
    cls = type(value)
    return value is None or cls in (bool, int, float) or (cls is str and len(value) <= _SHORT)


def _object_text(value: Any) -> str:
    """``str()`` of a user object that is safe to scan: a bounded repr when str() is the default.

    An object that cannot be printed becomes ``<unprintable T>``, counted (stage ``capture``)
    so that what is lost is visible.
    """
    cls = type(value)
    unprintable = f"<unprintable {cls.__name__}>"
    if cls.__str__ is object.__str__:
        try:
            return _repr.repr(value)
        except Exception:
            text = unprintable
    else:
        text = safe_str(value)
    if text == unprintable:
        report_internal_error(Stage.CAPTURE, UnprintableValue(f"str() of a {cls.__name__} raised"))
    return text


def to_json_safe(value: Any, budget: int = DEFAULT_PAYLOAD_BYTES) -> Any:
    """A redacted copy of ``value`` made only of what JSON holds, walked within ``budget``.

    Strings are cut and redacted, values under sensitive keys replaced, non-string keys turned
    into their redacted text, NaN and infinities into strings, Pydantic models and dataclasses
    into dicts, other objects into their redacted ``str()``. Cycles end at a depth limit.

    Example:
        >>> to_json_safe({"api_key": "abc", ("a", 1): float("nan")})
        {'api_key': '[REDACTED]', "('a', 1)": 'nan'}
    """
    return _Walk(budget, get_redaction_policy()).value(value, 0)


def serialize_payload(value: Any, budget: int = DEFAULT_PAYLOAD_BYTES) -> tuple[str, str]:
    """Serialise a captured value: redact, JSON, cut to the budget.

    A string is kept as text (``text/plain``); anything else becomes JSON
    (``application/json``) that always parses: when it is over budget, it becomes a JSON string
    holding its head and the truncation marker.

    Args:
        value: the value to capture.
        budget: at most this many UTF-8 bytes in the result.

    Returns:
        ``(text, mime_type)``.

    Example:
        >>> serialize_payload({"q": "hi", "password": "x"})
        ('{"q": "hi", "password": "[REDACTED]"}', 'application/json')
    """
    if isinstance(value, str):
        return bounded_text(value, budget), c.MIME_TEXT
    policy = get_redaction_policy()
    # The walk's budget is an estimate (escapes, the markers of cut containers): when its JSON
    # comes out over the budget, walk again with less, so the value keeps its shape; a walk
    # costs what its budget allows, not what the value holds.
    walk_budget = budget
    for _attempt in range(_WALKS):
        try:
            safe = _Walk(walk_budget, policy).value(value, 0)
            text = json.dumps(safe, ensure_ascii=False, allow_nan=False, default=_last_resort)
        except Exception as exc:  # pragma: no cover - the walk leaves nothing json cannot take
            report_internal_error(Stage.CAPTURE, exc)
            text = json.dumps(
                _bounded_text(_object_text(value), budget, policy), ensure_ascii=False
            )
            break
        if len(text) * 4 <= budget:
            return text, c.MIME_JSON
        size = len(text.encode("utf-8"))
        if size <= budget:
            return text, c.MIME_JSON
        walk_budget -= size - budget + _CLOSING_ROOM
        if walk_budget < _MIN_BUDGET:
            break
    return json_string_within(text, budget), c.MIME_JSON


def json_string_within(text: str, budget: int) -> str:
    """A JSON string literal of the head of ``text`` plus the marker, at most ``budget`` bytes.

    Escaping can make the literal longer than its text (quotes, control characters), so the
    head shrinks until the literal fits.

    Example:
        >>> literal = json_string_within('"' * 100, 64)
        >>> len(literal.encode()) <= 64, literal.endswith('...[truncated]"')
        (True, True)
    """
    encoded = text.encode("utf-8")
    keep = max(0, budget - len(TRUNCATION_MARKER) - 2)
    while True:
        head = encoded[:keep].decode("utf-8", "ignore")
        literal = json.dumps(head + TRUNCATION_MARKER, ensure_ascii=False)
        size = len(literal.encode("utf-8"))
        if size <= budget or keep == 0:
            return literal
        keep = max(0, min(keep - 1, keep * budget // size - len(TRUNCATION_MARKER)))


def _last_resort(value: Any) -> str:
    return bounded_text(_object_text(value), DEFAULT_PAYLOAD_BYTES)


def payload_attributes(
    value: Any, direction: str, budget: int = DEFAULT_PAYLOAD_BYTES
) -> dict[str, str]:
    """``input.value`` + ``input.mime_type`` (or ``output.*``) of one captured value.

    Args:
        value: the call's arguments (input) or result (output).
        direction: ``"input"`` or ``"output"``.
        budget: byte budget of the value.

    Returns:
        The two attributes.

    Raises:
        ValueError: ``direction`` is neither ``"input"`` nor ``"output"``.

    Example:
        >>> payload_attributes("hello", "output")
        {'output.value': 'hello', 'output.mime_type': 'text/plain'}
    """
    if direction == "input":
        keys = (c.INPUT_VALUE, c.INPUT_MIME_TYPE)
    elif direction == "output":
        keys = (c.OUTPUT_VALUE, c.OUTPUT_MIME_TYPE)
    else:
        raise ValueError(f"direction={direction!r}: use 'input' or 'output'")
    text, mime = serialize_payload(value, budget)
    return {keys[0]: text, keys[1]: mime}
