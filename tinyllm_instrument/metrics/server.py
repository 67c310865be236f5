"""Serving the metrics: the /metrics HTTP server, and multiprocess mode for pre-fork servers."""

from __future__ import annotations

import errno
import os
import socket
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector

from .._config import env_str
from .collector import MetricsCollector, get_metrics_collector, reset_metrics_collector

__all__ = [
    "ENV_MULTIPROC_DIR",
    "MetricsServerError",
    "configure_metrics",
    "is_multiprocess",
    "mark_process_dead",
    "reset_multiprocess",
    "start_metrics_server",
]


# --- the metrics server ---------------------------------------------------------------------------


class MetricsServerError(OSError):
    """The metrics server cannot listen where asked; ``str()`` is one line saying how to fix it.

    An ``OSError`` (``errno`` is the socket's), whose text names the address and the option to
    change, without the ``[Errno 98]`` prefix.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def _option(name: str, value: object) -> str:
    # How the user would write the fix: a CLI flag, an environment variable or a keyword.
    if name.startswith("-"):
        return f"{name} {value}"
    if name.isupper():
        return f"{name}={value}"
    return f"{name}={value!r}"


def _why_not(exc: OSError, port: int, port_option: str, host_option: str) -> str:
    if isinstance(exc, socket.gaierror):
        reason = f"cannot resolve the address ({exc.strerror or exc})"
    elif exc.errno == errno.EADDRINUSE:
        other = port + 1 if 0 < port < 65535 else 9090
        return (
            f"the port is in use; pass another ({_option(port_option, other)}, or "
            f"{_option(port_option, 0)} for any free one) or stop the process that holds it"
        )
    elif exc.errno == errno.EACCES:
        return (
            "no permission to listen on that port (ports below 1024 need privileges); pass "
            f"one above 1023 ({_option(port_option, 9090)}) or {_option(port_option, 0)} for "
            "any free one"
        )
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason = "no interface of this machine has that address"
    else:
        return str(exc.strerror or exc)
    return (
        f"{reason}; pass {_option(host_option, '127.0.0.1')} (this machine only) or "
        f"{_option(host_option, '0.0.0.0')} (every interface)"
    )


def start_metrics_server(
    port: int = 9090,
    addr: str = "127.0.0.1",
    collector: MetricsCollector | None = None,
    *,
    port_option: str = "port",
    host_option: str = "addr",
) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` for a collector with prometheus_client's own HTTP server, in a thread.

    Only this machine can scrape it unless you ask for more: pass ``addr="0.0.0.0"`` (or
    ``"::"``) to listen on every interface.

    Args:
        port: TCP port; 0 picks a free one (read it from ``server.server_port``).
        addr: address to bind.
        collector: whose registry to serve; the process-wide collector when None.
        port_option: how the caller's user typed the port, named in the error's hint: a
            keyword (``"port"``, the default: ``port=9091``), a flag (``"--metrics-port"``:
            ``--metrics-port 9091``) or an environment variable (upper case: ``NAME=9091``).
        host_option: the same for the address (default ``"addr"``).

    Returns:
        ``(server, thread)``. Stop with ``server.shutdown(); server.server_close()``.

    Raises:
        ValueError: ``port`` is not a whole number in 0..65535.
        MetricsServerError: the address cannot be bound (port in use, no permission, an
            address of another machine); one line that names the address and the fix.

    Example:
        >>> server, thread = start_metrics_server(port=0)
        >>> port = server.server_port   # curl http://127.0.0.1:<port>/metrics
        >>> server.shutdown(); server.server_close()
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(
            f"port must be a whole number in 0..65535 (0 picks a free one), got {port!r}"
        )
    if collector is None:
        collector = get_metrics_collector()
    registry = collector.registry
    if _MULTIPROCESS.directory is not None:
        # Every worker writes its values to files there; serve the aggregate of all of them.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=_MULTIPROCESS.directory)
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise MetricsServerError(
            exc.errno,
            f"cannot serve metrics on {addr}:{port}: "
            + _why_not(exc, port, port_option, host_option),
        ) from exc
    return server, thread


# --- multiprocess mode ---------------------------------------------------------------------------

#: prometheus_client's own variable: a folder where every process writes its metric values.
ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class _Multiprocess:
    __slots__ = ("directory", "saved")

    def __init__(self) -> None:
        self.directory: str | None = None
        #: prometheus_client's value class and PROMETHEUS_MULTIPROC_DIR before the mode was on.
        self.saved: tuple[Any, str | None] | None = None


_MULTIPROCESS = _Multiprocess()


def configure_metrics(*, multiprocess_dir: str | os.PathLike[str] | None = None) -> None:
    """Switch on prometheus_client's multiprocess mode, for pre-fork servers (gunicorn-style).

    Each worker then writes its values to files in ``multiprocess_dir`` and the metrics server
    (:func:`start_metrics_server`, in any one process) serves their aggregate: counters and
    histograms summed over all workers, dead ones included; gauges summed over live workers
    (call :func:`mark_process_dead` from the server's child-exit hook). Call it in the parent
    before forking workers. Limits of prometheus_client's mode: no exemplars, and each worker's
    cardinality guard counts its own combinations.

    Args:
        multiprocess_dir: an existing, writable, preferably empty folder; None to use
            ``PROMETHEUS_MULTIPROC_DIR`` if set (otherwise nothing changes).

    Raises:
        ValueError: the folder does not exist, is not a folder, or is not writable.

    Example:
        >>> configure_metrics(multiprocess_dir="/tmp/tinyllm-metrics")  # doctest: +SKIP
    """
    directory = multiprocess_dir if multiprocess_dir is not None else env_str(ENV_MULTIPROC_DIR)
    if directory is None or not str(directory).strip():
        return
    path = os.fspath(directory)
    if not os.path.isdir(path):
        raise ValueError(
            f"multiprocess_dir={path!r} is not an existing folder; create it first (and empty "
            "it when the server starts, so values of an earlier run are not added in)"
        )
    if not os.access(path, os.W_OK):
        raise ValueError(f"multiprocess_dir={path!r} is not writable by this process")
    if _MULTIPROCESS.saved is None:
        _MULTIPROCESS.saved = (prometheus_values.ValueClass, os.environ.get(ENV_MULTIPROC_DIR))
    os.environ[ENV_MULTIPROC_DIR] = path  # read by prometheus_client, inherited by workers
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue()
    _MULTIPROCESS.directory = path
    reset_metrics_collector()  # families made from now on keep their values in those files


def reset_multiprocess() -> None:
    """Undo :func:`configure_metrics`: multiprocess mode off, as before it was switched on (tests).

    prometheus_client's value class and ``PROMETHEUS_MULTIPROC_DIR`` get back their earlier
    values, and the process-wide collector is discarded, so the next one keeps its values in
    memory. Files already written in the folder stay there. Does nothing if the mode is off.

    Example:
        >>> configure_metrics(multiprocess_dir=tmp_dir)  # doctest: +SKIP
        >>> reset_multiprocess()
        >>> is_multiprocess()
        False
    """
    saved = _MULTIPROCESS.saved
    if saved is None:
        return
    value_class, variable = saved
    prometheus_values.ValueClass = value_class
    if variable is None:
        os.environ.pop(ENV_MULTIPROC_DIR, None)
    else:
        os.environ[ENV_MULTIPROC_DIR] = variable
    _MULTIPROCESS.directory = None
    _MULTIPROCESS.saved = None
    reset_metrics_collector()


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the aggregate (multiprocess mode only).

    Args:
        pid: the worker's process id, e.g. from gunicorn's ``child_exit`` hook.
    """
    if _MULTIPROCESS.directory is not None:
        prometheus_multiprocess.mark_process_dead(pid, _MULTIPROCESS.directory)


def is_multiprocess() -> bool:
    """Whether :func:`configure_metrics` switched multiprocess mode on."""
    return _MULTIPROCESS.directory is not None
