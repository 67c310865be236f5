"""Spans are flushed however a decorated app ends: normal exit, sys.exit, an uncaught
exception, SIGTERM and SIGINT, including the span that was open when the signal came."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from otlp_receivers import GrpcTraceReceiver

APP = textwrap.dedent(
    """
    import sys, time
    from tinyllm_instrument import observe
    from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry

    configure_telemetry(TelemetryConfig(
        enable_tracing=True, exporter="otlp", otlp_endpoint=sys.argv[1], shutdown_timeout=5))
    mode = sys.argv[2]

    @observe(node="step")
    def step(i):
        return i

    @observe(node="waiting")
    def wait_for_signal():
        print("ready", flush=True)
        time.sleep(60)

    @observe(graph="job")
    def job():
        for i in range(3):
            step(i)
        if mode == "exit":
            sys.exit(3)
        if mode == "raise":
            raise RuntimeError("uncaught")
        if mode == "signal":
            wait_for_signal()

    job()
    """
)


@pytest.mark.parametrize(
    ("mode", "sig", "expected_code"),
    [
        ("normal", None, 0),
        ("exit", None, 3),
        ("raise", None, 1),
        ("signal", signal.SIGTERM, -signal.SIGTERM),  # killed by it, as without the kit
        ("signal", signal.SIGINT, None),  # KeyboardInterrupt: Python ends by the signal itself
    ],
    ids=["normal", "sys.exit", "uncaught", "SIGTERM", "SIGINT"],
)
def test_spans_are_flushed_however_the_app_ends(mode, sig, expected_code):
    with GrpcTraceReceiver() as receiver:
        with subprocess.Popen(
            [sys.executable, "-c", APP, receiver.endpoint, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as app:
            if sig is not None:
                assert app.stdout.readline().strip() == "ready"
                app.send_signal(sig)
            _, stderr = app.communicate(timeout=60)
        if expected_code is not None:
            assert app.returncode == expected_code, stderr
        else:
            assert app.returncode != 0
        expected = 5 if mode == "signal" else 4  # job + 3 steps (+ the waiting node)
        spans = receiver.wait_for(expected, timeout=10)
    names = sorted(s.name for s in spans)
    assert names.count("step") == 3 and "job" in names
    if mode == "signal":
        (waiting,) = [s for s in spans if s.name == "waiting"]
        (root,) = [s for s in spans if s.name == "job"]
        assert waiting.parent_span_id == root.span_id  # ended by the unwinding, then flushed
    if mode == "raise":
        (root,) = [s for s in spans if s.name == "job"]
        assert root.status_code == "ERROR"
