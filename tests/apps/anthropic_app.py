"""An unchanged app using the official anthropic client: one call, one streamed helper (async).

Run by tests under ``tinyllm-instrument run --instrument @anthropic``; the server's base URL and
key come from the environment (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY).
"""

import asyncio

import anthropic

MESSAGES = [{"role": "user", "content": "Say hi"}]


def ask() -> str:
    with anthropic.Anthropic(max_retries=0) as client:
        message = client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)
    return message.content[0].text


async def ask_streaming() -> str:
    async with anthropic.AsyncAnthropic(max_retries=0) as client:
        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES
        ) as stream:
            return await stream.get_final_text()


if __name__ == "__main__":
    print("sync:", ask())
    print("stream:", asyncio.run(ask_streaming()))
