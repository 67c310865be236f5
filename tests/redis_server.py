"""A real ``redis-server`` for tests, on 127.0.0.1, a free port and a temporary directory.

::

    with RedisServer() as server:
        client = redis.Redis(port=server.port)

Nothing is persisted (``--save "" --appendonly no``) and the server listens on loopback only.
When ``redis-server`` is not installed, starting it fails the test with a message saying how to
install it: the redis tests must run, not be skipped (``.ci/run`` installs it on CI).

Test modules import it directly (``from redis_server import RedisServer``), like otlp_receivers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import pytest

__all__ = ["RedisServer", "redis_server_binary"]

INSTALL_HINT = (
    "redis-server is not installed; the cache-stats and redis cache tests need a real one: "
    "install Debian's package (apt-get install redis-server), as .ci/run does on CI"
)


def redis_server_binary() -> str:
    """The path of ``redis-server``; fails the current test when it is not installed."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Start ``redis-server`` on 127.0.0.1 in a temporary directory; ``stop()`` ends it."""

    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = redis_server_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="tinyllm-redis-")
        # A port picked free may be taken before redis binds it: retry a few times.
        for _ in range(5):
            self.port = _free_port()
            self._proc = subprocess.Popen(
                [
                    binary, "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", self._dir.name,
                    "--protected-mode", "yes", "--loglevel", "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            if self._wait_ready(timeout):
                return self
            self._terminate()
        self.stop()
        raise RuntimeError("redis-server did not start on 127.0.0.1 after 5 attempts")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()

    def stop(self) -> None:
        self._terminate()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
