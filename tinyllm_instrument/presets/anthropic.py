"""The ``@anthropic`` preset: the official ``anthropic`` client's messages, sync and async.

anthropic 2.x traces its own API calls with OpenTelemetry (a ``CLIENT`` span per call, with the
GenAI attributes) whenever a tracer provider is set, as ``run`` sets one. Two LLM spans per call
would count its tokens twice, so while ``@anthropic`` is on the SDK's own spans are off for the
clients made after it (``ANTHROPIC_OPEN_TELEMETRY=false``, unless that variable is set already:
the user's word stands). A client whose own spans are on (made before the preset was enabled,
given ``open_telemetry=...``, or with the variable set) keeps them, and the preset leaves its
calls alone: one LLM span per call, either way.
"""

from __future__ import annotations

import os
from typing import Any

from ._base import Preset
from ._sdk import Method, SDKPatcher

__all__ = ["ENV_SDK_TRACING", "METHODS", "PRESET"]

#: The SDK's own switch of its spans (read by each client when it is constructed).
ENV_SDK_TRACING = "ANTHROPIC_OPEN_TELEMETRY"

_MESSAGES = "anthropic.resources.messages.messages"

#: What @anthropic wraps: messages.create (stream=True too) and the messages.stream() helper.
METHODS = (
    Method(_MESSAGES, "Messages.create", "anthropic.messages.create", "llm", streams=True),
    Method(
        _MESSAGES,
        "AsyncMessages.create",
        "anthropic.messages.create",
        "llm",
        is_async=True,
        streams=True,
    ),
    Method(
        _MESSAGES,
        "Messages.stream",
        "anthropic.messages.stream",
        "llm",
        manager_request="_MessageStreamManager__api_request",
    ),
    Method(
        _MESSAGES,
        "AsyncMessages.stream",
        "anthropic.messages.stream",
        "llm",
        is_async=True,
        manager_request="_AsyncMessageStreamManager__api_request",
    ),
)


def _stream_types() -> tuple[type, type]:
    import anthropic

    return anthropic.Stream, anthropic.AsyncStream


def _traced_by_the_sdk(resource: Any) -> bool:
    """Whether the client of ``resource`` makes its own spans (then the preset leaves it alone)."""
    client = getattr(resource, "_client", None)
    options = getattr(client, "open_telemetry", None)  # the client's resolved option, a copy
    if not isinstance(options, dict):
        return False
    traces = options.get("traces")
    return isinstance(traces, dict) and traces.get("enabled") is True


_PATCHER = SDKPatcher("anthropic", METHODS, _stream_types, skip=_traced_by_the_sdk)
_SET_BY_US: list[bool] = []


def _install(report: Any) -> None:
    if ENV_SDK_TRACING not in os.environ:
        os.environ[ENV_SDK_TRACING] = "false"
        _SET_BY_US[:] = [True]
    _PATCHER.install(report)


def _uninstall() -> None:
    _PATCHER.uninstall()
    if _SET_BY_US and os.environ.get(ENV_SDK_TRACING) == "false":
        del os.environ[ENV_SDK_TRACING]
    _SET_BY_US.clear()


PRESET = Preset(
    name="anthropic",
    distribution="anthropic",
    majors=(2,),
    covers="messages.create (stream=True too) and messages.stream(), sync and async (llm)",
    install=_install,
    uninstall=_uninstall,
)
