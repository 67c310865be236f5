"""The one place that reads the environment: argument > TINYLLM_INSTRUMENT_* env var > default."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = [
    "ENV_ENABLED",
    "ENV_PREFIX",
    "configure",
    "env_bool",
    "env_float",
    "env_int",
    "env_str",
    "is_enabled",
    "reset",
]

ENV_PREFIX = "TINYLLM_INSTRUMENT_"
#: The global switch. "0", "false", "no", "off" (any case) turn the kit off; default on.
ENV_ENABLED = ENV_PREFIX + "ENABLED"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_str(
    name: str, default: str | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """Return the environment variable ``name``, or ``default`` when unset or blank."""
    value = (os.environ if env is None else env).get(name)
    if value is None or not value.strip():
        return default
    return value.strip()


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """Parse a boolean environment variable.

    Raises:
        ValueError: the value is not one of 1/0, true/false, yes/no, on/off.
    """
    raw = env_str(name, None, env)
    if raw is None:
        return default
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off")


def env_float(
    name: str, default: float | None, env: Mapping[str, str] | None = None
) -> float | None:
    """Parse a float environment variable; ValueError names the variable and its value."""
    raw = env_str(name, None, env)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def env_int(name: str, default: int | None, env: Mapping[str, str] | None = None) -> int | None:
    """Parse an integer environment variable; ValueError names the variable and its value."""
    raw = env_str(name, None, env)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None


class _State:
    """Process-wide switch. ``observe`` reads ``STATE.enabled`` once per call, nothing more."""

    __slots__ = ("enabled",)

    def __init__(self) -> None:
        self.enabled = True


STATE = _State()
_explicit = False


def configure(*, enabled: bool | None = None) -> None:
    """Turn the whole kit on or off.

    Args:
        enabled: True or False to decide; None to fall back to ``TINYLLM_INSTRUMENT_ENABLED``
            (default on).

    Raises:
        ValueError: ``TINYLLM_INSTRUMENT_ENABLED`` holds something that is not a boolean.

    Example:
        >>> import tinyllm_instrument
        >>> tinyllm_instrument.configure(enabled=False)   # decorated calls become pass-throughs
        >>> tinyllm_instrument.configure(enabled=True)
    """
    global _explicit
    if enabled is None:
        STATE.enabled = env_bool(ENV_ENABLED, True)
        _explicit = False
    else:
        STATE.enabled = bool(enabled)
        _explicit = True


def is_enabled() -> bool:
    """Whether decorated calls record anything."""
    return STATE.enabled


def reset() -> None:
    """Back to the environment's answer, as at start-up (for tests)."""
    configure(enabled=None)


def _init_from_env() -> None:
    # Reading one env var is not configuring anything; a bad value must not break `import`,
    # so it is reported when configure() is called explicitly instead.
    try:
        STATE.enabled = env_bool(ENV_ENABLED, True)
    except ValueError:
        STATE.enabled = True


_init_from_env()
