"""``tinyllm-instrument health``: checks of the kit's own pipeline: OTLP, /metrics, logs, events."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click

from . import cli
from .metrics import fetch_metrics, kit_families

OK, FAIL, SKIPPED = "ok", "fail", "skipped"
_MARK = {OK: "ok", FAIL: "FAIL", SKIPPED: "skipped"}


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``status`` is "ok", "fail" or "skipped"; ``detail`` says why."""

    name: str
    status: str
    detail: str


def check_emitter() -> Check:
    """Check that the kit is on and the process-wide emitter is enabled and has handlers.

    Returns:
        The outcome; "fail" names what is off.

    Example:
        >>> check_emitter().status
        'ok'
    """
    from .. import _config
    from ..events import get_event_emitter

    emitter = get_event_emitter()
    if not _config.is_enabled():
        return Check(
            "events", FAIL, f"the kit is switched off ({_config.ENV_ENABLED} or configure())"
        )
    if not emitter.enabled:
        return Check("events", FAIL, "the process-wide event emitter is disabled")
    names = [type(h).__name__ for h in emitter.handlers]
    if not names:
        return Check("events", FAIL, "the event emitter has no handlers: events go nowhere")
    return Check("events", OK, f"emitter enabled, handlers: {', '.join(names)}")


def _otlp_grpc(endpoint: str, timeout: float) -> Check:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    parts = urlsplit(endpoint)
    target = f"{parts.hostname}:{parts.port or 4317}"
    if parts.scheme == "https":
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
    else:
        channel = grpc.insecure_channel(target)
    try:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        # An empty export: a collector accepts it and stores nothing.
        stub.Export(trace_service_pb2.ExportTraceServiceRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        name = code.name if code is not None else "ERROR"
        return Check("otlp", FAIL, f"grpc {endpoint}: Export failed with {name}: {details}")
    finally:
        channel.close()
    return Check("otlp", OK, f"grpc {endpoint} accepted an empty trace export")


def _otlp_http(endpoint: str, timeout: float) -> Check:
    url = endpoint if endpoint.endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    request = urllib.request.Request(
        url, data=b"", method="POST", headers={"Content-Type": "application/x-protobuf"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response and its socket
        return Check("otlp", FAIL, f"http/protobuf {url}: answered HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        return Check("otlp", FAIL, f"http/protobuf {url}: {getattr(exc, 'reason', exc)}")
    return Check("otlp", OK, f"http/protobuf {url} accepted an empty trace export (HTTP {status})")


def check_otlp(endpoint: str | None, protocol: str, timeout: float) -> Check:
    """Send an empty ``ExportTraceServiceRequest`` to the collector and report its answer.

    Args:
        endpoint: base URL; None for ``OTEL_EXPORTER_OTLP_ENDPOINT``, or skipped when unset.
        protocol: "grpc" or "http/protobuf".
        timeout: seconds to wait.

    Returns:
        The check's outcome: "ok" when the collector accepted the export, "skipped" without an
        endpoint.

    Example:
        >>> check_otlp("http://127.0.0.1:4317", "grpc", 3.0).status  # doctest: +SKIP
        'ok'
    """
    from .. import _config
    from ..telemetry import ENV_OTLP_ENDPOINT

    if endpoint is None:
        endpoint = _config.env_str(ENV_OTLP_ENDPOINT)
        if endpoint is None:
            return Check(
                "otlp", SKIPPED, f"no endpoint: pass --otlp-endpoint or set {ENV_OTLP_ENDPOINT}"
            )
    try:
        parts = urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        valid = False
    if not valid:
        return Check("otlp", FAIL, f"{endpoint!r} is not an http(s)://host:port URL")
    if protocol == "grpc":
        return _otlp_grpc(endpoint, timeout)
    return _otlp_http(endpoint, timeout)


def check_metrics(url: str | None, timeout: float) -> Check:
    """Scrape ``url`` and check that it serves ``tinyllm_`` metric families.

    Args:
        url: an app's /metrics; None skips the check.
        timeout: seconds to wait for the answer.

    Returns:
        The outcome; "ok" says how many families it serves.

    Example:
        >>> check_metrics("http://127.0.0.1:9090/metrics", 3.0).detail  # doctest: +SKIP
        'http://127.0.0.1:9090/metrics serves 19 tinyllm_ families'
    """
    if url is None:
        return Check("metrics", SKIPPED, "no --metrics-url given")
    try:
        families = fetch_metrics(url, timeout)
    except click.ClickException as exc:
        return Check("metrics", FAIL, exc.message)
    ours = kit_families(families)
    if not ours:
        return Check(
            "metrics", FAIL, f"{url} serves {len(families)} families but no tinyllm_ family"
        )
    return Check("metrics", OK, f"{url} serves {len(ours)} tinyllm_ families")


def check_log_file(path: str | None) -> Check:
    """Check, without writing or creating anything, that ``path`` can be appended to or created.

    Args:
        path: the log file; None for the file ``configure_logging`` writes, if any.

    Returns:
        The outcome; skipped when there is no file to check.

    Example:
        >>> check_log_file("/var/log/app/tinyllm.log").status  # doctest: +SKIP
        'ok'
    """
    from ..logging import get_logging_info

    if path is None:
        path = get_logging_info()["file"]
        if path is None:
            return Check("log_file", SKIPPED, "no --log-file given and logging writes no file")
    if os.path.isdir(path):
        return Check("log_file", FAIL, f"{path} is a directory")
    if os.path.exists(path):
        if os.access(path, os.W_OK):
            return Check("log_file", OK, f"{path} is writable")
        return Check("log_file", FAIL, f"{path} is not writable by this user")
    parent = os.path.dirname(os.path.abspath(path))
    # configure_logging creates missing directories: find the nearest one that exists.
    existing = parent
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return Check("log_file", FAIL, f"{path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        return Check("log_file", FAIL, f"{path}: cannot create it in {existing}")
    return Check("log_file", OK, f"{path} does not exist yet and can be created")


def run_checks(
    otlp_endpoint: str | None,
    otlp_protocol: str,
    metrics_url: str | None,
    log_file: str | None,
    timeout: float,
) -> dict[str, Any]:
    """Run every check; healthy when none failed (skipped checks do not count against it).

    Args:
        otlp_endpoint: collector base URL, or None (see :func:`check_otlp`).
        otlp_protocol: "grpc" or "http/protobuf".
        metrics_url: an app's /metrics, or None.
        log_file: a log file path, or None.
        timeout: seconds each network check may take.

    Returns:
        ``{"healthy": bool, "checks": {name: {"status", "detail"}}}``, the checks in the order
        otlp, metrics, log_file, events.

    Example:
        >>> run_checks(None, "grpc", None, None, 3.0)["healthy"]  # doctest: +SKIP
        True
    """
    checks = [
        check_otlp(otlp_endpoint, otlp_protocol, timeout),
        check_metrics(metrics_url, timeout),
        check_log_file(log_file),
        check_emitter(),
    ]
    return {
        "healthy": all(c.status != FAIL for c in checks),
        "checks": {c.name: {"status": c.status, "detail": c.detail} for c in checks},
    }


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print plain JSON and nothing else.")
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Collector base URL to check (default OTEL_EXPORTER_OTLP_ENDPOINT; skipped if unset).",
)
@click.option(
    "--otlp-protocol",
    type=click.Choice(["grpc", "http/protobuf"]),
    default="grpc",
    show_default=True,
)
@click.option(
    "--metrics-url", metavar="URL", help="An app's /metrics to check for tinyllm_ families."
)
@click.option("--log-file", metavar="PATH", help="The log file the app writes, to check.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=3.0,
    show_default=True,
    help="Seconds each network check may take.",
)
def health(
    as_json: bool,
    otlp_endpoint: str | None,
    otlp_protocol: str,
    metrics_url: str | None,
    log_file: str | None,
    timeout: float,
) -> None:
    """Check the observability pipeline: OTLP collector, /metrics, log file, event emitter.

    Exits 0 when no check failed, 1 otherwise. Checks without a target are skipped.
    """
    report = run_checks(otlp_endpoint, otlp_protocol, metrics_url, log_file, timeout)
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"Health: {'healthy' if report['healthy'] else 'UNHEALTHY'}")
        for name, check in report["checks"].items():
            click.echo(f"  {_MARK[check['status']]:<8} {name:<9} {check['detail']}")
    if not report["healthy"]:
        click.get_current_context().exit(1)
