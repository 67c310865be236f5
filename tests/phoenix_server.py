"""A real Arize Phoenix back-end for tests, in a venv of its own, on 127.0.0.1.

Phoenix's dependencies are heavy and would clash with the kit's, so it lives in its own venv under
``tests/.cache/`` (git-ignored), created on first use by :func:`phoenix_python` and keyed by the
pinned version, the Python version and the lock file ``tests/phoenix-constraints.txt``: changing
any of them installs afresh. A file lock makes two pytest processes that race install once.

::

    with PhoenixServer(tmp_path) as phoenix:
        exporter = OTLPSpanExporter(endpoint=phoenix.otlp_http_endpoint)  # OTLP/HTTP protobuf
        ...
        [span] = phoenix.wait_for_spans("default", count=1)
        span["span_kind"], span["attributes"]["llm.token_count.prompt"]

The ``phoenix`` fixture (session scope, re-exported by tests/conftest.py) starts one server for the
whole run, so each test should send to a project of its own (resource attribute
``openinference.project.name``) and read that project back.

Phoenix takes OTLP traces over HTTP at ``<url>/v1/traces`` (``otlp_http_endpoint``) and over gRPC
at ``otlp_grpc_endpoint``. It is told to reach nothing outside 127.0.0.1: telemetry pixels off,
external resources (web fonts, the sandbox download) off, its own tracing not configured.

To move to another Phoenix: set ``PHOENIX_VERSION``, then ``python tests/phoenix_server.py lock``
rewrites the lock file from a fresh install of that version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "PHOENIX_VERSION",
    "PhoenixServer",
    "phoenix",
    "phoenix_python",
]

#: The arize-phoenix release these tests were verified against.
PHOENIX_VERSION = "20.26.1"
TESTS_DIR = Path(__file__).resolve().parent
CACHE_DIR = TESTS_DIR / ".cache"
CONSTRAINTS = TESTS_DIR / "phoenix-constraints.txt"
INSTALL_TIMEOUT = 1200.0

#: Phoenix settings for a test server; the real names from phoenix/config.py (20.x).
QUIET_ENV = {
    "PHOENIX_TELEMETRY_ENABLED": "false",  # FullStory and Scarf pixels in the UI
    "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",  # web fonts, the WASM sandbox download
    "PHOENIX_LOG_MIGRATIONS": "false",  # the schema's SQL would fill the log
    "PYTHONUNBUFFERED": "1",
}


#: Talks to 127.0.0.1 only, so no proxy from the environment may sit in between.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _venv_key() -> str:
    lock = CONSTRAINTS.read_bytes() if CONSTRAINTS.exists() else b""
    digest = hashlib.sha256(lock).hexdigest()[:10]
    return f"phoenix-{PHOENIX_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}-{digest}"


@contextlib.contextmanager
def _locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path``; yields False when not blocking and it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle, flags)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prune_old_venvs(keep: str) -> None:
    """Remove venvs of other keys (850 MB each) that no process is installing right now."""
    for old in CACHE_DIR.glob("phoenix-*"):
        if old.name == keep or not old.is_dir():
            continue
        with _locked(CACHE_DIR / f"{old.name}.lock", blocking=False) as free:
            if free:
                shutil.rmtree(old, ignore_errors=True)


def _run_logged(args: list[str], log: Path, timeout: float) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{args[0]} failed ({result.returncode}); end of {log}:\n{tail}")


def phoenix_python(*, constraints: bool = True) -> Path:
    """The Python of Phoenix's own venv, installing arize-phoenix there on first use.

    Safe when several processes call it at once: one installs while the others wait on a file
    lock, and a venv without its ``.complete`` stamp (an install that died) is rebuilt.

    Args:
        constraints: Install with ``tests/phoenix-constraints.txt`` (the verified set). False
            resolves afresh (used to rewrite that file).

    Returns:
        Path of ``bin/python`` in ``tests/.cache/phoenix-<version>-py<XY>-<lock hash>/``.

    Raises:
        RuntimeError: the install failed; the message ends with pip's log.
    """
    key = _venv_key() if constraints else f"phoenix-{PHOENIX_VERSION}-unlocked"
    venv = CACHE_DIR / key
    python = venv / "bin" / "python"
    stamp = venv / ".complete"
    with _locked(CACHE_DIR / f"{key}.lock"):
        if stamp.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        log = CACHE_DIR / f"{key}.install.log"
        log.write_text(f"installing arize-phoenix=={PHOENIX_VERSION} into {venv}\n")
        started = time.monotonic()
        _run_logged([sys.executable, "-m", "venv", str(venv)], log, 300)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if constraints:
            pip += ["-c", str(CONSTRAINTS)]
        _run_logged([*pip, f"arize-phoenix=={PHOENIX_VERSION}"], log, INSTALL_TIMEOUT)
        elapsed = time.monotonic() - started
        stamp.write_text(f"arize-phoenix=={PHOENIX_VERSION} installed in {elapsed:.0f}s\n")
    if constraints:
        _prune_old_venvs(keep=key)
    return python


class PhoenixServer:
    """``phoenix serve`` on 127.0.0.1, free ports, its data in ``workdir``; ``stop()`` ends it.

    Args:
        workdir: ``PHOENIX_WORKING_DIR`` (its SQLite database) and the server's log; a temporary
            directory, removed on stop, when None.
        env: Extra ``PHOENIX_*`` settings, on top of :data:`QUIET_ENV`.
    """

    def __init__(self, workdir: Path | None = None, *, env: dict[str, str] | None = None) -> None:
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="tinyllm-phoenix-")
            workdir = Path(self._tempdir.name)
        self.workdir = workdir
        self.log_path = workdir / "phoenix.log"
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.grpc_port = 0

    @property
    def url(self) -> str:
        """The UI and REST API, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_http_endpoint(self) -> str:
        """The OTLP/HTTP (protobuf) traces URL, ``<url>/v1/traces``, for ``OTLPSpanExporter``."""
        return f"{self.url}/v1/traces"

    @property
    def otlp_grpc_endpoint(self) -> str:
        """The OTLP/gRPC endpoint, ``http://127.0.0.1:<grpc_port>``."""
        return f"http://127.0.0.1:{self.grpc_port}"

    def log(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = 180.0) -> PhoenixServer:
        """Install Phoenix if needed, start it and wait until it answers.

        Raises:
            RuntimeError: it exited or did not become ready; the message ends with its log.
        """
        python = phoenix_python()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A port picked free may be taken before Phoenix binds it: retry with new ones.
        for _ in range(3):
            self.port, self.grpc_port = _free_port(), _free_port()
            self._spawn(python)
            if self._wait_ready(timeout):
                return self
            self._terminate()
        self.stop()
        raise RuntimeError(f"Phoenix did not start on 127.0.0.1; its log:\n{self.log()}")

    def _spawn(self, python: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        env.update(QUIET_ENV)
        env.update(
            PHOENIX_WORKING_DIR=str(self.workdir),
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.port),
            PHOENIX_GRPC_PORT=str(self.grpc_port),
        )
        env.update(self._extra_env)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(python), "-m", "phoenix.server.main", "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,  # its own process group, so stop() reaches any child
            )

    def _wait_ready(self, timeout: float) -> bool:
        """True once /healthz answers 200 and the gRPC port accepts; False if it exits first."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:  # urlopen raises (an OSError) for anything but a 2xx answer
                with _OPENER.open(self.url + "/healthz", timeout=2):
                    pass
                with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=2):
                    return True
            except OSError:
                time.sleep(0.2)
        return False

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)

    def stop(self) -> None:
        self._terminate()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> PhoenixServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the REST API --------------------------------------------------------------------------

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/v1/<path>`` with query ``params`` (a list repeats the parameter); the JSON.

        Raises:
            urllib.error.HTTPError: Phoenix answered with an error (404 for an unknown project).
        """
        query = urllib.parse.urlencode(
            {k: v for k, v in params.items() if v is not None}, doseq=True
        )
        url = f"{self.url}/v1/{path.lstrip('/')}" + (f"?{query}" if query else "")
        with _OPENER.open(url, timeout=10) as response:
            return json.loads(response.read())

    def projects(self) -> list[dict[str, Any]]:
        """Every project, as ``GET /v1/projects`` returns them."""
        return list(self.api("projects")["data"])

    def spans(self, project: str = "default", **filters: Any) -> list[dict[str, Any]]:
        """The spans of ``project`` (oldest first), from ``GET /v1/projects/{project}/spans``.

        Each is a dict: ``name``, ``context`` (``trace_id``, ``span_id``), ``span_kind`` (the
        OpenInference kind: LLM, CHAIN..., UNKNOWN), ``parent_id``, ``start_time``, ``end_time``,
        ``status_code``, ``status_message``, ``attributes`` (flat dotted keys, without
        ``openinference.span.kind``), ``events``. An unknown project has no spans.

        Args:
            project: A project name (``openinference.project.name``) or id.
            filters: The endpoint's filters: ``name``, ``span_kind``, ``trace_id``, ``span_id``,
                ``parent_id``, ``status_code``, ``attribute`` (``"session.id:s1"``)...
        """
        quoted = urllib.parse.quote(project, safe="")
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            try:
                page = self.api(f"projects/{quoted}/spans", limit=1000, order="asc",
                                cursor=cursor, **filters)  # fmt: skip
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # the project does not exist yet: nothing has arrived
                    exc.close()
                    return []
                raise
            out.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def wait_for_spans(
        self,
        project: str = "default",
        *,
        count: int = 1,
        timeout: float = 30.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """Poll until ``project`` has at least ``count`` spans (matching ``where``); return them.

        Phoenix writes spans into its database in batches, so they show up in the REST API a
        moment after the exporter's request returned.

        Raises:
            AssertionError: too few within ``timeout`` seconds; says what it saw and shows the log.
        """
        deadline = time.monotonic() + timeout
        while True:
            spans = [s for s in self.spans(project, **filters) if where is None or where(s)]
            if len(spans) >= count:
                return spans
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected {count} span(s) in Phoenix project {project!r} within {timeout}s, "
                    f"found {len(spans)}: {[s.get('name') for s in spans]}; projects: "
                    f"{[p.get('name') for p in self.projects()]}\nPhoenix log:\n{self.log()}"
                )
            time.sleep(0.25)


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhoenixServer]:
    """One Phoenix for the session (installed on first use); send each test to its own project."""
    with PhoenixServer(tmp_path_factory.mktemp("phoenix")) as server:
        yield server


def _lock() -> None:
    """Rewrite tests/phoenix-constraints.txt from a fresh, unconstrained install."""
    python = phoenix_python(constraints=False)
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    CONSTRAINTS.write_text(
        f"# arize-phoenix {PHOENIX_VERSION} and what it installed with (Python "
        f"{sys.version_info[0]}.{sys.version_info[1]}); written by "
        f"`python tests/phoenix_server.py lock`.\n{frozen}"
    )
    shutil.rmtree(python.parent.parent, ignore_errors=True)
    print(f"wrote {CONSTRAINTS}")


if __name__ == "__main__":
    if sys.argv[1:] == ["lock"]:
        _lock()
    elif sys.argv[1:] == ["install"]:
        print(phoenix_python())
    else:
        sys.exit("usage: python tests/phoenix_server.py lock|install")
