"""``tinyllm-instrument debug``: inspect the four pillars, test trace correlation, emit an event."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import click

from ..events import EventCategory, EventSeverity
from . import cli
from ._options import json_option, metrics_url_option, timeout_option
from ._scrape import fetch_metrics, kit_families

COMPONENTS = ("all", "metrics", "events", "telemetry", "logs")
TEST_SPAN_NAME = "tinyllm.debug.test_trace"
#: The ``source`` of a section that shows the command's own fresh process, not the user's app.
CLI_PROCESS = "cli process"
_CLI_ONLY = "this CLI process, not your app"
# Labels that split one series into buckets or quantiles rather than naming a combination.
_SERIES_LABELS_IGNORED = frozenset({"le", "quantile"})


@cli.group()
def debug() -> None:
    """Debug tools: inspect the observability stack, test trace correlation, emit events."""


# --------------------------------------------------------------------------- debug inspect


def _metrics_from_process() -> dict[str, Any]:
    from prometheus_client import REGISTRY

    from ..metrics import get_metrics_collector

    collector = get_metrics_collector()
    summary = collector.get_metrics_summary()["metrics"]
    per_metric: dict[str, Any] = {}
    # Every family the collector holds, whatever it is: new families show up without changes here.
    for name, guarded in collector.metrics.items():
        per_metric[name] = {
            "type": summary.get(name, {}).get("type"),
            "combinations": guarded.cardinality,
            "dropped": guarded.dropped,
        }
    return {
        "source": CLI_PROCESS,
        "collector": "prometheus",
        "registry": "default" if collector.registry is REGISTRY else "own CollectorRegistry",
        "total_metrics": len(per_metric),
        "total_combinations": sum(m["combinations"] for m in per_metric.values()),
        "max_cardinality": collector.max_cardinality,
        "metrics": per_metric,
    }


def _metrics_from_url(url: str, timeout: float) -> dict[str, Any]:
    families = kit_families(fetch_metrics(url, timeout))
    per_metric: dict[str, Any] = {}
    for family in families:
        combos = {
            tuple(sorted((k, v) for k, v in s.labels.items() if k not in _SERIES_LABELS_IGNORED))
            for s in family.samples
            if not s.name.endswith("_created")
        }
        combos.discard(())  # an unlabelled sample is not a label combination
        # The exposition names counters without _total; show the name users query.
        name = family.name + "_total" if family.type == "counter" else family.name
        per_metric[name] = {"type": family.type, "combinations": len(combos), "dropped": None}
    return {
        "source": url,
        "collector": "prometheus",
        "registry": url,
        "total_metrics": len(per_metric),
        "total_combinations": sum(m["combinations"] for m in per_metric.values()),
        "max_cardinality": None,
        "metrics": per_metric,
    }


def _events_info() -> dict[str, Any]:
    from .. import _config
    from ..events import get_event_emitter

    emitter = get_event_emitter()
    handlers = []
    for handler in emitter.handlers:
        severity = getattr(handler, "min_severity", EventSeverity.DEBUG)
        handlers.append({"name": type(handler).__name__, "min_severity": str(severity)})
    return {
        "source": CLI_PROCESS,
        "enabled": emitter.enabled and _config.is_enabled(),
        "emitter_enabled": emitter.enabled,
        "kit_enabled": _config.is_enabled(),
        "handlers": handlers,
    }


def _telemetry_info() -> dict[str, Any]:
    from ..telemetry import get_telemetry_config, is_telemetry_enabled

    config = get_telemetry_config()
    info: dict[str, Any] = {
        "source": CLI_PROCESS,
        "enabled": is_telemetry_enabled(),
        "configured": config is not None,
    }
    if config is not None:
        info.update(
            service_name=config.service_name,
            exporter=config.exporter,
            protocol=config.otlp_protocol if config.exporter == "otlp" else None,
            endpoint=config.resolved_endpoint() if config.exporter == "otlp" else None,
            sampling_rate=config.sampling_rate,
        )
    return info


def _logs_info() -> dict[str, Any]:
    from ..logging import get_log_sampling_stats, get_logging_info

    info: dict[str, Any] = {"source": CLI_PROCESS, **get_logging_info()}
    info["sampling_stats"] = get_log_sampling_stats()
    return info


def _source_line(section: dict[str, Any], url_hint: bool = False) -> list[str]:
    # Every section read from this fresh process says so: its numbers are not the app's.
    if section["source"] != CLI_PROCESS:
        return []
    if url_hint:
        return [f"  Source: {_CLI_ONLY} (pass --metrics-url to read your app's /metrics)"]
    return [f"  Source: {_CLI_ONLY}"]


def _print_inspection(report: dict[str, Any]) -> None:
    blocks: list[list[str]] = []
    m = report.get("metrics")
    if m is not None:
        lines = [
            "Metrics System:",
            *_source_line(m, url_hint=True),
            f"  Collector: {m['collector']}",
            f"  Registry: {m['registry']}",
            f"  Total metrics: {m['total_metrics']}",
        ]
        blocks.append(lines)
        lines = [
            "Cardinality Stats:",
            *_source_line(m),
            f"  Total combinations: {m['total_combinations']}",
        ]
        if m["max_cardinality"] is not None:
            lines.append(f"  Max cardinality: {m['max_cardinality']}")
        blocks.append(lines)
        lines = ["Per-Metric Cardinality:", *_source_line(m)]
        for name, stats in m["metrics"].items():
            dropped = "dropped n/a" if stats["dropped"] is None else f"{stats['dropped']} dropped"
            lines.append(f"    {name}: {stats['combinations']} combinations, {dropped}")
        blocks.append(lines)
    e = report.get("events")
    if e is not None:
        lines = ["Event System:", *_source_line(e), f"  Enabled: {e['enabled']}"]
        if not e["kit_enabled"]:
            lines.append(
                "  Kit switched off: TINYLLM_INSTRUMENT_ENABLED / configure(enabled=False)"
            )
        names = ", ".join(f"{h['name']} ({h['min_severity']}+)" for h in e["handlers"])
        lines.append(f"  Handlers: {names or 'none'}")
        blocks.append(lines)
    t = report.get("telemetry")
    if t is not None:
        lines = ["Telemetry System:", *_source_line(t), f"  Enabled: {t['enabled']}"]
        if t["configured"]:
            lines.append(f"  Service: {t['service_name']}")
            lines.append(f"  Exporter: {t['exporter']}")
            if t["endpoint"] is not None:
                lines.append(f"  Endpoint: {t['endpoint']} ({t['protocol']})")
            lines.append(f"  Sampling rate: {t['sampling_rate']}")
        else:
            lines.append("  Configured: False")
        blocks.append(lines)
    lg = report.get("logs")
    if lg is not None:
        lines = ["Logging System:", *_source_line(lg), f"  Configured: {lg['configured']}"]
        if lg["configured"]:
            lines.append(f"  Format: {lg['format']}")
            lines.append(f"  Level: {lg['level']}")
            lines.append(f"  File: {lg['file'] or 'stdout'}")
        lines.append(f"  Processors: {len(lg['processors'])}")
        if lg["sampling"] is None:
            lines.append("  Sampling: off")
        else:
            s = lg["sampling_stats"]
            lines.append(f"  Sampling: {s['seen']} seen, {s['kept']} kept, {s['dropped']} dropped")
        blocks.append(lines)
    click.echo("\n\n".join("\n".join(block) for block in blocks))


@debug.command()
@click.option(
    "--component",
    type=click.Choice(COMPONENTS, case_sensitive=False),
    default="all",
    show_default=True,
    help="Which pillar to show.",
)
@json_option()
@metrics_url_option("Read the metrics section from a running app's /metrics instead.")
@timeout_option("Seconds to wait for --metrics-url.")
def inspect(component: str, as_json: bool, metrics_url: str | None, timeout: float) -> None:
    """Show the state of metrics, events, telemetry and logging.

    The command runs in a fresh process of its own, so every section shows that process (the
    defaults, plus what TINYLLM_INSTRUMENT_* and OTEL_* variables set), not your app, and says
    so; --metrics-url reads the metrics section from a running app instead.
    """
    component = component.lower()
    wanted = COMPONENTS[1:] if component == "all" else (component,)
    report: dict[str, Any] = {}
    if "metrics" in wanted:
        report["metrics"] = (
            _metrics_from_url(metrics_url, timeout) if metrics_url else _metrics_from_process()
        )
    if "events" in wanted:
        report["events"] = _events_info()
    if "telemetry" in wanted:
        report["telemetry"] = _telemetry_info()
    if "logs" in wanted:
        report["logs"] = _logs_info()
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print_inspection(report)


# --------------------------------------------------------------------------- debug test-trace


@debug.command("test-trace")
@click.option(
    "--exporter",
    type=click.Choice(["none", "tree", "console", "otlp"]),
    default="none",
    show_default=True,
    help="Where the test span goes: nowhere, stdout as a tree or as JSON, or an OTLP collector.",
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Collector base URL for --exporter otlp (default OTEL_EXPORTER_OTLP_ENDPOINT, then "
    "localhost:4317 / 4318).",
)
@click.option(
    "--otlp-protocol",
    type=click.Choice(["grpc", "http/protobuf"]),
    default="grpc",
    show_default=True,
)
def test_trace(exporter: str, otlp_endpoint: str | None, otlp_protocol: str) -> None:
    """Create a test span, log inside and outside it, and check that the logs carry its ids.

    Exits 1 when the line logged inside the span lacks the span's trace_id and span_id, or the
    line outside has them.
    """
    from ..logging import configure_logging, get_logger, reset_logging
    from ..telemetry import (
        TelemetryConfig,
        configure_telemetry,
        get_current_span_id,
        get_current_trace_id,
        shutdown_telemetry,
        trace_span,
    )

    if otlp_endpoint is not None and exporter != "otlp":
        raise click.UsageError("--otlp-endpoint needs --exporter otlp")
    try:
        config = TelemetryConfig(
            enable_tracing=True,
            service_name="tinyllm-instrument-debug",
            exporter=exporter,
            otlp_endpoint=otlp_endpoint,
            otlp_protocol=otlp_protocol,
        )
        configure_telemetry(config)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    captured = io.StringIO()
    configure_logging(log_level="INFO", log_format="json", stream=captured)
    try:
        logger = get_logger("tinyllm_instrument.debug")
        with trace_span(TEST_SPAN_NAME, attributes={"debug.test": True}):
            trace_id, span_id = get_current_trace_id(), get_current_span_id()
            logger.info("test_trace.inside_span")
        logger.info("test_trace.outside_span")
    finally:
        reset_logging()
        shutdown_telemetry()  # exports the span before the process ends
    lines: dict[str, dict[str, Any]] = {}
    for text in captured.getvalue().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and str(line.get("event", "")).startswith("test_trace."):
            lines[line["event"]] = line
    inside = lines.get("test_trace.inside_span")
    outside = lines.get("test_trace.outside_span")
    if inside is None or outside is None:
        raise click.ClickException(
            "the test log lines were not written; is log sampling or the log level dropping INFO?"
        )

    click.echo(f"Test span: {TEST_SPAN_NAME}")
    click.echo(f"  Trace ID: {trace_id}")
    click.echo(f"  Span ID:  {span_id}")
    if exporter == "otlp":
        click.echo(f"  Exported to: {config.resolved_endpoint()} ({otlp_protocol})")
    elif exporter == "console":
        click.echo("  Exported to: stdout (above)")
    click.echo("Log inside the span:")
    click.echo(f"  {json.dumps(inside)}")
    click.echo("Log outside the span:")
    click.echo(f"  {json.dumps(outside)}")
    correlated = (
        trace_id is not None
        and inside.get("trace_id") == trace_id
        and inside.get("span_id") == span_id
        and "trace_id" not in outside
    )
    if not correlated:
        raise click.ClickException(
            "trace correlation is broken: the log line inside the span should carry the span's "
            "trace_id and span_id, the line outside neither"
        )
    click.echo("Correlation: OK (inside: trace_id and span_id of the span; outside: none)")


# --------------------------------------------------------------------------- debug emit-event


def _choices(enum_type: Any) -> list[str]:
    return [member.value for member in enum_type]


def _parse_data(items: tuple[str, ...]) -> dict[str, str]:
    data: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--data'")
        data[key] = value
    return data


@debug.command("emit-event")
@click.argument("event_type")
@click.argument("message")
@click.option(
    "--severity",
    type=click.Choice(_choices(EventSeverity), case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "--category",
    type=click.Choice(_choices(EventCategory), case_sensitive=False),
    default="system",
    show_default=True,
)
@click.option("--data", "data_items", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@json_option("Print the event as plain JSON only.")
def emit_event_command(
    event_type: str,
    message: str,
    severity: str,
    category: str,
    data_items: tuple[str, ...],
    as_json: bool,
) -> None:
    """Emit EVENT_TYPE with MESSAGE through the process-wide emitter and print the event.

    The default handlers log it (to stderr here, so stdout stays the event alone) and count it in
    tinyllm_events_total.
    """
    from .. import _config
    from ..events import emit_event, get_event_emitter
    from ..logging import configure_logging, is_logging_configured

    data = _parse_data(data_items)
    if not is_logging_configured():
        configure_logging(log_level="DEBUG", log_format="console", stream=sys.stderr)
    emitter = get_event_emitter()
    event = emit_event(event_type, category, severity, message, data=data)
    if as_json:
        click.echo(json.dumps(event.to_dict()))
        return
    level = EventSeverity.coerce(severity).level
    if not (emitter.enabled and _config.is_enabled()):
        delivered = "nobody: the emitter is disabled or the kit is switched off"
    else:
        takers = [
            type(h).__name__
            for h in emitter.handlers
            if EventSeverity.coerce(getattr(h, "min_severity", "debug")).level <= level
        ]
        delivered = ", ".join(takers) if takers else f"no handler takes {severity} events"
    click.echo(f"Emitted {event.event_type} ({event.category}/{event.severity})")
    click.echo(f"  Delivered to: {delivered}")
    for key, value in event.to_dict().items():
        if value is None or key in ("event_type", "category", "severity"):
            continue
        shown = json.dumps(value) if isinstance(value, (dict, list)) else value
        click.echo(f"  {key}: {shown}")
