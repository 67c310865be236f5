"""Target patterns: parse and match ``module:qualname`` patterns, exclusions and model assignments.

The forms (see :mod:`tinyllm_instrument.patching` for what each selects): ``module:function``,
``module:Class.method``, ``module:*``, ``module:Class.*``, ``package.*:*``; a leading ``!`` makes
an exclusion, which removes what the other patterns select. ``PATTERN=NAME`` names the model of
what PATTERN selects (``--model``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "PATTERN_FORMS",
    "TargetPattern",
    "parse_model",
    "parse_models",
    "parse_pattern",
    "parse_preset_name",
    "parse_targets",
]

#: What a pattern may look like, for error messages.
PATTERN_FORMS = (
    "module:function, module:Class.method, module:*, module:Class.* or package.*:*, "
    "with ! in front to exclude"
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A module name may hold "-": the module of a script is its file stem, my-agent.py's "my-agent".
_MODULE_PART = r"[A-Za-z_][A-Za-z0-9_-]*"
_MODULE_RE = re.compile(rf"^{_MODULE_PART}(\.{_MODULE_PART})*(\.\*)?$")
_PATH_RE = re.compile(rf"^(\*|{_IDENT}(\.{_IDENT})*(\.\*)?)$")
# A model name: what a provider calls it ("gpt-4o-mini", "models/gemini-1.5-pro"); no comma
# (the environment twin is comma-separated), no space, no control character.
_PRESET_RE = re.compile(r"^@[a-z][a-z0-9_]*$")
_MODEL_RE = re.compile(r"^[^\s,\x00-\x1f\x7f]+$")


@dataclass(frozen=True)
class TargetPattern:
    """One parsed pattern. ``path`` is the attribute path in the module; its last part may be "*".

    ``exclude`` is True for ``!module:...``: what it matches is removed from what the other
    patterns select.

    Example:
        >>> parse_pattern("pkg.*:Client.*")
        TargetPattern(text='pkg.*:Client.*', module='pkg', submodules=True, path=('Client', '*'))
    """

    text: str
    module: str
    submodules: bool
    path: tuple[str, ...]
    exclude: bool = False

    def __repr__(self) -> str:
        tail = ", exclude=True" if self.exclude else ""
        return (
            f"TargetPattern(text={self.text!r}, module={self.module!r}, "
            f"submodules={self.submodules!r}, path={self.path!r}{tail})"
        )

    def matches_module(self, name: str) -> bool:
        """Whether the pattern applies to the module called ``name``."""
        if self.submodules:
            return name.startswith(self.module + ".")
        return name == self.module

    @property
    def wildcard(self) -> bool:
        return self.path[-1] == "*"

    def matches_qualname(self, qualname: str) -> bool:
        """Whether a callable with this qualname (``Class.method``) is selected by the path.

        A wildcard skips special methods other than ``__call__``, except in an exclusion: an
        exclusion removes everything under its prefix.
        """
        parts = tuple(qualname.split("."))
        if not self.wildcard:
            return parts == self.path
        if _is_special(parts[-1]) and not self.exclude:
            return False
        prefix = self.path[:-1]
        if not prefix:  # "*": functions and methods of classes at any nesting
            return True
        return parts[:-1] == prefix

    def matches_label(self, label: str) -> bool:
        """Whether ``module:qualname`` is selected (module and qualname both)."""
        module, _, qualname = label.partition(":")
        return self.matches_module(module) and self.matches_qualname(qualname)


def _is_special(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and name != "__call__"


def parse_pattern(text: str) -> TargetPattern:
    """Parse ``module:function``, ``module:Class.method``, ``module:*``, ``module:Class.*`` or
    ``package.*:*``, each with an optional leading ``!`` (an exclusion).

    Raises:
        ValueError: the text is not one of those forms; the message shows them.

    Example:
        >>> parse_pattern("app:Agent.run").path
        ('Agent', 'run')
        >>> parse_pattern("!app:main").exclude
        True
    """
    if not isinstance(text, str):
        raise ValueError(f"pattern {text!r} must be a string such as 'module:function'")
    cleaned = text.strip()
    exclude = cleaned.startswith("!")
    module, sep, path = cleaned.removeprefix("!").strip().partition(":")
    if (
        not sep
        or not _MODULE_RE.match(module)
        or not _PATH_RE.match(path)
        or (path != "*" and "*" in path[:-1])
    ):
        raise ValueError(f"pattern {text!r} is not valid; use {PATTERN_FORMS}")
    submodules = module.endswith(".*")
    canonical = ("!" if exclude else "") + f"{module}:{path}"
    return TargetPattern(
        canonical,
        module[:-2] if submodules else module,
        submodules,
        tuple(path.split(".")),
        exclude,
    )


def parse_targets(value: str | Iterable[str] | None) -> list[str]:
    """Split a comma-separated ``TINYLLM_INSTRUMENT_TARGETS`` value (or a list) into patterns and
    preset names (``@openai``).

    Raises:
        ValueError: one of them is not a valid pattern.

    Example:
        >>> parse_targets("app:*, tools.*:*, !app:main, @openai")
        ['app:*', 'tools.*:*', '!app:main', '@openai']
    """
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if isinstance(item, str) and item.strip().startswith("@"):
            out.append(parse_preset_name(item))
        elif item.strip():
            out.append(parse_pattern(item).text)
    return out


def parse_preset_name(text: str) -> str:
    """``" @openai "`` -> ``"@openai"``: the form of a preset name (whether it is known is the
    registry's to say, see :func:`tinyllm_instrument.presets.parse_preset`).

    Raises:
        ValueError: not ``@NAME`` (lower-case letters, digits and ``_``).

    Example:
        >>> parse_preset_name("@openai")
        '@openai'
    """
    cleaned = text.strip()
    if not _PRESET_RE.match(cleaned):
        raise ValueError(f"preset {text!r} is not valid; use @NAME such as @openai")
    return cleaned


def parse_model(text: str) -> tuple[str, str]:
    """Parse ``PATTERN=NAME``: the model of what PATTERN selects.

    Raises:
        ValueError: not of that form, an exclusion, or a NAME that is empty or holds a space or
            a comma.

    Example:
        >>> parse_model("app:call_model=gpt-4o-mini")
        ('app:call_model', 'gpt-4o-mini')
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} must be a string such as 'app:call_model=gpt-4o-mini'")
    pattern_text, sep, name = text.partition("=")
    pattern_text, name = pattern_text.strip(), name.strip()
    if not sep or not pattern_text or not name:
        raise ValueError("must be PATTERN=NAME, such as 'app:call_model=gpt-4o-mini'")
    try:
        pattern = parse_pattern(pattern_text)
    except ValueError:
        raise ValueError(
            f"{pattern_text!r} is not a valid pattern; use {PATTERN_FORMS.split(', with')[0]}"
        ) from None
    if pattern.exclude:
        raise ValueError(f"{pattern_text!r} is an exclusion; a model is named for what is wrapped")
    if not _MODEL_RE.match(name):
        raise ValueError(f"model name {name!r} must not hold spaces, commas or control characters")
    return pattern.text, name


def parse_models(value: str | Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Parse model assignments: a comma-separated ``PATTERN=NAME`` list, a list, or a mapping.

    Raises:
        ValueError: one is malformed (the message names it), or a pattern is given two models.

    Example:
        >>> parse_models("app:call_model=gpt-4o, app:Judge.*=claude-3-5-haiku")
        {'app:call_model': 'gpt-4o', 'app:Judge.*': 'claude-3-5-haiku'}
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = [
            f"{k}={v}" if isinstance(k, str) and isinstance(v, str) else repr((k, v))
            for k, v in value.items()
        ]
    else:
        items = list(value.split(",") if isinstance(value, str) else value)
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"model {item!r} must be a string PATTERN=NAME")
        if not item.strip():
            continue
        try:
            pattern, name = parse_model(item)
        except ValueError as exc:
            raise ValueError(f"model {item.strip()!r}: {exc}") from None
        if out.get(pattern, name) != name:
            raise ValueError(
                f"model {item.strip()!r}: {pattern} already has model {out[pattern]!r}; "
                "give each pattern one model"
            )
        out[pattern] = name
    return out
