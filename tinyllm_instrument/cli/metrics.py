"""``tinyllm-instrument metrics``: serve the process-wide metrics until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import socket
import threading
from typing import Any

import click

from . import cli
from ._options import OneLineUsageError


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=9090, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Only loopback by default; pass 0.0.0.0 to expose it on purpose.",
)
def metrics(port: int, host: str) -> None:
    """Serve the process-wide metrics on /metrics until SIGINT or SIGTERM.

    A port another process holds is a usage error: one line naming --port, exit code 2.
    """
    from ..metrics import MetricsServerError, start_metrics_server

    try:
        socket.getaddrinfo(host, port)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise click.BadParameter(
            f"cannot resolve {host!r}: {reason}", param_hint="'--host'"
        ) from None
    try:
        server, _thread = start_metrics_server(
            port=port, addr=host, port_option="--port", host_option="--host"
        )
    except (MetricsServerError, ValueError) as exc:
        raise OneLineUsageError(str(exc)) from None
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    click.echo(f"Serving metrics on http://{host}:{server.server_port}/metrics (Ctrl-C to stop)")
    stop.wait()
    server.shutdown()
    server.server_close()
