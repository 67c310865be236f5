"""LLM-native telemetry: GenAI and OpenInference names, kinds, usage, documents, cost, sessions.

Pure building blocks that ``@observe``, the provider, logging and events use; one concern each:

* :mod:`.conventions`: every attribute name written, with the version of its convention;
* :mod:`.kinds`: ``kind=`` values, their static span attributes, span kind and span name;
* :mod:`.providers`: which SDK a result comes from, and the provider's name in each vocabulary;
* :mod:`.results`: token usage, response model / id and finish reasons read from a result;
* :mod:`.streams`: the same gathered from a stream's items;
* :mod:`.payloads`: ``input.value`` / ``output.value``, bounded and redacted;
* :mod:`.documents`: a retriever's documents as ``retrieval.documents.*``;
* :mod:`.messages`: ``llm.input_messages.*`` / ``llm.output_messages.*``;
* :mod:`.cost`: the USD cost of a call;
* :mod:`.sessions`: ``using_attributes`` and its readers.

Nothing here imports an LLM SDK, nor observe, the provider, logging or events. The session
names are loaded when first used: :mod:`.sessions` needs OpenTelemetry's SDK, which importing
the kit (and ``@observe``, which uses the other modules) must not load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .cost import Cost, Pricer, cost_attributes, genai_prices_pricer, make_pricer
from .documents import document_attributes
from .kinds import KINDS, KindPlan, check_kind, default_kind, graph_node_attributes, plan_kind
from .messages import input_message_attributes, output_message_attributes
from .payloads import payload_attributes, serialize_payload
from .providers import provider_attributes, provider_of
from .results import LLMResult, read_result, result_attributes
from .streams import StreamAccumulator

if TYPE_CHECKING:
    from .sessions import (
        SessionSpanProcessor,
        add_session_fields,
        inject_session,
        session_attributes,
        session_fields,
        session_from_carrier,
        using_attributes,
    )

_SESSION_NAMES = frozenset(
    {
        "SessionSpanProcessor",
        "add_session_fields",
        "inject_session",
        "session_attributes",
        "session_fields",
        "session_from_carrier",
        "using_attributes",
    }
)


def __getattr__(name: str) -> Any:
    # PEP 562: the session names, imported from .sessions on first use.
    if name in _SESSION_NAMES:
        value = getattr(importlib.import_module(f"{__name__}.sessions"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Cost",
    "KINDS",
    "KindPlan",
    "LLMResult",
    "Pricer",
    "SessionSpanProcessor",
    "StreamAccumulator",
    "add_session_fields",
    "check_kind",
    "cost_attributes",
    "default_kind",
    "document_attributes",
    "genai_prices_pricer",
    "graph_node_attributes",
    "inject_session",
    "input_message_attributes",
    "make_pricer",
    "output_message_attributes",
    "payload_attributes",
    "plan_kind",
    "provider_attributes",
    "provider_of",
    "read_result",
    "result_attributes",
    "serialize_payload",
    "session_attributes",
    "session_fields",
    "session_from_carrier",
    "using_attributes",
]
