"""Importing the kit loads no OpenTelemetry SDK and never fails; a bad OTEL_* variable is one line.

OpenTelemetry's SDK reads some ``OTEL_*`` variables when it is imported and raises on a bad one.
The kit imports the SDK only when ``configure_telemetry`` installs a provider, so a bad variable
cannot break ``import tinyllm_instrument`` (or ``--help``), and configuring reports it in one line
that names the variable and what it may hold. Each test runs in a fresh interpreter, since the
question is what an import does to ``sys.modules``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: Prints the SDK modules loaded so far, as a sorted list: "[]" when none.
SDK_LOADED = "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"


def _python(code: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TINYLLM_"))}
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )


def test_importing_the_package_and_every_pillar_loads_no_sdk():
    result = _python(
        f"""
        import sys
        import tinyllm_instrument
        from tinyllm_instrument.telemetry import *  # every public name of the pillar
        import tinyllm_instrument.telemetry as t
        import tinyllm_instrument.events, tinyllm_instrument.logging, tinyllm_instrument.metrics
        import tinyllm_instrument.observe, tinyllm_instrument.patching
        for name in t.__all__:
            getattr(t, name)
        {SDK_LOADED}
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_observed_calls_and_span_helpers_work_before_any_configure_without_the_sdk():
    result = _python(
        f"""
        import sys
        from tinyllm_instrument import observe
        from tinyllm_instrument.telemetry import trace_span, get_tracer, inject_context

        @observe
        def step(x):
            return x + 1

        assert step(1) == 2
        with trace_span("before_configure") as span:
            assert not span.is_recording()
        assert inject_context() == {{}}
        print(type(get_tracer()).__name__)
        {SDK_LOADED}
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["ProxyTracer", "[]"]


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["health", "--help"]])
def test_cli_help_loads_no_sdk(args):
    result = _python(
        f"""
        import sys
        from tinyllm_instrument.cli import cli
        try:
            cli.main({args!r}, prog_name="tinyllm-instrument")
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        {SDK_LOADED}
        """
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: tinyllm-instrument" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("enabled", ["1", "0"])
def test_a_bad_sdk_variable_breaks_neither_import_nor_observed_calls(enabled):
    result = _python(
        """
        import tinyllm_instrument
        import tinyllm_instrument.telemetry
        from tinyllm_instrument import observe

        @observe
        def step(x):
            return x * 2

        print(step(21))
        """,
        OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT="abc",
        TINYLLM_INSTRUMENT_ENABLED=enabled,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "abc"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "-1"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "1.5"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "ten"),
    ],
)
def test_configure_names_a_bad_sdk_variable_in_one_line(name, value):
    result = _python(
        """
        import os
        from tinyllm_instrument.telemetry import configure_telemetry, trace_span
        try:
            configure_telemetry(enable_tracing=True, exporter="none")
        except ValueError as exc:
            print(exc)
        else:
            raise AssertionError("configure_telemetry accepted the bad variable")
        # The failed attempt leaves nothing half-done: fixed, the next configure works.
        os.environ.pop(os.environ["BAD_NAME"])
        configure_telemetry(enable_tracing=True, exporter="none")
        with trace_span("after_the_fix") as span:
            assert span.is_recording()
        """,
        **{name: value, "BAD_NAME": name},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{name}={value!r}: must be a non-negative integer (or 'unset' for no limit)"
    ]
    assert result.stderr == ""


def test_the_sdk_is_loaded_once_a_provider_is_installed():
    result = _python(
        f"""
        import sys
        from tinyllm_instrument.telemetry import configure_telemetry
        configure_telemetry(enable_tracing=False)
        {SDK_LOADED}
        configure_telemetry(enable_tracing=True, exporter="none")
        print("opentelemetry.sdk.trace" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True"]
