"""The ``@openai`` preset: the official ``openai`` client's model calls, sync and async."""

from __future__ import annotations

from typing import Any

from ._base import Preset
from ._sdk import Method, SDKPatcher

__all__ = ["METHODS", "PRESET"]

_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_LEGACY = "openai.resources.completions"
_EMBEDDINGS = "openai.resources.embeddings"

#: What @openai wraps: each once for the sync client and once for the async one.
METHODS = tuple(
    Method(module, f"{prefix}{cls}.create", node, kind, is_async=bool(prefix), streams=streams)
    for module, cls, node, kind, streams in (
        (_CHAT, "Completions", "openai.chat.completions.create", "llm", True),
        (_RESPONSES, "Responses", "openai.responses.create", "llm", True),
        (_LEGACY, "Completions", "openai.completions.create", "llm", True),
        (_EMBEDDINGS, "Embeddings", "openai.embeddings.create", "embedding", False),
    )
    for prefix in ("", "Async")
)


def _stream_types() -> tuple[type, type]:
    import openai

    return openai.Stream, openai.AsyncStream


_PATCHER = SDKPatcher("openai", METHODS, _stream_types)


def _install(report: Any) -> None:
    _PATCHER.install(report)


PRESET = Preset(
    name="openai",
    distribution="openai",
    majors=(3,),
    covers="chat.completions, responses and completions create (llm), embeddings create "
    "(embedding); sync and async, stream=True followed to its end",
    install=_install,
    uninstall=_PATCHER.uninstall,
)
