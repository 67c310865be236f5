"""A small LLM workflow graph with a fake model and no network, observed with @observe.

Nodes: a router (a plain step: a ``chain``), a retriever returning scored documents through an
instrumented cache (``kind="retriever"``), an async model call that returns usage
(``model=``: an ``llm``), a tool that cites the sources (``kind="tool"``), a streaming generator
node, and an occasional failure. Questions arrive through a queue with two priorities. Run it
through examples/demo.py (``make demo``); exported to Phoenix or Langfuse, each step shows as
what it is (docs/genai.md).
"""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass

from tinyllm_instrument import instrument_cache, observe, observe_queue
from tinyllm_instrument.logging import get_logger

log = get_logger(__name__, component="graph_app")

DOCUMENTS = {
    "billing": ["Invoices are sent on the 1st.", "Refunds take 5 days."],
    "tech": ["Restart the router.", "Check the API key header."],
    "general": ["We are open 9 to 5."],
}
# The fake model stands in for this one; named so, back-ends and genai-prices can price its calls.
MODEL = "gpt-4o-mini"
# Hits and misses count in tinyllm_cache_hits_total / _misses_total{cache_type="retriever"}.
_cache: dict[str, list[dict]] = instrument_cache({}, cache_type="retriever")


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Completion:
    """Shaped like an SDK's answer: the kit reads its model and usage."""

    text: str
    usage: Usage
    model: str = MODEL


class FlakyModelError(RuntimeError):
    """The fake model fails now and then, as real ones do."""


@observe(node="router")
def route(question: str) -> str:
    q = question.lower()
    topic = "billing" if "invoice" in q or "refund" in q else "tech" if "error" in q else "general"
    log.info("routed", topic=topic)
    return topic


# A retriever's documents (ids, scores, and with capture_output their contents) show in Phoenix's
# documents tab, as retrieval.documents.*.
@observe(node="retriever", kind="retriever", capture_output=True)
def retrieve(topic: str) -> list[dict]:
    docs = _cache.get(topic)
    if docs is None:
        docs = _cache[topic] = [
            {"id": f"{topic}-{i}", "content": text, "score": round(1.0 - i / 10, 2)}
            for i, text in enumerate(DOCUMENTS[topic])
        ]
    return docs


@observe(node="llm", model=MODEL, capture_input=True)
async def call_model(question: str, docs: list[dict], rng: random.Random) -> Completion:
    # model= on @observe makes this an llm span and counts tinyllm_requests_total, request
    # latency, active requests and tinyllm_errors_total; the usage in the result feeds the token
    # counters and, when the model can be priced, tinyllm_cost_usd_total.
    await asyncio.sleep(rng.uniform(0.002, 0.02))
    if rng.random() < 0.15:
        raise FlakyModelError("the fake model timed out")
    text = f"Answer to {question!r} using {len(docs)} documents: {docs[0]['content']}"
    return Completion(
        text, Usage(prompt_tokens=len(question.split()) + 20, completion_tokens=len(text.split()))
    )


@observe(node="cite_sources", kind="tool")
def cite_sources(docs: list[dict]) -> str:
    return ", ".join(doc["id"] for doc in docs)


@observe(node="stream_answer")
def stream_answer(completion: Completion, sources: str):
    yield from completion.text.split()
    yield f"[{sources}]"


@observe(graph="rag")
async def answer(question: str, rng: random.Random) -> str:
    topic = route(question)
    docs = retrieve(topic)
    try:
        completion = await call_model(question, docs, rng)
    except FlakyModelError:
        log.warning("model_failed_falling_back")
        return "Sorry, try again."
    return " ".join(stream_answer(completion, cite_sources(docs)))


QUESTIONS = [
    "Where is my invoice?",
    "I get an error with the API",
    "When are you open?",
    "How do refunds work?",
]


PRIORITIES = {0: "high", 1: "low"}


async def run(n: int = 12, seed: int = 7) -> list[str]:
    """Answer ``n`` questions taken from a priority queue by four workers."""
    rng = random.Random(seed)
    # tinyllm_queue_size{priority} and tinyllm_queue_wait_time_seconds{priority}, put to get.
    requests: asyncio.PriorityQueue[tuple[int, int, str]] = observe_queue(
        asyncio.PriorityQueue(), priority_of=lambda item: PRIORITIES[item[0]]
    )
    for i in range(n):
        question = QUESTIONS[i % len(QUESTIONS)]
        requests.put_nowait((0 if "error" in question else 1, i, question))
    answers: dict[int, str] = {}

    async def worker() -> None:
        while not requests.empty():
            _priority, i, question = requests.get_nowait()
            answers[i] = await answer(question, rng)

    await asyncio.gather(*(worker() for _ in range(4)))
    return [answers[i] for i in range(n)]


async def serve_forever() -> None:
    """Answer batches of questions until SIGTERM or Ctrl-C, for a scraper to watch."""
    seed = 0
    while True:
        seed += 1
        await run(n=4, seed=seed)
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    if "--forever" in sys.argv[1:]:
        asyncio.run(serve_forever())
    else:
        for line in asyncio.run(run()):
            print(line)
