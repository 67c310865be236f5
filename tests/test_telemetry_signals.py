"""A signal handler that runs observed code while the kit holds one of its locks does not deadlock.

Python runs a signal handler in the main thread between two bytecodes, so the handler can start
while the interrupted code holds a lock of the kit. If the handler's observed call needs the same
lock, a plain ``threading.Lock`` would wait for itself forever. Each test delivers a real signal
(``os.kill`` of the process itself) at the moment the lock is held, in a fresh interpreter; a
deadlock shows as a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not hasattr(os, "kill") or sys.platform == "win32", reason="needs POSIX signals"
)

PRELUDE = """
import faulthandler, os, signal, sys, threading, time
faulthandler.dump_traceback_later(40, exit=True)  # a deadlock prints where, then fails the test

from prometheus_client import CollectorRegistry
from tinyllm_instrument import observe
from tinyllm_instrument import telemetry
from tinyllm_instrument.metrics import MetricsCollector, set_metrics_collector
from opentelemetry import trace

collector = MetricsCollector(registry=CollectorRegistry())
set_metrics_collector(collector)
handled = []

@observe(node="in_handler")
def in_handler():
    return 1

def on_signal(signum, frame):
    handled.append(in_handler())
    handled.append(handler_extra())

def handler_extra():
    return None

signal.signal(signal.SIGUSR1, on_signal)

def fire_inside(function_name):
    '''Make time.monotonic deliver SIGUSR1 once, when called by ``function_name`` in the main
    thread: the handler then runs while that function is where it called from.'''
    real = time.monotonic
    state = {"armed": True}

    def monotonic():
        if (
            state["armed"]
            and threading.current_thread() is threading.main_thread()
            and sys._getframe(1).f_code.co_name == function_name
        ):
            state["armed"] = False
            os.kill(os.getpid(), signal.SIGUSR1)
        return real()

    time.monotonic = monotonic
    return state

class SignalOnAcquire:
    '''A lock that delivers SIGUSR1 once, right after it was acquired.'''

    def __init__(self, lock):
        self._lock, self.armed = lock, True

    def acquire(self, *args, **kwargs):
        got = self._lock.acquire(*args, **kwargs)
        if got and self.armed:
            self.armed = False
            os.kill(os.getpid(), signal.SIGUSR1)
        return got

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

class Hung:
    '''An exporter that never answers, so the export queue stays full.'''

    def __init__(self):
        self.entered = threading.Event()

    def export(self, spans):
        self.entered.set()
        threading.Event().wait(600)

    def shutdown(self, *args, **kwargs):
        pass

    def force_flush(self, *args, **kwargs):
        return True

def full_pipeline(mode):
    hung = Hung()
    telemetry.exporters._build_exporter = lambda config: hung
    telemetry.configure_telemetry(telemetry.TelemetryConfig(
        enable_tracing=True, exporter="console", on_queue_full=mode, max_queue_size=1,
        max_export_batch_size=1, block_timeout=0.2, shutdown_timeout=0.2))
    in_handler()  # taken by the export thread, which then hangs
    assert hung.entered.wait(10)
    in_handler()  # fills the queue

def dropped():
    get = collector.registry.get_sample_value
    return {r: get("tinyllm_spans_dropped_total", {"reason": r}) for r in ("queue_full",)}
"""


def _run(body: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )


def _assert_finished(result: subprocess.CompletedProcess[str]) -> None:
    assert "Timeout (0:00:40)!" not in result.stderr, "deadlocked:\n" + result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "done", result.stdout + result.stderr


def test_a_handler_dropping_a_span_while_the_drop_ledger_is_locked():
    result = _run(
        """
        full_pipeline("drop")
        fire_inside("warn_if_due")  # the ledger's lock is held there
        in_handler()  # dropped: the ledger counts it, and the signal comes in the middle
        assert handled == [1, None]
        assert dropped() == {"queue_full": 2.0}
        print("done")
        """
    )
    _assert_finished(result)


def test_a_handler_waiting_for_room_while_the_pipeline_waits_for_room():
    result = _run(
        """
        full_pipeline("block")
        fire_inside("_wait_for_room")  # the pipeline's room lock is held there
        in_handler()  # waits block_timeout for room, and is interrupted while waiting
        assert handled == [1, None]
        assert dropped() == {"queue_full": 2.0}
        print("done")
        """
    )
    _assert_finished(result)


def test_a_handler_using_the_provider_while_configure_holds_its_lock():
    result = _run(
        """
        from tinyllm_instrument.telemetry import provider

        def handler_extra():
            # Everything an app's handler may touch on the telemetry side.
            trace.get_tracer("in.handler").start_span("lib").end()
            telemetry.add_span_processor(noop)
            telemetry.remove_span_processor(noop)
            telemetry.get_tracer()
            telemetry.flush_telemetry(1.0)
            return None

        class Noop:
            def on_start(self, span, parent_context=None): pass
            def _on_ending(self, span): pass
            def on_end(self, span): pass
            def shutdown(self): pass
            def force_flush(self, timeout_millis=30000): return True

        noop = Noop()
        telemetry.configure_telemetry(enable_tracing=True, exporter="none")
        provider._STATE.lock = SignalOnAcquire(provider._STATE.lock)
        telemetry.configure_telemetry(enable_tracing=True, exporter="none", service_name="b")
        assert handled == [1, None]
        print("done")
        """
    )
    _assert_finished(result)


def test_a_handler_adding_a_processor_while_the_fan_out_is_being_changed():
    result = _run(
        """
        from tinyllm_instrument.telemetry import provider

        class Noop:
            def on_start(self, span, parent_context=None): pass
            def _on_ending(self, span): pass
            def on_end(self, span): pass
            def shutdown(self): pass
            def force_flush(self, timeout_millis=30000): return True

        def handler_extra():
            telemetry.add_span_processor(Noop())
            return None

        telemetry.configure_telemetry(enable_tracing=True, exporter="none")
        fan_out = provider._STATE.processor
        fan_out._lock = SignalOnAcquire(fan_out._lock)
        telemetry.add_span_processor(Noop())
        assert handled == [1, None]
        print("done")
        """
    )
    _assert_finished(result)


def test_a_handler_getting_a_tracer_while_the_global_provider_hands_one_out():
    result = _run(
        """
        def handler_extra():
            trace.get_tracer("in.handler").start_span("lib").end()
            return None

        telemetry.configure_telemetry(enable_tracing=True, exporter="none")
        kit_provider = trace.get_tracer_provider()
        kit_provider._lock = SignalOnAcquire(kit_provider._lock)
        trace.get_tracer("in.main")
        assert handled == [1, None]
        print("done")
        """
    )
    _assert_finished(result)
