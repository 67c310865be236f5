"""Where rendered lines go: a file (reopened after rotation), a stream or stdout; losses counted."""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
import weakref
from typing import IO, Any

__all__ = [
    "DROP_REASONS",
    "FileSink",
    "REOPEN_CHECK_SECONDS",
    "Sink",
    "StdoutSink",
    "StreamSink",
    "count_dropped",
    "reset_drop_reports",
]

#: The ``reason`` label values of ``tinyllm_log_lines_dropped_total``.
DROP_REASONS = (
    "sampled",  # log sampling kept the line out (on purpose; also in get_log_sampling_stats)
    "disk_full",  # the file system said ENOSPC / EDQUOT
    "broken_pipe",  # the reader of the pipe went away (``app | head -1``)
    "closed",  # the stream was closed
    "write_error",  # any other failure to write
    "render_error",  # the line could not be built (a kit bug; reported as an internal error too)
    "rotated",  # written to a file that was then deleted before the kit noticed the rotation
)

#: How often, at most, a file sink checks whether its path still names the file it writes to
#: (a stat before every line measured +35% of a line). Lines written in between go to the rotated
#: file. When the kit finds that file deleted, the lines it wrote there since it last found the
#: file at its path are counted as dropped (reason ``rotated``): at most that many were lost.
REOPEN_CHECK_SECONDS = 0.1

_reported: set[str] = set()
_report_lock = threading.RLock()  # re-entrant: a signal handler may log while it is held


_counting = threading.local()


def count_dropped(reason: str, lines: int = 1, detail: str | None = None) -> None:
    """Count lost lines in ``tinyllm_log_lines_dropped_total{reason}``; say so once per reason.

    The notice goes straight to stderr, never through logging: the sink that failed may be the
    very one logging writes to. Never raises.
    """
    _count(reason, lines)
    if reason == "sampled" or detail is None:
        return
    try:
        with _report_lock:
            if reason in _reported:
                return
            _reported.add(reason)
        err = sys.stderr
        if err is not None:
            err.write(
                f"tinyllm_instrument: log lines are being lost ({reason}: {detail}); each one is "
                f'counted in tinyllm_log_lines_dropped_total{{reason="{reason}"}}, '
                "and this is said once\n"
            )
            err.flush()
    except Exception:  # stderr may be the broken stream itself
        pass


def _count(reason: str, lines: int) -> None:
    # prometheus_client guards each value with a plain Lock: a signal handler that logs while
    # this thread is inside inc() would wait for itself forever. Such a nested count waits in a
    # per-thread list and is added by the outer call.
    pending = getattr(_counting, "pending", None)
    if pending is not None:
        pending.append((reason, lines))
        return
    pending = _counting.pending = [(reason, lines)]
    try:
        # Imported here: metrics is a pillar beside this one, and imports nothing of logging.
        from ..metrics import get_metrics_collector

        family = get_metrics_collector().log_lines_dropped
        while pending:
            what, n = pending.pop()
            family.labels(what).inc(n)
    except Exception:  # pragma: no cover - counting must not be the thing that breaks
        pass
    finally:
        _counting.pending = None


def reset_drop_reports() -> None:
    """Forget which losses were reported (for tests)."""
    with _report_lock:
        _reported.clear()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BrokenPipeError) or getattr(exc, "errno", None) == errno.EPIPE:
        return "broken_pipe"
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
        return "closed"  # "I/O operation on closed file"
    return "write_error"


class Sink:
    """Writes whole lines, each at once (nothing waits in a buffer); never raises.

    A line that cannot be written is counted (`count_dropped`) and the failure said once.
    ``wants_bytes`` tells the renderer which type saves a conversion.
    """

    wants_bytes = False
    path: str | None = None

    def write(self, line: str | bytes) -> bool:
        """Write one line; False only when the sink was closed (the line is not counted)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop writing; later lines are counted as dropped (reason ``closed``)."""

    def _failed(self, exc: BaseException, lines: int = 1) -> None:
        count_dropped(_reason(exc), lines, f"{type(exc).__name__}: {exc}")


_file_sinks: weakref.WeakSet[FileSink] = weakref.WeakSet()
_fork_hook_installed = False


def _reinit_after_fork() -> None:
    # A lock held by another thread at fork() stays held forever in the child.
    for sink in list(_file_sinks):
        sink._lock = threading.RLock()


class FileSink(Sink):
    """Appends bytes to a file with one ``os.write`` per line: nothing is held in a buffer that
    a crash would lose, and lines from several threads or processes never interleave.

    When the file is renamed or deleted (logrotate without ``copytruncate``), the sink notices
    within `REOPEN_CHECK_SECONDS` and reopens the path, as the standard library's
    ``WatchedFileHandler`` does. ``copytruncate`` works too: the file is opened ``O_APPEND``.

    Raises:
        OSError: the file cannot be opened.
    """

    wants_bytes = True

    def __init__(self, path: str) -> None:
        global _fork_hook_installed
        self.path = self._path = path
        self._lock = threading.RLock()  # re-entrant: a signal handler may log mid-write
        self._fd = -1
        self._ident: tuple[int, int] = (0, 0)
        self._checked_at = 0.0
        self._since_check = 0
        self._closed = False
        self._open()
        _file_sinks.add(self)
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reinit_after_fork)
            _fork_hook_installed = True

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self._path, flags, 0o644)
        st = os.fstat(fd)
        old, self._fd, self._ident = self._fd, fd, (st.st_dev, st.st_ino)
        if old >= 0:
            self._close_rotated(old)
        self._checked_at = time.monotonic()
        self._since_check = 0

    def _close_rotated(self, fd: int) -> None:
        try:
            gone = os.fstat(fd).st_nlink == 0
        except OSError:
            gone = True
        if gone and self._since_check:
            # Written to a file that no longer has a name: nobody will ever read them.
            count_dropped("rotated", self._since_check, f"{self.path} was deleted while open")
        try:
            os.close(fd)
        except OSError:
            pass

    def _check_rotation(self) -> None:
        try:
            st = os.stat(self._path)
            moved = (st.st_dev, st.st_ino) != self._ident
        except FileNotFoundError:
            moved = True
        except OSError:
            moved = False
        if moved:
            try:
                self._open()
            except OSError as exc:  # keep writing to the old file; try again later
                self._failed(exc, 0)
                self._checked_at = time.monotonic()
        else:
            self._checked_at = time.monotonic()
            self._since_check = 0

    def write(self, line: str | bytes) -> bool:
        data = line if isinstance(line, bytes) else line.encode("utf-8", "replace")
        with self._lock:
            if self._closed:
                return False
            if time.monotonic() - self._checked_at >= REOPEN_CHECK_SECONDS:
                self._check_rotation()
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                self._since_check += 1
            except OSError as exc:
                self._failed(exc)
        return True

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.close(self._fd)
            except OSError:
                pass


class StreamSink(Sink):
    """Writes text to a stream and flushes it after every line.

    A signal handler that logs while this thread is inside ``write`` would re-enter the
    stream's own buffer (an error for ``io`` objects): its line waits in a list and is written
    by the outer call before it returns.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._pending: list[str | bytes] = []
        self._broken = False

    def _target(self) -> Any:
        return self._stream

    def write(self, line: str | bytes) -> bool:
        me = threading.get_ident()
        if self._owner == me:  # re-entered from a signal handler on this thread
            self._pending.append(line)
            return True
        with self._lock:
            self._owner = me
            try:
                self._emit(line)
                while self._pending:
                    self._emit(self._pending.pop(0))
            finally:
                self._owner = None
        return True

    def _emit(self, line: str | bytes) -> None:
        if self._broken:
            count_dropped("broken_pipe")
            return
        stream = self._target()
        text = line if isinstance(line, str) else line.decode("utf-8", "replace")
        try:
            if stream is None:
                raise ValueError("the stream is None")
            try:
                stream.write(text)
            except UnicodeEncodeError:  # a stream that cannot hold some character: escape it
                encoding = getattr(stream, "encoding", None) or "ascii"
                stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
            stream.flush()
        except Exception as exc:
            reason = _reason(exc)
            # A pipe whose reader is gone stays gone: stop paying a failed write per line.
            self._broken = reason == "broken_pipe" and stream is self._stream
            self._failed(exc)


class StdoutSink(StreamSink):
    """Writes to whatever ``sys.stdout`` is when the line is written (redirections apply).

    A real stdout gets each line with one ``os.write`` after flushing what the program itself
    printed, so the order holds and a closed pipe leaves nothing of the kit's in Python's
    buffer for the interpreter to complain about at exit.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self._fd_of: tuple[Any, int] = (None, -1)

    def _target(self) -> Any:
        return sys.stdout

    def _emit(self, line: str | bytes) -> None:
        stream = sys.stdout
        if stream is None:
            count_dropped("closed", 1, "sys.stdout is None")
            return
        known, fd = self._fd_of
        if known is not stream:
            try:
                fd = stream.fileno() if stream is sys.__stdout__ else -1  # type: ignore[union-attr]
            except Exception:
                fd = -1
            self._fd_of = (stream, fd)
        if fd < 0:
            super()._emit(line)
            return
        if self._broken:
            count_dropped("broken_pipe")
            return
        data = line if isinstance(line, bytes) else line.encode("utf-8", "replace")
        try:
            stream.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except Exception as exc:
            self._broken = _reason(exc) == "broken_pipe"
            self._failed(exc)
