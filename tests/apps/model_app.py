"""An app with no kit code whose model calls say (or do not say) which model answered.

``call_llm`` returns an OpenAI-like dict with token usage but no model: only ``--model`` can name
it. ``call_claude`` returns an object whose ``model`` attribute names the model, as Anthropic's
responses do. ``summarize`` returns plain text. At the end the program reads the run's own
``/metrics`` (its port is the first argument) and prints it, so a test sees what was served.
"""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass


@dataclass
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass
class Message:
    model: str
    content: str
    usage: Usage


def call_llm(prompt: str) -> dict:
    return {
        "choices": [{"message": {"content": prompt.upper()}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def call_claude(prompt: str) -> Message:
    return Message(model="claude-3-5-haiku-20241022", content=prompt, usage=Usage(5, 2))


def summarize(text: str) -> str:
    return text[:10]


def pipeline(prompt: str) -> str:
    first = call_llm(prompt)["choices"][0]["message"]["content"]
    return summarize(call_claude(first).content)


def main() -> None:
    print(pipeline("hello"))
    port = sys.argv[1]
    print(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())


if __name__ == "__main__":
    main()
