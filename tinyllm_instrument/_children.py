"""Carry a ``run`` into its Python children, through CPython internals, behind a version guard.

The trace context crosses the process boundary as W3C ``TRACEPARENT`` (plus ``TRACESTATE`` /
``BAGGAGE``) and the current graph as ``TINYLLM_INSTRUMENT_PARENT_GRAPH``:

* ``subprocess.Popen`` (and so ``subprocess.run``, ``os.popen``...) gets them added to the child's
  environment at launch, from the context current in the launching call (a wrapper on
  ``Popen.__init__`` that knows where ``env`` sits among its positional parameters);
* ``multiprocessing`` with spawn (or forkserver) carries them in the preparation data the parent
  sends to the child (``multiprocessing.spawn.get_preparation_data`` / ``prepare``), and the
  child's ``__mp_main__`` (the parent's script, run again) is compiled with the patterns like the
  parent's ``__main__`` (``spawn._fixup_main_from_path`` / ``_fixup_main_from_name``);
* a child whose own program a pattern names has it run by the kit, compiled with the patterns,
  in place of the interpreter's own run: an audit hook on ``cpython.run_file`` /
  ``cpython.run_module`` runs it and raises ``SystemExit`` with its code, which the interpreter
  handles as it handles the program's own ``sys.exit``: the normal shutdown follows (threads
  joined, atexit, files flushed, finalizers), and the program is not run a second time.

Each of these relies on how CPython is written, not on a documented contract, so each is used
only on the versions in :data:`CHECKED_VERSIONS`. On another version nothing here is installed
(children run with the kit set up by the sitecustomize, but neither join the parent's trace nor
get their own script wrapped); that is said once, at debug level on the kit's logger, and in
``--print-plan``.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import wrapt

from . import _config
from ._context import current_graph, set_graph
from ._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from ._program import exec_main, module_program, script_program

__all__ = [
    "CHECKED_VERSIONS",
    "ENV_PARENT_GRAPH",
    "attach_env_context",
    "guard_note",
    "install_propagation",
    "is_checked",
    "take_over_main",
]

_log = logging.getLogger(KIT_LOGGER_NAME)

#: Python versions the hooks here are used on. The test suite runs them on 3.11. 3.10, 3.12 and
#: 3.13 are listed because what the hooks rely on is the same there as far as their sources and
#: documentation show (``Popen.__init__``'s parameter order, ``multiprocessing.spawn``'s
#: functions, the ``cpython.run_file`` / ``cpython.run_module`` audit events and the interpreter
#: exiting through ``PyErr_Print`` on a ``SystemExit`` raised by their hook), not from a run of
#: the suite: a CI job on each is what would make them checked for certain.
CHECKED_VERSIONS = frozenset({(3, 10), (3, 11), (3, 12), (3, 13)})

#: The graph of the call that launched a child process; the child's wrapped calls are its nodes.
ENV_PARENT_GRAPH = _config.ENV_PREFIX + "PARENT_GRAPH"
#: Standard carriers of trace context in the environment (OpenTelemetry's env-var propagation).
ENV_TRACEPARENT, ENV_TRACESTATE, ENV_BAGGAGE = "TRACEPARENT", "TRACESTATE", "BAGGAGE"
_ENV_NAMES = {"traceparent": ENV_TRACEPARENT, "tracestate": ENV_TRACESTATE, "baggage": ENV_BAGGAGE}

# Popen(args, bufsize, executable, stdin, stdout, stderr, preexec_fn, close_fds, shell, cwd, env)
_POPEN_ENV_INDEX = 10
_PREP_KEY = "tinyllm_instrument_context"
# The audit events of the interpreter's main run, and what each runs.
_RUN_EVENTS = {
    "cpython.run_file": "file",
    "cpython.run_module": "module",
    "cpython.run_command": "command",
    "cpython.run_stdin": "stdin",
}

_said_unchecked: set[tuple[int, int]] = set()


# --------------------------------------------------------------------------------------------
# The version guard
# --------------------------------------------------------------------------------------------


def _version(version: tuple[int, ...] | None) -> tuple[int, int]:
    v = sys.version_info if version is None else version
    return (v[0], v[1])


def is_checked(version: tuple[int, ...] | None = None) -> bool:
    """Whether the hooks here were checked against this Python (default: the running one).

    Example:
        >>> is_checked((3, 11))
        True
    """
    return _version(version) in CHECKED_VERSIONS


def guard_note(version: tuple[int, ...] | None = None) -> str | None:
    """The one line that says the hooks are off on this Python, or None when they are on.

    Example:
        >>> guard_note((3, 11)) is None
        True
    """
    if is_checked(version):
        return None
    major, minor = _version(version)
    checked = ", ".join(f"{a}.{b}" for a, b in sorted(CHECKED_VERSIONS))
    return (
        f"tinyllm-instrument: Python {major}.{minor} is not checked for the child-process hooks "
        f"(checked: {checked}); child processes run without joining the parent's trace, and "
        "their own scripts are not wrapped"
    )


def _unchecked(version: tuple[int, ...] | None) -> bool:
    """True (and said once per version) when the hooks must stay off."""
    note = guard_note(version)
    if note is None:
        return False
    key = _version(version)
    if key not in _said_unchecked:
        _said_unchecked.add(key)
        _log.debug(note)
    return True


# --------------------------------------------------------------------------------------------
# The context that crosses the boundary
# --------------------------------------------------------------------------------------------


def attach_env_context(env: Mapping[str, str] | None = None) -> None:
    """Join the trace (and graph) a parent process handed over in the environment.

    For the life of the process: never detached. Public mechanisms only (the environment and
    OpenTelemetry's propagator), so not behind the version guard.
    """
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
        otel_context.attach(extract_context(carrier))
    if graph:
        set_graph(graph)


def _current_carrier() -> dict[str, str]:
    from .telemetry import inject_context

    carrier = inject_context({})
    graph = current_graph()
    if graph is not None and "traceparent" in carrier:
        carrier["graph"] = graph
    return carrier


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


# --------------------------------------------------------------------------------------------
# subprocess and multiprocessing spawn
# --------------------------------------------------------------------------------------------


def install_propagation(version: tuple[int, ...] | None = None) -> bool:
    """Carry the current trace context into every Python child this process starts from now on.

    Patches ``subprocess`` and ``multiprocessing.spawn`` when (or as soon as) they are imported.

    Args:
        version: the Python version to decide for; default the running one (tests pass another).

    Returns:
        False, with nothing installed, on a Python version not in :data:`CHECKED_VERSIONS`.

    Example:
        >>> install_propagation()
        True
    """
    if _unchecked(version):
        return False
    wrapt.register_post_import_hook(_patch_subprocess, "subprocess")
    wrapt.register_post_import_hook(_patch_spawn, "multiprocessing.spawn")
    return True


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
        report_internal_error(Stage.PROPAGATION, exc)
    return wrapped(*args, **kwargs)


def _patch_subprocess(module: types.ModuleType) -> None:
    if not isinstance(module.Popen.__init__, wrapt.FunctionWrapper):
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
            report_internal_error(Stage.PROPAGATION, exc)
        return data

    def prepare(data: dict[str, Any]) -> None:
        carrier = data.pop(_PREP_KEY, None)
        original_prepare(data)
        if carrier:
            try:
                _attach_carrier(carrier, carrier.get("graph"))
            except Exception as exc:
                report_internal_error(Stage.PROPAGATION, exc)

    # As spawn's own versions, which run the parent's main with runpy, as __mp_main__.
    def fixup_main_from_path(main_path: str) -> None:
        current = sys.modules["__main__"]
        stem = os.path.splitext(os.path.basename(main_path))[0]
        if stem == "ipython" or getattr(current, "__file__", None) == main_path:
            return
        spawn.old_main_modules.append(current)
        module = types.ModuleType("__mp_main__")
        exec_main(module, script_program(main_path, file_attr=main_path))
        sys.modules["__main__"] = sys.modules["__mp_main__"] = module

    def fixup_main_from_name(mod_name: str) -> None:
        current = sys.modules["__main__"]
        if mod_name == "__main__" or mod_name.endswith(".__main__"):
            return
        if getattr(getattr(current, "__spec__", None), "name", None) == mod_name:
            return
        spawn.old_main_modules.append(current)
        module = types.ModuleType("__mp_main__")
        exec_main(module, module_program(mod_name))
        sys.modules["__main__"] = sys.modules["__mp_main__"] = module

    spawn.get_preparation_data = get_preparation_data
    spawn.prepare = prepare
    spawn._fixup_main_from_path = fixup_main_from_path
    spawn._fixup_main_from_name = fixup_main_from_name
    spawn._tinyllm_instrument_patched = True


# --------------------------------------------------------------------------------------------
# The child's own program
# --------------------------------------------------------------------------------------------


def take_over_main(
    select: Callable[[str, str], Callable[[], int] | None],
    *,
    version: tuple[int, ...] | None = None,
) -> bool:
    """Let the kit run the program the interpreter is about to run as ``__main__``.

    Called from a sitecustomize, before the interpreter runs the program. When it is about to
    (the ``cpython.run_file`` or ``cpython.run_module`` audit event, after ``sys.path[0]`` is
    set), ``select(kind, target)`` is asked, with kind ``"file"`` (target: the path as given) or
    ``"module"`` (the ``-m`` name). It returns None to leave the program to the interpreter, or
    a callable that runs it and returns its exit code; the interpreter then exits with that code
    through its normal shutdown, as after the program's own ``sys.exit``, without running it.

    The audit hook stays for the life of the process (Python cannot remove one); after the main
    run's event it returns at once, a function call per audited operation.

    Args:
        select: decides, and builds the run; an exception in it leaves the program to the
            interpreter (counted and reported once).
        version: the Python version to decide for; default the running one.

    Returns:
        False, with nothing installed, on a Python version not in :data:`CHECKED_VERSIONS` or
        when the hook cannot be added.

    Example:
        >>> take_over_main(lambda kind, target: None)
        True
    """
    if _unchecked(version):
        return False
    done = False

    def hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal done
        if done:
            return
        kind = _RUN_EVENTS.get(event)
        if kind is None:
            return
        done = True  # the first of these is the main run, whatever it is
        if kind not in ("file", "module") or not args:
            return
        try:
            run = select(kind, os.fsdecode(args[0]))
        except Exception as exc:
            report_internal_error(Stage.INSTRUMENT, exc)
            return
        if run is not None:
            raise SystemExit(run())

    hook.__cantrace__ = True  # type: ignore[attr-defined]  # debuggers and coverage see the program
    try:
        sys.addaudithook(hook)
    except Exception as exc:  # another hook refused ours
        report_internal_error(Stage.INSTRUMENT, exc)
        return False
    return True
