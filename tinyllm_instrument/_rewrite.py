"""The program's own module: compile its source with the patterns' decorator on each matching def.

The ``__main__`` module of a program run by ``tinyllm-instrument run`` cannot be patched after
import: its top-level code runs before anything could replace its functions. So its source is
compiled with one more decorator on each ``def`` an active pattern selects (an AST rewrite), and
each function is wrapped the moment it is defined. The added decorator carries the line number of
the definition, so ``co_firstlineno``, tracebacks and ``inspect.getsource`` stay true.

The patches it makes live in :mod:`tinyllm_instrument.patching`'s state, reported in the plan and
undone by ``uninstrument()`` like any other, until the interpreter exits: then the state lets go
of them (the wrappers stay in place), so that the program's module is torn down as Python tears
it down and the finalizers of its globals run.
"""

from __future__ import annotations

import ast
import atexit
from collections.abc import Callable, Iterable, Sequence
from types import CodeType
from typing import Any

from ._errors import Stage, report_internal_error
from .patching import (
    _STATE,
    TargetPattern,
    _new_wrapper,
    _note,
    _Patch,
    _record_match,
    _record_seen,
    _wrappable,
)

__all__ = ["DEFINITION_HOOK_NAME", "compile_with_patterns", "definition_hook", "entry_points"]

#: The global name under which :func:`compile_with_patterns` code finds its decorator.
DEFINITION_HOOK_NAME = "__tinyllm_instrument__"

_forget_at_exit = [False]  # registered yet; read and written under the patching lock


def _is_observe_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name):
        return target.id == "observe"
    return isinstance(target, ast.Attribute) and target.attr == "observe"


class _Decorate(ast.NodeTransformer):
    def __init__(
        self,
        patterns: Sequence[TargetPattern],
        exclusions: Sequence[TargetPattern],
        module_label: str,
    ) -> None:
        self.patterns = patterns
        self.exclusions = exclusions
        self.module_label = module_label
        self.prefix: list[str] = []
        self.matched: list[tuple[TargetPattern, str]] = []  # an exclusion's: what it removed
        self.names: list[str] = []  # every class and def visited, for a did-you-mean

    def _statements(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.visit(stmt)

    # Module-level compound statements: definitions under if/try/with still count.
    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name in ("body", "orelse", "finalbody", "handlers"):
            for child in getattr(node, name, None) or []:
                if isinstance(child, ast.stmt | ast.excepthandler):
                    self.visit(child)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:  # noqa: N802 - ast API
        self.names.append(".".join([*self.prefix, node.name]))
        self.prefix.append(node.name)
        self._statements(node.body)
        self.prefix.pop()
        return node

    def _visit_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        qualname = ".".join([*self.prefix, node.name])
        self.names.append(qualname)
        selected = [p for p in self.patterns if p.matches_qualname(qualname)]
        if not selected:
            return node  # nested functions are <locals>: never visited
        label = f"{self.module_label}:{qualname}"
        exclusion = next((p for p in self.exclusions if p.matches_qualname(qualname)), None)
        if exclusion is not None:
            self.matched.append((exclusion, label))
            return node
        if any(_is_observe_decorator(d) for d in node.decorator_list):
            for pattern in selected:
                _note(pattern, f"skipped {label}: already @observe'd")
            return node
        anchor = node.decorator_list[0] if node.decorator_list else node
        call = ast.Call(
            func=ast.Name(id=DEFINITION_HOOK_NAME, ctx=ast.Load()),
            args=[ast.Constant(qualname), ast.Constant(label)],
            keywords=[],
        )
        ast.copy_location(call, anchor)
        ast.fix_missing_locations(call)
        for sub in ast.walk(call):  # one line: the definition's own
            sub.lineno = sub.end_lineno = anchor.lineno  # type: ignore[attr-defined]
            sub.col_offset = sub.end_col_offset = anchor.col_offset  # type: ignore[attr-defined]
        # outermost, so that the final object (a staticmethod, a cached function...) is wrapped
        node.decorator_list.insert(0, call)
        for pattern in selected:
            self.matched.append((pattern, label))
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:  # noqa: N802
        return self._visit_def(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:  # noqa: N802
        return self._visit_def(node)


def compile_with_patterns(
    source: str | bytes, filename: str, module_names: Iterable[str]
) -> tuple[CodeType, list[str]]:
    """Compile a program's source with the active patterns' decorator on each matching ``def``.

    The code must run in a namespace prepared by :func:`definition_hook`, stored under
    :data:`DEFINITION_HOOK_NAME`. Line numbers are those of the source.

    Args:
        source: the module's source.
        filename: its path, for tracebacks.
        module_names: the names patterns may use for it: the script's file stem, the ``-m`` name.

    Returns:
        The code object and the ``module:qualname`` labels of the definitions it decorates.

    Raises:
        SyntaxError: the source does not compile (as Python would report it).

    Example:
        >>> instrument("app:*")
        >>> source = "def answer():\n    return 42\n"
        >>> code, labels = compile_with_patterns(source, "app.py", ["app"])
        >>> namespace = {DEFINITION_HOOK_NAME: None}
        >>> namespace[DEFINITION_HOOK_NAME] = definition_hook(namespace)
        >>> exec(code, namespace); labels
        ['app:answer']
    """
    names = list(dict.fromkeys(module_names))
    with _STATE.lock:
        mine = [p for p in _STATE.patterns.values() if any(p.matches_module(n) for n in names)]
    patterns = [p for p in mine if not p.exclude]
    tree = ast.parse(source, filename)
    labels: list[str] = []
    if patterns and names:
        decorate = _Decorate(patterns, [p for p in mine if p.exclude], names[0])
        for stmt in tree.body:
            decorate.visit(stmt)
        with _STATE.lock:
            for pattern, label in decorate.matched:
                _record_match(pattern, label)
                if label not in labels and not pattern.exclude:
                    labels.append(label)
            for pattern in patterns:
                if not _STATE.matched.get(pattern.text):
                    _note(pattern, f"nothing in {names[0]} ({filename}) matches")
                    _record_seen(pattern, decorate.names)
    return compile(tree, filename, "exec", dont_inherit=True), labels


#: Top-level functions that are a program's entry point by their name alone.
ENTRY_POINT_NAMES = ("main", "run")

_LOOPS = (
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def entry_points(source: str | bytes, filename: str = "<program>") -> list[str]:
    """The program's entry points: the top-level functions ``run``'s default targets leave alone.

    Wrapped, an entry point would be the graph of the whole run, and every graph call under it
    a node of one trace. They are: a top-level function called ``main`` or ``run``, and a
    top-level function that the ``if __name__ == "__main__":`` block calls once, outside any
    loop or comprehension. One it calls in a loop, or more than once, is the graph being driven,
    not the entry point.

    Args:
        source: the program's source.
        filename: its path, for a syntax error (which gives no entry points: the program is
            reported as Python reports it when it runs).

    Returns:
        Their names, in the order they are defined.

    Example:
        >>> entry_points("def answer(q): ...\ndef main():\n    for q in 'ab': answer(q)\n"
        ...              "if __name__ == '__main__':\n    main()\n")
        ['main']
    """
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return []
    defined = [node.name for node in _top_level(tree.body) if isinstance(node, _DEFS)]
    calls: dict[str, int] = {}
    looped: set[str] = set()

    def walk(node: ast.AST, in_loop: bool) -> None:
        if isinstance(node, _SCOPES):
            return  # a definition's body runs when it is called, not here
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in defined:
                calls[node.func.id] = calls.get(node.func.id, 0) + 1
                if in_loop:
                    looped.add(node.func.id)
        if isinstance(node, (ast.For, ast.AsyncFor)):
            walk(node.target, in_loop)
            walk(node.iter, in_loop)  # evaluated once
            for stmt in [*node.body, *node.orelse]:
                walk(stmt, True)
            return
        repeated = in_loop or isinstance(node, _LOOPS)
        for child in ast.iter_child_nodes(node):
            walk(child, repeated)

    for top in _top_level(tree.body):
        if isinstance(top, ast.If) and _is_main_guard(top.test):
            for stmt in top.body:
                walk(stmt, False)
    return [
        name
        for name in dict.fromkeys(defined)
        if name in ENTRY_POINT_NAMES or (calls.get(name) == 1 and name not in looped)
    ]


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The module's statements, and those under its top-level if/try/with (as _Decorate sees)."""
    out: list[ast.stmt] = []
    for stmt in body:
        out.append(stmt)
        if isinstance(stmt, ast.If) and _is_main_guard(stmt.test):
            continue  # what the guard defines is not a top-level definition of the module
        if isinstance(stmt, _DEFS + (ast.ClassDef,)):
            continue
        for name in ("body", "orelse", "finalbody"):
            out.extend(_top_level(getattr(stmt, name, None) or []))
        for handler in getattr(stmt, "handlers", None) or []:
            out.extend(_top_level(handler.body))
    return out


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    if not (
        isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
    ):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides) and any(
        isinstance(x, ast.Constant) and x.value == "__main__" for x in sides
    )


def definition_hook(namespace: dict[str, Any]) -> Callable[[str, str], Callable[[Any], Any]]:
    """The decorator factory that code from :func:`compile_with_patterns` calls per definition.

    Args:
        namespace: the globals the code runs in; the patches record it, so that
            ``uninstrument()`` can put the original functions back there.

    Returns:
        ``hook(qualname, label)``, the decorator factory to store in ``namespace`` under
        :data:`DEFINITION_HOOK_NAME`. A definition no active pattern selects any more, or that
        cannot be wrapped, is returned as is (and noted in the plan).
    """

    def hook(qualname: str, label: str) -> Callable[[Any], Any]:
        def decorate(obj: Any) -> Any:
            try:
                with _STATE.lock:
                    active = [
                        p
                        for p in _STATE.patterns.values()
                        if not p.exclude
                        and p.matches_qualname(qualname)
                        and label in _STATE.matched.get(p.text, ())
                    ]
                    if not active:
                        return obj
                    why = _wrappable(obj, explicit=not all(p.wildcard for p in active))
                    if why is not None:
                        for pattern in active:
                            matched = _STATE.matched.get(pattern.text, [])
                            if label in matched:
                                matched.remove(label)
                            _note(pattern, f"skipped {label}: {why}")
                        return obj
                    patch = _Patch(namespace, qualname, obj, label)
                    patch.patterns.update(p.text for p in active)
                    patch.wrapper = _new_wrapper(obj, qualname, label, patch)
                    _STATE.patches[(id(namespace), qualname)] = patch
                    if not _forget_at_exit[0]:
                        _forget_at_exit[0] = True
                        atexit.register(_forget_definition_patches)
                    return patch.wrapper
            except Exception as exc:
                report_internal_error(Stage.INSTRUMENT, exc)
                return obj

        return decorate

    return hook


def _forget_definition_patches() -> None:
    """At exit: drop the state's hold on the program's namespace (its patches refer to it).

    Held, it keeps the program's module alive past the collection of interpreter shutdown; then
    Python clears its globals one by one, and a finalizer that uses a global (``sys``) fails,
    silently. The wrappers stay installed; only ``uninstrument()`` could no longer undo them.
    """
    with _STATE.lock:
        for key, patch in list(_STATE.patches.items()):
            if isinstance(patch.owner, dict):
                del _STATE.patches[key]
