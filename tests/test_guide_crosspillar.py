"""Guide snippets that span two pillars, run as the guide writes them (package renamed)."""

from __future__ import annotations

import io
import json

from tinyllm_instrument.logging import configure_logging, default_app_name
from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry


def test_logging_trace_correlation_snippet_as_written():
    stream = io.StringIO()
    configure_logging(log_level="INFO", log_format="json", stream=stream)
    configure_telemetry(
        TelemetryConfig(enable_tracing=True, service_name="tinyllm", exporter="none")
    )

    # --- the guide, Logging > Trace Correlation ---
    from tinyllm_instrument.logging import get_logger
    from tinyllm_instrument.telemetry import trace_span

    logger = get_logger(__name__)

    with trace_span("my_operation") as span:
        # This log will include trace_id and span_id
        logger.info("operation_started")
    # --- end of the guide's snippet ---

    (line,) = [json.loads(raw) for raw in stream.getvalue().splitlines()]
    ctx = span.get_span_context()
    assert line["event"] == "operation_started"
    assert line["level"] == "info"
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert line["app"] == default_app_name()  # the program's service name, not the kit's
    assert line["timestamp"].endswith("Z")


def test_troubleshooting_logs_missing_trace_ids_snippets():
    configure_telemetry(TelemetryConfig(enable_tracing=True, exporter="none"))
    from tinyllm_instrument.telemetry import (
        get_current_trace_id,
        is_telemetry_enabled,
        trace_span,
    )

    assert is_telemetry_enabled() is True
    assert get_current_trace_id() is None  # outside a span
    with trace_span("op"):
        trace_id = get_current_trace_id()
        assert trace_id is not None and len(trace_id) == 32
