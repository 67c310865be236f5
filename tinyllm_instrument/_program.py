"""The program ``run`` runs: find a script or ``-m`` module, run it as a main module, its exit code.

A :class:`Program` is what ``python app.py`` or ``python -m app`` would run: its source, path,
the names patterns may call it by, and the dunder attributes its main module gets. :func:`run_main`
runs it the way the interpreter would (uncaught exceptions printed with a traceback that starts at
the program, ``sys.exit`` codes kept), with its matching definitions observed as they are defined
(:mod:`tinyllm_instrument._rewrite`). Used by the runner in the parent and by the hooks that run
a child's program or a spawned process's ``__mp_main__``.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from ._rewrite import DEFINITION_HOOK_NAME, compile_with_patterns, definition_hook

__all__ = ["Program", "RunError", "exec_main", "module_program", "run_main", "script_program"]

#: Exit codes of a run that ended on a signal, as a shell reports them.
_SIGNAL_EXIT = 128


class RunError(Exception):
    """The program cannot be started (no such file or module, bad settings): one line for stderr."""


@dataclass(frozen=True)
class Program:
    """What the interpreter would run as ``__main__``.

    ``names`` are the module names patterns may use for it: a script's file stem as written
    (``my-agent`` for ``my-agent.py``), or the ``-m`` name and the name of the module that runs
    (``pkg`` and ``pkg.__main__``). ``source`` is None for a module shipped without source.
    """

    path: str
    source: bytes | str | None
    names: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> Any:
        return self.attrs.get("__spec__")


def script_program(script: str, *, file_attr: str | None = None) -> Program:
    """The program ``python SCRIPT`` runs.

    Args:
        script: its path, as given.
        file_attr: the main module's ``__file__``; default: the absolute path.

    Raises:
        RunError: no such file, a directory, or unreadable.

    Example:
        >>> script_program("my-agent.py").names
        ('my-agent',)
    """
    path = os.path.abspath(script)
    if os.path.isdir(path):
        raise RunError(f"cannot run {script!r}: a directory; give its __main__.py, or use -m")
    if not os.path.isfile(path):
        raise RunError(f"cannot run {script!r}: no such file")
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as exc:
        raise RunError(f"cannot read {script!r}: {exc.strerror or exc}") from None
    attrs = {
        "__file__": path if file_attr is None else file_attr,
        "__spec__": None,
        "__loader__": None,
        "__package__": None,
        "__cached__": None,
    }
    return Program(path, source, (os.path.splitext(os.path.basename(path))[0],), attrs)


def module_program(name: str) -> Program:
    """The program ``python -m NAME`` runs; a package runs its ``__main__``.

    Raises:
        RunError: no such module, or a package without ``__main__``.

    Example:
        >>> module_program("json.tool").names
        ('json.tool',)
    """
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
    attrs = {
        "__spec__": spec,
        "__file__": spec.origin,
        "__loader__": spec.loader,
        "__package__": spec.parent,
        "__cached__": getattr(spec, "cached", None),
    }
    return Program(spec.origin or name, source, tuple(dict.fromkeys([name, spec.name])), attrs)


def exec_main(module: types.ModuleType, program: Program) -> None:
    """Run ``program`` in ``module``'s namespace, its matching definitions wrapped as defined.

    Raises:
        SyntaxError: the program does not compile.
        BaseException: whatever the program raises, unchanged.
    """
    exec(_compile(module, program), module.__dict__)


def _compile(module: types.ModuleType, program: Program) -> CodeType:
    """The program's code, its namespace set up to run it (attributes, the definition hook)."""
    namespace = module.__dict__
    namespace.update(program.attrs)
    namespace.setdefault("__builtins__", __builtins__)
    if program.source is None:  # no source (a .pyc only): run as is, nothing can be rewritten
        code: CodeType = program.attrs["__loader__"].get_code(program.spec.name)
        return code
    code, _labels = compile_with_patterns(program.source, program.path, program.names)
    namespace[DEFINITION_HOOK_NAME] = definition_hook(namespace)
    return code


def run_main(
    module: types.ModuleType, program: Program, *, on_start: Callable[[], object] | None = None
) -> int:
    """Run ``program`` in ``module``; its exit code, as the interpreter would make it.

    SIGTERM gets the kit's handler first when it has none (see
    :func:`tinyllm_instrument.telemetry.unwind_on_sigterm`), also without tracing: the program
    unwinds and flushes its logs before the process ends by the signal.

    Args:
        module: the main module to run it in.
        program: what to run.
        on_start: called once the program compiled, just before it runs (not for a program
            that does not compile: Python would not have started it either).

    Returns:
        0, the ``sys.exit`` code, 1 after an uncaught exception (its traceback printed as Python
        prints it), 130 after an uncaught KeyboardInterrupt.
    """
    from .telemetry import unwind_on_sigterm

    unwind_on_sigterm()
    try:
        code = _compile(module, program)
    except SyntaxError as exc:  # as Python reports a program that does not compile: no traceback
        _print_uncaught(exc.with_traceback(None))
        return 1
    if on_start is not None:
        on_start()
    try:
        exec(code, module.__dict__)
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt as exc:
        _print_uncaught(exc)
        return _SIGNAL_EXIT + signal.SIGINT
    except BaseException as exc:  # the program's uncaught exception: print it like Python does
        _print_uncaught(exc)
        return 1
    return 0


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
