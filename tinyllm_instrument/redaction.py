"""One redaction policy for secrets, shared by log lines, span attributes and events."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_SENSITIVE_KEY_PAIRS",
    "DEFAULT_SENSITIVE_KEY_WORDS",
    "REDACTED",
    "RedactionPolicy",
    "configure_redaction",
    "get_redaction_policy",
    "reset_redaction",
    "safe_str",
    "safe_text",
    "split_key_words",
]

#: What replaces a secret. Deliberately free of anything a value pattern would match again.
REDACTED = "[REDACTED]"

#: A key is sensitive when one of its *words* (see `split_key_words`) is one of these.
#: "token" is here but "tokens" is not: in an LLM kit the plural is a count (``max_tokens``,
#: ``tokens_used``), the singular a credential (``access_token``, ``X-Auth-Token``). A singular
#: "token" next to a quantity word (``token_count``, ``token_limit``) is a count as well.
#: "auth" is a word of its own, so ``author`` never matches it.
DEFAULT_SENSITIVE_KEY_WORDS: frozenset[str] = frozenset(
    {
        "authorization",
        "auth",
        "cookie",
        "cookies",
        "apikey",
        "apikeys",
        "password",
        "passwords",
        "passwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "credential",
        "credentials",
        "privatekey",
        # compounds written as one word
        "accesstoken",
        "authtoken",
        "refreshtoken",
        "idtoken",
        "sessiontoken",
        "bearertoken",
        "clientsecret",
        "secretkey",
        "setcookie",
    }
)

#: Two adjacent words that make a key sensitive together (``x-api-key``, ``privateKey``).
DEFAULT_SENSITIVE_KEY_PAIRS: frozenset[tuple[str, ...]] = frozenset(
    {("api", "key"), ("api", "keys"), ("private", "key"), ("private", "keys")}
)

# A "token" key that also holds one of these words is a quantity, not a credential.
_QUANTITY_WORDS = frozenset(
    {
        "count",
        "counts",
        "num",
        "number",
        "total",
        "limit",
        "max",
        "min",
        "len",
        "length",
        "usage",
        "used",
        "budget",
        "estimate",
        "ratio",
        "rate",
        "per",
        "index",
        "idx",
        "offset",
    }
)

# camelCase / PascalCase / acronym boundaries and runs of digits; anything else separates.
_WORD_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Free-text "key=value" / "key: value" where the key names a secret. The value may be quoted.
_KV_KEYS = (
    r"password|passwd|passphrase|api[_-]?key|apikey|client[_-]?secret|"
    r"(?:aws[_-]?)?secret[_-]?(?:access[_-]?)?key|"
    r"(?:access|auth|refresh|session|id)[_-]?token"
)

# name -> (pattern, keeps_prefix). Patterns that keep a prefix define a group "<name>_k" (kept
# verbatim) and a group "<name>_v" (replaced); the others are replaced whole.
_BUILTIN_PATTERNS: tuple[tuple[str, str], ...] = (
    # RFC 6750 bearer credentials. 8+ token68 characters so prose ("the bearer of") survives.
    (
        "bearer",
        r"(?P<bearer_k>\b[Bb][Ee][Aa][Rr][Ee][Rr]\s+)(?P<bearer_v>[A-Za-z0-9\-._~+/]{8,}=*)",
    ),
    # JWS/JWT compact form: base64url JSON header ("eyJ") . payload . signature (may be empty).
    ("jwt", r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    # OpenAI/Anthropic-style secret keys: sk-..., sk-proj-..., sk-ant-api03-...
    ("sk_key", r"(?<![A-Za-z0-9])sk-[A-Za-z0-9][A-Za-z0-9_-]{5,}"),
    # Stripe secret and restricted keys.
    ("stripe_key", r"(?<![A-Za-z0-9])[sr]k_(?:live|test)_[A-Za-z0-9]{10,}"),
    # GitHub personal / OAuth / app tokens.
    ("github_token", r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}"),
    # AWS access key ids (long-term AKIA, temporary ASIA).
    ("aws_key", r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    # Credentials in URLs: scheme://user:password@host
    (
        "url_cred",
        r"(?P<url_cred_k>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:)(?P<url_cred_v>[^/\s@]+)(?=@)",
    ),
    # password=..., passwd: "...", api_key=..., access_token=... in free text and query strings.
    (
        "kv",
        r"(?P<kv_k>(?<![A-Za-z0-9])(?i:" + _KV_KEYS + r")[\"']?\s*[=:]\s*)"
        r"(?P<kv_v>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s&]+)",
    ),
)
_KEEPS_PREFIX = frozenset({"bearer", "url_cred", "kv"})

_BUILTIN_RE = re.compile("|".join(f"(?P<{name}>{pat})" for name, pat in _BUILTIN_PATTERNS))

_MAX_DEPTH = 64

# The combined regex costs ~0.3 us per character, so a string is scanned only if it holds one of
# the literal pieces some built-in pattern needs (checked on the lower-cased text, a superset).
# No built-in pattern can match fewer than 8 characters.
_MIN_MATCH_LEN = 8
_ALWAYS_TRIGGERS = (
    "bearer",
    "eyj",
    "sk-",
    "sk_",
    "rk_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "akia",
    "asia",
)
_KV_TRIGGERS = ("pass", "api", "secret", "token", "://")


def _may_hold_secret(text: str) -> bool:
    low = text.lower()
    for piece in _ALWAYS_TRIGGERS:
        if piece in low:
            return True
    if "=" in text or ":" in text:  # key=value, key: value and scheme://user:pw@host
        for piece in _KV_TRIGGERS:
            if piece in low:
                return True
    return False


def _builtin_sub(match: re.Match[str]) -> str:
    name = match.lastgroup
    if name in _KEEPS_PREFIX:
        value = match.group(f"{name}_v")
        quote = value[0] if value[:1] in ("'", '"') and len(value) >= 2 else ""
        return match.group(f"{name}_k") + quote + REDACTED + quote
    return REDACTED


def split_key_words(key: str) -> list[str]:
    """Split a key into lowercase words on non-alphanumerics and camelCase boundaries.

    Example:
        >>> split_key_words("X-Api-Key"), split_key_words("privateKey")
        (['x', 'api', 'key'], ['private', 'key'])
    """
    return [w.lower() for w in _WORD_RE.findall(key)]


class _Rules:
    """An immutable snapshot of a policy's rules, swapped whole so readers never need a lock."""

    __slots__ = ("words", "pairs", "seqs", "user_patterns", "key_cache")

    def __init__(
        self,
        words: frozenset[str],
        pairs: frozenset[tuple[str, ...]],
        seqs: frozenset[tuple[str, ...]],
        user_patterns: tuple[re.Pattern[str], ...],
    ) -> None:
        self.words = words
        self.pairs = pairs  # two adjacent words
        self.seqs = seqs  # three or more adjacent words (user-added, rare)
        self.user_patterns = user_patterns
        # Log lines repeat the same few keys; remember each verdict (bounded below).
        self.key_cache: dict[str, bool] = {}


class RedactionPolicy:
    """Decide what is a secret and replace it with `REDACTED`.

    Two rules: a value stored under a sensitive *key* is replaced whole, and inside every string
    the value patterns (bearer tokens, ``sk-`` keys, JWTs, AWS access key ids, URL credentials,
    ``password=`` in free text, plus any added with `add_patterns`) are replaced in place.

    Args:
        extra_keys: more sensitive key words (each is split into words like a key; a multi-word
            entry such as ``"session_id"`` matches those words adjacent, in order).
        extra_patterns: more value regexes (strings or compiled). The whole match is replaced,
            or only the group named ``secret`` when the pattern defines one.

    Raises:
        ValueError: a pattern does not compile, or a key has no letters or digits.

    Example:
        >>> policy = RedactionPolicy(extra_keys=["session_id"])
        >>> policy.redact({"api_key": "abc", "max_tokens": 5, "session_id": "s1"})
        {'api_key': '[REDACTED]', 'max_tokens': 5, 'session_id': '[REDACTED]'}
        >>> policy.redact_text("curl -H 'Authorization: Bearer abcdefgh123'")
        "curl -H 'Authorization: Bearer [REDACTED]'"
    """

    def __init__(self, extra_keys: Iterable[str] = (), extra_patterns: Iterable[Any] = ()) -> None:
        self._lock = threading.Lock()
        self._rules = _Rules(
            DEFAULT_SENSITIVE_KEY_WORDS, DEFAULT_SENSITIVE_KEY_PAIRS, frozenset(), ()
        )
        self.add_keys(*extra_keys)
        self.add_patterns(*extra_patterns)

    # -- extension ---------------------------------------------------------------------------

    def add_keys(self, *words: str) -> None:
        """Treat keys containing these words as sensitive.

        ``"session"`` makes ``session``, ``session_id`` and ``sessionId`` sensitive;
        ``"session_id"`` only keys with the words ``session`` and ``id`` adjacent.

        Raises:
            ValueError: an entry is not a string or has no letters or digits.
        """
        new_words: set[str] = set()
        new_seqs: set[tuple[str, ...]] = set()
        for word in words:
            if not isinstance(word, str):
                raise ValueError(f"sensitive key words must be strings, got {type(word).__name__}")
            parts = split_key_words(word)
            if not parts:
                raise ValueError(f"sensitive key word {word!r} has no letters or digits")
            if len(parts) == 1:
                new_words.add(parts[0])
            else:
                new_seqs.add(tuple(parts))
                new_words.add("".join(parts))  # "session_id" also covers "sessionid"
        if not words:
            return
        new_pairs = {s for s in new_seqs if len(s) == 2}
        with self._lock:
            old = self._rules
            self._rules = _Rules(
                old.words | new_words,
                old.pairs | new_pairs,
                old.seqs | (new_seqs - new_pairs),
                old.user_patterns,
            )

    def add_patterns(self, *patterns: Any) -> None:
        """Also redact whatever these regexes match inside strings.

        Args:
            patterns: regex strings or compiled patterns. If a pattern has a group named
                ``secret`` only that group is replaced, otherwise the whole match.

        Raises:
            ValueError: a pattern does not compile or is not a string/pattern.
        """
        compiled = []
        for pat in patterns:
            if isinstance(pat, re.Pattern):
                if not isinstance(pat.pattern, str):
                    raise ValueError("redaction patterns must be str patterns, not bytes")
                compiled.append(pat)
            elif isinstance(pat, str):
                try:
                    compiled.append(re.compile(pat))
                except re.error as exc:
                    raise ValueError(f"redaction pattern {pat!r} does not compile: {exc}") from None
            else:
                raise ValueError(
                    f"redaction patterns must be regex strings or compiled patterns, "
                    f"got {type(pat).__name__}"
                )
        if not compiled:
            return
        with self._lock:
            old = self._rules
            self._rules = _Rules(
                old.words, old.pairs, old.seqs, old.user_patterns + tuple(compiled)
            )

    # -- decisions ---------------------------------------------------------------------------

    def is_sensitive_key(self, key: Any) -> bool:
        """Whether a value stored under ``key`` is a secret. Non-string keys never are.

        Example:
            >>> p = RedactionPolicy()
            >>> [p.is_sensitive_key(k) for k in ("OPENAI_API_KEY", "max_tokens", "author")]
            [True, False, False]
        """
        if not isinstance(key, str):
            return False
        rules = self._rules
        cache = rules.key_cache
        verdict = cache.get(key)
        if verdict is None:
            verdict = self._judge_key(key, rules)
            if len(cache) < 4096:  # keys of a dict built from user data must not grow this
                cache[key] = verdict
        return verdict

    def _judge_key(self, key: str, rules: _Rules) -> bool:
        words = split_key_words(key)
        if not words:
            return False
        if "".join(words) in rules.words:  # "api_key" -> "apikey", "set-cookie" -> "setcookie"
            return True
        hit = False
        for i, word in enumerate(words):
            if word in rules.words:
                if word == "token" and not _QUANTITY_WORDS.isdisjoint(words):
                    continue  # token_count, token_limit: a count of tokens
                hit = True
                break
            if i and (words[i - 1], word) in rules.pairs:
                hit = True
                break
        if not hit:
            for seq in rules.seqs:
                n = len(seq)
                if any(tuple(words[i : i + n]) == seq for i in range(len(words) - n + 1)):
                    return True
        return hit

    # -- redaction ---------------------------------------------------------------------------

    def redact_text(self, text: str) -> str:
        """Replace every value-pattern match inside ``text``; non-strings come back unchanged.

        Example:
            >>> RedactionPolicy().redact_text("db password=hunter2 host=db1")
            'db password=[REDACTED] host=db1'
        """
        if not isinstance(text, str):
            return text
        try:
            out = text
            if len(text) >= _MIN_MATCH_LEN and _may_hold_secret(text):
                out = _BUILTIN_RE.sub(_builtin_sub, text)
            for pat in self._rules.user_patterns:
                out = _sub_user(pat, out)
            return out
        except Exception:  # pragma: no cover - a pathological user regex; fail closed
            return REDACTED

    def redact(self, value: Any, *, scan_objects: bool = False) -> Any:
        """Return a copy of ``value`` with every secret replaced; the input is never mutated.

        Dicts (any Mapping), lists, tuples, sets and frozensets are walked recursively and
        rebuilt; values under sensitive keys become `REDACTED`; strings (and string keys) are
        scanned with the value patterns; bytes are scanned as UTF-8 and come back as str only if
        something was redacted. Other objects are returned as they are, unless ``scan_objects``
        is true: then their ``str()`` is scanned and, if it held a secret, the redacted text
        replaces the object (an object whose ``str()`` raises becomes ``"<unprintable T>"``,
        since it can be neither checked nor rendered). Never raises.

        Args:
            value: anything.
            scan_objects: also look inside ``str()`` of arbitrary objects (exceptions, models).

        Returns:
            The redacted copy (the same object for values with nothing to redact inside).
        """
        try:
            return self._redact(value, self._rules, scan_objects, 0)
        except Exception:  # pragma: no cover - fail closed rather than leak
            return REDACTED

    def _redact(self, value: Any, rules: _Rules, scan_objects: bool, depth: int) -> Any:
        cls = type(value)
        if cls is str:
            return self.redact_text(value)
        if cls is int or cls is float or cls is bool or value is None:
            return value
        if depth >= _MAX_DEPTH:
            return REDACTED  # too deep or cyclic: refusing is safer than guessing
        depth += 1
        if isinstance(value, Mapping):
            try:
                items = list(value.items())
            except Exception:
                return REDACTED
            out: dict[Any, Any] = {}
            for key, val in items:
                if self.is_sensitive_key(key):
                    out[self.redact_text(key) if type(key) is str else key] = REDACTED
                else:
                    new_key = self.redact_text(key) if isinstance(key, str) else key
                    out[new_key] = self._redact(val, rules, scan_objects, depth)
            return out
        if isinstance(value, (list, tuple, set, frozenset)):
            try:
                items = [self._redact(v, rules, scan_objects, depth) for v in value]
            except Exception:
                return REDACTED
            if isinstance(value, list):
                return items
            if isinstance(value, tuple):
                if hasattr(value, "_fields"):  # namedtuple: same shape
                    try:
                        return cls(*items)
                    except Exception:
                        return tuple(items)
                return tuple(items)
            try:
                return frozenset(items) if isinstance(value, frozenset) else set(items)
            except TypeError:
                return items
        if isinstance(value, str):  # str subclass
            return self.redact_text(str.__str__(value))
        if isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8", "replace")
            red = self.redact_text(text)
            return value if red == text else red
        if scan_objects:
            try:
                text = str(value)
                if not isinstance(text, str):
                    raise TypeError("__str__ returned a non-string")
            except Exception:
                # Cannot be checked, and no sink could render it either.
                return f"<unprintable {cls.__name__}>"
            red = self.redact_text(text)
            return value if red == text else red
        return value


def safe_str(value: object) -> str:
    """``str(value)`` that never raises; the one safe ``str()`` of a user object in the kit.

    An object whose ``__str__`` raises (or returns a non-string) becomes ``"<unprintable T>"``:
    it can be neither checked for secrets nor rendered. The text is *not* redacted; use
    :func:`safe_text` for anything that reaches a sink.

    Example:
        >>> safe_str(ValueError("boom"))
        'boom'
    """
    try:
        text = str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
    if type(text) is not str:  # a str subclass may carry its own __str__; keep the characters
        text = (
            str.__str__(text) if isinstance(text, str) else f"<unprintable {type(value).__name__}>"
        )
    return text


def safe_text(value: object) -> str:
    """``str(value)`` with the process-wide policy applied: what any sink may show of an object.

    Example:
        >>> safe_text(ValueError("bad key sk-proj-abcdefghijklmnopqrstuvwx"))
        'bad key [REDACTED]'
    """
    return get_redaction_policy().redact_text(safe_str(value))


def _sub_user(pat: re.Pattern[str], text: str) -> str:
    if "secret" not in pat.groupindex:
        return pat.sub(REDACTED, text)

    def repl(m: re.Match[str]) -> str:
        start, end = m.span("secret")
        if start < 0:
            return m.group(0)
        base = m.start()
        whole = m.group(0)
        return whole[: start - base] + REDACTED + whole[end - base :]

    return pat.sub(repl, text)


_policy_lock = threading.Lock()
_policy: RedactionPolicy | None = None


def get_redaction_policy() -> RedactionPolicy:
    """The process-wide policy used by log lines, span attributes and events.

    Example:
        >>> get_redaction_policy().redact({"password": "x"})
        {'password': '[REDACTED]'}
    """
    global _policy
    policy = _policy
    if policy is None:
        with _policy_lock:
            if _policy is None:
                _policy = RedactionPolicy()
            policy = _policy
    return policy


def configure_redaction(
    extra_keys: Iterable[str] = (), extra_patterns: Iterable[Any] = ()
) -> RedactionPolicy:
    """Replace the process-wide policy by the defaults plus these keys and patterns.

    Calling it again starts from the defaults again (it does not accumulate); use
    ``get_redaction_policy().add_keys(...)`` to extend the current policy instead.

    Args:
        extra_keys: more sensitive key words, see `RedactionPolicy.add_keys`.
        extra_patterns: more value regexes, see `RedactionPolicy.add_patterns`.

    Returns:
        The new policy.

    Raises:
        ValueError: a pattern does not compile or a key word is empty.

    Example:
        >>> configure_redaction(extra_keys=["ssn"], extra_patterns=[r"\\b\\d{3}-\\d{2}-\\d{4}\\b"])
        ... # doctest: +ELLIPSIS
        <...RedactionPolicy object at ...>
    """
    global _policy
    policy = RedactionPolicy(extra_keys=extra_keys, extra_patterns=extra_patterns)
    with _policy_lock:
        _policy = policy
    return policy


def reset_redaction() -> None:
    """Back to the default policy (for tests)."""
    global _policy
    with _policy_lock:
        _policy = None
