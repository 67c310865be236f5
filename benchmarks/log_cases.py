"""The log-line and redaction benchmark cases: one log call, or one redaction of N KB of text.

A log case writes one JSON line to a file of its own, inside a recording span and an
``@observe``-style node/graph context (so the kit's line carries trace ids, node and graph):

- ``structlog_native``: the reference, structlog's own fastest JSON setup: a
  ``make_filtering_bound_logger`` with ``merge_contextvars``, ``add_log_level``,
  ``TimeStamper(fmt="iso")``, ``JSONRenderer`` and a ``WriteLogger`` on the file;
- ``kit_line``: ``get_logger(...)`` after ``configure_logging(log_format="json", log_file=...)``:
  the same call, with trace ids, node/graph, app, logger name and redaction;
- ``kit_line_json``: the same, rendered with the standard library's ``json`` instead of orjson
  (what the kit does where orjson is not installed).

A redaction case is ``redact_text`` of a text holding what makes every pattern run (a signed
URL with a long query), 10 KB, 100 KB or 1 MB long; its figure is per KB.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import string
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from opentelemetry.sdk.trace import TracerProvider

from tinyllm_instrument._context import CURRENT_CALL
from tinyllm_instrument.logging import configure_logging, get_logger
from tinyllm_instrument.redaction import get_redaction_policy

#: case -> (label in the table, reference case or None, target ratio or None)
LOG_CASES: dict[str, tuple[str, str | None, float | None]] = {
    "structlog_native": ("structlog native JSON line to a file (reference)", None, None),
    "kit_line": (
        "kit JSON line to a file: trace ids, node/graph, redaction",
        "structlog_native",
        1.5,
    ),
    "kit_line_json": ("the same, rendered with json instead of orjson", "structlog_native", None),
}
#: case -> size of the text in KB
REDACTION_CASES: dict[str, int] = {"redact_10kb": 10, "redact_100kb": 100, "redact_1mb": 1024}

_DIR: str | None = None


def _directory() -> str:
    global _DIR
    if _DIR is None:
        _DIR = tempfile.mkdtemp(prefix="tinyllm-bench-logs-")
    return _DIR


@dataclass
class LogRunner:
    """``run()`` does one unit (one log call, or one redaction); ``per_call`` units of the figure.

    ``context()`` sets the case up around a measurement (the kit's configuration, the span) and
    restores what was there.
    """

    case: str
    run: Callable[[], Any]
    context: Callable[[], contextlib.AbstractContextManager[Any]]
    per_call: float = 1
    files: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _in_a_node(tracer: Any) -> Iterator[None]:
    scope = CURRENT_CALL.set(("retrieve", "rag", None))
    try:
        with tracer.start_as_current_span("retrieve"):
            yield
    finally:
        CURRENT_CALL.reset(scope)


def make_log_runner(case: str, restore: Callable[[], None]) -> LogRunner:
    """The runner of a log ``case``; ``restore`` puts the benchmark session's logging back."""
    tracer = TracerProvider().get_tracer("benchmarks")  # always on, its own provider
    path = os.path.join(_directory(), f"{case}.log")

    if case == "structlog_native":
        current: list[Any] = []

        @contextlib.contextmanager
        def native() -> Iterator[None]:
            with open(path, "a") as handle, _in_a_node(tracer):
                current[:] = [
                    structlog.wrap_logger(
                        structlog.WriteLogger(handle),
                        processors=[
                            structlog.contextvars.merge_contextvars,
                            structlog.processors.add_log_level,
                            structlog.processors.TimeStamper(fmt="iso"),
                            structlog.processors.JSONRenderer(),
                        ],
                        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                    ).bind(component="executor")
                ]
                yield

        return LogRunner(case, lambda: _line(current[0]), native, files=[path])

    if case not in ("kit_line", "kit_line_json"):
        raise ValueError(f"unknown log case {case!r}")
    kit = get_logger("bench", component="executor")

    @contextlib.contextmanager
    def configured() -> Iterator[None]:
        configure_logging(log_level="INFO", log_format="json", log_file=path, app="bench")
        render: Any = None
        saved: Any = None
        if case == "kit_line_json":
            from tinyllm_instrument.logging import _render as render

            saved, render._orjson = render._orjson, None
        try:
            with _in_a_node(tracer):
                yield
        finally:
            if render is not None:
                render._orjson = saved
            restore()

    return LogRunner(case, lambda: _line(kit), configured, files=[path])


def _line(logger: Any) -> None:
    logger.info("node_executed", node_id="entry", duration_ms=123, tokens_used=45)


def signed_url_text(kb: int, seed: int = 7) -> str:
    """``kb`` KB of a pre-signed URL: a credential pair, a token and a long signature."""
    rnd = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    head = "GET https://bot:pw-1234@storage.example.com/o/file.bin?X-Goog-Signature="
    tail = "&token=abc123&alt=media"
    run = "".join(rnd.choice(alphabet) for _ in range(kb * 1024 - len(head) - len(tail)))
    return head + run + tail


def make_redaction_runner(case: str) -> LogRunner:
    kb = REDACTION_CASES[case]
    text = signed_url_text(kb)
    policy = get_redaction_policy()
    return LogRunner(case, lambda: policy.redact_text(text), contextlib.nullcontext, per_call=kb)


def cleanup() -> None:
    """Remove the files the log cases wrote."""
    global _DIR
    if _DIR is not None:
        for name in os.listdir(_DIR):
            os.remove(os.path.join(_DIR, name))
        os.rmdir(_DIR)
        _DIR = None
