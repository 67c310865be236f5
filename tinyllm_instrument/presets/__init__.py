"""The preset registry: ``@NAME`` -> :class:`Preset`; version checks, install once, the plan.

A preset is a named set of wrappers for a library (``@openai``, ``@anthropic``, ``@langgraph``),
enabled by ``instrument("@openai")``, ``tinyllm-instrument run --instrument @openai`` or
``TINYLLM_INSTRUMENT_TARGETS=@openai``. The registry, not each preset, decides whether it can
apply: a library that is not installed, or of a major version the preset is not written for,
is a note in the plan (``--print-plan``), not an error; an unknown name is one error listing the
known ones; a preset whose ``install`` fails is reported once, counted and skipped.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from . import anthropic as _anthropic
from . import langgraph as _langgraph
from . import openai as _openai
from ._base import Preset, Report

__all__ = [
    "PRESETS",
    "Preset",
    "Report",
    "disable_presets",
    "enable_presets",
    "enabled_presets",
    "is_preset",
    "parse_preset",
    "preset_plan",
]

_log = logging.getLogger(KIT_LOGGER_NAME)

#: Every preset, by name (``@NAME`` without the ``@``). One line per preset module.
PRESETS: dict[str, Preset] = {
    "anthropic": _anthropic.PRESET,
    "langgraph": _langgraph.PRESET,
    "openai": _openai.PRESET,
}

_NAME_RE = re.compile(r"^@[a-z][a-z0-9_]*$")


class _Enabled:
    """What one enabled preset did: the labels it wrapped, and the notes said about it."""

    __slots__ = ("preset", "labels", "notes", "installed")

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.labels: list[str] = []
        self.notes: list[str] = []
        self.installed = False


_LOCK = threading.RLock()
_ENABLED: dict[str, _Enabled] = {}
# Told of each label a preset wraps: (kind, "@name", label); set by `run` in child processes.
_LISTENER: list[Callable[[str, str, Any], None]] = []


def is_preset(text: Any) -> bool:
    """Whether a target text names a preset (starts with ``@``), known or not."""
    return isinstance(text, str) and text.strip().startswith("@")


def known() -> str:
    """The known presets, as an error message lists them: ``@anthropic, @langgraph, @openai``."""
    return ", ".join(f"@{name}" for name in sorted(PRESETS)) or "(none)"


def parse_preset(text: str) -> str:
    """``"@openai"`` -> ``"@openai"`` (stripped), for a preset the registry knows.

    Raises:
        ValueError: not ``@NAME``, or no preset of that name; the message lists the known ones.

    Example:
        >>> parse_preset(" @openai ")
        '@openai'
    """
    cleaned = text.strip() if isinstance(text, str) else text
    if not isinstance(cleaned, str) or not _NAME_RE.match(cleaned):
        raise ValueError(f"preset {text!r} is not valid; use @NAME, one of {known()}")
    if cleaned[1:] not in PRESETS:
        raise ValueError(f"unknown preset {cleaned!r}; known presets: {known()}")
    return cleaned


def _version_note(preset: Preset) -> str | None:
    """Why the preset cannot apply here (library missing, or another major), or None."""
    try:
        version = importlib.metadata.version(preset.distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"skipped: {preset.distribution} is not installed"
    major_text = version.split(".", 1)[0]
    major = int(major_text) if major_text.isdigit() else None
    if major not in preset.majors:
        written = "/".join(f"{m}.x" for m in preset.majors)
        found = f"{preset.distribution} {version} found"
        return f"skipped: {found}; @{preset.name} is written for {written}"
    return None


def enable_presets(names: Iterable[str]) -> None:
    """Enable each ``@NAME`` once: check its library, then install its wrappers.

    A library that is missing or of another major version leaves a note in
    :func:`preset_plan`; a failing ``install`` is reported once (stage ``instrument``), counted
    and noted. Never raises for those.

    Raises:
        ValueError: a name is not a known preset (nothing is enabled then).

    Example:
        >>> enable_presets(["@openai"])
    """
    parsed = [parse_preset(name) for name in names]
    for text in parsed:
        with _LOCK:
            if text in _ENABLED:
                continue
            state = _ENABLED[text] = _Enabled(PRESETS[text[1:]])
        note = _version_note(state.preset)
        if note is not None:
            _add_note(state, note)
            continue
        try:
            state.preset.install(_reporter(text, state))
            state.installed = True
        except Exception as exc:  # a preset must never break the program it observes
            report_internal_error(Stage.INSTRUMENT, exc)
            _add_note(state, f"skipped: installing failed ({type(exc).__name__}); reported once")
            _uninstall(state)


def _reporter(text: str, state: _Enabled) -> Report:
    def report(label: str) -> None:
        with _LOCK:
            if _ENABLED.get(text) is not state or label in state.labels:
                return
            state.labels.append(label)
        _log.debug("tinyllm_instrument: preset %s wrapped %s", text, label)
        for listener in list(_LISTENER):
            try:
                listener("match", text, label)
            except Exception as exc:  # telling is a courtesy; wrapping goes on
                report_internal_error(Stage.INSTRUMENT, exc)

    return report


def _add_note(state: _Enabled, note: str) -> None:
    with _LOCK:
        if note not in state.notes:
            state.notes.append(note)
    _log.debug("tinyllm_instrument: preset @%s %s", state.preset.name, note)


def _uninstall(state: _Enabled) -> None:
    try:
        state.preset.uninstall()
    except Exception as exc:
        report_internal_error(Stage.UNINSTRUMENT, exc)


def disable_presets(names: Iterable[str] | None = None) -> None:
    """Uninstall the named presets (every enabled one when None). Idempotent.

    Raises:
        ValueError: a name is not a known preset.
    """
    with _LOCK:
        texts = list(_ENABLED) if names is None else [parse_preset(n) for n in names]
        states = [s for t in texts if (s := _ENABLED.pop(t, None)) is not None]
    for state in states:
        if state.installed:
            _uninstall(state)


def enabled_presets() -> list[str]:
    """The presets enabled, as ``@NAME``, in the order they were enabled."""
    with _LOCK:
        return list(_ENABLED)


def preset_plan() -> dict[str, list[str]]:
    """For each enabled preset: the labels it wrapped so far, then its notes (``skipped: ...``).

    An empty list: its library was not imported (yet).

    Example:
        >>> preset_plan()
        {'@openai': ['openai.resources.chat.completions:Completions.create', ...]}
    """
    with _LOCK:
        return {text: [*s.labels, *s.notes] for text, s in _ENABLED.items()}


def set_listener(listener: Callable[[str, str, Any], None] | None) -> None:
    """Who is told of each label a preset wraps (``run`` sets it in child processes)."""
    with _LOCK:
        _LISTENER[:] = [] if listener is None else [listener]
