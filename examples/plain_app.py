"""The example graph of graph_app.py without a line of the kit: no decorator, no import of it.

Nodes: a router, a retriever with a cache, an async model call that returns usage, a streaming
generator node, and an occasional failure. ``make demo`` runs it unmodified under the kit::

    tinyllm-instrument run --instrument 'plain_app:*' --graph answer \
        --tracing --exporter console --metrics-port 9090 --log-format json examples/plain_app.py

``answer`` is the graph of each question (``--graph answer``); every other function is a node.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from dataclasses import dataclass

log = logging.getLogger("plain_app")

DOCUMENTS = {
    "billing": ["Invoices are sent on the 1st.", "Refunds take 5 days."],
    "tech": ["Restart the router.", "Check the API key header."],
    "general": ["We are open 9 to 5."],
}
_cache: dict[str, list[str]] = {}


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Completion:
    text: str
    usage: Usage


class FlakyModelError(RuntimeError):
    """The fake model fails now and then, as real ones do."""


def route(question: str) -> str:
    q = question.lower()
    topic = "billing" if "invoice" in q or "refund" in q else "tech" if "error" in q else "general"
    log.info("routed topic=%s", topic)
    return topic


def retrieve(topic: str) -> list[str]:
    if topic in _cache:
        return _cache[topic]
    docs = DOCUMENTS[topic]
    _cache[topic] = docs
    return docs


async def call_model(question: str, docs: list[str], rng: random.Random) -> Completion:
    # The usage in the result feeds the kit's token counters, with no code here.
    # Both draws before the await: calls in flight together resume in an order the timer
    # decides, and the run's answers must not depend on it.
    delay, fails = rng.uniform(0.002, 0.02), rng.random() < 0.15
    await asyncio.sleep(delay)
    if fails:
        raise FlakyModelError("the fake model timed out")
    text = f"Answer to {question!r} using {len(docs)} documents: {docs[0]}"
    return Completion(
        text, Usage(prompt_tokens=len(question.split()) + 20, completion_tokens=len(text.split()))
    )


def stream_answer(completion: Completion):
    yield from completion.text.split()


async def answer(question: str, rng: random.Random) -> str:
    topic = route(question)
    docs = retrieve(topic)
    try:
        completion = await call_model(question, docs, rng)
    except FlakyModelError:
        log.warning("model failed, falling back")
        return "Sorry, try again."
    return " ".join(stream_answer(completion))


QUESTIONS = [
    "Where is my invoice?",
    "I get an error with the API",
    "When are you open?",
    "How do refunds work?",
]


async def run(n: int = 12, seed: int = 7) -> list[str]:
    """Answer ``n`` questions, four at a time."""
    rng = random.Random(seed)
    answers: list[str] = []
    for start in range(0, n, 4):
        batch = [QUESTIONS[(start + i) % len(QUESTIONS)] for i in range(4)]
        answers += await asyncio.gather(*(answer(q, rng) for q in batch))
    return answers


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
