"""The click command group ``tinyllm-instrument``; the only package that imports click.

Each command lives in its own module below this package and registers itself on ``cli``.
"""

from __future__ import annotations

import click

from .. import __version__, _config

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinyllm-instrument")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Observability for LLM workflow graphs: traces, metrics, logs and events."""
    # Importing the kit stays silent about a bad TINYLLM_INSTRUMENT_ENABLED in this program
    # (see _config): `run` refuses the value itself, every other command says it once here.
    warning = _config.switch_warning()
    if warning is not None and ctx.invoked_subcommand != "run":
        click.echo(warning, err=True)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tinyllm-instrument")


# Commands register themselves on `cli` when imported; they need `cli` defined above.
from . import cache_stats as _cache_stats  # noqa: E402,F401
from . import debug as _debug  # noqa: E402,F401
from . import health as _health  # noqa: E402,F401
from . import metrics as _metrics  # noqa: E402,F401
from . import run as _run  # noqa: E402,F401
