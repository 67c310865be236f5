"""No planted secret reaches any sink: log lines, span attributes, events, request logs.

A hypothesis test builds 10,000 nested payloads with secrets under sensitive keys and inside
free text, sends each through every sink, and checks that no secret survives while ordinary
fields (max_tokens, author, prompts) come through unchanged.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import string

import pytest
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
            captured_in = json.loads(attrs["input.value"])["data"]
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


# ----------------------------------------------------------------------------------------------
# Odd shapes (issue 14, item 8): objects whose repr holds a secret, mappings JSON refuses, URLs
# with credentials or query secrets, Authorization headers in free text, and stdlib records whose
# arguments do not fit their message. No log sink may show one.
# ----------------------------------------------------------------------------------------------


class _ReprHolder:
    """An object whose str() is harmless and whose repr() (what a log line shows) is not."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return "holder"

    def __repr__(self) -> str:
        return self.text


@st.composite
def odd_planted(draw):
    """(value to log, the core that must not survive)."""
    core = draw(cores)
    form = draw(
        st.sampled_from(
            [
                "repr_kwarg",
                "repr_bearer",
                "tuple_key",
                "tuple_key_nested",
                "url_credentials",
                "url_query",
                "url_google_key",
                "auth_basic",
                "auth_header_repr",
                "auth_unknown_scheme",
            ]
        )
    )
    if form == "repr_kwarg":
        name = draw(st.sampled_from(["api_key", "token", "secret", "password", "client_secret"]))
        return _ReprHolder(f"Client(model='gpt', {name}='{core}')"), core
    if form == "repr_bearer":
        return _ReprHolder(f"<Session headers={{'Authorization': 'Bearer {core}'}}>"), core
    if form == "tuple_key":
        key = draw(st.sampled_from([("db", "password"), ("api_key",), ("x", "access_token")]))
        return {key: core, (1, 2): "plain"}, core
    if form == "tuple_key_nested":
        return {(1, "a"): {"password": core, "n": 3}}, core
    if form == "url_credentials":
        return f"fetching https://bot:{core}@example.com/hook now", core
    if form == "url_query":
        name = draw(st.sampled_from(["token", "secret", "access_token", "api_key", "sig"]))
        return f"GET https://example.com/cb?x=1&{name}={core}&y=2", core
    if form == "url_google_key":
        return f"https://maps.googleapis.com/maps/api/geocode/json?key=AIza{core}", core
    if form == "auth_basic":
        return f"sent Authorization: Basic {core} to the proxy", core
    if form == "auth_header_repr":
        return f"headers={{'authorization': 'Token {core}', 'accept': '*/*'}}", core
    return f"Proxy-Authorization: Custom {core}", core


def _texts(value):
    """Every string a captured entry holds: keys, values, and str() of the objects in it."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, val in value.items():
            yield from _texts(key)
            yield from _texts(val)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _texts(item)
    elif value is not None and not isinstance(value, (int, float)):
        yield str(value)


def _log_everywhere(log, value, core):
    log.info("odd", value=value, values=[value])
    log.info(value if isinstance(value, str) else "odd again", nested={"v": value})
    logging.getLogger("lib").warning("stdlib %s", value)
    logging.getLogger("lib").warning("stdlib %s %s", value)  # does not fit: no raw dump
    get_request_logger().log_request("r", "POST", "/x", headers={"X-Note": value}, body=value)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_planted_secret_of_an_odd_shape_reaches_any_log_sink(fmt, tmp_path, capfd, monkeypatch):
    # pytest's capture handler on the root logger raises on a record that does not fit.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    path = tmp_path / f"app.{fmt}"
    configure_logging(log_level="DEBUG", log_format=fmt, log_file=path)
    log = get_logger("secrets")
    examples = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(odd_planted())
    def check(sample):
        value, core = sample
        start = path.stat().st_size
        _log_everywhere(log, value, core)
        with open(path, encoding="utf-8") as f:
            f.seek(start)
            written = f.read()
        assert written.count("\n") == 5, written
        assert core not in written, written
        if fmt == "json":
            for line in written.splitlines():
                json.loads(line)
        with capture() as cap:  # the captured entries of tests: the same policy
            _log_everywhere(log, value, core)
        assert len(cap.logs) == 3 and not [t for t in _texts(cap.logs) if core in t]
        err = capfd.readouterr().err
        assert core not in err and "Logging error" not in err
        examples.append(core)

    check()
    print(f"odd shapes, {fmt}: {len(examples)} examples, 0 leaked")


# --- secrets raised: exception messages, chained causes, stack traces -----------------------------

#: Payloads of the exception test: a share of them are raised from observed nodes.
RAISED_EXAMPLES = max(BATCH, EXAMPLES // 5)
KINDS = ("sync", "async", "generator", "async generator")


class PayloadError(Exception):
    pass


def _free_text(payload: dict) -> list[str]:
    """The planted free-text values (secrets inside sentences), at any depth."""
    texts = [v for k, v in payload.items() if k.startswith("note_")]
    for child in payload.get("children", []):
        texts.extend(_free_text(child))
    return texts


def _raise_from(payload: dict) -> None:
    texts = _free_text(payload) or ["nothing to quote"]
    try:
        raise KeyError("while reading: " + texts[-1])
    except KeyError as cause:
        raise PayloadError("refused: " + " | ".join(texts)) from cause


def _observed_nodes(log):
    """One observed node per callable kind; each logs its payload and raises it when told."""

    @observe(node="sync", capture_input=True)
    def sync_node(data, fail):
        log.info("inside", data=data)
        if fail:
            _raise_from(data)
        return data

    @observe(node="async", capture_input=True)
    async def async_node(data, fail):
        log.info("inside", data=data)
        if fail:
            _raise_from(data)
        return data

    @observe(node="generator", capture_input=True)
    def generator_node(data, fail):
        yield log.info("inside", data=data)
        if fail:
            _raise_from(data)

    @observe(node="async generator", capture_input=True)
    async def async_generator_node(data, fail):
        yield log.info("inside", data=data)
        if fail:
            _raise_from(data)

    async def consume(stream):
        return [item async for item in stream]

    return {
        "sync": sync_node,
        "async": lambda data, fail: asyncio.run(async_node(data, fail)),
        "generator": lambda data, fail: list(generator_node(data, fail)),
        "async generator": lambda data, fail: asyncio.run(
            consume(async_generator_node(data, fail))
        ),
    }


def _call(nodes, kind: str, payload: dict, fail: bool) -> None:
    if not fail:
        nodes[kind](payload, fail)
        return
    try:
        nodes[kind](payload, fail)
    except PayloadError:
        return
    raise AssertionError(f"the {kind} node did not raise")


def _span_text(span) -> str:
    return json.dumps(
        {
            "attributes": dict(span.attributes),
            "status": span.status.description,
            "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        }
    )


def test_no_planted_secret_raised_from_an_observed_node_reaches_any_sink():
    configure_observe(capture_bytes=1 << 20)
    log = get_logger("secrets")
    nodes = _observed_nodes(log)
    raised: list[int] = []

    with capture() as cap:

        @settings(
            max_examples=RAISED_EXAMPLES // BATCH,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(st.lists(payloads(), min_size=BATCH, max_size=BATCH), st.randoms())
        def check(batch, rnd):
            for payload, secrets in batch:
                kind = rnd.choice(KINDS)
                fail = rnd.random() < 0.5
                cap.clear()
                _call(nodes, kind, payload, fail)
                (span,) = cap.spans_named(kind)
                sinks = {
                    "span": _span_text(span),
                    "events": json.dumps([e.to_dict() for e in cap.events]),
                    "log entries": json.dumps(cap.logs, default=str),
                }
                for sink, text in sinks.items():
                    assert not _leaks(text, secrets), (
                        f"{kind}: {sink} leaked {_leaks(text, secrets)}"
                    )
                if fail:
                    (event,) = [e for e in span.events if e.name == "exception"]
                    if _free_text(payload):
                        assert "[REDACTED]" in event.attributes["exception.message"]
                    assert "direct cause" in event.attributes["exception.stacktrace"]
                    raised.append(len(secrets))

        check()
    assert raised, "no payload was raised"
    print(f"secrets raised: {len(raised)} payloads, {sum(raised)} secrets planted, 0 leaked")

    # And rendered: the failed events become JSON log lines through the default emitter.
    stream = io.StringIO()
    configure_logging(log_level="DEBUG", log_format="json", stream=stream)

    @settings(max_examples=200, deadline=None, database=None)
    @given(payloads(), st.sampled_from(KINDS))
    def check_rendered(sample, kind):
        payload, secrets = sample
        stream.seek(0)
        stream.truncate()
        _call(nodes, kind, payload, True)
        text = stream.getvalue()
        assert not _leaks(text, secrets), _leaks(text, secrets)
        lines = [json.loads(line) for line in text.splitlines()]
        assert [line["event_type"] for line in lines if "event_type" in line] == [
            "node.execution.failed"
        ]

    check_rendered()
