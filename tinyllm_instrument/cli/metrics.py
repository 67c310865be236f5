"""``tinyllm-instrument metrics``: serve the process-wide metrics until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from . import cli


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=9090, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Only loopback by default; pass 0.0.0.0 to expose it on purpose.",
)
def metrics(port: int, host: str) -> None:
    """Serve the process-wide metrics on /metrics until SIGINT or SIGTERM."""
    from ..metrics import start_metrics_server

    try:
        server, _thread = start_metrics_server(port=port, addr=host)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    click.echo(f"Serving metrics on http://{host}:{server.server_port}/metrics (Ctrl-C to stop)")
    stop.wait()
    server.shutdown()
    server.server_close()
