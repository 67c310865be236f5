"""A LangGraph app with no line of the kit: a router, a conditional edge, a retriever, an async
generator node, a map-reduce fan-out (Send) and a node that can fail.

Usage: ``python lg_app.py [--fail] [--wait] [--times N]``. Each of the N questions is one
``ainvoke`` of the graph ``support``; ``--fail`` asks a question the ``answer`` node refuses
(the graph raises ``RefusedError`` and the program exits 3); ``--wait`` prints ``ready`` after
the runs and waits for a line on stdin (so a test can read ``/metrics``).
"""

from __future__ import annotations

import asyncio
import operator
import sys
import time
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

DOCUMENTS = {
    "billing": ["Invoices are sent monthly.", "Refunds take 5 days."],
    "tech": ["Restart the router.", "Check the cable."],
}


class RefusedError(Exception):
    """The answer node refuses a question."""


class State(TypedDict, total=False):
    question: str
    topic: str
    docs: list[str]
    scores: Annotated[list[int], operator.add]
    reply: str


def classify(state: State) -> State:
    """The router: picks a topic, which the conditional edge turns into the next node."""
    topic = "billing" if "invoice" in state["question"].lower() else "tech"
    return {"topic": topic}


def route(state: State) -> str:
    """The conditional edge function: not a node."""
    return "retrieve" if state["topic"] in DOCUMENTS else "answer"


def retrieve(state: State) -> State:
    time.sleep(0.001)
    return {"docs": list(DOCUMENTS[state["topic"]])}


def fan_out(state: State) -> list[Send]:
    """A map step: one ``score`` task per document, run in parallel by LangGraph."""
    return [Send("score", {"question": state["question"], "docs": [d]}) for d in state["docs"]]


def score(state: State) -> State:
    return {"scores": [len(state["docs"][0])]}


async def answer(state: State):
    """An async generator node: yields its update in parts."""
    if "forbidden" in state["question"]:
        raise RefusedError(f"refused: {state['question']}")
    await asyncio.sleep(0)
    yield {"reply": f"Using {len(state['docs'])} documents"}
    await asyncio.sleep(0)
    yield {"reply": f"Using {len(state['docs'])} documents: {state['docs'][0]}"}


def build():
    builder = StateGraph(State)
    builder.add_node("classify", classify)
    builder.add_node("retrieve", retrieve)
    builder.add_node("score", score)
    builder.add_node("answer", answer)
    builder.add_edge(START, "classify")
    builder.add_conditional_edges("classify", route, ["retrieve", "answer"])
    builder.add_conditional_edges("retrieve", fan_out, ["score"])
    builder.add_edge("score", "answer")
    builder.add_edge("answer", END)
    return builder.compile(name="support")


async def ask_all(graph, questions: list[str]) -> None:
    for question in questions:
        result = await graph.ainvoke({"question": question})
        print(f"{question} -> {result['reply']} (scores {sorted(result['scores'])})", flush=True)


def main(argv: list[str]) -> int:
    graph = build()
    times = int(argv[argv.index("--times") + 1]) if "--times" in argv else 1
    questions = (["Where is my invoice?", "The wifi is down"] * times)[:times]
    if "--fail" in argv:
        questions = ["a forbidden question"]
    try:
        asyncio.run(ask_all(graph, questions))
    except RefusedError as exc:
        print(f"error: {exc}", flush=True)
        return 3
    if "--wait" in argv:
        print("ready", flush=True)
        sys.stdin.readline()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
