"""One SIGTERM ends an observed app as the default SIGTERM does, whatever threads run, flushed.

Real apps in subprocesses, a real OTLP receiver. The app (tests/apps/forever_threads.py) has two
non-daemon ``while True`` worker threads and a main thread that joins them: without the kit, one
SIGTERM ends it at once, killed by the signal. With the kit (``configure_telemetry`` or ``run``) it
must end the same way, after the main thread has unwound (its ``finally`` ran, its open spans
ended) and spans, log lines and buffered stdout were flushed, within a bounded time.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from otlp_receivers import GrpcTraceReceiver

BIN = Path(sys.executable).parent
CLI = str(BIN / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"
#: Generous bound on signal-to-exit; the flush of a handful of spans takes milliseconds.
EXIT_BOUND_S = 15.0

#: The app configured in code, as the guide shows: configure_telemetry, then instrument().
IN_CODE = """
import sys
from tinyllm_instrument import instrument
from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry

configure_telemetry(TelemetryConfig(
    enable_tracing=True, exporter="otlp", otlp_endpoint=sys.argv[1],
    shutdown_timeout=float(sys.argv[2])))
instrument("forever_threads:*")
import forever_threads
forever_threads.main()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_"))
        and k not in ("TRACEPARENT", "TRACESTATE", "BAGGAGE")
    }
    env["PYTHONPATH"] = str(APPS)
    env.update(extra)
    return env


class _App:
    """A running app; its stdout read by a thread, so that no wait here can hang."""

    def __init__(self, args: list[str], **env: str) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=APPS,
            env=_env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, line: str, timeout: float = 60.0) -> None:
        try:
            got = self._lines.get(timeout=timeout)
        except queue.Empty:
            got = f"<nothing in {timeout}s>"
        if got != line:
            self.proc.kill()
            _rest, err = self._finish()
            pytest.fail(f"expected {line!r} on stdout, got {got!r}\n--- stderr\n{err[-3000:]}")

    def terminate(self, bound: float = EXIT_BOUND_S) -> tuple[float, list[str], str]:
        """One SIGTERM: (seconds until the process ended, the rest of stdout, stderr).

        Fails, after killing the process, when it is still running ``bound`` seconds later.
        """
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _rest, err = self._finish()
            pytest.fail(f"still running {bound}s after SIGTERM\n--- stderr\n{err[-3000:]}")
        elapsed = time.monotonic() - start
        rest, err = self._finish()
        return elapsed, rest, err

    def _finish(self) -> tuple[list[str], str]:
        """Wait for the end; the stdout lines not read yet, and stderr. Closes the pipes."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.wait()
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        self._reader.join(10)
        self.proc.stdout.close()
        rest = []
        while (line := self._lines.get_nowait()) is not None:
            rest.append(line)
        return rest, err

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def _in_code(endpoint: str, *flags: str, shutdown_timeout: float = 5.0) -> list[str]:
    return [sys.executable, "-c", IN_CODE, endpoint, str(shutdown_timeout), *flags]


def test_without_the_kit_one_sigterm_ends_the_app_at_once():
    """The reference the kit must match: killed by signal 15."""
    app = _App([sys.executable, "forever_threads.py"])
    app.expect("ready")
    _elapsed, rest, _err = app.terminate()
    assert app.returncode == -signal.SIGTERM
    assert rest == []  # nothing unwound: "main unwound" is never printed


@pytest.mark.parametrize("how", ["configure_telemetry", "run --otlp-endpoint"])
def test_one_sigterm_flushes_and_ends_an_app_whose_threads_never_end(how):
    with GrpcTraceReceiver() as receiver:
        if how == "configure_telemetry":
            app = _App(_in_code(receiver.endpoint))
        else:
            app = _App(
                [
                    CLI,
                    "run",
                    "--instrument",
                    "forever_threads:*",
                    "--otlp-endpoint",
                    receiver.endpoint,
                    "forever_threads.py",
                ]
            )
        app.expect("ready")
        _elapsed, rest, err = app.terminate()  # fails past EXIT_BOUND_S
        assert app.returncode == -signal.SIGTERM, err
        # the main thread unwound, and what it printed without flushing still came out
        assert rest == ["main unwound"], err
        spans = receiver.wait_for(4)
    names = [s.name for s in spans]
    assert "tick" in names  # the workers' finished calls
    by_name = {s.name: s for s in spans}
    # the calls open in the main thread when the signal came were ended by the unwinding
    assert by_name["main"].attributes["tinyllm.interrupted"] == "SystemExit"
    assert by_name["join_all"].parent_span_id == by_name["main"].span_id


def test_under_run_without_tracing_one_sigterm_still_ends_the_app(tmp_path):
    log_file = tmp_path / "app.log"
    app = _App(
        [CLI, "run", "--no-tracing", "--log-format", "json", "--log-file", str(log_file),
         "forever_threads.py"]
    )  # fmt: skip
    app.expect("ready")
    _elapsed, rest, err = app.terminate()
    assert app.returncode == -signal.SIGTERM, err
    assert rest == ["main unwound"]
    # the line logged while unwinding is in the file: log handlers were flushed before the end
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["main unwound"]


def test_a_sigterm_while_python_waits_for_the_threads_runs_atexit_and_ends_the_app():
    with GrpcTraceReceiver() as receiver:
        app = _App(_in_code(receiver.endpoint, "--return"))
        app.expect("ready")
        time.sleep(0.5)  # main() has returned: Python is joining the workers, for ever
        _elapsed, rest, err = app.terminate()
        assert app.returncode == -signal.SIGTERM, err
        assert rest == ["app atexit ran"]  # not flushed by the app: stdout is a pipe
        spans = receiver.wait_for(2)
    assert {"main", "tick"} <= {s.name for s in spans}


def test_a_second_sigterm_during_the_flush_ends_the_app_at_once():
    with GrpcTraceReceiver() as receiver:
        app = _App(_in_code(receiver.endpoint, "--atexit-sleep"))
        app.expect("ready")
        app.proc.send_signal(signal.SIGTERM)
        app.expect("main unwound", timeout=EXIT_BOUND_S)
        app.expect("in atexit", timeout=EXIT_BOUND_S)  # the app's own handler: a minute long
        _elapsed, _rest, err = app.terminate()
        assert app.returncode == -signal.SIGTERM, err


def test_a_main_thread_that_swallows_the_unwinding_is_still_ended():
    with GrpcTraceReceiver() as receiver:
        app = _App(_in_code(receiver.endpoint, "--deaf", shutdown_timeout=1.0))
        app.expect("ready")
        _elapsed, rest, err = app.terminate()  # fails past EXIT_BOUND_S
        assert app.returncode == -signal.SIGTERM, err
        assert "swallowed SystemExit" in rest
        # the workers' finished calls were flushed by the kit itself
        assert "tick" in {s.name for s in receiver.wait_for(1)}


def test_a_main_thread_blocked_in_a_log_handler_on_a_full_pipe_does_not_hold_the_end():
    """The parent never reads stdout: the main thread blocks in a log handler, holding its lock,
    even after the signal; the kit's own flush of that handler must not block the end too."""
    with GrpcTraceReceiver() as receiver:
        proc = subprocess.Popen(
            _in_code(receiver.endpoint, "--flood", shutdown_timeout=1.0),
            cwd=APPS,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stderr is not None
            assert proc.stderr.readline().strip() == b"ready"
            time.sleep(0.5)  # the pipe is full by now, the main thread blocked in write()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(EXIT_BOUND_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"still running {EXIT_BOUND_S}s after SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        assert proc.returncode == -signal.SIGTERM
        assert "tick" in {s.name for s in receiver.wait_for(1)}


def test_a_dead_collector_does_not_hold_the_sigterm_exit_beyond_the_bound():
    dead = GrpcTraceReceiver().start()
    endpoint = dead.endpoint
    dead.stop()  # nobody listens on that port any more
    app = _App(_in_code(endpoint, shutdown_timeout=1.0))
    app.expect("ready")
    _elapsed, _rest, err = app.terminate()  # fails past EXIT_BOUND_S
    assert app.returncode == -signal.SIGTERM, err


@pytest.mark.parametrize("when", ["before", "after"])
def test_the_apps_own_sigterm_handler_is_kept(when):
    handler = (
        "import os, signal\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('own', flush=True), os._exit(9)))\n"
    )
    if when == "before":  # the kit leaves SIGTERM alone
        program = handler + IN_CODE
    else:  # the app replaces the kit's handler
        program = IN_CODE.replace("forever_threads.main()", handler + "forever_threads.main()")
    with GrpcTraceReceiver() as receiver:
        app = _App([sys.executable, "-c", program, receiver.endpoint, "5"])
        app.expect("ready")
        _elapsed, rest, err = app.terminate()
    assert app.returncode == 9, err
    assert rest == ["own"]
