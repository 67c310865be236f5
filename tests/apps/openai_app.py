"""An unchanged app using the official openai client: one sync call, one async stream.

Run by tests under ``tinyllm-instrument run --instrument @openai``; the server's base URL and key
come from the environment, as a real app's would (OPENAI_BASE_URL, OPENAI_API_KEY).
"""

import asyncio

import openai

MESSAGES = [{"role": "user", "content": "Say hi"}]


def ask() -> str:
    with openai.OpenAI(max_retries=0) as client:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return answer.choices[0].message.content or ""


async def ask_streaming() -> str:
    async with openai.AsyncOpenAI(max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    return "".join(parts)


if __name__ == "__main__":
    print("sync:", ask())
    print("stream:", asyncio.run(ask_streaming()))
