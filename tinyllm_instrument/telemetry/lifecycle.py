"""Process lifecycle: what SIGTERM does to a traced app, so spans are flushed before it ends."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["SIGTERM_EXIT_CODE", "unwind_on_sigterm"]


#: Exit status after SIGTERM, as a shell reports a process killed by it (128 + 15).
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


def unwind_on_sigterm() -> bool:
    """Make SIGTERM unwind the program like SIGINT does, so spans end and get flushed at exit.

    The default SIGTERM ends the process at once: no ``finally``, no ``atexit``, spans lost.
    Installed only from the main thread and only while SIGTERM has its default action, so an
    app's own handler is never replaced. The handler raises ``SystemExit(143)``; a second
    SIGTERM while unwinding or flushing ends the process at once.

    Returns:
        True if the handler was installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False

    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(SIGTERM_EXIT_CODE)


def restore_sigterm() -> None:
    """Give SIGTERM its default action back, if the kit's handler is the one installed."""
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
