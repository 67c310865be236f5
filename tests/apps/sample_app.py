"""A plain program, no kit code: functions, a class, a coroutine, a generator, an error, an exit.

Run by tests/test_run.py through ``tinyllm-instrument run``. argv: [exit-code] [--fail].
"""

import asyncio
import sys

import helpers  # imported after the run starts: patched by its post-import hook


def tokenize(text):
    return text.split()


class Agent:
    def __init__(self, name):
        self.name = name

    def step(self, words):
        return [helpers.shout(w) for w in words]

    @staticmethod
    def static_tool(x):
        return x * 2

    @classmethod
    def make(cls):
        return cls("made")


async def fetch(n):
    await asyncio.sleep(0)
    return n + 1


def stream(words):
    yield from words


def explode():
    raise ValueError("boom from explode")


def pipeline(text):
    agent = Agent.make()
    words = agent.step(tokenize(text))
    streamed = list(stream(words))
    fetched = asyncio.run(fetch(len(streamed)))
    try:
        explode()
    except ValueError:
        pass
    return Agent.static_tool(fetched)


def main(argv):
    result = pipeline("hello small world")
    print(f"result={result} argv={argv} main={__name__} path0_ok={sys.path[0] != ''}")
    if "--fail" in argv:
        explode()
    return int(argv[0]) if argv and argv[0].isdigit() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
