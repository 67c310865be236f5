"""What several commands share: the --json, --metrics-url and --timeout options, one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = [
    "DEFAULT_TIMEOUT",
    "OneLineUsageError",
    "json_option",
    "metrics_url_option",
    "timeout_option",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Seconds a command waits for a network answer unless --timeout says otherwise.
DEFAULT_TIMEOUT = 3.0


class OneLineUsageError(click.ClickException):
    """A usage error shown as one line, ``Error: ...``, with exit code 2 and no usage text.

    For a value click accepted that still cannot work, such as a port another process holds.
    """

    exit_code = 2


def json_option(help: str = "Print plain JSON and nothing else.") -> Callable[[_F], _F]:
    """``--json``, passed to the command as ``as_json``.

    Args:
        help: the option's help text.

    Returns:
        A click decorator.
    """
    return click.option("--json", "as_json", is_flag=True, help=help)


def metrics_url_option(help: str) -> Callable[[_F], _F]:
    """``--metrics-url URL``: a running app's /metrics (None when not given).

    Args:
        help: the option's help text: what the command reads from it instead of this process.

    Returns:
        A click decorator.
    """
    return click.option("--metrics-url", metavar="URL", help=help)


def timeout_option(help: str) -> Callable[[_F], _F]:
    """``--timeout SECONDS``, a positive float, default :data:`DEFAULT_TIMEOUT`.

    Args:
        help: the option's help text: what it bounds.

    Returns:
        A click decorator.
    """
    return click.option(
        "--timeout",
        type=click.FloatRange(0, min_open=True),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help=help,
    )
