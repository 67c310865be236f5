"""Run a program under the kit: configure the pillars, wrap by pattern, run it as __main__, flush.

Used by ``tinyllm-instrument run`` (the click layer only parses options) and by the sitecustomize
in ``_bootstrap/`` that sets up the Python child processes of such a run the same way.

Child processes
---------------
The run exports its settings as ``TINYLLM_INSTRUMENT_*`` variables (the same twins the command
reads) and puts ``_bootstrap/`` first on ``PYTHONPATH``; every Python child then imports that
sitecustomize, which calls :func:`bootstrap_child`. The child sets the kit up as the parent did,
with one difference: whatever the kit prints there (span trees, console spans, log lines) goes to
the child's stderr, since its stdout is the child's own and its parent may parse it. The child
joins the trace of the call that launched it, and when a pattern names the child's own program,
the kit runs that program with its definitions wrapped; see :mod:`tinyllm_instrument._children`
for how, and on which Python versions.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import _config
from ._children import (
    ENV_PARENT_GRAPH,
    attach_env_context,
    install_propagation,
    take_over_main,
)
from ._exit_report import ENV_RUN_REPORT, ExitReport, child_listener, new_report_file
from ._instrumentors import ENV_OTEL_INSTRUMENTATIONS, load_instrumentations
from ._patterns import parse_models
from ._program import Program, RunError, module_program, run_main, script_program
from ._rewrite import entry_points
from .patching import (
    _STATE,
    ENV_GRAPH,
    ENV_MODELS,
    ENV_TARGETS,
    instrument,
    instrumented_patterns,
    parse_pattern,
    parse_targets,
)
from .presets import set_listener as set_preset_listener
from .redaction import safe_text

__all__ = [
    "ENV_BOOTSTRAP",
    "ENV_DEFAULT_TARGETS",
    "ENV_OTEL_INSTRUMENTATIONS",
    "ENV_PARENT_GRAPH",
    "RunError",
    "RunOptions",
    "bootstrap_child",
    "default_targets",
    "run_program",
    "typed_as",
]


_P = _config.ENV_PREFIX
#: Environment twins of the ``run`` options (``--otlp-endpoint`` -> ``..._OTLP_ENDPOINT``).
ENV_TRACING = _P + "TRACING"
ENV_EXPORTER = _P + "EXPORTER"
ENV_OTLP_ENDPOINT = _P + "OTLP_ENDPOINT"
ENV_OTLP_PROTOCOL = _P + "OTLP_PROTOCOL"
ENV_SAMPLING_RATE = _P + "SAMPLING_RATE"
ENV_METRICS_PORT = _P + "METRICS_PORT"
ENV_METRICS_HOST = _P + "METRICS_HOST"
ENV_LOG_FORMAT = _P + "LOG_FORMAT"
ENV_LOG_LEVEL = _P + "LOG_LEVEL"
ENV_LOG_FILE = _P + "LOG_FILE"
ENV_SERVICE_NAME = _P + "SERVICE_NAME"
ENV_PRINT_PLAN = _P + "PRINT_PLAN"
#: "0" (or false/no/off) turns the default targets off, as ``--no-default-targets``.
ENV_DEFAULT_TARGETS = _P + "DEFAULT_TARGETS"
#: Set by ``run`` for its children: "1" makes the sitecustomize in ``_bootstrap/`` set the kit up.
ENV_BOOTSTRAP = _P + "BOOTSTRAP"

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
#: Exporters that print on the console: on stdout in the program, on stderr in its children.
_CONSOLE_EXPORTERS = ("tree", "console")
#: The flag of each option whose name is not its field's (the others: --field-name).
_FLAGS = {"targets": "--instrument", "models": "--model", "tracing": "--tracing"}
#: Characters of a value shown in a message at most.
_SHOWN_MAX = 120


def typed_as(given: str, value: object) -> str:
    """How the user gave a value, as they would type it: ``--metrics-port 9464`` for a flag,
    ``TINYLLM_INSTRUMENT_METRICS_PORT=9464`` for an environment variable; secrets redacted.

    Example:
        >>> typed_as("TINYLLM_INSTRUMENT_SAMPLING_RATE", "2")
        'TINYLLM_INSTRUMENT_SAMPLING_RATE=2'
    """
    text = str(value)
    if len(text) > _SHOWN_MAX:
        text = text[: _SHOWN_MAX - 1] + "…"
    # shlex would keep a newline as is: a control character is shown escaped, the line one line
    quoted = shlex.quote(text) if text.isprintable() else repr(text)
    return safe_text(f"{given} {quoted}" if given.startswith("-") else f"{given}={quoted}")


@dataclass(frozen=True)
class RunOptions:
    """What ``tinyllm-instrument run`` was asked to do, options already resolved.

    ``tracing`` None means "not said": on, with the exporter ``exporter`` / ``otlp_endpoint``
    imply (``tree`` when neither is given; its trees then go to stderr, see
    :meth:`console_on_stderr`). ``targets`` are the patterns given; with
    ``default_targets`` and no pattern but exclusions among them, the program's own functions
    are wrapped too (see :func:`default_targets`). ``origins`` says how the user gave each option
    (field name -> ``"--flag"`` or ``"ENV_VAR"``), for messages; unlisted: its flag.
    """

    targets: tuple[str, ...] = ()
    default_targets: bool = True
    models: tuple[tuple[str, str], ...] = ()
    tracing: bool | None = None
    exporter: str | None = None
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    sampling_rate: float = 1.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str | None = None
    log_level: str | None = None
    log_file: str | None = None
    service_name: str | None = None
    graph: str | None = None
    print_plan: bool = False
    otel_instrumentations: bool = True
    extra_env: Mapping[str, str] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)

    def console_on_stderr(self) -> bool:
        """Span trees on stderr when no tracing option asked for them (stdout when one did), so
        that a run with no option leaves what the program prints on stdout as it was."""
        return self.tracing is None and self.exporter is None and self.otlp_endpoint is None

    def given(self, name: str) -> str:
        """How the user gave option ``name`` (a field name): its flag or its variable."""
        return self.origins.get(name) or _FLAGS.get(name) or "--" + name.replace("_", "-")

    def tracing_plan(self) -> tuple[bool, str]:
        """(enable_tracing, exporter): on unless ``--no-tracing``; ``--otlp-endpoint`` means
        otlp, else tree."""
        if self.otlp_endpoint is not None and self.exporter not in (None, "otlp"):
            raise RunError(
                f"{self.given('otlp_endpoint')} needs --exporter otlp, not "
                f"{typed_as(self.given('exporter'), self.exporter)}; drop one of them"
            )
        exporter = self.exporter or ("otlp" if self.otlp_endpoint is not None else "tree")
        return (True if self.tracing is None else self.tracing), exporter

    def child_env(self) -> dict[str, str]:
        """The variables that make a child process set the kit up as this run did."""
        enabled, exporter = self.tracing_plan()
        env = {
            ENV_BOOTSTRAP: "1",
            ENV_TARGETS: ",".join(self.targets),
            ENV_TRACING: "1" if enabled else "0",
            ENV_EXPORTER: exporter,
            ENV_OTLP_PROTOCOL: self.otlp_protocol,
            ENV_SAMPLING_RATE: repr(self.sampling_rate),
            ENV_OTEL_INSTRUMENTATIONS: "1" if self.otel_instrumentations else "0",
        }
        optional = {
            ENV_OTLP_ENDPOINT: self.otlp_endpoint,
            ENV_LOG_FORMAT: self.log_format,
            ENV_LOG_LEVEL: self.log_level,
            ENV_LOG_FILE: None if self.log_file is None else os.path.abspath(self.log_file),
            ENV_SERVICE_NAME: self.service_name,
            ENV_GRAPH: self.graph,
            ENV_MODELS: ",".join(f"{p}={m}" for p, m in self.models) or None,
        }
        env.update({k: v for k, v in optional.items() if v is not None})
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunOptions:
        """Read the settings a parent run exported (see :meth:`child_env`).

        Raises:
            ValueError: a variable holds a value of the wrong kind.
        """
        tracing = _config.env_bool(ENV_TRACING, False, env)
        return cls(
            targets=tuple(parse_targets(_config.env_str(ENV_TARGETS, None, env))),
            tracing=tracing,
            exporter=_config.env_str(ENV_EXPORTER, None, env),
            otlp_endpoint=_config.env_str(ENV_OTLP_ENDPOINT, None, env),
            otlp_protocol=_config.env_str(ENV_OTLP_PROTOCOL, "grpc", env) or "grpc",
            sampling_rate=_config.env_float(ENV_SAMPLING_RATE, 1.0, env) or 0.0,
            log_format=_config.env_str(ENV_LOG_FORMAT, None, env),
            log_level=_config.env_str(ENV_LOG_LEVEL, None, env),
            log_file=_config.env_str(ENV_LOG_FILE, None, env),
            service_name=_config.env_str(ENV_SERVICE_NAME, None, env),
            graph=_config.env_str(ENV_GRAPH, None, env),
            models=tuple(parse_models(_config.env_str(ENV_MODELS, None, env)).items()),
            otel_instrumentations=_config.env_bool(ENV_OTEL_INSTRUMENTATIONS, True, env),
        )


# --------------------------------------------------------------------------------------------
# Setting the kit up
# --------------------------------------------------------------------------------------------


def _configure_kit(options: RunOptions, *, child: bool, default_service: str) -> Any:
    """Configure logging, tracing, metrics and patterns; return the metrics server (or None).

    In a child, the kit's console output goes to stderr and no metrics server starts.
    """
    from .logging import configure_logging
    from .telemetry import TelemetryConfig, configure_telemetry

    service = options.service_name or default_service
    try:
        _config.configure()  # the global switch: a bad TINYLLM_INSTRUMENT_ENABLED is an error here
        if options.log_format or options.log_level or options.log_file:
            # Only when asked: a root handler of ours would turn the app's basicConfig() into a
            # no-op. The app field is the service: the variable that would say so for
            # configure_logging's default is exported only later.
            try:
                configure_logging(
                    log_level=options.log_level or "INFO",
                    log_format=options.log_format or "console",
                    log_file=options.log_file,
                    app=service,
                    stream=sys.stderr if child else None,
                )
            except OSError as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
                raise RunError(
                    f"{typed_as(options.given('log_file'), options.log_file)}: cannot open it "
                    f"for writing ({cause.strerror or cause}); check that its directory exists "
                    "and is writable"
                ) from None
        enabled, exporter = options.tracing_plan()
        if enabled:
            config = TelemetryConfig(
                enable_tracing=True,
                service_name=service,
                exporter=exporter,
                otlp_endpoint=options.otlp_endpoint,
                otlp_protocol=options.otlp_protocol,
                sampling_rate=options.sampling_rate,
            )
            if exporter in _CONSOLE_EXPORTERS and (child or options.console_on_stderr()):
                configure_telemetry(replace(config, exporter="none"))
                _print_spans_on_stderr(config)
            else:
                configure_telemetry(config)
        instrument(*options.targets, graph=options.graph, models=dict(options.models))
        if enabled and options.otel_instrumentations:
            load_instrumentations()  # on the kit's provider, global by now
    except (ValueError, OSError) as exc:
        raise RunError(str(exc)) from None
    if child or options.metrics_port is None:
        return None
    from .metrics import MetricsServerError, start_metrics_server

    try:
        server, _thread = start_metrics_server(
            port=options.metrics_port,
            addr=options.metrics_host,
            port_option=options.given("metrics_port"),
            host_option=options.given("metrics_host"),
        )
    except (ValueError, MetricsServerError) as exc:
        raise RunError(str(exc)) from None
    if options.metrics_port == 0:  # the caller cannot know which port: say it, once
        print(
            f"tinyllm-instrument: metrics on http://{options.metrics_host}:{server.server_port}"
            "/metrics",
            file=sys.stderr,
        )
    return server


def _print_spans_on_stderr(config: Any) -> None:
    """A child's span trees (or console spans) go to its stderr, through a pipeline of its own."""
    import atexit

    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

    from .telemetry import add_span_processor
    from .telemetry.pipeline import ExportPipeline
    from .tree import TreeSpanExporter

    exporter: SpanExporter
    if config.exporter == "tree":
        exporter = TreeSpanExporter(out=sys.stderr)
    else:
        exporter = ConsoleSpanExporter(service_name=config.service_name, out=sys.stderr)
    pipeline = ExportPipeline(exporter, config)
    add_span_processor(pipeline)
    # Registered after configure_telemetry's flush, so it runs first (atexit is last-in first-out).
    atexit.register(pipeline.shutdown, config.shutdown_timeout * 1000)


def _export_child_env(options: RunOptions) -> None:
    os.environ.update(options.child_env())
    path = os.environ.get("PYTHONPATH", "")
    parts = [p for p in path.split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    os.environ["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *parts])


@contextlib.contextmanager
def _signals_blocked_in_new_threads() -> Iterator[None]:
    """Threads started inside (exporter, metrics server, and the threads those start) inherit a
    mask that blocks SIGINT and SIGTERM, so the kernel delivers those to the main thread: one that
    went to a helper thread would leave the main thread blocked in a read, never interrupted.
    """
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, previous)


# --------------------------------------------------------------------------------------------
# Running the program
# --------------------------------------------------------------------------------------------


#: What the default patterns are for, as the plan shows it.
_DEFAULT_INCLUDE = "default: the program's own functions"
_DEFAULT_EXCLUDE = "default: its entry point"


def default_targets(program: Program) -> tuple[list[str], dict[str, str], list[str]]:
    """The patterns ``run`` uses when none is given: the program's own functions, but not its
    entry point.

    A script's own module is its file stem (``app:*``), a ``-m`` module's its name, a package's
    its name and its submodules (``pkg:*``, ``pkg.*:*``). The entry point (``main``, ``run``,
    what the ``if __name__ == "__main__":`` block calls once, see
    :func:`tinyllm_instrument._rewrite.entry_points`) is excluded, so that each call of the
    graph it drives is a trace of its own.

    Returns:
        ``(patterns, why, entry)``: the patterns, what each is for (shown by ``--print-plan``),
        and the entry points' names. No pattern when the program's name cannot be one (a stem
        such as ``2fast``).

    Example:
        >>> default_targets(script_program("app.py"))[0]
        ['app:*', '!app:main']
    """
    name = program.names[0]
    includes = [f"{name}:*"]
    if program.spec is not None and program.spec.name == name + ".__main__":  # a package
        includes.append(f"{name}.*:*")
    try:
        for text in includes:
            parse_pattern(text)
    except ValueError:
        return [], {}, []
    entry = entry_points(program.source, program.path) if program.source is not None else []
    excludes = [f"!{name}:{function}" for function in entry]
    why = dict.fromkeys(includes, _DEFAULT_INCLUDE) | dict.fromkeys(excludes, _DEFAULT_EXCLUDE)
    return includes + excludes, why, entry


def _resolve_targets(
    options: RunOptions, program: Program
) -> tuple[RunOptions, dict[str, str], list[str]]:
    """The options with the patterns the run applies: the given ones, or the default and the
    given exclusions."""
    given = list(options.targets)
    if not options.default_targets or any(not t.startswith("!") for t in given):
        return options, {}, []
    patterns, why, entry = default_targets(program)
    if not patterns:
        return options, {}, []
    targets = tuple(dict.fromkeys([*patterns, *given]))
    return replace(options, targets=targets), why, entry


def run_program(
    options: RunOptions,
    *,
    script: str | None = None,
    module: str | None = None,
    args: Sequence[str] = (),
) -> int:
    """Set the kit up, run ``script`` (or ``-m module``) as ``__main__``, return its exit code.

    The caller exits with the code; the kit's atexit hook then flushes spans, bounded by
    ``TelemetryConfig.shutdown_timeout``, after the program's own atexit handlers. A SIGTERM
    unwinds the program, flushes, and ends the process by the signal (see
    :mod:`tinyllm_instrument.telemetry.lifecycle`): this function does not return then.

    Args:
        options: resolved settings.
        script: path of the program (exactly one of ``script`` and ``module``); its module name,
            for patterns, is its file stem as written (``my-agent`` for ``my-agent.py``).
        module: dotted name of the module to run, as ``python -m``.
        args: the program's own arguments.

    Returns:
        0, the program's ``sys.exit`` code, 1 after an uncaught exception (traceback printed),
        130 after an uncaught KeyboardInterrupt.

    Raises:
        RunError: the program cannot be found or read, or a setting is invalid.

    Example:
        >>> run_program(RunOptions(targets=("app:*",), tracing=True), script="app.py")
        0
    """
    if (script is None) == (module is None):
        raise RunError("give a SCRIPT or -m MODULE (exactly one)")
    if script is not None:
        program = script_program(script)
        argv0 = script
        sys.path[0:1] = [os.path.dirname(os.path.realpath(program.path))]
    else:
        assert module is not None
        sys.path[0:1] = [os.getcwd()]
        program = module_program(module)
        argv0 = program.path

    name = program.names[0]
    options = replace(options, service_name=options.service_name or name)
    options, why, entry = _resolve_targets(options, program)
    report = _exit_report(options, program, script, why, entry)
    with _signals_blocked_in_new_threads():
        server = _configure_kit(options, child=False, default_service=name)
    attach_env_context()
    install_propagation()
    _export_child_env(options)
    if report.children_file is not None:
        os.environ[ENV_RUN_REPORT] = report.children_file

    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    sys.argv = [argv0, *args]
    code = run_main(main, program, on_start=report.start)
    # The metrics server (a daemon thread) keeps serving while atexit handlers run.
    del server
    return code


def _exit_report(
    options: RunOptions,
    program: Program,
    script: str | None,
    why: Mapping[str, str],
    entry: Sequence[str],
) -> ExitReport:
    """The report printed at exit: registered before the kit's own exit handlers, so it runs
    after them (``atexit`` runs last-in first-out): after the last span trees are printed."""
    unnamed = options.default_targets and not why and not options.targets
    report = ExitReport(
        program_names=program.names,
        program_file=script,
        unnamed_default=program.names[0] if unnamed else None,
        print_plan=options.print_plan,
        defaults=why,
        entry_points=entry,
        graph=(
            None
            if options.graph is None
            else (options.graph, typed_as(options.given("graph"), options.graph))
        ),
        models=[
            (pattern, model, typed_as(options.given("models"), f"{pattern}={model}"))
            for pattern, model in options.models
        ],
    )
    try:
        report.children_file = new_report_file()
    except OSError:  # no temporary directory: patterns matched only in children are not seen
        pass
    else:
        path = report.children_file
        if hasattr(os, "register_at_fork"):  # POSIX: a forked child tells the run what matches
            os.register_at_fork(after_in_child=lambda: _tell_run(child_listener(path)))
    atexit.register(report)
    return report


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------

_BOOTSTRAPPED = False


def bootstrap_child() -> None:
    """Set the kit up in a child process as the parent run did; once per process.

    Called by ``_bootstrap/sitecustomize.py`` when ``TINYLLM_INSTRUMENT_BOOTSTRAP=1``, before the
    interpreter runs the child's program. Never raises: a child that cannot be instrumented runs
    uninstrumented, with one line on stderr.
    """
    global _BOOTSTRAPPED
    if _BOOTSTRAPPED:
        return
    _BOOTSTRAPPED = True
    try:
        report_file = _config.env_str(ENV_RUN_REPORT)
        if report_file is not None:  # tell the run what the patterns match here
            _tell_run(child_listener(report_file))
        options = RunOptions.from_env()
        name = _stem(sys.argv[0] if sys.argv else "")
        _configure_kit(options, child=True, default_service=name or "python")
        attach_env_context()
        install_propagation()
        if _may_name_the_program(sys.argv[0] if sys.argv else ""):
            take_over_main(_child_program)
    except Exception as exc:
        print(f"tinyllm-instrument: child process not instrumented: {exc}", file=sys.stderr)


def _tell_run(listener: Callable[[str, str, Any], None]) -> None:
    """In a child: what the patterns and presets wrap here is told to the run, by ``listener``."""
    _STATE.listener = listener
    set_preset_listener(listener)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _matches_any(names: Sequence[str]) -> bool:
    patterns = [parse_pattern(text) for text in instrumented_patterns()]
    return any(p.matches_module(name) for p in patterns if not p.exclude for name in names)


def _may_name_the_program(argv0: str) -> bool:
    """Whether a pattern may name what this interpreter is about to run (decided at its start).

    At this point ``sys.argv[0]`` is the script as given, or "-m" (the name comes later), or
    "-c" / "" (nothing to wrap).
    """
    if argv0 in ("", "-c"):
        return False
    if argv0 == "-m":
        return any(not text.startswith("!") for text in instrumented_patterns())
    return _matches_any([_stem(argv0)])


def _child_program(kind: str, target: str) -> Callable[[], int] | None:
    """How to run the child's program, its definitions wrapped; None if no pattern names it."""
    program: Program
    if kind == "file":
        if not _matches_any([_stem(target)]):
            return None
        program = script_program(target, file_attr=target)
    else:  # a package runs its __main__, which a ``package.*:*`` pattern names
        if not _matches_any([target, target + ".__main__"]):
            return None
        program = module_program(target)

    def run() -> int:
        if kind == "module":
            sys.argv[0] = program.path  # as runpy sets it for -m
        return run_main(sys.modules["__main__"], program)

    return run
