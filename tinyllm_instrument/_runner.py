"""Run a program under the kit: configure the pillars, wrap by pattern, run it as __main__, flush.

Used by ``tinyllm-instrument run`` (the click layer only parses options) and by the sitecustomize
in ``_bootstrap/`` that sets up the Python child processes of such a run the same way.

Child processes
---------------
The run exports its settings as ``TINYLLM_INSTRUMENT_*`` variables (the same twins the command
reads) and puts ``_bootstrap/`` first on ``PYTHONPATH``; every Python child then imports that
sitecustomize, which calls :func:`bootstrap_child`. The trace context travels as W3C ``TRACEPARENT``
(plus ``TRACESTATE`` / ``BAGGAGE``) and the current graph as ``TINYLLM_INSTRUMENT_PARENT_GRAPH``:

* ``subprocess.Popen`` (and so ``subprocess.run``, ``os.popen``...) gets them added to the child's
  environment at launch, from the context current in the launching call;
* ``multiprocessing`` with spawn (or forkserver) carries them in the preparation data the parent
  sends to the child, and the child's ``__mp_main__`` (the parent's script, re-run) is compiled with
  the patterns like the parent's ``__main__``.

The child attaches that context for its whole life, so its spans are children of the launching
call's span, and its wrapped calls are nodes of the parent's graph.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import wrapt

from . import _config
from ._context import CURRENT_GRAPH
from ._errors import KIT_LOGGER_NAME, Stage
from .patching import (
    DEFINITION_HOOK_NAME,
    ENV_GRAPH,
    ENV_TARGETS,
    compile_with_patterns,
    definition_hook,
    get_instrumentation_plan,
    instrument,
    parse_targets,
)

__all__ = [
    "ENV_BOOTSTRAP",
    "ENV_PARENT_GRAPH",
    "RunError",
    "RunOptions",
    "bootstrap_child",
    "run_program",
]

_log = logging.getLogger(KIT_LOGGER_NAME)

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
#: Set by ``run`` for its children: "1" makes the sitecustomize in ``_bootstrap/`` set the kit up.
ENV_BOOTSTRAP = _P + "BOOTSTRAP"
#: The graph of the call that launched a child process; the child's wrapped calls are its nodes.
ENV_PARENT_GRAPH = _P + "PARENT_GRAPH"
#: Standard carriers of trace context in the environment (OpenTelemetry's env-var propagation).
ENV_TRACEPARENT, ENV_TRACESTATE, ENV_BAGGAGE = "TRACEPARENT", "TRACESTATE", "BAGGAGE"

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
_PREP_KEY = "tinyllm_instrument_context"
#: Exit codes of a run that ended on a signal, as a shell reports them.
_SIGNAL_EXIT = 128


class RunError(Exception):
    """The program cannot be started (no such file or module, bad settings): one line for stderr."""


@dataclass(frozen=True)
class RunOptions:
    """What ``tinyllm-instrument run`` was asked to do, options already resolved.

    ``tracing`` None means "not said": decided from ``exporter`` / ``otlp_endpoint``.
    """

    targets: tuple[str, ...] = ()
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
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def tracing_plan(self) -> tuple[bool, str]:
        """(enable_tracing, exporter): ``--otlp-endpoint`` means otlp, ``--tracing`` alone tree."""
        if self.otlp_endpoint is not None and self.exporter not in (None, "otlp"):
            raise RunError(
                f"--otlp-endpoint needs --exporter otlp, not --exporter {self.exporter}; "
                "drop one of them"
            )
        exporter = self.exporter or ("otlp" if self.otlp_endpoint is not None else "tree")
        if self.tracing is not None:
            return self.tracing, exporter
        return (self.exporter is not None or self.otlp_endpoint is not None), exporter

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
        }
        optional = {
            ENV_OTLP_ENDPOINT: self.otlp_endpoint,
            ENV_LOG_FORMAT: self.log_format,
            ENV_LOG_LEVEL: self.log_level,
            ENV_LOG_FILE: None if self.log_file is None else os.path.abspath(self.log_file),
            ENV_SERVICE_NAME: self.service_name,
            ENV_GRAPH: self.graph,
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
        )


# --------------------------------------------------------------------------------------------
# Setting the kit up
# --------------------------------------------------------------------------------------------


def _configure_kit(options: RunOptions, *, serve_metrics: bool, default_service: str) -> Any:
    """Configure logging, tracing, metrics and patterns; return the metrics server (or None)."""
    from .logging import configure_logging
    from .telemetry import TelemetryConfig, configure_telemetry

    try:
        _config.configure()  # the global switch: a bad TINYLLM_INSTRUMENT_ENABLED is an error here
        if options.log_format or options.log_level or options.log_file:
            # Only when asked: a root handler of ours would turn the app's basicConfig() into a
            # no-op.
            configure_logging(
                log_level=options.log_level or "INFO",
                log_format=options.log_format or "console",
                log_file=options.log_file,
            )
        enabled, exporter = options.tracing_plan()
        if enabled:
            configure_telemetry(
                TelemetryConfig(
                    enable_tracing=True,
                    service_name=options.service_name or default_service,
                    exporter=exporter,
                    otlp_endpoint=options.otlp_endpoint,
                    otlp_protocol=options.otlp_protocol,
                    sampling_rate=options.sampling_rate,
                )
            )
        instrument(*options.targets, graph=options.graph)
    except (ValueError, OSError) as exc:
        raise RunError(str(exc)) from None
    if not serve_metrics or options.metrics_port is None:
        return None
    from .metrics import start_metrics_server

    try:
        server, _thread = start_metrics_server(port=options.metrics_port, addr=options.metrics_host)
    except (ValueError, OSError) as exc:
        raise RunError(str(exc)) from None
    if options.metrics_port == 0:  # the caller cannot know which port: say it, once
        print(
            f"tinyllm-instrument: metrics on http://{options.metrics_host}:{server.server_port}"
            "/metrics",
            file=sys.stderr,
        )
    return server


def _attach_env_context(env: Mapping[str, str] | None = None) -> None:
    """Join the trace (and graph) a parent process handed over in the environment."""
    carrier = {
        key.lower(): value
        for key in (ENV_TRACEPARENT, ENV_TRACESTATE, ENV_BAGGAGE)
        if (value := _config.env_str(key, None, env)) is not None
    }
    _attach_carrier(carrier, _config.env_str(ENV_PARENT_GRAPH, None, env))


def _attach_carrier(carrier: Mapping[str, str], graph: str | None) -> None:
    from opentelemetry import context as otel_context

    from .telemetry import extract_context

    if carrier.get("traceparent"):
        # For the life of the process: never detached.
        otel_context.attach(extract_context(carrier))
    if graph:
        CURRENT_GRAPH.set(graph)


def _current_carrier() -> dict[str, str]:
    from .telemetry import inject_context

    carrier = inject_context({})
    graph = CURRENT_GRAPH.get()
    if graph is not None and "traceparent" in carrier:
        carrier["graph"] = graph
    return carrier


# --------------------------------------------------------------------------------------------
# Propagation to child processes
# --------------------------------------------------------------------------------------------

_ENV_NAMES = {"traceparent": ENV_TRACEPARENT, "tracestate": ENV_TRACESTATE, "baggage": ENV_BAGGAGE}
_POPEN_ENV_INDEX = 10  # Popen(args, bufsize, executable, stdin, stdout, stderr, preexec_fn,
# close_fds, shell, cwd, env, ...)


def _child_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    """``env`` (None: ours) plus the current trace context; None when there is nothing to add."""
    carrier = _current_carrier()
    if "traceparent" not in carrier:
        return None
    inherited = env is None
    out = dict(os.environ if env is None else env)
    for key, name in _ENV_NAMES.items():
        value = carrier.get(key)
        if value is None:
            continue
        # An explicit env that already names its own context keeps it, unless it is our copy.
        if inherited or name not in out or out.get(name) == os.environ.get(name):
            out[name] = value
    graph = carrier.get("graph")
    if graph is not None and (inherited or ENV_PARENT_GRAPH not in out):
        out[ENV_PARENT_GRAPH] = graph
    return out


def _popen_init(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        if len(args) > _POPEN_ENV_INDEX:
            env = _child_env(args[_POPEN_ENV_INDEX])
            if env is not None:
                args = (*args[:_POPEN_ENV_INDEX], env, *args[_POPEN_ENV_INDEX + 1 :])
        else:
            env = _child_env(kwargs.get("env"))
            if env is not None:
                kwargs = {**kwargs, "env": env}
    except Exception as exc:  # propagation is a courtesy; the launch must happen regardless
        from ._errors import report_internal_error

        report_internal_error(Stage.PROPAGATION, exc)
    return wrapped(*args, **kwargs)


def _patch_subprocess(module: types.ModuleType) -> None:
    init = module.Popen.__init__
    if not isinstance(init, wrapt.FunctionWrapper):
        wrapt.wrap_function_wrapper(module, "Popen.__init__", _popen_init)


def _patch_spawn(spawn: Any) -> None:
    """Carry the context in spawn's preparation data, and compile the child's main with patterns."""
    if getattr(spawn, "_tinyllm_instrument_patched", False):
        return
    original_get = spawn.get_preparation_data
    original_prepare = spawn.prepare

    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original_get(name)
        try:
            carrier = _current_carrier()
            if "traceparent" in carrier:
                data[_PREP_KEY] = carrier
        except Exception as exc:
            from ._errors import report_internal_error

            report_internal_error(Stage.PROPAGATION, exc)
        return data

    def prepare(data: dict[str, Any]) -> None:
        carrier = data.pop(_PREP_KEY, None)
        original_prepare(data)
        if carrier:
            try:
                _attach_carrier(carrier, carrier.get("graph"))
            except Exception as exc:
                from ._errors import report_internal_error

                report_internal_error(Stage.PROPAGATION, exc)

    def fixup_main_from_path(main_path: str) -> None:
        current = sys.modules["__main__"]
        stem = os.path.splitext(os.path.basename(main_path))[0]
        if stem == "ipython" or getattr(current, "__file__", None) == main_path:
            return
        spawn.old_main_modules.append(current)
        module = types.ModuleType("__mp_main__")
        with open(main_path, "rb") as f:
            source = f.read()
        _exec_main(module, source, main_path, [stem], {"__file__": main_path})
        sys.modules["__main__"] = sys.modules["__mp_main__"] = module

    def fixup_main_from_name(mod_name: str) -> None:
        current = sys.modules["__main__"]
        if mod_name == "__main__" or mod_name.endswith(".__main__"):
            return
        if getattr(getattr(current, "__spec__", None), "name", None) == mod_name:
            return
        spawn.old_main_modules.append(current)
        spec, source, code_path = _find_module(mod_name)
        module = types.ModuleType("__mp_main__")
        _exec_main(module, source, code_path, [mod_name, spec.name], _spec_attrs(spec))
        sys.modules["__main__"] = sys.modules["__mp_main__"] = module

    spawn.get_preparation_data = get_preparation_data
    spawn.prepare = prepare
    spawn._fixup_main_from_path = fixup_main_from_path
    spawn._fixup_main_from_name = fixup_main_from_name
    spawn._tinyllm_instrument_patched = True


def _install_propagation() -> None:
    wrapt.register_post_import_hook(_patch_subprocess, "subprocess")
    wrapt.register_post_import_hook(_patch_spawn, "multiprocessing.spawn")


def _export_child_env(options: RunOptions) -> None:
    os.environ.update(options.child_env())
    path = os.environ.get("PYTHONPATH", "")
    parts = [p for p in path.split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    os.environ["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *parts])


# --------------------------------------------------------------------------------------------
# Running the program
# --------------------------------------------------------------------------------------------


def _find_module(name: str) -> tuple[Any, bytes | str | None, str]:
    """(spec, source, path) of the module ``-m`` names; a package runs its ``__main__``."""
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            main_name = name + ".__main__"
            spec = importlib.util.find_spec(main_name)
            if spec is None:
                raise RunError(f"no module named {main_name!r}: {name!r} is a package without one")
    except (ImportError, ValueError) as exc:
        raise RunError(f"cannot run module {name!r}: {type(exc).__name__}: {exc}") from None
    if spec is None or spec.loader is None:
        raise RunError(f"no module named {name!r} (looked on sys.path from {os.getcwd()})")
    source = None
    get_source = getattr(spec.loader, "get_source", None)
    if get_source is not None:
        try:
            source = get_source(spec.name)
        except ImportError:
            source = None
    return spec, source, spec.origin or name


def _spec_attrs(spec: Any) -> dict[str, Any]:
    return {
        "__spec__": spec,
        "__file__": spec.origin,
        "__loader__": spec.loader,
        "__package__": spec.parent,
        "__cached__": getattr(spec, "cached", None),
    }


def _exec_main(
    module: types.ModuleType,
    source: bytes | str | None,
    path: str,
    names: Sequence[str],
    attrs: Mapping[str, Any],
) -> None:
    """Run ``source`` as ``module``, its matching definitions wrapped as they are defined."""
    namespace = module.__dict__
    namespace.update(attrs)
    namespace.setdefault("__builtins__", __builtins__)
    if source is None:  # no source (a .pyc only): run as is, nothing can be rewritten
        code = attrs["__loader__"].get_code(attrs["__spec__"].name)
    else:
        code, _labels = compile_with_patterns(source, path, names)
        namespace[DEFINITION_HOOK_NAME] = definition_hook(namespace)
    exec(code, namespace)


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


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter would exit with for this SystemExit (printing a non-int code)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _print_uncaught(exc: BaseException) -> None:
    tb = exc.__traceback__
    # Drop our own frames: the traceback starts at the program's <module>, as with `python app.py`.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    exc = exc.with_traceback(tb)  # the hook prints the exception's own __traceback__
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception:
        traceback.print_exception(type(exc), exc, tb)


def _print_plan() -> None:
    plan = get_instrumentation_plan()
    lines = ["tinyllm-instrument plan:"]
    if not plan:
        lines.append("  (no patterns)")
    for pattern, matched in plan.items():
        lines.append(f"  {pattern}")
        if not matched:
            lines.append("    matched nothing (its module was never imported, or has no such name)")
        lines.extend(f"    {entry}" for entry in matched)
    print("\n".join(lines), file=sys.stderr)


def _run_main(
    main: types.ModuleType,
    source: bytes | str | None,
    path: str,
    names: Sequence[str],
    attrs: Mapping[str, Any],
) -> int:
    """Run the program in ``main``; its exit code, as the interpreter would make it."""
    from .telemetry import unwind_on_sigterm

    unwind_on_sigterm()  # also without tracing: exit code 143 and atexit handlers run
    try:
        _exec_main(main, source, path, names, attrs)
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt as exc:
        _print_uncaught(exc)
        return _SIGNAL_EXIT + signal.SIGINT
    except BaseException as exc:  # the program's uncaught exception: print it like Python does
        _print_uncaught(exc)
        return 1
    return 0


def run_program(
    options: RunOptions,
    *,
    script: str | None = None,
    module: str | None = None,
    args: Sequence[str] = (),
) -> int:
    """Set the kit up, run ``script`` (or ``-m module``) as ``__main__``, return its exit code.

    The caller exits with the code; the kit's atexit hook then flushes spans, bounded by
    ``TelemetryConfig.shutdown_timeout``, after the program's own atexit handlers.

    Args:
        options: resolved settings.
        script: path of the program (exactly one of ``script`` and ``module``).
        module: dotted name of the module to run, as ``python -m``.
        args: the program's own arguments.

    Returns:
        0, the program's ``sys.exit`` code, 1 after an uncaught exception (traceback printed),
        130 after an uncaught KeyboardInterrupt, 143 after SIGTERM.

    Raises:
        RunError: the program cannot be found or read, or a setting is invalid.
    """
    if (script is None) == (module is None):
        raise RunError("give a SCRIPT or -m MODULE (exactly one)")
    if script is not None:
        path = os.path.abspath(script)
        if os.path.isdir(path):
            raise RunError(f"cannot run {script!r}: a directory; give its __main__.py, or use -m")
        if not os.path.isfile(path):
            raise RunError(f"cannot run {script!r}: no such file")
        try:
            with open(path, "rb") as f:
                source: bytes | str | None = f.read()
        except OSError as exc:
            raise RunError(f"cannot read {script!r}: {exc.strerror or exc}") from None
        stem = os.path.splitext(os.path.basename(path))[0]
        names = [stem]
        attrs: dict[str, Any] = {
            "__file__": path,
            "__spec__": None,
            "__loader__": None,
            "__package__": None,
            "__cached__": None,
        }
        argv0 = script
        sys.path[0:1] = [os.path.dirname(os.path.realpath(path))]
    else:
        assert module is not None
        sys.path[0:1] = [os.getcwd()]
        spec, source, path = _find_module(module)
        names = [module, spec.name]
        attrs = _spec_attrs(spec)
        argv0 = path

    options = replace(options, service_name=options.service_name or names[0])
    with _signals_blocked_in_new_threads():
        server = _configure_kit(options, serve_metrics=True, default_service=names[0])
    _attach_env_context()
    _install_propagation()
    _export_child_env(options)

    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    sys.argv = [argv0, *args]
    code = _run_main(main, source, path, names, attrs)
    if options.print_plan:
        _print_plan()
    for pattern, matched in get_instrumentation_plan().items():
        if not matched:
            _log.debug("tinyllm_instrument: pattern %r matched nothing during the run", pattern)
    # The metrics server (a daemon thread) keeps serving while atexit handlers run.
    del server
    return code


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------

_BOOTSTRAPPED = False


def bootstrap_child() -> None:
    """Set the kit up in a child process as the parent run did; once per process.

    Called by ``_bootstrap/sitecustomize.py`` when ``TINYLLM_INSTRUMENT_BOOTSTRAP=1``. Never
    raises: a child that cannot be instrumented runs uninstrumented, with one line on stderr.
    """
    global _BOOTSTRAPPED
    if _BOOTSTRAPPED:
        return
    _BOOTSTRAPPED = True
    try:
        options = RunOptions.from_env()
        name = os.path.splitext(os.path.basename(sys.argv[0] if sys.argv else ""))[0]
        _configure_kit(options, serve_metrics=False, default_service=name or "python")
        _attach_env_context()
        _install_propagation()
        program = _child_program()
    except Exception as exc:
        print(f"tinyllm-instrument: child process not instrumented: {exc}", file=sys.stderr)
        return
    if program is not None:
        _run_child_program(*program)


def _matches_any(names: Sequence[str]) -> bool:
    from .patching import instrumented_patterns, parse_pattern

    return any(
        parse_pattern(text).matches_module(name)
        for text in instrumented_patterns()
        for name in names
    )


def _child_program() -> tuple[Any, bytes | str | None, str, list[str], dict[str, Any]] | None:
    """The child's own program when a pattern names it: (spec, source, path, names, attrs)."""
    argv = sys.argv
    if not argv or argv[0] in ("", "-c") or getattr(sys.modules["__main__"], "__file__", None):
        return None
    if argv[0] == "-m":  # ``python -m NAME``: the name is only in orig_argv at this point
        orig = list(getattr(sys, "orig_argv", ()))
        at = next((i for i, a in enumerate(orig) if a == "-m" or a.startswith("-m")), None)
        if at is None:
            return None
        name = orig[at][2:] or (orig[at + 1] if at + 1 < len(orig) else "")
        if not name or not _matches_any([name]):
            return None
        if not getattr(sys.flags, "safe_path", False):
            sys.path.insert(0, os.getcwd())
        spec, source, path = _find_module(name)
        return spec, source, path, [name, spec.name], _spec_attrs(spec)
    path = os.path.abspath(argv[0])
    stem = os.path.splitext(os.path.basename(path))[0]
    if not os.path.isfile(path) or not _matches_any([stem]):
        return None
    with open(path, "rb") as f:
        source = f.read()
    if not getattr(sys.flags, "safe_path", False):
        sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
    attrs = {"__file__": argv[0], "__spec__": None, "__loader__": None, "__cached__": None}
    return None, source, path, [stem], attrs


def _run_child_program(
    spec: Any, source: bytes | str | None, path: str, names: list[str], attrs: dict[str, Any]
) -> None:
    """Run the child's program here, its definitions wrapped, then end the process as Python would.

    The interpreter would run the script itself after site; by then its functions could no longer
    be wrapped before its top-level code. So the program runs from the sitecustomize, and the
    process ends here: non-daemon threads joined, atexit handlers (the span flush among them) run,
    streams flushed, and ``os._exit`` with the program's code, so that the interpreter does not run
    the program a second time.
    """
    if spec is not None:
        sys.argv[0] = path
    code = _run_main(sys.modules["__main__"], source, path, names, attrs)
    try:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        import atexit

        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)
