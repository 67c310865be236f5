"""Bad configuration gets one clear error naming the field, its value and what is allowed,
and never echoes a secret value back."""

from __future__ import annotations

import pytest

from tinyllm_instrument.logging import configure_log_sampling, configure_logging
from tinyllm_instrument.metrics import MetricsCollector
from tinyllm_instrument.telemetry import TelemetryConfig

SECRET = "Sup3rSecretPw0rd"


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"sampling_rate": 1.5}, "sampling_rate", "0.0 to 1.0"),
        ({"sampling_rate": "often"}, "sampling_rate", "0.0 to 1.0"),
        ({"exporter": "jaeger"}, "exporter", "console"),
        ({"otlp_protocol": "udp"}, "otlp_protocol", "grpc"),
        ({"otlp_endpoint": "not a url"}, "otlp_endpoint", "http://localhost:4317"),
    ],
)
def test_telemetry_config_errors_name_field_value_and_allowed(kwargs, field, allowed):
    with pytest.raises(ValueError) as info:
        TelemetryConfig(**kwargs)
    message = str(info.value)
    assert field in message and allowed in message
    assert repr(next(iter(kwargs.values()))) in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"otlp_endpoint": f"ftp://user:{SECRET}@collector:4317"},
        {"otlp_endpoint": f"http://user:{SECRET}@"},
        {"sampling_rate": f"sk-{SECRET}"},
        {"service_name": f"Bearer {SECRET}{SECRET}", "exporter": "bogus"},
        {"otlp_headers": {"authorization": f"Bearer {SECRET}", "x": 1}},
    ],
)
def test_config_errors_never_echo_secret_values(kwargs):
    with pytest.raises(ValueError) as info:
        TelemetryConfig(**kwargs)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: configure_logging(log_level="LOUD"), "LOUD"),
        (lambda: configure_logging(log_format="xml"), "xml"),
        (lambda: configure_log_sampling(sample_rate=2), "sample_rate"),
        (lambda: configure_log_sampling(max_per_second=-1), "max_per_second"),
        (lambda: MetricsCollector(max_cardinality=0), "max_cardinality"),
    ],
)
def test_logging_and_metrics_config_errors_name_the_bad_value(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_unwritable_log_path_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((ValueError, OSError)) as info:
        configure_logging(log_format="json", log_file=str(blocker / "app.log"))
    assert str(blocker / "app.log") in str(info.value)
