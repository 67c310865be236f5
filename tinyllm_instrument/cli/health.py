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
from ._options import json_option, metrics_url_option, timeout_option
from ._scrape import fetch_metrics, kit_families

OK, FAIL, SKIPPED = "ok", "fail", "skipped"
_MARK = {OK: "ok", FAIL: "FAIL", SKIPPED: "skipped"}
#: The overall ``status`` values, and the exit code of each.
HEALTHY, UNHEALTHY, NOTHING_CHECKED = "healthy", "unhealthy", "nothing_checked"
EXIT_CODES = {HEALTHY: 0, UNHEALTHY: 1, NOTHING_CHECKED: 2}
#: The checks of the user's pipeline; the events check reads only this CLI process.
TARGET_CHECKS = ("otlp", "metrics", "log_file")
NOTHING_CHECKED_TEXT = "nothing checked; pass --otlp-endpoint / --metrics-url / --log-file"
_HEADLINE = {HEALTHY: "healthy", UNHEALTHY: "UNHEALTHY", NOTHING_CHECKED: NOTHING_CHECKED_TEXT}
_CLI_ONLY = "this CLI process, not your app"


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``status`` is "ok", "fail" or "skipped"; ``detail`` says why."""

    name: str
    status: str
    detail: str


def check_emitter() -> Check:
    """Check that the kit is on and the process-wide emitter is enabled and has handlers.

    The command runs in a fresh process, so this shows what the environment does to the kit
    (``TINYLLM_INSTRUMENT_ENABLED=0`` switches it off), not your app's emitter; the detail says so.

    Returns:
        The outcome; "fail" names what is off.

    Example:
        >>> check_emitter().detail
        'this CLI process, not your app: emitter enabled, handlers: LogEventHandler, ...'
    """
    from .. import _config
    from ..events import get_event_emitter

    emitter = get_event_emitter()
    names = [type(h).__name__ for h in emitter.handlers]
    if not _config.is_enabled():
        status, detail = FAIL, f"the kit is switched off ({_config.ENV_ENABLED} or configure())"
    elif not emitter.enabled:
        status, detail = FAIL, "the process-wide event emitter is disabled"
    elif not names:
        status, detail = FAIL, "the event emitter has no handlers: events go nowhere"
    else:
        status, detail = OK, f"emitter enabled, handlers: {', '.join(names)}"
    return Check("events", status, f"{_CLI_ONLY}: {detail}")


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
            return Check("log_file", SKIPPED, "no --log-file given")
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
    """Run every check: "unhealthy" when one failed; "nothing_checked" when no check of the
    pipeline ran (otlp, metrics and log_file all skipped: the events check alone reads only this
    process); "healthy" otherwise.

    Args:
        otlp_endpoint: collector base URL, or None (see :func:`check_otlp`).
        otlp_protocol: "grpc" or "http/protobuf".
        metrics_url: an app's /metrics, or None.
        log_file: a log file path, or None.
        timeout: seconds each network check may take.

    Returns:
        ``{"status": str, "healthy": bool, "checks": {name: {"status", "detail"}}}``, the
        checks in the order otlp, metrics, log_file, events; ``healthy`` is True only for the
        status "healthy".

    Example:
        >>> run_checks(None, "grpc", None, None, 3.0)["status"]  # doctest: +SKIP
        'nothing_checked'
    """
    checks = [
        check_otlp(otlp_endpoint, otlp_protocol, timeout),
        check_metrics(metrics_url, timeout),
        check_log_file(log_file),
        check_emitter(),
    ]
    if any(c.status == FAIL for c in checks):
        status = UNHEALTHY
    elif all(c.status == SKIPPED for c in checks if c.name in TARGET_CHECKS):
        status = NOTHING_CHECKED
    else:
        status = HEALTHY
    return {
        "status": status,
        "healthy": status == HEALTHY,
        "checks": {c.name: {"status": c.status, "detail": c.detail} for c in checks},
    }


@cli.command()
@json_option()
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
@metrics_url_option("An app's /metrics to check for tinyllm_ families.")
@click.option("--log-file", metavar="PATH", help="The log file the app writes, to check.")
@timeout_option("Seconds each network check may take.")
def health(
    as_json: bool,
    otlp_endpoint: str | None,
    otlp_protocol: str,
    metrics_url: str | None,
    log_file: str | None,
    timeout: float,
) -> None:
    """Check the observability pipeline: OTLP collector, /metrics, log file, event emitter.

    Checks without a target are skipped. The events check reads this CLI's own fresh process
    (what the environment does to the kit), not your app. Exits 0 when healthy, 1 when a check
    failed, 2 when nothing was checked (no --otlp-endpoint, --metrics-url or --log-file): a probe
    that checks nothing must not pass.
    """
    report = run_checks(otlp_endpoint, otlp_protocol, metrics_url, log_file, timeout)
    if as_json:
        click.echo(json.dumps(report))
    else:
        headline = {
            HEALTHY: "healthy",
            UNHEALTHY: "UNHEALTHY",
            NOTHING_CHECKED: NOTHING_CHECKED_TEXT,
        }
        click.echo(f"Health: {headline[report['status']]}")
        for name, check in report["checks"].items():
            click.echo(f"  {_MARK[check['status']]:<8} {name:<9} {check['detail']}")
    code = EXIT_CODES[report["status"]]
    if code:
        click.get_current_context().exit(code)
