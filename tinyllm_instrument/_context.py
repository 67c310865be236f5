"""The kit's own context variable: the observed node, graph and model of the current call.

It sits at the bottom so that logging can read it when a line is rendered and observe can set it
per call, without either importing the other.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

__all__ = ["CURRENT_CALL", "NO_CALL", "NO_GRAPH", "current_graph", "set_graph"]

#: Label value of ``graph`` for a node called outside any observed graph.
NO_GRAPH = "none"

#: ``(node, graph, model)`` outside any observed call.
NO_CALL: tuple[str | None, str | None, str | None] = (None, None, None)

#: ``(node, graph, model)`` of the current observed call, in one variable: a call sets and resets
#: one variable rather than three, and a stream does so around each of its items. The node is None
#: in a graph's own code; the model is the innermost one declared by an observed call around.
CURRENT_CALL: ContextVar[tuple[str | None, str | None, str | None]] = ContextVar(
    "tinyllm_instrument_call", default=NO_CALL
)


def current_graph() -> str | None:
    """The graph of the current observed call, or None outside any graph."""
    return CURRENT_CALL.get()[1]


def set_graph(graph: str | None) -> Token[tuple[str | None, str | None, str | None]]:
    """Make ``graph`` the current graph (node and model unchanged); reset with the token."""
    node, _, model = CURRENT_CALL.get()
    return CURRENT_CALL.set((node, graph, model))
