"""The kit's own threads never take a signal meant for the app.

CPython runs a Python signal handler in the main thread, and only once the signal interrupts what
that thread is blocked in. A SIGTERM the kernel hands to a kit thread instead leaves a main thread
blocked in a lock for ever: under ``run``, a forked ``Pool`` worker (which inherits the kit's
SIGTERM handler) then never ended on ``Pool.terminate()`` and the app hung at exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from otlp_receivers import GrpcTraceReceiver

from tinyllm_instrument._threads import APP_SIGNALS, leave_signals_to_the_app
from tinyllm_instrument.telemetry import TelemetryConfig, configure_telemetry, shutdown_telemetry

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_sigmask"), reason="the platform has no per-thread signal masks"
)


def _mask_of(thread_name: str) -> set[int]:
    """The blocked signals of a live thread of this process, read from /proc."""
    for thread in threading.enumerate():
        if thread.name == thread_name and thread.native_id is not None:
            status = f"/proc/{os.getpid()}/task/{thread.native_id}/status"
            with open(status) as fh:
                for line in fh:
                    if line.startswith("SigBlk:"):
                        bits = int(line.split()[1], 16)
                        return {n for n in range(1, 65) if bits & (1 << (n - 1))}
    raise AssertionError(f"no live thread named {thread_name!r}")


def test_a_kit_thread_blocks_the_apps_signals():
    seen: list[set[int]] = []

    def probe() -> None:
        leave_signals_to_the_app()
        seen.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, set())))

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    assert {signal.SIGTERM, signal.SIGINT} <= APP_SIGNALS <= seen[0]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # not ours


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads masks from Linux's /proc")
def test_the_export_thread_leaves_sigterm_to_the_app():
    with GrpcTraceReceiver() as receiver:
        _export_thread_mask_check(receiver.endpoint)


def _export_thread_mask_check(endpoint: str) -> None:
    configure_telemetry(
        TelemetryConfig(enable_tracing=True, exporter="otlp", otlp_endpoint=endpoint)
    )
    try:
        from opentelemetry import trace

        trace.get_tracer("t").start_span("s").end()  # the pipeline's thread is running
        assert signal.SIGTERM in _mask_of("tinyllm-span-export")
    finally:
        shutdown_telemetry()


_POOL_APP = """
import multiprocessing, sys

def square(x):
    return x * x

def main():
    for _ in range(int(sys.argv[1])):
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(square, range(4))
    print("done", flush=True)

if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs the fork start method")
def test_pools_terminated_under_run_never_hang_the_app(tmp_path):
    # Each `with Pool` ends in terminate(): SIGTERM to workers that inherited the kit's handler and
    # started their own export thread after the fork. 40 pools made the hang likely under load.
    script = tmp_path / "pools.py"
    script.write_text(textwrap.dedent(_POOL_APP))
    cli = os.path.join(os.path.dirname(sys.executable), "tinyllm-instrument")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYLLM_INSTRUMENT_")}
    result = subprocess.run(
        [cli, "run", "--instrument", "pools:*", str(script), "40"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "done"


_FORK_CHECK = """
import os, signal
from tinyllm_instrument.telemetry.lifecycle import unwind_on_sigterm
assert unwind_on_sigterm(timeout=1.0)
assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # the parent unwinds and flushes
pid = os.fork()
if pid == 0:
    os._exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_ends_on_sigterm_as_python_would():
    # A worker that inherited the kit's handler depends on its main thread noticing the signal;
    # one blocked in a semaphore may never, and its parent's Pool.terminate() then waits for ever.
    result = subprocess.run(
        [sys.executable, "-c", _FORK_CHECK], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", "the forked child kept the kit's SIGTERM handler"


_SPAWN_CHECK = """
import multiprocessing, signal

def handler_in_worker(_):
    from tinyllm_instrument.telemetry.lifecycle import unwind_on_sigterm
    installed = unwind_on_sigterm(timeout=1.0)
    return installed, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(pool.map(handler_in_worker, [0]))
"""


def test_a_multiprocessing_worker_keeps_sigterm_default(tmp_path):
    # A spawned worker configures the kit again (under run, or a module-level configure): its
    # parent ends it with SIGTERM, which must end it at once, as without the kit.
    script = tmp_path / "spawn_check.py"
    script.write_text(_SPAWN_CHECK)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[(False, True)]"
