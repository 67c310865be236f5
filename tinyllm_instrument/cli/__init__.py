"""The click command group ``tinyllm-instrument``; the only package that imports click.

Each command lives in its own module below this package and registers itself on ``cli``.
"""

from __future__ import annotations

import click

from .. import __version__

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinyllm-instrument")
def cli() -> None:
    """Observability for LLM workflow graphs: traces, metrics, logs and events."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tinyllm-instrument")


# Commands register themselves on `cli` when imported; they need `cli` defined above.
from . import cache_stats as _cache_stats  # noqa: E402,F401
from . import debug as _debug  # noqa: E402,F401
from . import health as _health  # noqa: E402,F401
from . import metrics as _metrics  # noqa: E402,F401
from . import run as _run  # noqa: E402,F401
