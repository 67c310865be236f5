"""configure_logging: one sink, one chain, for the kit's loggers and standard-library records."""

from __future__ import annotations

import logging as _stdlib_logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor

from .. import _config
from ..redaction import safe_str
from ._logger import Pipeline, current_pipeline, set_pipeline
from ._processors import (
    ENRICH_PARTS,
    Enrich,
    Guarded,
    format_args,
    processor_name,
    redact_event,
)
from ._render import ConsoleLines, JsonLines, json_backend
from ._sampling import current_sampler
from ._sink import (
    FileSink,
    Sink,
    StdoutSink,
    StreamSink,
    count_dropped,
    reset_drop_reports,
)

__all__ = [
    "ENV_SERVICE_NAME",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "configure_logging",
    "default_app_name",
    "enrichment_processors",
    "get_logging_info",
    "is_logging_configured",
    "reset_logging",
]

#: Accepted ``log_level`` names (any case).
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Accepted ``log_format`` values.
LOG_FORMATS: tuple[str, ...] = ("console", "json")
#: The service name ``tinyllm-instrument run --service-name`` hands to the program (and its
#: children); the default ``app`` of log lines when set.
ENV_SERVICE_NAME = _config.ENV_PREFIX + "SERVICE_NAME"
#: OpenTelemetry's own service name variable; the default ``app`` when the kit's is unset.
ENV_OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_KEYS = frozenset(
    _stdlib_logging.LogRecord("name", 0, "pathname", 0, "msg", (), None).__dict__
) | {"message", "asctime", "taskName"}


def default_app_name() -> str:
    """The ``app`` field when `configure_logging` is given none.

    ``TINYLLM_INSTRUMENT_SERVICE_NAME`` (set by ``tinyllm-instrument run``), else
    ``OTEL_SERVICE_NAME``, else the program: the module run with ``python -m``, or the script's
    file name without ``.py``; ``"python"`` when there is neither (``python -c``, a REPL).

    Example:
        >>> import os
        >>> os.environ["OTEL_SERVICE_NAME"] = "billing"
        >>> default_app_name()
        'billing'
        >>> del os.environ["OTEL_SERVICE_NAME"]
    """
    for var in (ENV_SERVICE_NAME, ENV_OTEL_SERVICE_NAME):
        value = _config.env_str(var)
        if value:
            return value
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name:
        return name[: -len(".__main__")] if name.endswith(".__main__") else name
    argv0 = sys.argv[0] if sys.argv else ""
    stem = os.path.splitext(os.path.basename(argv0))[0]
    return stem if stem and not argv0.startswith("-") else "python"


class _KitHandler(_stdlib_logging.Handler):
    """Renders standard-library records with the kit's chain into the kit's sink.

    A record whose ``%`` arguments do not fit its message is written with a note instead of
    the stdlib's "--- Logging error ---" dump of the raw arguments on stderr.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.tinyllm_instrument_handler = True

    def emit(self, record: _stdlib_logging.LogRecord) -> None:
        try:
            msg = record.msg
            if record.args:
                event = format_args(msg, record.args)
            else:
                event = msg if type(msg) is str else safe_str(msg)
            event_dict: EventDict = {"event": event}
            structlog.contextvars.merge_contextvars(None, "", event_dict)
            for key, value in record.__dict__.items():
                if key not in _RECORD_KEYS:
                    event_dict[key] = value
            event_dict["_record"] = record
        except Exception as exc:  # pragma: no cover - a record object gone very wrong
            self.handleError(record, exc)
            return
        pipeline = self.pipeline
        pipeline.run(None, record.levelname.lower(), event_dict, pipeline.foreign)

    def handleError(self, record: Any, exc: BaseException | None = None) -> None:  # noqa: N802
        """Count the line as lost; never print the record's raw arguments."""
        count_dropped("render_error")
        if exc is not None:
            from .._errors import Stage, report_internal_error

            report_internal_error(Stage.LOG_PROCESSOR, exc)


class _SinkLogger:
    """The wrapped logger structlog hands the line to, for ``structlog.get_logger()`` users."""

    __slots__ = ("name", "_sink")

    def __init__(self, sink: Sink, name: str | None) -> None:
        self._sink = sink
        self.name = name

    def msg(self, line: Any) -> None:
        if not self._sink.write(line):
            count_dropped("closed")

    debug = info = warning = warn = error = exception = critical = fatal = log = msg


class _SinkLoggerFactory:
    __slots__ = ("_sink",)

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def __call__(self, *args: Any) -> _SinkLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        if name is None:  # structlog.get_logger() without a name: the caller's module
            try:
                name = structlog._frames._find_first_app_frame_and_name()[1]
            except Exception:  # pragma: no cover - structlog's private helper moved
                name = None
        return _SinkLogger(self._sink, name)


class _State:
    def __init__(self) -> None:
        self.handler: _KitHandler | None = None
        self.previous_root_level: int | None = None
        self.format: str | None = None
        self.level: str | None = None
        self.file: str | None = None
        self.app: str | None = None
        self.version: str | None = None
        self.processor_names: list[str] = []


_state = _State()
# Re-entrant: a signal handler may log (or reconfigure) while this thread holds it.
_config_lock = threading.RLock()


def _validate_level(log_level: Any) -> tuple[str, int]:
    if isinstance(log_level, str) and log_level.strip().upper() in LOG_LEVELS:
        name = log_level.strip().upper()
        return name, _stdlib_logging.getLevelName(name)
    if isinstance(log_level, int) and not isinstance(log_level, bool):
        name = _stdlib_logging.getLevelName(log_level)
        if name in LOG_LEVELS:
            return name, log_level
    raise ValueError(
        f"log_level {log_level!r} is not a log level; use one of {', '.join(LOG_LEVELS)}"
    )


def _open_file_sink(log_file: Any) -> FileSink:
    try:
        path = os.fspath(log_file)
    except TypeError:
        raise ValueError(
            f"log_file must be a path (str or os.PathLike), got {type(log_file).__name__}"
        ) from None
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("log_file is empty; pass a file path, or None to log to stdout")
    if os.path.isdir(path):
        raise ValueError(f"log_file {path!r} is a directory; pass a file path inside it")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return FileSink(os.path.abspath(path))
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot open log_file {path!r} for writing ({exc.strerror or exc}); "
            "check that the directory exists and is writable, or pass log_file=None for stdout",
        ) from exc


def _text_field(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def configure_logging(
    log_level: str | int = "INFO",
    log_format: str = "console",
    log_file: str | os.PathLike[str] | None = None,
    *,
    app: str | None = None,
    version: str | None = None,
    stream: IO[str] | None = None,
    processors: Sequence[Processor] = (),
) -> None:
    """Render the kit's loggers and standard-library records alike, to stdout or a file.

    One handler, owned by the kit, sits on the root logger; calling again replaces it (never
    stacks) and takes effect at once, for loggers created before as well. Every line carries
    ``event``, ``level``, ``timestamp`` (ISO 8601, UTC), ``logger`` and ``app`` (plus
    ``version`` when given); inside a recording span also ``trace_id`` and ``span_id``, inside
    an ``@observe`` call ``node`` and ``graph``; plus the bound context. Secrets are redacted by
    `tinyllm_instrument.redaction`. ``exc_info=True`` adds an ``exception`` field with the
    traceback.

    Each line is written whole as soon as it is logged (nothing waits in a buffer). Lines that
    cannot be written (a full disk, a closed pipe) are counted in
    ``tinyllm_log_lines_dropped_total{reason}`` and reported once on stderr. A log file that is
    renamed or deleted (logrotate) is reopened.

    Args:
        log_level: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case), or the matching int.
        log_format: "console" (key=value, for people) or "json" (one object per line).
        log_file: append lines to this file (its directory is created) instead of stdout.
        app: the ``app`` field: the service this process is. Default `default_app_name`: the
            ``TINYLLM_INSTRUMENT_SERVICE_NAME`` that ``tinyllm-instrument run --service-name``
            sets, else ``OTEL_SERVICE_NAME``, else the program's name.
        version: the ``version`` field, your service's version; left out when None.
        stream: write here instead of stdout (ignored when ``log_file`` is given).
        processors: your own structlog processors, run after the kit's enrichment and before
            redaction; one that raises is reported and skipped, and the line still goes out.

    Raises:
        ValueError: bad ``log_level``, ``log_format``, ``log_file``, ``app`` or ``version``.
        OSError: ``log_file`` cannot be opened for writing.

    Example:
        >>> configure_logging(log_level="INFO", log_format="json", stream=sys.stdout, app="bot")
        >>> get_logger("demo").info("task_started", task_id="abc123")  # doctest: +SKIP
        {"task_id":"abc123","event":"task_started","level":"info","logger":"demo","app":"bot",...}
    """
    level_name, level_no = _validate_level(log_level)
    fmt = log_format.strip().lower() if isinstance(log_format, str) else log_format
    if fmt not in LOG_FORMATS:
        raise ValueError(
            f"log_format {log_format!r} is not supported; use one of {', '.join(LOG_FORMATS)}"
        )
    for proc in processors:
        if not callable(proc):
            raise ValueError(f"processors must be callables, got {proc!r}")
    app_name = default_app_name() if app is None else _text_field("app", app)
    if version is not None:
        version = _text_field("version", version)

    sink: Sink
    if log_file is not None:
        sink = _open_file_sink(log_file)
    elif stream is not None:
        sink = StreamSink(stream)
    else:
        sink = StdoutSink()

    renderer: Processor
    if fmt == "json":
        renderer = JsonLines(as_bytes=sink.wants_bytes)
    else:
        renderer = ConsoleLines(colors=stream is None and log_file is None and _isatty(sys.stdout))
    # Looked up on the package when configuring, so a replacement put there takes effect.
    package = sys.modules[__package__]
    enrich = Enrich(app_name, version, package.add_trace_context)
    user = [Guarded(p) for p in processors]
    chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        enrich,
        *user,
        redact_event,
        renderer,
    ]
    pipeline = Pipeline(chain, sink)
    handler = _KitHandler(pipeline)

    with _config_lock:
        root = _stdlib_logging.getLogger()
        old = _state.handler
        if old is not None:
            root.removeHandler(old)
        else:
            _state.previous_root_level = root.level
        root.addHandler(handler)
        root.setLevel(level_no)
        structlog.configure(
            processors=chain,
            logger_factory=_SinkLoggerFactory(sink),
            wrapper_class=structlog.make_filtering_bound_logger(level_no),
            context_class=dict,
            # Loggers made earlier must see a reconfiguration, so nothing is cached.
            cache_logger_on_first_use=False,
        )
        previous = current_pipeline()
        set_pipeline(pipeline)
        if previous is not None:
            previous.sink.close()
        _state.handler = handler
        _state.format = fmt
        _state.level = level_name
        _state.file = sink.path
        _state.app = app_name
        _state.version = version
        _state.processor_names = [
            "merge_contextvars",
            *ENRICH_PARTS,
            *(processor_name(p) for p in user),
            "redact_event",
            processor_name(renderer),
        ]


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def enrichment_processors() -> list[Processor]:
    """The kit's per-line enrichment and redaction, without level filter, sampling or renderer.

    For ``structlog.testing.capture_logs(processors=...)``: captured event dicts then look like
    the lines `configure_logging` writes (bound context, level, logger, app, version, trace ids,
    timestamp, ``exception`` text), secrets redacted. Works whether or not logging is configured.

    Returns:
        A new list of processors; the last one is the redaction.
    """
    app = _state.app if _state.app is not None else default_app_name()
    return [
        structlog.contextvars.merge_contextvars,
        Enrich(app, _state.version, sample=False),
        redact_event,
    ]


def is_logging_configured() -> bool:
    """Whether `configure_logging` is in effect."""
    return _state.handler is not None


def reset_logging() -> None:
    """Undo `configure_logging`: remove the kit's handler, restore the root level, reset structlog.

    Bound context is cleared too, and which lost-line notices were said. Meant for tests.
    """
    global _state
    with _config_lock:
        handler = _state.handler
        if handler is not None:
            root = _stdlib_logging.getLogger()
            root.removeHandler(handler)
            if _state.previous_root_level is not None:
                root.setLevel(_state.previous_root_level)
            structlog.reset_defaults()
        pipeline = current_pipeline()
        set_pipeline(None)
        if pipeline is not None:
            pipeline.sink.close()
        _state = _State()
    structlog.contextvars.clear_contextvars()
    reset_drop_reports()


def get_logging_info() -> dict[str, Any]:
    """What is configured, for ``debug inspect``.

    Returns:
        ``{"configured", "format", "level", "file", "app", "version", "json_encoder",
        "processors": [names], "sampling"}``; ``sampling`` is None or the settings plus the
        seen/kept/dropped counts.
    """
    sampler = current_sampler()
    return {
        "configured": _state.handler is not None,
        "format": _state.format,
        "level": _state.level,
        "file": _state.file,
        "app": _state.app,
        "version": _state.version,
        "json_encoder": json_backend(),
        "processors": list(_state.processor_names),
        "sampling": None if sampler is None else {**sampler.describe(), **sampler.stats()},
    }
