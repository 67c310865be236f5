"""A weather-and-policy assistant written with no kit code, as a new user would write one.

A router, a retriever, a tool that fails now and then (its weather service is down for Paris),
a model call that returns an OpenAI-like completion with its model and token usage, and a
streaming generator. main() asks the graph, ``ask``, three questions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POLICIES = {"refund": "Refunds are accepted within 30 days."}
WEATHER = {"oslo": "3 C and snowing"}


class WeatherServiceDown(RuntimeError):
    """The weather tool's back-end did not answer."""


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass
class Choice:
    text: str


@dataclass
class ChatCompletion:
    model: str
    choices: list[Choice]
    usage: Usage
    object: str = "chat.completion"
    id: str = "chatcmpl-1"
    extra: dict = field(default_factory=dict)


def classify(question: str) -> str:
    return "weather" if "weather" in question else "policy"


def search_docs(question: str) -> list[str]:
    return [text for key, text in POLICIES.items() if key in question]


def check_weather(city: str) -> str:
    if city == "paris":
        raise WeatherServiceDown("weather service timed out")
    return f"{city.title()}: {WEATHER[city]}."


def chat_completion(question: str, facts: list[str]) -> ChatCompletion:
    answer = facts[-1] if facts else "I do not know."
    prompt_tokens = 25 + len(question.split()) + 3 * len(facts)
    usage = Usage(prompt_tokens, 9, prompt_tokens + 9)
    return ChatCompletion(model="gpt-4o", choices=[Choice(answer)], usage=usage)


def stream_reply(completion: ChatCompletion):
    yield from completion.choices[0].text.split()


def ask(question: str) -> str:
    facts = search_docs(question)
    if classify(question) == "weather":
        city = question.rstrip("?").split()[-1].lower()
        try:
            facts.append(check_weather(city))
        except WeatherServiceDown:
            facts.append("Weather data is unavailable right now.")
    return " ".join(stream_reply(chat_completion(question, facts)))


def main() -> None:
    for question in ["what is the refund policy?", "weather in Paris?", "weather in Oslo?"]:
        print(f"Q: {question} -> {ask(question)}")


if __name__ == "__main__":
    main()
