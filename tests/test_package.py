"""The package as a whole: no import side effects, the global switch, the console script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import tinyllm_instrument
from tinyllm_instrument import _config

MODULES = [
    "tinyllm_instrument",
    "tinyllm_instrument.metrics",
    "tinyllm_instrument.logging",
    "tinyllm_instrument.telemetry",
    "tinyllm_instrument.events",
    "tinyllm_instrument.redaction",
    "tinyllm_instrument.observe",
    "tinyllm_instrument.testing",
    "tinyllm_instrument.cli",
]

PROBE = """
import atexit, json, logging, sys
from opentelemetry import trace
from prometheus_client import REGISTRY
before_handlers = list(logging.getLogger().handlers)
import importlib
for name in %r:
    importlib.import_module(name)
print(json.dumps({
    "root_handlers": len(logging.getLogger().handlers) - len(before_handlers),
    "provider": type(trace.get_tracer_provider()).__name__,
    "tinyllm_in_global_registry": [
        n for n in REGISTRY._names_to_collectors if n.startswith("tinyllm")
    ],
    "atexit_callbacks": atexit._ncallbacks(),
    "pytest_imported": "pytest" in sys.modules,
}))
"""


def test_importing_every_module_configures_and_registers_nothing():
    out = subprocess.run(
        [sys.executable, "-c", PROBE % MODULES], capture_output=True, text=True, check=True
    ).stdout
    state = json.loads(out)
    assert state == {
        "root_handlers": 0,
        "provider": "ProxyTracerProvider",
        "tinyllm_in_global_registry": [],
        "atexit_callbacks": state["atexit_callbacks"],
        "pytest_imported": False,
    }
    baseline = json.loads(
        subprocess.run(
            [sys.executable, "-c", PROBE % []], capture_output=True, text=True, check=True
        ).stdout
    )
    assert state["atexit_callbacks"] == baseline["atexit_callbacks"]


def test_public_face_is_sorted_and_complete():
    assert tinyllm_instrument.__all__ == sorted(tinyllm_instrument.__all__)
    for name in tinyllm_instrument.__all__:
        assert hasattr(tinyllm_instrument, name)


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("0", False), ("false", False), ("OFF", False), ("1", True), ("yes", True), ("", True)],
)
def test_switch_reads_the_environment(monkeypatch, value, enabled):
    monkeypatch.setenv("TINYLLM_INSTRUMENT_ENABLED", value)
    tinyllm_instrument.configure()
    assert tinyllm_instrument.is_enabled() is enabled


def test_explicit_switch_beats_the_environment(monkeypatch):
    monkeypatch.setenv("TINYLLM_INSTRUMENT_ENABLED", "0")
    tinyllm_instrument.configure(enabled=True)
    assert tinyllm_instrument.is_enabled()


def test_bad_switch_value_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("TINYLLM_INSTRUMENT_ENABLED", "maybe")
    with pytest.raises(ValueError, match=r"TINYLLM_INSTRUMENT_ENABLED='maybe' is not a boolean"):
        tinyllm_instrument.configure()


def test_env_switch_is_read_at_start_up():
    code = "import tinyllm_instrument as t; print(t.is_enabled())"
    env = dict(os.environ, TINYLLM_INSTRUMENT_ENABLED="off")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
    assert _config.ENV_ENABLED == "TINYLLM_INSTRUMENT_ENABLED"


def _console_script() -> str:
    return os.path.join(os.path.dirname(sys.executable), "tinyllm-instrument")


def test_console_script_prints_its_version():
    out = subprocess.run(
        [_console_script(), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"tinyllm-instrument, version {tinyllm_instrument.__version__}"


def test_metrics_command_serves_until_sigterm():
    with subprocess.Popen(
        [_console_script(), "metrics", "--port", "0"], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            line = proc.stdout.readline()
            assert line.startswith("Serving metrics on http://127.0.0.1:")
            url = line.split()[3]
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read().decode()
            names = {f.name for f in text_string_to_metric_families(body)}
            assert "tinyllm_requests" in names
            assert "tinyllm_node_execution_duration_seconds" in names
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_metrics_command_bad_port_is_one_line_not_a_traceback():
    out = subprocess.run(
        [_console_script(), "metrics", "--port", "notaport"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "'notaport' is not a valid integer" in out.stderr


def test_the_kit_never_writes_to_the_programs_stdout_when_logging_is_unconfigured():
    program = (
        "from tinyllm_instrument import observe\n"
        "@observe(node='n')\n"
        "def f():\n"
        "    raise ValueError('x')\n"
        "try:\n"
        "    f()\n"
        "except ValueError:\n"
        "    pass\n"
        "print('DATA')\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout == "DATA\n"  # the program's data, and nothing of the kit's
    assert "node.execution.failed: n failed" in out.stderr  # not lost: stdlib's last resort
