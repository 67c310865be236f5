"""``tinyllm-instrument metrics``: serve the process-wide metrics until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import socket
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import click
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

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
        socket.getaddrinfo(host, port)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise click.BadParameter(
            f"cannot resolve {host!r}: {reason}", param_hint="'--host'"
        ) from None
    try:
        server, _thread = start_metrics_server(port=port, addr=host)
    except OSError as exc:
        raise click.ClickException(exc.strerror or str(exc)) from None
    except ValueError as exc:
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


def fetch_metrics(url: str, timeout: float) -> list[Metric]:
    """Scrape a running app's ``/metrics`` and parse it with prometheus_client's text parser.

    Shared by ``debug inspect``, ``health`` and ``cache-stats`` for their ``--metrics-url``.

    Args:
        url: the full URL, e.g. ``http://127.0.0.1:9464/metrics``.
        timeout: seconds to wait for the answer.

    Returns:
        The metric families, in exposition order.

    Raises:
        click.ClickException: the URL is not http(s), cannot be reached, does not answer 200, or
            the body is not Prometheus text; the message says which.

    Example:
        >>> families = fetch_metrics("http://127.0.0.1:9464/metrics", timeout=2)  # doctest: +SKIP
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise click.ClickException(f"--metrics-url {url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - checked
            body = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response and its socket
        raise click.ClickException(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(f"cannot read {url}: {reason}") from None
    try:
        return list(text_string_to_metric_families(body))
    except Exception as exc:
        raise click.ClickException(
            f"{url} did not serve Prometheus text exposition ({type(exc).__name__}: {exc})"
        ) from None


def kit_families(families: list[Metric]) -> list[Metric]:
    """The ``tinyllm_`` families among ``families``, as the kit defines them.

    The text parser reads the ``_created`` sample of an unlabelled counter as a family of its own;
    those are left out, so the count matches the collector's.

    Args:
        families: as returned by :func:`fetch_metrics`.

    Returns:
        The kit's families, in exposition order.
    """
    return [
        f
        for f in families
        if f.name.startswith("tinyllm_")
        and not (f.name.endswith("_created") and f.type not in ("counter", "histogram"))
    ]


def sample_totals(families: list[Metric], sample_name: str, label: str) -> dict[str, float]:
    """Sum the samples called ``sample_name`` per value of ``label``.

    Args:
        families: as returned by :func:`fetch_metrics`.
        sample_name: e.g. ``"tinyllm_cache_hits_total"``.
        label: e.g. ``"cache_type"``.

    Returns:
        ``{label value: summed sample value}``; empty when there is no such sample.

    Example:
        >>> sample_totals(families, "tinyllm_cache_hits_total", "cache_type")  # doctest: +SKIP
        {'memory': 3.0}
    """
    totals: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == sample_name:
                key = sample.labels.get(label, "")
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals
