"""No planted secret reaches any sink: log lines, span attributes, events, request logs.

A hypothesis test builds 10,000 nested payloads with secrets under sensitive keys and inside
free text, sends each through every sink, and checks that no secret survives while ordinary
fields (max_tokens, author, prompts) come through unchanged.
"""

from __future__ import annotations

import io
import json
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllm_instrument import observe
from tinyllm_instrument.events import (
    BufferedEventHandler,
    EventCategory,
    EventSeverity,
    emit_event,
    get_event_emitter,
)
from tinyllm_instrument.logging import configure_logging, get_logger, get_request_logger
from tinyllm_instrument.observe import configure_observe
from tinyllm_instrument.testing import capture

UPPER = string.ascii_uppercase

# A secret's core: a marker that cannot occur by chance, plus randomness.
# (Drawn from integers: text strategies made generation, not the kit, most of the run time.)
cores = st.integers(min_value=0, max_value=2**96).map(lambda n: "Zq9" + format(n, "024x"))

SENSITIVE_KEYS = [
    "authorization",
    "Authorization",
    "cookie",
    "Set-Cookie",
    "api_key",
    "apiKey",
    "X-Api-Key",
    "OPENAI_API_KEY",
    "password",
    "db_passwd",
    "client_secret",
    "access_token",
    "refreshToken",
    "private_key",
    "credentials",
]


@st.composite
def planted(draw):
    """(value to plant, the core that must not survive, where it goes: 'key' or 'text')."""
    core = draw(cores)
    form = draw(st.sampled_from(["key", "bearer", "sk", "jwt", "aws", "password"]))
    if form == "key":
        return draw(st.sampled_from(SENSITIVE_KEYS)), core, core
    if form == "bearer":
        text = f"header was Authorization: Bearer {core} ok"
    elif form == "sk":
        text = f"my key is sk-{core} please"
    elif form == "jwt":
        text = f"token eyJhbGciOiJIUzI1NiJ9.eyJ{core}In0.{core}abc end"
    elif form == "aws":
        aws = "AKIA" + _base36(draw(st.integers(min_value=36**15, max_value=36**16 - 1)))
        return None, aws, f"use {aws} for s3"
    else:
        text = f"login with password={core} now"
    return None, core, text


ordinary_text = st.one_of(
    st.sampled_from(["", "How long do refunds take?", "Summarise the invoice.", "Jane Doe"]),
    st.text(alphabet=string.ascii_letters + " .,?", max_size=20),
)


def _base36(n: int) -> str:
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(UPPER[r] if r < 26 else string.digits[r - 26])
    return "".join(reversed(digits))


@st.composite
def payloads(draw):
    """A nested payload, the secrets planted in it, and its ordinary fields."""
    secrets: list[str] = []

    def leaf_dict(depth: int) -> dict:
        node: dict = {
            "prompt": draw(ordinary_text),
            "max_tokens": draw(st.integers(0, 4096)),
            "author": draw(ordinary_text),
        }
        for _ in range(draw(st.integers(1, 3))):
            key, core, value = draw(planted())
            secrets.append(core)
            if key is not None:
                node[key] = value
            else:
                node[f"note_{len(node)}"] = value
        if depth < 2 and draw(st.booleans()):
            node["children"] = [leaf_dict(depth + 1) for _ in range(draw(st.integers(1, 2)))]
        return node

    payload = leaf_dict(0)
    return payload, secrets


#: 10,000 payloads in all, drawn ten per example: hypothesis's per-example engine cost, not the
#: kit, dominated the run time when each example held one payload.
EXAMPLES = int(os.environ.get("TINYLLM_SECRETS_EXAMPLES", "10000"))
BATCH = 10
PLANTED: list[int] = []  # secrets per payload, for the figure printed at the end


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def test_no_planted_secret_reaches_any_sink():
    stream = io.StringIO()
    configure_logging(log_level="DEBUG", log_format="json", stream=stream)
    configure_observe(capture_bytes=1 << 20)  # no truncation: redaction alone must hide them
    log = get_logger("secrets")

    @observe(node="leaky", capture_input=True, capture_output=True)
    def node(data):
        log.info("inside", data=data)
        return data

    def send_everywhere(payload, secrets):
        node(payload)
        emit_event(
            "user.payload",
            EventCategory.USER,
            EventSeverity.WARNING,
            payload.get("note_3", "payload received"),
            data=payload,
        )
        get_request_logger().log_request(
            "req-1",
            "POST",
            "/api/generate",
            headers={"Authorization": f"Bearer {secrets[0]}"},
            body=payload,
        )

    with capture() as cap:
        buffer = get_event_emitter().add_handler(BufferedEventHandler(max_size=100))

        @settings(
            max_examples=EXAMPLES // BATCH,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(st.lists(payloads(), min_size=BATCH, max_size=BATCH))
        def check(batch):
            for payload, secrets in batch:
                check_one(payload, secrets)
                PLANTED.append(len(secrets))

        def check_one(payload, secrets):
            cap.clear()
            buffer.clear()
            send_everywhere(payload, secrets)
            attrs = dict(cap.span("leaky").attributes)
            sinks = {
                "span attributes": json.dumps(attrs),
                "events": json.dumps([e.to_dict() for e in buffer.get_events()]),
                "log entries": json.dumps(cap.logs, default=str),
            }
            for sink, text in sinks.items():
                assert not _leaks(text, secrets), f"{sink} leaked {_leaks(text, secrets)}"
            # Ordinary fields survive unchanged: the captured input round-trips them.
            captured_in = json.loads(attrs["tinyllm.input"])["data"]
            assert captured_in["prompt"] == payload["prompt"]
            assert captured_in["max_tokens"] == payload["max_tokens"]
            assert captured_in["author"] == payload["author"]

        check()
    print(f"secrets: {len(PLANTED)} payloads, {sum(PLANTED)} secrets planted, 0 leaked")

    # And once more with every line rendered as JSON, for a sample of payloads.
    @settings(max_examples=500, deadline=None, database=None)
    @given(payloads())
    def check_rendered(sample):
        payload, secrets = sample
        stream.seek(0)
        stream.truncate()
        send_everywhere(payload, secrets)
        text = stream.getvalue()
        assert not _leaks(text, secrets), _leaks(text, secrets)
        lines = [json.loads(line) for line in text.splitlines()]
        (inside,) = [line for line in lines if line["event"] == "inside"]
        assert inside["data"]["max_tokens"] == payload["max_tokens"]
        assert inside["data"]["prompt"] == payload["prompt"]

    check_rendered()
