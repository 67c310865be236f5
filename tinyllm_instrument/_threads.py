"""The kit's own threads leave the process's signals to the app's threads."""

from __future__ import annotations

import signal

#: Signals sent to the process (kill, Ctrl-C, a supervisor) that an app may handle in Python.
#: CPython runs handlers in the main thread only, and only once a signal interrupts what that
#: thread waits in: delivered to a kit thread instead, a SIGTERM would leave a main thread blocked
#: in a lock or a read for ever (seen: a forked Pool worker never ended on Pool.terminate()).
APP_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
)


def leave_signals_to_the_app() -> None:
    """Block :data:`APP_SIGNALS` in the calling thread (a thread the kit started), for good.

    Called first thing in the kit's threads. The kernel then delivers those signals to a thread
    of the app, which Python interrupts to run the handler. A no-op where the platform has no
    ``pthread_sigmask`` (Windows).

    Example:
        >>> import threading
        >>> t = threading.Thread(target=leave_signals_to_the_app)
        >>> t.start(); t.join()
    """
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is not None:
        mask(signal.SIG_BLOCK, APP_SIGNALS)
