"""The kit's own context variables: the observed node, graph and model of the current call.

They sit at the bottom so that logging can read them when a line is rendered and observe can
set them per call, without either importing the other.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["CURRENT_GRAPH", "CURRENT_MODEL", "CURRENT_NODE", "NO_GRAPH"]

#: Label value of ``graph`` for a node called outside any observed graph.
NO_GRAPH = "none"

CURRENT_NODE: ContextVar[str | None] = ContextVar("tinyllm_instrument_node", default=None)
CURRENT_GRAPH: ContextVar[str | None] = ContextVar("tinyllm_instrument_graph", default=None)
CURRENT_MODEL: ContextVar[str | None] = ContextVar("tinyllm_instrument_model", default=None)
