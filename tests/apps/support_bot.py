"""A small LLM support bot with no kit code: main() asks its graph three questions.

Nodes: a router, a retriever, a tool (an order lookup that fails for an unknown order), a model
call whose result carries its model and token usage (as OpenAI's and Anthropic's do), and a
streaming generator. ``tinyllm-instrument run support_bot.py`` with no option prints three trees:
main is the entry point, so each call of ``answer`` is a trace of its own.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

DOCUMENTS = {
    "billing": ["Refunds take 5 days."],
    "orders": ["Orders ship within 2 days."],
    "general": ["We are open 9 to 5."],
}
ORDERS = {"A-1001": "shipped", "A-1002": "packing"}


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Completion:
    model: str
    text: str
    usage: Usage


class OrderNotFound(LookupError):
    """The tool's failure: the order id is not known."""


def route(question: str) -> str:
    q = question.lower()
    return "billing" if "refund" in q else "orders" if "order" in q else "general"


def retrieve(topic: str) -> list[str]:
    return list(DOCUMENTS[topic])


def lookup_order(order_id: str) -> str:
    if order_id not in ORDERS:
        raise OrderNotFound(f"no order {order_id}")
    return f"Order {order_id} is {ORDERS[order_id]}."


def call_model(question: str, context: list[str]) -> Completion:
    text = f"{context[-1]} (asked: {question})"
    usage = Usage(prompt_tokens=len(question.split()) + 10 * len(context), completion_tokens=12)
    return Completion(model="gpt-4o-mini", text=text, usage=usage)


def stream_words(completion: Completion):
    yield from completion.text.split()


def answer(question: str) -> str:
    topic = route(question)
    context = retrieve(topic)
    if topic == "orders":
        order_id = question.rsplit(" ", 1)[-1].rstrip("?")
        try:
            context.append(lookup_order(order_id))
        except OrderNotFound:
            context.append("That order could not be found.")
    return " ".join(stream_words(call_model(question, context)))


QUESTIONS = [
    "How long do refunds take?",
    "Where is order A-1001?",
    "Where is order A-9999?",
]


def main() -> int:
    for question in QUESTIONS:
        print(answer(question))
    return 0


if __name__ == "__main__":
    sys.exit(main())
