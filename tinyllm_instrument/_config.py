"""The one place that reads the environment: argument > TINYLLM_INSTRUMENT_* env var > default."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = [
    "CLI_PROGRAM",
    "ENV_ENABLED",
    "ENV_PREFIX",
    "configure",
    "env_bool",
    "env_float",
    "env_int",
    "env_str",
    "is_enabled",
    "reset",
    "switch_warning",
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
    STATE.enabled = env_bool(ENV_ENABLED, True) if enabled is None else bool(enabled)


def is_enabled() -> bool:
    """Whether decorated calls record anything."""
    return STATE.enabled


def reset() -> None:
    """Back to the environment's answer, as at start-up (for tests)."""
    configure(enabled=None)


def switch_warning(env: Mapping[str, str] | None = None) -> str | None:
    """The line saying ``TINYLLM_INSTRUMENT_ENABLED`` holds no boolean, or None if it is fine.

    Printed once at import by a program that uses the kit as a library (the kit then stays on),
    and by the CLI's commands other than ``run``, which refuses the value instead.

    Args:
        env: the environment to read; ``os.environ`` when None.

    Returns:
        ``"tinyllm_instrument: TINYLLM_INSTRUMENT_ENABLED='maybe' is not a boolean; use one of
        1/0, true/false, yes/no, on/off (until then the kit stays on)"``, or None.

    Example:
        >>> switch_warning({"TINYLLM_INSTRUMENT_ENABLED": "off"}) is None
        True
    """
    try:
        env_bool(ENV_ENABLED, True, env)
    except ValueError as exc:
        return f"tinyllm_instrument: {exc} (until then the kit stays on)"
    return None


#: The console script's name: that program reports a bad switch in its own words.
CLI_PROGRAM = "tinyllm-instrument"


def _running_the_cli() -> bool:
    argv = getattr(sys, "argv", None) or [""]
    return os.path.basename(str(argv[0])) in (CLI_PROGRAM, CLI_PROGRAM + ".exe")


def _init_from_env() -> None:
    # Reading one variable is not configuring anything, and a bad value must not break `import`:
    # the kit stays on and says so once, as one line on stderr, as CPython does for a bad
    # PYTHONWARNINGS entry. Not warnings.warn: under `python -W error` (or pytest's
    # filterwarnings = error) it would make the import raise, and it prints two lines. Not
    # logging: the app may set it up later, and importing the kit adds no handler. The CLI is
    # left out: `run` refuses the value with an error of its own (exit 2) and the other commands
    # print this same line themselves.
    problem = switch_warning()
    if problem is None:
        STATE.enabled = env_bool(ENV_ENABLED, True)
        return
    STATE.enabled = True
    stream = sys.stderr
    if stream is None or _running_the_cli():  # None: no console at all (pythonw)
        return
    try:
        stream.write(problem + "\n")
        stream.flush()
    except Exception:  # a closed stderr: the import still succeeds
        pass


_init_from_env()
