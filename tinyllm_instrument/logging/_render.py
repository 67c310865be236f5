"""Turning a redacted event dict into one line: JSON (orjson when installed) or console text."""

from __future__ import annotations

import datetime as _dt
import enum
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from ..redaction import get_redaction_policy, safe_str

try:  # a compiled JSON encoder: about 15x faster than json.dumps for a log line
    import orjson as _orjson
except ImportError:  # the optional extra tinyllm-instrument[fast] is not installed
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "META_KEYS",
    "ConsoleLines",
    "JsonLines",
    "escape_controls",
    "json_backend",
    "json_default",
]

# Keys the pipeline uses for its own bookkeeping; never rendered.
META_KEYS = ("_record", "_from_structlog")

# C0 and C1 control characters, DEL and the Unicode line separators, as visible escapes: from
# event text, a value or a stdlib message they would start forged lines or drive the terminal.
_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
_ESCAPES_KEEP_NEWLINES = {c: e for c, e in _ESCAPES.items() if c != 0x0A}


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """``text`` with control characters shown as escapes (``\\n``, ``\\x1b``...).

    Example:
        >>> escape_controls("a\\nb\\x1b[2J")
        'a\\\\nb\\\\x1b[2J'
    """
    if text.isprintable():
        return text
    return text.translate(_ESCAPES_KEEP_NEWLINES if keep_newlines else _ESCAPES)


def _text_of(value: Any) -> str:
    """What a sink may show of an object that JSON cannot hold: its repr, redacted.

    Redaction scanned the object's str(), but JSON and the console show its repr, which can
    hold what str() did not (a client whose repr lists its api_key).
    """
    try:
        text = repr(value)
        if type(text) is not str:
            text = safe_str(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return get_redaction_policy().redact_text(text)


def json_default(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, 1)
    if isinstance(value, (set, frozenset)):
        return list(value)
    return _text_of(value)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` with whatever ``json.dumps`` refuses made representable.

    Non-string keys become their text, ints too long for a decimal string become hex, other
    objects their redacted repr. Used only when the fast encoder fails on a line.
    """
    cls = type(value)
    if cls is str or cls is float or cls is bool or value is None:
        return value
    if cls is int:
        try:
            str(value)
            return value
        except ValueError:  # past sys.get_int_max_str_digits(): keep the value, in hex
            return hex(value)
    if depth > 64:
        return "[too deep]"
    if isinstance(value, Mapping):
        out = {}
        try:
            items = list(value.items())
        except Exception:
            return _text_of(value)
        for key, val in items:
            if not isinstance(key, str) and key is not None and type(key) not in (float, bool):
                key = _jsonable(key, depth + 1) if type(key) is int else _text_of(key)
            out[key] = _jsonable(val, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, int):  # bool handled; IntEnum and other subclasses
        return _jsonable(int(value), depth + 1)
    return _jsonable(json_default(value), depth + 1)


# Characters orjson writes raw that a line-oriented reader or a terminal may act on.
_RAW_SEPARATORS = re.compile("[\u0080-\u009f\u2028\u2029]")


def _escape_separators(line: bytes) -> bytes:
    text = line.decode("utf-8")
    return _RAW_SEPARATORS.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


def json_backend() -> str:
    """``"orjson"`` or ``"json"``: the encoder JSON lines are written with."""
    return "json" if _orjson is None else "orjson"


class JsonLines:
    """The last processor of the JSON chain: one JSON object and a newline.

    A value the encoder refuses (a dict with tuple keys, an int of 5,000 digits) is rendered
    some other way (its text, hex) and the line is written: a line is never lost to its values.
    """

    __slots__ = ("as_bytes",)

    def __init__(self, as_bytes: bool) -> None:
        self.as_bytes = as_bytes

    def __repr__(self) -> str:
        return "JSONRenderer"

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        for key in META_KEYS:
            event_dict.pop(key, None)
        line: bytes | None = None
        if _orjson is not None:
            try:
                line = _orjson.dumps(event_dict, default=json_default, option=_OPTIONS)
            except Exception:
                line = None
            else:
                if not line.isascii() and (
                    b"\xc2" in line or b"\xe2\x80\xa8" in line or b"\xe2\x80\xa9" in line
                ):
                    line = _escape_separators(line)
        if line is None:
            line = _stdlib_dumps(event_dict).encode("utf-8")
        return line if self.as_bytes else line.decode("utf-8")


if _orjson is not None:
    # Dataclasses go through json_default (their repr, redacted) rather than being walked by
    # orjson: redaction has not looked inside them, so a field named "token" would leak.
    _OPTIONS = _orjson.OPT_APPEND_NEWLINE | _orjson.OPT_PASSTHROUGH_DATACLASS
else:  # pragma: no cover
    _OPTIONS = 0


def _stdlib_dumps(event_dict: EventDict) -> str:
    try:
        return json.dumps(event_dict, default=json_default, separators=(",", ":")) + "\n"
    except Exception:
        return json.dumps(_jsonable(event_dict), default=_text_of, separators=(",", ":")) + "\n"


class _Shown(str):
    """Text the console renderer must print as it is (its repr would quote it once more)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str.__str__(self)


class ConsoleLines:
    """structlog's ConsoleRenderer, fed only text a terminal can show: one call, one line.

    Event text, keys and values have their control characters escaped; a traceback keeps its
    line breaks but every line of it is indented, so none can pass for a log line of its own.
    """

    __slots__ = ("_renderer",)

    def __init__(self, colors: bool) -> None:
        self._renderer = structlog.dev.ConsoleRenderer(colors=colors)

    def __repr__(self) -> str:
        return "ConsoleRenderer"

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        for key in META_KEYS:
            event_dict.pop(key, None)
        clean: dict[str, Any] = {}
        for key, value in event_dict.items():
            if not isinstance(key, str):
                key = _text_of(key)
            key = escape_controls(key)
            if key in ("exception", "stack") and isinstance(value, str):
                text = escape_controls(value, keep_newlines=True)
                clean[key] = "\n".join("  " + line for line in text.split("\n"))
            elif isinstance(value, str):
                clean[key] = escape_controls(value)
            elif value is None or type(value) in (int, float, bool):
                clean[key] = value
            else:
                clean[key] = _Shown(escape_controls(_text_of(value)))
        return str(self._renderer(logger, method_name, clean)) + "\n"
