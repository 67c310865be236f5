"""Reading a running app's /metrics: fetch over HTTP, parse with prometheus_client's parser."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

import click
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["fetch_metrics", "kit_families", "sample_totals"]


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
