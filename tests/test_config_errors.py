"""Bad configuration gets one clear error naming the field, its value and what is allowed,
and never echoes a secret value back."""

from __future__ import annotations

import os
import subprocess
import sys

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


# --- a bad global switch in a program that only imports the kit -----------------------------

BAD_SWITCH_LINE = (
    "tinyllm_instrument: TINYLLM_INSTRUMENT_ENABLED='maybe' is not a boolean; "
    "use one of 1/0, true/false, yes/no, on/off (until then the kit stays on)"
)
# Imports every pillar, decorates and calls, then reports what the import set up.
IMPORT_ONLY = """
import logging
import tinyllm_instrument
from tinyllm_instrument import events, logging as kit_logging, metrics, observe, telemetry

@observe(node="n")
def f(x):
    return x + 1

f(1)
print(tinyllm_instrument.is_enabled(), len(logging.getLogger().handlers),
      len(logging.getLogger("tinyllm_instrument").handlers))
"""


@pytest.mark.parametrize("flags", [[], ["-W", "error"]], ids=["plain", "W-error"])
def test_a_bad_switch_in_an_importing_program_is_one_line_on_stderr_once(flags):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYLLM_INSTRUMENT_")}
    env["TINYLLM_INSTRUMENT_ENABLED"] = "maybe"
    out = subprocess.run(
        [sys.executable, *flags, "-c", IMPORT_ONLY],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [BAD_SWITCH_LINE]
    # Still on, as before, and the import added no logging handler anywhere.
    assert out.stdout == "True 0 0\n"


def test_a_good_or_unset_switch_prints_nothing_at_import():
    for value in ("off", "1", ""):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TINYLLM_INSTRUMENT_")}
        env["TINYLLM_INSTRUMENT_ENABLED"] = value
        out = subprocess.run(
            [sys.executable, "-W", "error", "-c", "import tinyllm_instrument"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert (out.returncode, out.stderr) == (0, ""), value
