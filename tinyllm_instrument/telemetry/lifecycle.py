"""Process lifecycle: one SIGTERM ends an observed app as the default SIGTERM does, flushed first.

The default SIGTERM ends a process at once: no ``finally``, no ``atexit``, the spans still queued
are lost. When the app has no SIGTERM handler of its own, :func:`unwind_on_sigterm` installs one
that ends the process the same way, killed by the signal, but only after:

1. **the main thread unwinds**, as on Ctrl-C: ``SystemExit(143)`` is raised where it stands, so its
   ``finally`` blocks and ``with`` exits run and the calls open in it end (their spans are marked
   interrupted);
2. **the exit handlers run** where Python would run them, but without waiting for the other
   non-daemon threads first (a ``while True`` worker would hold the exit forever): the ``atexit``
   handlers, the app's and the kit's span flush among them (bounded by ``shutdown_timeout``), then
   the flushes given here, every log handler, ``sys.stdout`` and ``sys.stderr``;
3. **the process ends by SIGTERM**, its default action restored, whatever threads still run: the
   parent sees what a default SIGTERM gives (``returncode == -15`` from subprocess, 143 in a
   shell; Kubernetes sees the container end, not its grace period run out).

Bounds: the first SIGTERM restores the default action, so a second one at any point ends the
process at once. A watchdog thread ends the process if the main thread has not finished unwinding
``shutdown_timeout`` seconds after the signal (a ``finally`` that blocks, an ``except
BaseException`` that carries on, a call in C that never returns to Python): it flushes the kit's
spans and the log handlers itself and ends the process. Either way the process is gone at most
about twice ``shutdown_timeout`` after the first signal.

What is not done: other threads are not unwound (Python cannot interrupt them); their finished
calls are flushed, their open ones are not. A signal that arrives once the main thread's code is
done (Python waiting for threads, or running ``atexit``) has nothing to unwind: it goes straight
to step 2 (step 2 without the ``atexit`` handlers when they have started already).

Two CPython hooks make step 2 happen at the right point: ``threading._register_atexit`` (called
after the main thread's code, before the join of the other threads, since 3.9) and
``atexit._run_exitfuncs``. Where either is missing the watchdog does step 2 instead, without the
app's ``atexit`` handlers.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from .._errors import Stage, report_internal_error
from .._threads import leave_signals_to_the_app
from .config import TelemetryConfig

__all__ = ["SIGTERM_EXIT_CODE", "restore_sigterm", "unwind_on_sigterm"]


#: Status of a process killed by SIGTERM as a shell reports it (128 + 15); also the code of the
#: ``SystemExit`` that unwinds the main thread.
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM

# The frame of threading._shutdown: Python's join of the non-daemon threads at exit.
_THREADS_JOIN_CODE = getattr(getattr(threading, "_shutdown", None), "__code__", None)
# After os.kill of our own process, how long to wait for the signal before exiting without it.
_KILL_GRACE_S = 1.0


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.timeout: float = TelemetryConfig.shutdown_timeout
        self.flushes: list[Callable[[], object]] = []
        self.pid = 0  # the process that installed the handler (a forked child is another)
        self.ending = threading.Event()  # set by whoever runs the end: main thread or watchdog
        self.fork_hooked = False


_STATE = _State()


def unwind_on_sigterm(
    *, timeout: float | None = None, flush: Callable[[], object] | None = None
) -> bool:
    """Make one SIGTERM unwind the main thread, flush, and end the process by the signal.

    Installed only from the main thread and only while SIGTERM has its default action, so an
    app's own handler is never replaced (and an app that installs one later replaces this one).
    Calling it again while installed updates ``timeout`` and adds ``flush``.

    Args:
        timeout: seconds the main thread gets to unwind, and the exit handlers to run, before the
            watchdog ends the process (``TelemetryConfig.shutdown_timeout``); None keeps the
            current value (5 s until set).
        flush: called before the process ends, after the ``atexit`` handlers, and by the watchdog
            (``shutdown_telemetry``); must be bounded. Failures are counted, never raised.

    Returns:
        True if the kit's handler is installed.

    Example:
        >>> unwind_on_sigterm(timeout=5.0, flush=shutdown_telemetry)
        True
    """
    if threading.current_thread() is not threading.main_thread() or _in_multiprocessing_child():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        if current is not signal.SIG_DFL:
            return False
        signal.signal(signal.SIGTERM, _on_sigterm)
        _STATE.pid = os.getpid()
        if not _STATE.fork_hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_default_sigterm_in_forked_child)
            _STATE.fork_hooked = True
    if timeout is not None:
        _STATE.timeout = timeout
    if flush is not None and flush not in _STATE.flushes:
        _STATE.flushes.append(flush)
    return True


def _in_multiprocessing_child() -> bool:
    """A process multiprocessing started (spawn, forkserver, fork): its parent ends it with
    SIGTERM (``Pool.terminate()``, ``Process.terminate()``) and expects the default action."""
    process = sys.modules.get("multiprocessing.process")
    try:
        return process is not None and process.parent_process() is not None
    except Exception:  # an odd multiprocessing: behave as in any process
        return False


def _default_sigterm_in_forked_child() -> None:
    # A forked child (most often a multiprocessing worker) ends on SIGTERM as it would without the
    # kit: at once, by the kernel. With the kit's handler it would wait for its main thread to run
    # the handler, which a worker blocked in a semaphore never does when the signal lands just
    # before the wait: Pool.terminate() then joined that worker for ever and the app hung at exit.
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except Exception:  # never the reason a fork fails
        pass


def restore_sigterm() -> None:
    """Give SIGTERM its default action back, if the kit's handler is the one installed."""
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _STATE.flushes.clear()
    _STATE.timeout = TelemetryConfig.shutdown_timeout


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    try:
        threading.Thread(
            target=_watchdog, args=(_STATE.timeout,), name="tinyllm-sigterm-watchdog", daemon=True
        ).start()
    except RuntimeError:  # no new threads at interpreter shutdown: the end below has no bound
        pass
    if threading.main_thread().is_alive() and _after_main_thread(_end):
        raise SystemExit(SIGTERM_EXIT_CODE)
    # The main thread's code is done: Python is joining the other threads, or running atexit.
    _end(run_atexit=_joining_threads(frame))


def _after_main_thread(func: Callable[[], None]) -> bool:
    """Run ``func`` when the main thread's code is done, before Python joins the other threads."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return True  # the watchdog ends the process instead
    try:
        register(func)
    except RuntimeError:  # "can't register atexit after shutdown": the join has begun
        return False
    return True


def _joining_threads(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code is _THREADS_JOIN_CODE:
            return True
        frame = frame.f_back
    return False


def _end(run_atexit: bool = True) -> None:
    """The orderly end, in the main thread: exit handlers, flushes, then death by SIGTERM."""
    with _STATE.lock:
        if _STATE.ending.is_set():  # the watchdog got there first and ends the process
            claimed = False
        else:
            _STATE.ending.set()
            claimed = True
    if not claimed:
        threading.Event().wait()  # until the watchdog's kill
        return
    try:
        run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
        # Not in a forked child: the atexit handlers it inherited are its parent's.
        if run_atexit and run_exitfuncs is not None and os.getpid() == _STATE.pid:
            run_exitfuncs()  # as Python runs them: the app's, the kit's span flush, logging's
        _flush_everything()
    finally:
        _die()


def _watchdog(timeout: float) -> None:
    leave_signals_to_the_app()  # _die() unblocks SIGTERM for the kill it sends itself
    if not _STATE.ending.wait(timeout):
        with _STATE.lock:
            mine = not _STATE.ending.is_set()
            _STATE.ending.set()
        if mine:  # the main thread never got to its end: flush what the kit holds, and go
            _within(timeout, _flush_everything)
            _die()
    # The orderly end is under way in the main thread: it gets ``timeout`` more, then no more.
    time.sleep(timeout)
    _within(_KILL_GRACE_S, _flush_streams)
    _die()


def _within(seconds: float, func: Callable[[], None]) -> None:
    """Run ``func`` in a helper thread for at most ``seconds``: a lock held by a stuck thread
    (a log handler's, a stream's on a full pipe) must not hold the watchdog."""

    def run() -> None:
        leave_signals_to_the_app()
        func()

    try:
        helper = threading.Thread(target=run, name="tinyllm-sigterm-flush", daemon=True)
        helper.start()
    except RuntimeError:  # no new threads at interpreter shutdown
        func()
        return
    helper.join(seconds)


def _flush_everything() -> None:
    for flush in list(_STATE.flushes):
        try:
            flush()
        except Exception as exc:
            report_internal_error(Stage.SPAN_FLUSH, exc)
    _flush_log_handlers()
    _flush_streams()


def _flush_log_handlers() -> None:
    loggers: list[Any] = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", ())):  # placeholders have none
            try:
                handler.flush()
            except Exception:  # a closed or broken handler: nothing more to save
                pass


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # a closed pipe (`app | head -1`): nothing more to save
            pass


def _die() -> None:
    """End the process by SIGTERM, as the default action would have at the first signal."""
    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # in case the app set one meanwhile
        except Exception:
            pass
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is not None:
        mask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # delivered to this thread, before kill returns
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_KILL_GRACE_S)  # a handler installed in another thread meanwhile took it
    os._exit(SIGTERM_EXIT_CODE)
