"""Run by ``opentelemetry-instrument python otel_app.py``: the app sets the kit's exporter up itself
(no OpenTelemetry distro is installed) and calls helpers, which TINYLLM_INSTRUMENT_TARGETS selects.
"""

import os

from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry

configure_telemetry(
    TelemetryConfig(
        enable_tracing=True, exporter="otlp", otlp_endpoint=os.environ["RECEIVER_ENDPOINT"]
    )
)

import helpers  # noqa: E402

print(helpers.shout("otel"))
