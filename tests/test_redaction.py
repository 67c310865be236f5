"""The one redaction policy: sensitive key words, value patterns, extension, and a property test."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections import namedtuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllm_instrument import redaction
from tinyllm_instrument.redaction import (
    REDACTED,
    RedactionPolicy,
    configure_redaction,
    get_redaction_policy,
    reset_redaction,
    split_key_words,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.fixture(autouse=True)
def _default_policy():
    reset_redaction()
    yield
    reset_redaction()


@pytest.fixture
def policy() -> RedactionPolicy:
    return RedactionPolicy()


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("X-Api-Key", ["x", "api", "key"]),
        ("apiKey", ["api", "key"]),
        ("OPENAI_API_KEY", ["openai", "api", "key"]),
        ("APIKey", ["api", "key"]),
        ("privateKey", ["private", "key"]),
        ("set-cookie", ["set", "cookie"]),
        ("max_tokens", ["max", "tokens"]),
    ],
)
def test_keys_are_split_into_words_on_separators_and_camel_case(key, words):
    assert split_key_words(key) == words


@pytest.mark.parametrize(
    "key",
    [
        "Authorization",
        "Proxy-Authorization",
        "authorization",
        "Cookie",
        "set-cookie",
        "Set-Cookie",
        "api_key",
        "apikey",
        "api-key",
        "X-Api-Key",
        "apiKey",
        "OPENAI_API_KEY",
        "password",
        "db_password",
        "DB_PASSWORD",
        "passwd",
        "secret",
        "client_secret",
        "clientSecret",
        "aws_secret_access_key",
        "token",
        "access_token",
        "accessToken",
        "refresh_token",
        "X-Auth-Token",
        "x-amz-security-token",
        "private_key",
        "privateKey",
        "credentials",
        "auth",
        "basic_auth",
    ],
)
def test_sensitive_keys_are_recognised(policy, key):
    assert policy.is_sensitive_key(key)
    assert policy.redact({key: "value-1"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "maxTokens",
        "tokens",
        "tokens_used",
        "input_tokens",
        "token_count",
        "token_limit",
        "author",
        "authors",
        "prompt",
        "model",
        "tokenizer",
        "secretary",
        "keys",
        "key_id",
        "monkey",
        "passage",
        "cookbook",
    ],
)
def test_ordinary_keys_are_not_redacted(policy, key):
    assert not policy.is_sensitive_key(key)
    assert policy.redact({key: "value-1"}) == {key: "value-1"}


def test_number_and_none_keys_are_never_sensitive_tuple_keys_are_judged_by_their_parts(policy):
    assert policy.redact({1: "a", None: "b", ("node", 2): "c", ("token",): "d"}) == {
        1: "a",
        None: "b",
        ("node", 2): "c",
        ("token",): REDACTED,
    }
    assert policy.is_sensitive_key(("db", "password"))
    assert not policy.is_sensitive_key(("db", "max_tokens"))


def test_tuple_keys_are_scanned_too(policy):
    assert policy.redact({("sk-abcdefghijkl", 1): 2}) == {(REDACTED, 1): 2}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdef123456", "Authorization: Bearer [REDACTED]"),
        ("bearer eyJ0eXAi.abc-def_ghi", "bearer [REDACTED]"),
        ("key sk-abc123 in text", "key [REDACTED] in text"),
        ("sk-proj-AbCdEf0123456789xyzXYZ", REDACTED),
        ("sk-ant-api03-AbCdEf0123456789xyz", REDACTED),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [REDACTED]"),
        (f"jwt={JWT}", "jwt=[REDACTED]"),
        (f"token {JWT} end", "token [REDACTED] end"),
        ("AKIAIOSFODNN7EXAMPLE", REDACTED),
        ("id ASIAY34FZKBOKMUTVV7A used", "id [REDACTED] used"),
        ("login password=hunter2 host=db1", "login password=[REDACTED] host=db1"),
        ("passwd: s3cr3t!", "passwd: [REDACTED]"),
        ("PASSWORD = 'two words'", "PASSWORD = '[REDACTED]'"),
        ('{"password": "hunter 2", "user": "bob"}', '{"password": "[REDACTED]", "user": "bob"}'),
        ("GET /v1?api_key=abc123&q=cats", "GET /v1?api_key=[REDACTED]&q=cats"),
        ("https://x.io/cb?access_token=xyz.123", "https://x.io/cb?access_token=[REDACTED]"),
        ("postgres://app:pw-123@db:5432/main", "postgres://app:[REDACTED]@db:5432/main"),
        ("id_token=abcdefgh", "id_token=[REDACTED]"),
        ("session-token: abc123", "session-token: [REDACTED]"),
        ("client_secret=abcd", "client_secret=[REDACTED]"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", REDACTED),
        # Authorization headers in free text, a header dump and a dict's repr
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic [REDACTED]"),
        (
            "-H 'Proxy-Authorization: Basic dXNlcjpw' -v",
            "-H 'Proxy-Authorization: Basic [REDACTED]' -v",
        ),
        (
            "{'Authorization': 'Basic dXNlcjpw', 'Accept': 'json'}",
            "{'Authorization': '[REDACTED]', 'Accept': 'json'}",  # a quoted key: as in a dict
        ),
        ('"authorization":"token ghx1234"', '"authorization":"[REDACTED]"'),
        # a mapping's text: its repr, JSON, a dict formatted into a message
        (
            "{('db', 'password'): 'pw1', (1, 2): 'x'}",
            "{('db', 'password'): '[REDACTED]', (1, 2): 'x'}",
        ),
        (
            '{"note": "the token=abc1 here", "n": 1}',
            '{"note": "the token=[REDACTED] here", "n": 1}',
        ),
        (
            "{'refresh_token': 'abc', 'max_tokens': 5}",
            "{'refresh_token': '[REDACTED]', 'max_tokens': 5}",
        ),
        ("authorization=abc123 was rejected", "authorization=[REDACTED] rejected"),
        ("Authorization: Custom k1 next", "Authorization: [REDACTED] next"),
        # secrets in query strings
        ("GET /files?token=abc123&page=2", "GET /files?token=[REDACTED]&page=2"),
        ("https://x.io/a?x=1&secret=shh-99", "https://x.io/a?x=1&secret=[REDACTED]"),
        (
            "https://maps.googleapis.com/api?key=AIzaSyA-1234567890abcdefghijklmnopqrs",
            "https://maps.googleapis.com/api?key=[REDACTED]",
        ),
        ("/o/f?X-Goog-Signature=7a9f00&alt=media", "/o/f?X-Goog-Signature=[REDACTED]&alt=media"),
        ("see ?key=k-123 here", "see ?key=[REDACTED] here"),
        ("AIzaSyA-1234567890abcdefghijklmnopqrs", REDACTED),
        ("https://u:p@ss@host/x", "https://u:[REDACTED]@host/x"),
        # name=value with a sensitive name: an object's repr, a command line
        ("Client(name='bot', token='abc 123')", "Client(name='bot', token='[REDACTED]')"),
        ('Conn(host="db", secret="x\\"y")', 'Conn(host="db", secret="[REDACTED]")'),
        ("retry with auth=basic-xyz now", "retry with auth=[REDACTED] now"),
    ],
)
def test_value_patterns_redact_secrets_in_free_text(policy, text, expected):
    assert policy.redact_text(text) == expected
    assert policy.redact({"message": text}) == {"message": expected}


@pytest.mark.parametrize(
    "text",
    [
        "Hello, how are you?",
        "the bearer of bad news",
        "bearer tokens are described in RFC 6750",
        "use sk-learn for task-specific models",
        "max_tokens=100 temperature=0.7",
        "next token: hello",
        "the author wrote 45 tokens",
        "AKIA is a prefix",
        "a.b.c and eyJ alone",
        "https://example.com:8080/path",
        "user@example.com",
        "Authorization failed: check the logs",
        "Basic knowledge of tokens: required",
        "GET /search?q=cats&page=2&sort=new",
        "https://example.com/path?max_tokens=5",
        "sort key=name then x=1, author=Ada",
    ],
)
def test_ordinary_text_survives_unchanged(policy, text):
    assert policy.redact_text(text) == text


def test_redaction_reaches_nested_dicts_lists_tuples_and_sets(policy):
    payload = {
        "request": {
            "headers": {"Authorization": "Bearer abcdefgh12345", "Accept": "json"},
            "messages": [
                {"role": "user", "content": "my key is sk-abc123xyz"},
                ("note", "password=hunter2"),
            ],
            "tags": {"AKIAIOSFODNN7EXAMPLE"},
            "frozen": frozenset({"plain"}),
        },
        "max_tokens": 256,
        "author": "Ada",
        "prompt": "Summarise the text",
        "credentials": {"user": "u", "pw": "p"},
    }
    before = copy.deepcopy(payload)

    out = policy.redact(payload)

    assert out == {
        "request": {
            "headers": {"Authorization": REDACTED, "Accept": "json"},
            "messages": [
                {"role": "user", "content": "my key is [REDACTED]"},
                ("note", "password=[REDACTED]"),
            ],
            "tags": {REDACTED},
            "frozen": frozenset({"plain"}),
        },
        "max_tokens": 256,
        "author": "Ada",
        "prompt": "Summarise the text",
        "credentials": REDACTED,
    }
    assert payload == before, "the input must not be mutated"
    assert out["request"] is not payload["request"]


def test_containers_keep_their_kind(policy):
    Point = namedtuple("Point", "x y")
    out = policy.redact([Point("sk-abcdefghij", 2), ("a",), {"b"}, frozenset({"c"})])
    assert out == [Point(REDACTED, 2), ("a",), {"b"}, frozenset({"c"})]
    assert type(out[0]) is Point


def test_string_keys_are_scanned_too(policy):
    assert policy.redact({"sk-abcdefghijkl": 3}) == {REDACTED: 3}


def test_bytes_are_scanned_and_returned_unchanged_when_clean(policy):
    clean = b"hello"
    assert policy.redact(clean) is clean
    assert policy.redact(b"password=hunter2") == "password=[REDACTED]"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


class _Leaky:
    def __str__(self) -> str:
        return "connection failed for sk-abcdef123456"


def test_weird_values_never_raise(policy):
    odd = _Unprintable()
    assert policy.redact(odd) is odd
    assert policy.redact(odd, scan_objects=True) == "<unprintable _Unprintable>"
    assert policy.redact({"x": [odd]}) == {"x": [odd]}
    assert policy.redact_text(None) is None  # type: ignore[arg-type]
    cyclic: list = []
    cyclic.append(cyclic)
    assert isinstance(policy.redact(cyclic), list)


def test_objects_are_left_alone_unless_scanning_is_asked_for(policy):
    leaky = _Leaky()
    assert policy.redact(leaky) is leaky
    assert policy.redact(leaky, scan_objects=True) == "connection failed for [REDACTED]"
    assert policy.redact(ValueError("x"), scan_objects=True).args == ("x",)


def test_str_subclass_values_are_scanned(policy):
    class Name(str):
        pass

    assert policy.redact(Name("password=abc")) == "password=[REDACTED]"


def test_users_can_add_key_words(policy):
    assert not policy.is_sensitive_key("ssn")
    policy.add_keys("ssn", "session_id", "x-internal-trace-secretish")
    assert policy.redact({"ssn": 1, "user_ssn": 2, "sessionId": 3, "session": 4}) == {
        "ssn": REDACTED,
        "user_ssn": REDACTED,
        "sessionId": REDACTED,
        "session": 4,
    }
    assert policy.is_sensitive_key("X-Internal-Trace-Secretish")
    assert not policy.is_sensitive_key("x-internal-trace")


def test_users_can_add_patterns_whole_match_or_secret_group(policy):
    policy.add_patterns(r"\b\d{3}-\d{2}-\d{4}\b", re.compile(r"pin=(?P<secret>\d+)"))
    assert policy.redact_text("ssn 123-45-6789, pin=4321") == "ssn [REDACTED], pin=[REDACTED]"


@pytest.mark.parametrize("bad", ["(unclosed", 42, re.compile(rb"bytes")])
def test_bad_patterns_are_refused_with_value_error(policy, bad):
    with pytest.raises(ValueError, match="pattern"):
        policy.add_patterns(bad)


@pytest.mark.parametrize("bad", ["", "--", 3])
def test_bad_key_words_are_refused_with_value_error(policy, bad):
    with pytest.raises(ValueError):
        policy.add_keys(bad)


def test_process_wide_policy_can_be_configured_and_reset():
    default = get_redaction_policy()
    assert get_redaction_policy() is default
    configured = configure_redaction(extra_keys=["ssn"], extra_patterns=[r"ID-\d{6}"])
    assert get_redaction_policy() is configured
    assert configured.redact({"ssn": 1, "note": "ID-123456"}) == {"ssn": REDACTED, "note": REDACTED}
    reset_redaction()
    assert get_redaction_policy().redact({"ssn": 1}) == {"ssn": 1}


def test_built_in_patterns_are_compiled_once():
    # The per-string work is a scan with precompiled patterns, never a compile per call.
    assert all(isinstance(p.regex, re.Pattern) for p in redaction._BUILTINS)


def test_max_chars_cuts_before_scanning_and_never_shows_part_of_a_secret(policy):
    text = "note " + "x" * 20 + " sk-abcdefghijklmnopqrstuvwxyz " + "y" * 10_000
    out = policy.redact_text(text, max_chars=30)
    assert out == "note " + "x" * 20 + " [REDACTED]...[truncated 10001 chars]"
    assert policy.redact_text("short", max_chars=30) == "short"
    assert policy.redact_text("password=hunter2 tail", max_chars=12) == (
        "password=[REDACTED]...[truncated 5 chars]"
    )
    assert policy.redact({"a": ["b" * 50]}, max_chars=10) == {
        "a": ["b" * 10 + "...[truncated 40 chars]"]
    }
    with pytest.raises(ValueError, match="max_chars"):
        policy.redact_text("x", max_chars=-1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["sk-abcdefghijkl", "password=hunter2", "x" * 7, "AKIAIOSFODNN7EXAMPLE"]),
        max_size=12,
    ).map(" ".join),
    st.integers(0, 80),
)
def test_property_a_cut_text_is_the_head_of_the_full_redaction(text, max_chars):
    policy = RedactionPolicy()
    full = policy.redact_text(text)
    cut = policy.redact_text(text, max_chars)
    head = cut.split("...[truncated ")[0]
    assert full.startswith(head), (text, max_chars, full, cut)
    for secret in ("abcdefghijkl", "hunter2", "IOSFODNN7EXAMPLE"):
        assert secret not in cut


def test_redaction_is_linear_in_the_length_of_the_text():
    """2 MB of each input that made a pattern rescan a run from each of its positions.

    Before the patterns were bounded, 100 KB of such text took 13 s and 2 MB would take hours;
    linear, the whole set takes about a second. The subprocess's timeout only guards against a
    hang, it measures nothing.
    """
    code = (
        "from tinyllm_instrument.redaction import get_redaction_policy\n"
        "p = get_redaction_policy()\n"
        "n = 2 * 1024 * 1024\n"
        "shapes = [\n"
        "    'see https://x/?s=' + 'aB3' * (n // 3),\n"
        "    'token: ' + 'Zz9' * (n // 3),\n"
        "    'eyJ' * (n // 3),\n"
        "    'a://b:' * (n // 6),\n"
        "    'password=\"' + 'q' * n,\n"
        "    'Authorization:' + ' ' * n + 'x',\n"
        "    'bearer' + ' ' * n + 'x',\n"
        "    '?' + '&a=' * (n // 3),\n"
        "    'sk-' * (n // 3),\n"
        "    \"x: '\" + 'a' * n,\n"
        "    ': (' + '(a' * (n // 2),\n"
        "    \": ('a',\" * (n // 6),\n"
        "    ':' + '\"' * n,\n"
        "]\n"
        "for text in shapes:\n"
        "    assert isinstance(p.redact_text(text), str)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"


# ----------------------------------------------------------------------------------------------
# Property: planted secrets never survive; ordinary content survives unchanged.
# ----------------------------------------------------------------------------------------------

# Ordinary text cannot contain the pieces a pattern needs ("=", ":", "-", upper case, "b").
_PLAIN = st.text(alphabet="acdefghijklmnopqrstuvwxyz0123456789 .,!?", max_size=30)
# Secret material always has an upper-case Q, which ordinary text never holds, so a leak is a
# substring match on the output.
_CORE = st.text(
    alphabet="ABCDEFGHJKLMNPRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", min_size=11, max_size=40
).map(lambda s: "Q" + s)
_B64URL = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    min_size=6,
    max_size=40,
)
_AWS_TAIL = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=15, max_size=15)

_ORDINARY_KEYS = st.sampled_from(
    [
        "max_tokens",
        "author",
        "prompt",
        "model",
        "temperature",
        "tokens_used",
        "token_count",
        "messages",
        "content",
        "role",
        "graph",
        "node_id",
        "duration_ms",
    ]
)
_SENSITIVE_KEYS = st.sampled_from(
    [
        "Authorization",
        "api_key",
        "X-Api-Key",
        "apiKey",
        "OPENAI_API_KEY",
        "password",
        "db_password",
        "client_secret",
        "access_token",
        "privateKey",
        "set-cookie",
        "Cookie",
        "credentials",
        "passwd",
    ]
)


@st.composite
def _planted(draw):
    """A free-text string with one secret in it: (text, expected after redaction, secret)."""
    kind = draw(st.sampled_from(["bearer", "sk", "jwt", "aws", "password"]))
    core = draw(_CORE)
    if kind == "bearer":
        scheme = draw(st.sampled_from(["Bearer", "bearer", "BEARER"]))
        secret, planted, replaced = core, f"{scheme} {core}", f"{scheme} {REDACTED}"
    elif kind == "sk":
        prefix = draw(st.sampled_from(["sk-", "sk-proj-", "sk-ant-api03-"]))
        secret = core
        planted, replaced = prefix + core, REDACTED
    elif kind == "jwt":
        payload, sig = draw(_B64URL), draw(_B64URL)
        secret = "eyJ" + core
        planted, replaced = f"{secret}.eyJ{payload}.{sig}", REDACTED
    elif kind == "aws":
        secret = draw(st.sampled_from(["AKIA", "ASIA"])) + "Q" + draw(_AWS_TAIL)
        planted, replaced = secret, REDACTED
    else:
        word = draw(st.sampled_from(["password", "passwd", "PASSWORD", "api_key"]))
        sep = draw(st.sampled_from(["=", ": ", " = "]))
        secret = core
        planted, replaced = f"{word}{sep}{core}", f"{word}{sep}{REDACTED}"
    before, after = draw(_PLAIN), draw(_PLAIN)
    return f"{before} {planted} {after}", f"{before} {replaced} {after}", secret


@st.composite
def _payload(draw, depth=0):
    """(payload, expected redaction, [secrets]) built together, nested up to three levels."""
    choice = draw(st.integers(0, 5 if depth < 3 else 2))
    if choice == 0:
        text = draw(_PLAIN)
        return text, text, []
    if choice == 1:
        n = draw(st.integers(0, 10_000))
        return n, n, []
    if choice == 2:
        text, expected, secret = draw(_planted())
        return text, expected, [secret]
    if choice == 3:  # a secret of any shape under a sensitive key
        key = draw(_SENSITIVE_KEYS)
        inner, _, secrets = draw(_payload(depth + 1))
        core = draw(_CORE)
        value = draw(st.sampled_from([core, [core, inner], {"v": core}]))
        return {key: value}, {key: REDACTED}, [core, *secrets]
    if choice == 4:
        items = draw(st.lists(_payload(depth + 1), max_size=4))
        return (
            [p for p, _, _ in items],
            [e for _, e, _ in items],
            [s for _, _, ss in items for s in ss],
        )
    keys = draw(st.lists(_ORDINARY_KEYS, max_size=4, unique=True))
    payload, expected, secrets = {}, {}, []
    for key in keys:
        p, e, s = draw(_payload(depth + 1))
        payload[key], expected[key] = p, e
        secrets.extend(s)
    return payload, expected, secrets


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payload())
def test_property_planted_secrets_never_survive_and_ordinary_content_does(case):
    payload, expected, secrets = case
    before = copy.deepcopy(payload)

    out = get_redaction_policy().redact(payload)

    rendered = json.dumps(out)
    for secret in secrets:
        assert secret not in rendered
    assert out == expected
    assert payload == before


_FRAGMENTS = st.sampled_from(
    [
        "Bearer ",
        "bearer ",
        "sk-",
        "sk_live_",
        "rk_test_",
        "ghp_",
        "AKIA",
        "ASIA",
        "eyJ",
        ".",
        "://",
        "@",
        ":",
        "=",
        " ",
        "password",
        "PassWD",
        "api_key",
        "API-KEY",
        "client_secret",
        "secret_key",
        "access_token",
        "ID_TOKEN",
        "'",
        '"',
        "x",
        "Q",
        "7",
        "abcdefgh",
        "ABCDEFGHIJKLMNOP",
        "-",
        "_",
        "Authorization",
        "proxy-AUTHORIZATION",
        "Basic ",
        "?",
        "&",
        "token",
        "key",
        "AIza",
        "X-Goog-Signature",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(_FRAGMENTS, max_size=12).map("".join),
        st.tuples(_FRAGMENTS, st.sampled_from(["=", ":", " = ", '":"']), _FRAGMENTS).map("".join),
    )
)
def test_property_the_cheap_prefilter_never_skips_a_string_a_pattern_would_change(text):
    # redact_text runs a pattern only on strings of 8+ characters that hold one of its trigger
    # pieces; if the prefilter ever said no to a string the pattern would change, that secret
    # would leak. So: the same result as every pattern run on the text unconditionally.
    policy = RedactionPolicy()
    unfiltered = policy._apply(text, policy._spans(text, list(redaction._BUILTINS)), len(text))
    assert policy.redact_text(text) == unfiltered
