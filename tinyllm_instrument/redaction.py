"""One redaction policy for secrets, shared by log lines, span attributes and events."""

from __future__ import annotations

import re
import threading
from collections.abc import Container, Iterable, Mapping, MutableMapping
from typing import Any

__all__ = [
    "DEFAULT_SENSITIVE_KEY_PAIRS",
    "DEFAULT_SENSITIVE_KEY_WORDS",
    "REDACTED",
    "TRUNCATION_SCAN_MARGIN",
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

# Attribute names of the OpenTelemetry GenAI semantic conventions that hold the word "token" as
# the *kind* of token counted (input / output, text / image, cached...), never a credential. Exact
# names only, so a user key such as "token_type" or "gen_ai_token" is still judged by the rules.
_VOCABULARY_KEYS = frozenset(
    {"gen_ai.token.type", "gen_ai.token.modality", "gen_ai.token.cache", "gen_ai.token.phase"}
)

# camelCase / PascalCase / acronym boundaries and runs of digits; anything else separates.
_WORD_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Free-text "key=value" / "key: value" where the key names a secret. The value may be quoted.
_KV_KEYS = (
    r"password|passwd|passphrase|api[_-]?key|apikey|client[_-]?secret|"
    r"(?:aws[_-]?)?secret[_-]?(?:access[_-]?)?key|"
    r"(?:access|auth|refresh|session|id)[_-]?token"
)
# HTTP authentication schemes: after "Authorization:" the scheme word stays, its credential goes.
_AUTH_SCHEMES = (
    r"basic|bearer|digest|negotiate|ntlm|token|apikey|api-key|key|oauth|mac|hoba|mutual|"
    r"vapid|dpop|scram-sha-1|scram-sha-256|aws4-hmac-sha256|googlelogin|splunk|sso-key"
)
_AUTH_TOKEN = r"[^\s\"',;]+"

#: Query-string parameter names whose value is a secret even though the key policy would not say
#: so on its own: Google's ``key=AIza...``, and the signature of a pre-signed URL (any name with
#: the word "signature" counts too).
_QUERY_SECRET_NAMES = frozenset({"key", "sig", "signature"})


class _Builtin:
    """One built-in value pattern and the lower-case pieces of which a match holds at least one.

    A pattern runs only on strings that hold one of its ``triggers`` (and, when ``needs_sep``,
    an ``=`` or ``:``): a substring test is far cheaper than a regex scan. Every pattern is
    written to run in time linear in the text: no unbounded run is ever rescanned from each of
    its positions (a scheme or token is anchored after a character that cannot precede it).
    """

    __slots__ = ("name", "regex", "triggers", "needs_sep", "keeps_prefix")

    def __init__(
        self, name: str, regex: str, triggers: tuple[str, ...], needs_sep: bool, keeps_prefix: bool
    ) -> None:
        self.name = name
        # Each pattern is compiled on its own: one alternation of all of them cost ~5x more
        # per character, as the regex engine then cannot skip ahead to a pattern's first char.
        self.regex = re.compile(regex)
        self.triggers = triggers
        self.needs_sep = needs_sep
        self.keeps_prefix = keeps_prefix


# Patterns that keep a prefix define a group "<name>_k" (kept verbatim) and a group "<name>_v"
# (replaced); the others are replaced whole.
_BUILTINS: tuple[_Builtin, ...] = (
    # RFC 6750 bearer credentials. 8+ token68 characters so prose ("the bearer of") survives.
    _Builtin(
        "bearer",
        r"(?P<bearer_k>(?=[Bb])\b[Bb][Ee][Aa][Rr][Ee][Rr]\s{1,16})(?P<bearer_v>[A-Za-z0-9\-._~+/]{8,}=*)",
        ("bearer",),
        False,
        True,
    ),
    # "Authorization: Basic dXNlcjpwYXNz" and any other scheme, in free text, a header dump or a
    # dict's repr. Without a known scheme word the first two tokens go (one may be the scheme).
    _Builtin(
        "auth",
        r"(?P<auth_k>(?=[AaPp])(?<![A-Za-z0-9_])(?i:(?:proxy-)?authorization)[\"']?[ \t]{0,16}[:=]"
        r"[ \t]{0,16}[\"']?(?:(?P<auth_s>(?i:" + _AUTH_SCHEMES + r"))[ \t]{1,16})?)"
        r"(?P<auth_v>(?(auth_s)"
        + _AUTH_TOKEN
        + "|"
        + _AUTH_TOKEN
        + r"(?:[ \t]{1,16}"
        + _AUTH_TOKEN
        + r")?))",
        ("authorization",),
        True,
        True,
    ),
    # JWS/JWT compact form: base64url JSON header ("eyJ") . payload . signature (may be empty).
    # Anchored at the start of a base64url run: "eyJ" inside a run is not a token's start.
    _Builtin(
        "jwt",
        r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        ("eyj",),
        False,
        False,
    ),
    # OpenAI/Anthropic-style secret keys: sk-..., sk-proj-..., sk-ant-api03-...
    _Builtin(
        "sk_key", r"sk-(?<![A-Za-z0-9]sk-)[A-Za-z0-9][A-Za-z0-9_-]{5,}", ("sk-",), False, False
    ),
    # Stripe secret and restricted keys.
    _Builtin(
        "stripe_key",
        r"(?<![A-Za-z0-9])[sr]k_(?:live|test)_[A-Za-z0-9]{10,}",
        ("sk_", "rk_"),
        False,
        False,
    ),
    # GitHub personal / OAuth / app tokens.
    _Builtin(
        "github_token",
        r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        False,
        False,
    ),
    # AWS access key ids (long-term AKIA, temporary ASIA).
    _Builtin(
        "aws_key",
        r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])",
        ("akia", "asia"),
        False,
        False,
    ),
    # Google API keys (Maps, Gemini, YouTube...): "AIza" and 35 more characters.
    _Builtin("google_key", r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{30,}", ("aiza",), False, False),
    # Credentials in URLs: scheme://user:password@host. Anchored at "://", so a long run of
    # letters before it is never rescanned; the password runs to the last "@" before the path.
    _Builtin(
        "url_cred",
        r"(?P<url_cred_k>://[^/\s:@]+:)(?P<url_cred_v>[^/\s]+)(?=@)",
        ("://",),
        True,
        True,
    ),
    # password=..., passwd: "...", api_key=..., access_token=... in free text and query strings.
    _Builtin(
        "kv",
        r"(?P<kv_k>(?=[PpAaCcSsRrIi])(?<![A-Za-z0-9])(?i:" + _KV_KEYS + r")[\"']?\s*[=:]\s*)"
        r"(?P<kv_v>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s&]+)",
        ("pass", "api", "secret", "token"),
        True,
        True,
    ),
    # 'name': value in the text of a mapping (its repr, JSON, a dict formatted into a message)
    # where the key policy calls a quoted name sensitive, also as part of a tuple key:
    # {('db', 'password'): 'x'}. Decided per match by the policy, see _is_secret_name.
    _Builtin(
        "qkey",
        r"(?P<qkey_k>(?=['\"(])(?P<qkey_n>(?P<qkey_q>['\"])[^'\"\n]{1,64}(?P=qkey_q)"
        r"|\((?:[^()'\"\n]|'[^'\n]{0,64}'|\"[^\"\n]{0,64}\"){1,256}\))[ \t]{0,16}:[ \t]{0,16})"
        # The value is looked at, not consumed: a key the policy lets pass may hold one that
        # it does not ("note": "the token: 'abc'"), so the scan goes on right after the ":".
        r"(?=(?P<qkey_v>'[^'\\]*(?:\\.[^'\\]*)*'|\"[^\"\\]*(?:\\.[^\"\\]*)*\"|[^\s,}\]]+))",
        ("'", '"'),
        True,
        True,
    ),
    # name=value where the key policy calls the name sensitive: ?token=..., &secret=...,
    # Client(token='...') in a repr, --password=... on a command line. In a query string a
    # "key" or a signature is a secret too (?key=AIza..., X-Goog-Signature=...). Decided per
    # match by the policy, see _is_secret_name.
    _Builtin(
        "kwarg",
        r"(?P<kwarg_k>(?=[A-Za-z_])(?<![A-Za-z0-9_.\-\[\]])(?P<kwarg_n>[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,63})=)"
        r"(?=(?P<kwarg_v>\"[^\"\\]*(?:\\.[^\"\\]*)*\"|'[^'\\]*(?:\\.[^'\\]*)*'"
        r"|[^\s&#,;)\]}<>]+))",
        ("=",),
        False,
        True,
    ),
)

_MAX_DEPTH = 64
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")

# No built-in pattern can match fewer than 3 characters ("pw=x" with a user-added key "pw").
_MIN_MATCH_LEN = 3
#: Strings up to this long whose scan changed nothing are remembered (see _Rules.clean).
_CLEAN_CACHE_MAX_LEN = 256
_CLEAN_CACHE_SIZE = 4096
#: A text cut to ``max_chars`` is scanned this far beyond the cut, so that a secret that starts
#: before the cut and ends after it is still recognised and replaced whole.
TRUNCATION_SCAN_MARGIN = 1024


def _triggered(text: str) -> list[_Builtin]:
    """The built-in patterns whose trigger pieces occur in ``text`` (the only ones to run)."""
    low = text.lower()
    has_sep = "=" in text or ":" in text
    found = []
    for pat in _BUILTINS:
        if pat.needs_sep and not has_sep:
            continue
        for piece in pat.triggers:
            if piece in low:
                found.append(pat)
                break
    return found


def split_key_words(key: str) -> list[str]:
    """Split a key into lowercase words on non-alphanumerics and camelCase boundaries.

    Example:
        >>> split_key_words("X-Api-Key"), split_key_words("privateKey")
        (['x', 'api', 'key'], ['private', 'key'])
    """
    return [w.lower() for w in _WORD_RE.findall(key)]


class _Rules:
    """An immutable snapshot of a policy's rules, swapped whole so readers never need a lock."""

    __slots__ = ("words", "pairs", "seqs", "user_patterns", "key_cache", "clean")

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
        # ... and the same few short strings (event names, node names, model names): remember
        # those the built-in patterns left unchanged. Only clean strings are kept, so no secret
        # lives on in this set; it is emptied when full.
        self.clean: set[str] = set()


class RedactionPolicy:
    """Decide what is a secret and replace it with `REDACTED`.

    Two rules: a value stored under a sensitive *key* is replaced whole, and inside every string
    the value patterns (bearer tokens, ``Authorization:`` credentials, ``sk-`` keys, JWTs, AWS
    access key ids, Google API keys, URL credentials, ``password=`` in free text, ``name=value``
    where the key rule calls the name sensitive (``?token=...``, ``Client(secret='...')``), plus
    any added with `add_patterns`) are replaced in place.
    Scanning a string takes time linear in its length.

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
        # Re-entrant: a signal handler may log (and so redact) while this thread holds it.
        self._lock = threading.RLock()
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
                ``secret`` only that group is replaced, otherwise the whole match. Write them so
                they cannot rescan a long run of text from each of its positions: every string
                of every log line goes through them.

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
        """Whether a value stored under ``key`` is a secret.

        A string key is judged by its words (see the class). A tuple key, as in
        ``{("db", "password"): ...}``, is sensitive when one of its string parts is. Other keys
        (numbers, None, objects) never are.

        Example:
            >>> p = RedactionPolicy()
            >>> [p.is_sensitive_key(k) for k in ("OPENAI_API_KEY", "max_tokens", "author")]
            [True, False, False]
            >>> p.is_sensitive_key(("db", "password")), p.is_sensitive_key(1)
            (True, False)
        """
        if not isinstance(key, str):
            if isinstance(key, tuple):
                try:
                    return any(self.is_sensitive_key(part) for part in key)
                except Exception:  # a part whose == or hash raises: refuse rather than guess
                    return True
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
        if key in _VOCABULARY_KEYS:
            return False
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

    def _is_secret_name(self, name: str, in_query: bool) -> bool:
        if self.is_sensitive_key(name):
            return True
        if not in_query:
            return False
        return name.lower() in _QUERY_SECRET_NAMES or "signature" in split_key_words(name)

    # -- redaction ---------------------------------------------------------------------------

    def redact_text(self, text: str, max_chars: int | None = None) -> str:
        """Replace every value-pattern match inside ``text``; non-strings come back unchanged.

        Takes time linear in the length of the text (of the part kept, with ``max_chars``).

        Args:
            text: the text to scan.
            max_chars: keep at most this many characters of ``text``, followed by
                ``...[truncated N chars]``. The cut is made *before* the scan, so a 10 MB text
                costs what its head costs; the scan looks `TRUNCATION_SCAN_MARGIN` characters
                past the cut, so a secret that straddles it is replaced whole (N then counts
                the characters after that secret) and never shows a fragment.

        Returns:
            The redacted (and perhaps truncated) text.

        Raises:
            ValueError: ``max_chars`` is negative or not an int.

        Example:
            >>> RedactionPolicy().redact_text("db password=hunter2 host=db1")
            'db password=[REDACTED] host=db1'
            >>> RedactionPolicy().redact_text("password=hunter2 " + "x" * 100, max_chars=20)
            'password=[REDACTED] xxx...[truncated 97 chars]'
        """
        if max_chars is not None and (
            isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 0
        ):
            raise ValueError(f"max_chars must be an int >= 0 or None, got {max_chars!r}")
        if not isinstance(text, str):
            return text
        try:
            if max_chars is not None and len(text) > max_chars:
                return self._scan_head(text, max_chars)
            return self._scan(text, self._rules)
        except Exception:  # pragma: no cover - a pathological user regex; fail closed
            return REDACTED

    def _scan(self, text: str, rules: _Rules) -> str:
        out = text
        if len(text) >= _MIN_MATCH_LEN:
            clean = rules.clean
            if text not in clean:
                pats = _triggered(text)
                if pats:
                    out = self._apply(text, self._spans(text, pats), len(text))
                if out is text and len(text) <= _CLEAN_CACHE_MAX_LEN:
                    if len(clean) >= _CLEAN_CACHE_SIZE:
                        clean.clear()
                    clean.add(text)
        for pat in rules.user_patterns:
            out = _sub_user(pat, out)
        return out

    def _scan_head(self, text: str, max_chars: int) -> str:
        """The redacted first ``max_chars`` characters of ``text`` plus a truncation marker."""
        window = text[: max_chars + TRUNCATION_SCAN_MARGIN]
        spans = self._spans(window, _triggered(window))
        # A secret that starts before the cut is replaced whole, however far it runs.
        kept = [span for span in spans if span[0] < max_chars]
        end = max(max_chars, kept[-1][1]) if kept else max_chars
        head = self._apply(window, kept, end)
        for pat in self._rules.user_patterns:
            head = _sub_user(pat, head)
        cut = len(text) - end
        return f"{head}...[truncated {cut} chars]" if cut > 0 else head

    def _spans(self, text: str, pats: list[_Builtin]) -> list[tuple[int, int, str]]:
        """(start, end, replacement) of every secret in ``text``, sorted, none overlapping.

        Each pattern scans the text on its own; where two patterns' secrets overlap, the union
        of both is replaced, so no part of either can show.
        """
        found: list[tuple[int, int, str]] = []
        for pat in pats:
            name = pat.name
            for match in pat.regex.finditer(text):
                if not pat.keeps_prefix:
                    found.append((match.start(), match.end(), REDACTED))
                    continue
                if name == "kwarg":
                    start = match.start()
                    in_query = start > 0 and text[start - 1] in "?&"
                    if not self._is_secret_name(match.group("kwarg_n"), in_query):
                        continue
                elif name == "qkey" and not any(
                    self._is_secret_name(a or b, False)
                    for a, b in _QUOTED.findall(match.group("qkey_n"))
                ):
                    continue
                group = f"{name}_v"
                value = match.group(group)
                quote = value[0] if value[:1] in ("'", '"') and len(value) >= 2 else ""
                found.append((match.start(group), match.end(group), quote + REDACTED + quote))
        if len(found) < 2:
            return found
        found.sort()
        merged = [found[0]]
        for start, end, rep in found[1:]:
            last_start, last_end, last_rep = merged[-1]
            if start >= last_end:
                merged.append((start, end, rep))
            elif end > last_end:
                merged[-1] = (last_start, end, REDACTED)
        return merged

    @staticmethod
    def _apply(text: str, spans: list[tuple[int, int, str]], end: int) -> str:
        """``text[:end]`` with each span replaced; the same object when there is none."""
        if not spans:
            return text if end >= len(text) else text[:end]
        parts = []
        pos = 0
        for start, stop, rep in spans:
            parts.append(text[pos:start])
            parts.append(rep)
            pos = stop
        if pos < end:
            parts.append(text[pos:end])
        return "".join(parts)

    def redact(
        self, value: Any, *, scan_objects: bool = False, max_chars: int | None = None
    ) -> Any:
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
            max_chars: cut every string inside to this many characters before scanning it (see
                `redact_text`), for a caller whose output is bounded anyway.

        Returns:
            The redacted copy (the same object for values with nothing to redact inside).
        """
        try:
            return self._redact(value, self._rules, scan_objects, 0, max_chars)
        except Exception:  # pragma: no cover - fail closed rather than leak
            return REDACTED

    def redact_in_place(self, fields: MutableMapping[str, Any], skip: Container[str] = ()) -> None:
        """Redact the values of a flat dict of fields in place, as a log line needs it.

        The per-line fast path: a key's verdict is cached, numbers and short clean strings cost
        a lookup, and the dict is not copied. Values are redacted as by
        ``redact(value, scan_objects=True)``; keys named in ``skip`` are left alone.

        Example:
            >>> fields = {"event": "login password=x1", "api_key": "k", "n": 3}
            >>> get_redaction_policy().redact_in_place(fields)
            >>> fields
            {'event': 'login password=[REDACTED]', 'api_key': '[REDACTED]', 'n': 3}
        """
        rules = self._rules
        cache = rules.key_cache
        clean = rules.clean
        users = rules.user_patterns
        for key, value in fields.items():  # values are replaced, the keys stay: no resize
            if key in skip:
                continue
            verdict = cache.get(key)
            if verdict is None:
                verdict = self.is_sensitive_key(key)
            if verdict:
                fields[key] = REDACTED
                continue
            cls = type(value)
            if cls is str:
                # Most strings of a line were seen before (event, node, app, ids): one lookup.
                if users or (value not in clean and len(value) >= _MIN_MATCH_LEN):
                    fields[key] = self._scan(value, rules)
            elif cls is not int and cls is not float and cls is not bool and value is not None:
                fields[key] = self._redact(value, rules, True, 0, None)

    def _redact(
        self, value: Any, rules: _Rules, scan_objects: bool, depth: int, max_chars: int | None
    ) -> Any:
        cls = type(value)
        if cls is str:
            return self.redact_text(value, max_chars)
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
                new_key = (
                    self.redact_text(key)
                    if isinstance(key, str)
                    else self._redact(key, rules, scan_objects, depth, max_chars)
                    if isinstance(key, tuple)
                    else key
                )
                if self.is_sensitive_key(key):
                    out[new_key] = REDACTED
                else:
                    out[new_key] = self._redact(val, rules, scan_objects, depth, max_chars)
            return out
        if isinstance(value, (list, tuple, set, frozenset)):
            try:
                items = [self._redact(v, rules, scan_objects, depth, max_chars) for v in value]
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
            return self.redact_text(str.__str__(value), max_chars)
        if isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8", "replace")
            red = self.redact_text(text, max_chars)
            return value if red == text else red
        if scan_objects:
            try:
                text = str(value)
                if not isinstance(text, str):
                    raise TypeError("__str__ returned a non-string")
            except Exception:
                # Cannot be checked, and no sink could render it either.
                return f"<unprintable {cls.__name__}>"
            red = self.redact_text(text, max_chars)
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


# Re-entrant: a signal handler may log (and so look the policy up) while this thread holds it.
_policy_lock = threading.RLock()
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
