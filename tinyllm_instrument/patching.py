"""instrument()/uninstrument() by target pattern: wrap functions where they are defined, on import.

Patterns
--------
``module:function``, ``module:Class.method``, ``module:*`` (every function and every method of every
class *defined* in the module, not imported into it), ``module:Class.*`` and ``package.*:*`` (every
submodule of the package, at any depth; the package's own ``__init__`` is ``package:*``).
Wildcards take Python functions only and skip special methods other than ``__call__``; name a
special method (``module:Class.__init__``) or a builtin (``time:sleep``) explicitly to wrap it.
The module of a script run by ``tinyllm-instrument run`` is its file stem as written:
``my-agent.py`` is ``my-agent``, so ``my-agent:*``.

How a module gets wrapped
-------------------------
* Modules imported later are patched right after they execute, through wrapt's post-import hooks
  (a small meta-path finder registers hooks for the submodules of ``package.*`` patterns); modules
  imported already are patched at once. Either way the module attribute (or class attribute) is
  replaced, so ``module.f()`` and ``from module import f`` made *after* patching reach the wrapper.
* The program's own ``__main__`` module cannot be patched after the fact: its top-level code runs
  before anything could replace its functions. :mod:`tinyllm_instrument._rewrite` compiles its
  source with one more decorator on each matching ``def`` (an AST rewrite), so each function is
  wrapped the moment it is defined; its patches live in the same state and undo the same way.

Observing
---------
Every wrapped callable is observed (see :func:`tinyllm_instrument.observe`) as a node named after
its qualname. A call made while no graph is current is the graph itself (named after the qualname),
so the first wrapped callable on the stack of a run is its graph; ``graph=NAME`` instead makes the
callable whose qualname (or ``module:qualname``) is NAME the graph and every other one a node.
Already ``@observe``'d callables are left alone.
"""

from __future__ import annotations

import importlib.abc
import inspect
import logging
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from wrapt.importer import ImportHookFinder

from . import _config
from ._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from .observe import GRAPH, GRAPH_OR_NODE, NODE, observe_as
from .observe import is_observed as _is_observed

__all__ = [
    "ENV_GRAPH",
    "ENV_TARGETS",
    "TargetPattern",
    "TinyLLMInstrumentor",
    "get_instrumentation_plan",
    "instrument",
    "instrumented_patterns",
    "parse_pattern",
    "parse_targets",
    "uninstrument",
]

_log = logging.getLogger(KIT_LOGGER_NAME)

#: Comma-separated patterns for ``tinyllm-instrument run`` and :class:`TinyLLMInstrumentor`.
ENV_TARGETS = _config.ENV_PREFIX + "TARGETS"
#: The graph callable's qualname (``--graph``); unset: the first wrapped callable on the stack.
ENV_GRAPH = _config.ENV_PREFIX + "GRAPH"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A module name may hold "-": the module of a script is its file stem, my-agent.py's "my-agent".
_MODULE_PART = r"[A-Za-z_][A-Za-z0-9_-]*"
_MODULE_RE = re.compile(rf"^{_MODULE_PART}(\.{_MODULE_PART})*(\.\*)?$")
_PATH_RE = re.compile(rf"^(\*|{_IDENT}(\.{_IDENT})*(\.\*)?)$")


# --------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetPattern:
    """One parsed pattern. ``path`` is the attribute path in the module; its last part may be "*".

    Example:
        >>> parse_pattern("pkg.*:Client.*")
        TargetPattern(text='pkg.*:Client.*', module='pkg', submodules=True, path=('Client', '*'))
    """

    text: str
    module: str
    submodules: bool
    path: tuple[str, ...]

    def matches_module(self, name: str) -> bool:
        """Whether the pattern applies to the module called ``name``."""
        if self.submodules:
            return name.startswith(self.module + ".")
        return name == self.module

    @property
    def wildcard(self) -> bool:
        return self.path[-1] == "*"

    def matches_qualname(self, qualname: str) -> bool:
        """Whether a callable with this qualname (``Class.method``) is selected by the path."""
        parts = tuple(qualname.split("."))
        if not self.wildcard:
            return parts == self.path
        if _is_special(parts[-1]):
            return False
        prefix = self.path[:-1]
        if not prefix:  # "*": functions and methods of classes at any nesting
            return True
        return parts[:-1] == prefix


def _is_special(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and name != "__call__"


def parse_pattern(text: str) -> TargetPattern:
    """Parse ``module:function``, ``module:Class.method``, ``module:*``, ``module:Class.*`` or
    ``package.*:*``.

    Raises:
        ValueError: the text is not one of those forms; the message shows them.

    Example:
        >>> parse_pattern("app:Agent.run").path
        ('Agent', 'run')
    """
    if not isinstance(text, str):
        raise ValueError(f"pattern {text!r} must be a string such as 'module:function'")
    cleaned = text.strip()
    module, sep, path = cleaned.partition(":")
    if (
        not sep
        or not _MODULE_RE.match(module)
        or not _PATH_RE.match(path)
        or (path != "*" and "*" in path[:-1])
    ):
        raise ValueError(
            f"pattern {text!r} is not valid; use module:function, module:Class.method, "
            "module:*, module:Class.* or package.*:*"
        )
    submodules = module.endswith(".*")
    return TargetPattern(
        cleaned, module[:-2] if submodules else module, submodules, tuple(path.split("."))
    )


def parse_targets(value: str | Iterable[str] | None) -> list[str]:
    """Split a comma-separated ``TINYLLM_INSTRUMENT_TARGETS`` value (or a list) into patterns.

    Raises:
        ValueError: one of them is not a valid pattern.

    Example:
        >>> parse_targets("app:*, tools.*:*")
        ['app:*', 'tools.*:*']
    """
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if item.strip():
            out.append(parse_pattern(item).text)
    return out


# --------------------------------------------------------------------------------------------
# Process-wide state
# --------------------------------------------------------------------------------------------


class _Patch:
    """One replaced attribute: enough to undo it exactly."""

    __slots__ = ("owner", "attr", "original", "wrapper", "label", "patterns", "active")

    def __init__(self, owner: Any, attr: str, original: Any, label: str) -> None:
        self.owner = owner  # a module, a class, or a namespace dict (definition-time wrapping)
        self.attr = attr  # attribute name, or the qualname for a namespace dict
        self.original = original
        self.wrapper: Any = None
        self.label = label  # "module:qualname"
        self.patterns: set[str] = set()
        self.active = True


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.patterns: dict[str, TargetPattern] = {}
        self.patches: dict[tuple[int, str], _Patch] = {}
        self.matched: dict[str, list[str]] = {}
        self.notes: dict[str, list[str]] = {}
        self.graph: str | None = None
        self.finder: _SubmoduleFinder | None = None


_STATE = _State()


def instrumented_patterns() -> list[str]:
    """The patterns currently instrumented, in the order they were given."""
    with _STATE.lock:
        return list(_STATE.patterns)


def get_instrumentation_plan() -> dict[str, list[str]]:
    """For each active pattern, what it wrapped so far (``module:qualname``) and what it skipped.

    Skipped entries start with ``"skipped "``; an empty list means nothing matched (yet): the module
    was never imported, or holds nothing of that name.

    Example:
        >>> instrument("json:dumps")
        >>> get_instrumentation_plan()
        {'json:dumps': ['json:dumps']}
    """
    with _STATE.lock:
        return {
            text: list(_STATE.matched.get(text, [])) + list(_STATE.notes.get(text, []))
            for text in _STATE.patterns
        }


def _note(pattern: TargetPattern, message: str) -> None:
    notes = _STATE.notes.setdefault(pattern.text, [])
    if message not in notes:
        notes.append(message)
        _log.debug("tinyllm_instrument: pattern %r: %s", pattern.text, message)


def _record_match(pattern: TargetPattern, label: str) -> None:
    matched = _STATE.matched.setdefault(pattern.text, [])
    if label not in matched:
        matched.append(label)


# --------------------------------------------------------------------------------------------
# The wrapper: one ObservedFunction per callable, graph or node decided per call
# --------------------------------------------------------------------------------------------


# The wrappers patterns installed (the function inside a classmethod or staticmethod), by id, so
# that _wrappable tells them from @observe'd callables. By identity: a wrapt proxy compares equal
# to the function it wraps. Weak: uninstrument and reloads drop them.
_INSTALLED: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _unwrapped(obj: Any) -> Any:
    return obj.__func__ if isinstance(obj, classmethod | staticmethod) else obj


class _PatchedType(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        obj = _unwrapped(obj)
        return _INSTALLED.get(id(obj)) is obj


class _PatchedFunction(metaclass=_PatchedType):
    """The type of an observed callable installed by a pattern, for ``isinstance`` only."""


def _is_graph_name(graph: str, qualname: str, label: str) -> bool:
    return graph == qualname or graph == label


def _make_wrapper(target: Any, qualname: str, label: str, patch: _Patch) -> Any:
    """Wrap ``target``: a graph when called outside any graph (or when named), else a node."""
    graph = _STATE.graph
    if graph is None:
        role = GRAPH_OR_NODE
    elif _is_graph_name(graph, qualname, label):
        role = GRAPH
    else:
        role = NODE

    def active() -> bool:
        # After uninstrument, references taken while patched become plain pass-throughs.
        return patch.active

    wrapper = observe_as(target, role, graph=qualname, is_active=active)
    inner = _unwrapped(wrapper)
    _INSTALLED[id(inner)] = inner
    return wrapper


def _function_of(raw: Any) -> Any:
    return raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw


def _wrappable(raw: Any, explicit: bool) -> str | None:
    """None when ``raw`` can be wrapped; else why not (for the plan)."""
    if isinstance(raw, _PatchedFunction):
        return "already instrumented"
    if _is_observed(raw):
        return "already @observe'd"
    func = _function_of(raw)
    if inspect.isfunction(func):
        return None
    if isinstance(raw, type):
        return "a class; use Class.* or Class.method"
    if isinstance(raw, property):
        return "a property"
    if explicit and callable(raw):
        return None
    return "not a function"


# --------------------------------------------------------------------------------------------
# Matching in a live module
# --------------------------------------------------------------------------------------------


def _defined_in(obj: Any, module_name: str, qualname: str) -> bool:
    return getattr(obj, "__module__", None) == module_name and (
        getattr(obj, "__qualname__", None) == qualname
    )


def _candidates(module: ModuleType, pattern: TargetPattern) -> list[tuple[Any, str, Any, str]]:
    """(owner, attribute, raw value, qualname) of everything the pattern selects in ``module``."""
    name = module.__name__
    out: list[tuple[Any, str, Any, str]] = []
    if not pattern.wildcard:
        owner: Any = module
        for part in pattern.path[:-1]:
            owner = vars(owner).get(part) if hasattr(owner, "__dict__") else None
            if not isinstance(owner, type):
                _note(pattern, f"skipped {name}:{'.'.join(pattern.path)}: no class {part!r}")
                return []
        attr = pattern.path[-1]
        raw = vars(owner).get(attr, _MISSING)
        if raw is _MISSING:
            _note(pattern, f"skipped {name}:{'.'.join(pattern.path)}: not defined there")
            return []
        out.append((owner, attr, raw, ".".join(pattern.path)))
        return out

    def walk_class(cls: type, prefix: str) -> None:
        for attr, raw in list(vars(cls).items()):
            qual = f"{prefix}.{attr}"
            if isinstance(raw, type):
                if _defined_in(raw, name, qual):
                    walk_class(raw, qual)
                continue
            func = _function_of(raw)
            if (
                inspect.isfunction(func)
                and func.__qualname__ == qual
                and (pattern.matches_qualname(qual))
            ):
                out.append((cls, attr, raw, qual))
            elif _is_observed(raw) and pattern.matches_qualname(qual):
                _note(pattern, f"skipped {name}:{qual}: already @observe'd")

    prefix = pattern.path[:-1]
    if prefix:
        owner = module
        for part in prefix:
            owner = vars(owner).get(part) if hasattr(owner, "__dict__") else None
            if not isinstance(owner, type):
                _note(pattern, f"skipped {name}:{'.'.join(pattern.path)}: no class {part!r}")
                return []
        walk_class(owner, ".".join(prefix))
        return out
    for attr, raw in list(vars(module).items()):
        if isinstance(raw, type):
            if _defined_in(raw, name, attr):
                walk_class(raw, attr)
        elif _is_observed(raw):
            if getattr(raw, "__module__", None) == name:
                _note(pattern, f"skipped {name}:{attr}: already @observe'd")
        elif inspect.isfunction(raw) and _defined_in(raw, name, attr):
            out.append((module, attr, raw, attr))
    return out


_MISSING = object()


def _apply(pattern: TargetPattern, module: ModuleType) -> None:
    """Wrap what ``pattern`` selects in ``module`` (a post-import hook, or at once)."""
    with _STATE.lock:
        if _STATE.patterns.get(pattern.text) is not pattern:
            return  # uninstrumented in the meantime
        try:
            for owner, attr, raw, qualname in _candidates(module, pattern):
                label = f"{module.__name__}:{qualname}"
                key = (id(owner), attr)
                existing = _STATE.patches.get(key)
                if existing is not None and vars(owner).get(attr) is existing.wrapper:
                    existing.patterns.add(pattern.text)
                    _record_match(pattern, label)
                    continue
                why = _wrappable(raw, explicit=not pattern.wildcard)
                if why is not None:
                    _note(pattern, f"skipped {label}: {why}")
                    continue
                patch = _Patch(owner, attr, raw, label)
                patch.wrapper = _make_wrapper(raw, qualname, label, patch)
                setattr(owner, attr, patch.wrapper)
                patch.patterns.add(pattern.text)
                _STATE.patches[key] = patch
                _record_match(pattern, label)
        except Exception as exc:  # a module we cannot introspect must not break its import
            report_internal_error(Stage.INSTRUMENT, exc)


class _SubmoduleFinder(importlib.abc.MetaPathFinder):
    """Registers post-import hooks for submodules of ``package.*`` patterns as they are found."""

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        busy: set[str] = self._busy.__dict__.setdefault("names", set())
        if fullname in busy or fullname in sys.modules:
            return None  # wrapt's finder below asks the import system again: not twice
        with _STATE.lock:
            wanted = [
                p for p in _STATE.patterns.values() if p.submodules and p.matches_module(fullname)
            ]
        if not wanted:
            return None
        busy.add(fullname)
        try:
            for pattern in wanted:
                wrapt.register_post_import_hook(_hook_for(pattern), fullname)
            # wrapt's own finder turns the registration into a chained loader; ask it directly so
            # that the order of the two finders on sys.meta_path does not matter.
            for finder in sys.meta_path:
                if isinstance(finder, ImportHookFinder):
                    return finder.find_spec(fullname, path, target)
            return None
        finally:
            busy.discard(fullname)


def _hook_for(pattern: TargetPattern) -> Callable[[ModuleType], None]:
    def hook(module: ModuleType) -> None:
        _apply(pattern, module)

    return hook


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def instrument(*patterns: str, graph: str | None = None) -> None:
    """Observe the functions and methods the patterns select, now and whenever their module loads.

    Idempotent: a pattern given twice, or a callable selected by two patterns, is wrapped once.

    Args:
        *patterns: ``module:function``, ``module:Class.method``, ``module:*``, ``module:Class.*`` or
            ``package.*:*``. A pattern whose module is never imported is not an error; see
            :func:`get_instrumentation_plan`.
        graph: the qualname (or ``module:qualname``) of the callable that is the graph; by default
            a wrapped call made outside any graph is one. Applies to callables wrapped from now on.

    Raises:
        ValueError: a pattern is malformed.

    Example:
        >>> import tinyllm_instrument
        >>> tinyllm_instrument.instrument("myapp.agents:*", "myapp.tools.*:*")
    """
    parsed = [parse_pattern(p) for p in patterns]
    if graph is not None and (not isinstance(graph, str) or not graph.strip()):
        raise ValueError(f"graph={graph!r} must be a non-empty qualname such as 'answer'")
    todo: list[TargetPattern] = []
    with _STATE.lock:
        if graph is not None:
            _STATE.graph = graph.strip()
        for pattern in parsed:
            if pattern.text in _STATE.patterns:
                continue
            _STATE.patterns[pattern.text] = pattern
            _STATE.matched.setdefault(pattern.text, [])
            todo.append(pattern)
        if any(p.submodules for p in todo) and _STATE.finder is None:
            _STATE.finder = _SubmoduleFinder()
            sys.meta_path.insert(0, _STATE.finder)
    for pattern in todo:
        if pattern.submodules:
            for name, module in list(sys.modules.items()):
                if module is not None and pattern.matches_module(name):
                    _apply(pattern, module)
        else:
            # fires at once when the module is imported already
            wrapt.register_post_import_hook(_hook_for(pattern), pattern.module)
        if not _STATE.matched.get(pattern.text):
            _log.debug(
                "tinyllm_instrument: pattern %r matches nothing yet (module not imported, or "
                "nothing of that name); it applies when the module is imported",
                pattern.text,
            )


def uninstrument(*patterns: str) -> None:
    """Undo :func:`instrument` for these patterns (all of them when none is given).

    Every attribute a pattern replaced gets its original object back (the same object); a callable
    that another still-active pattern selects stays wrapped. References to a wrapper taken while
    instrumented turn into plain pass-throughs. Idempotent.

    Raises:
        ValueError: a pattern is malformed.

    Example:
        >>> uninstrument("myapp.agents:*")
    """
    texts = [parse_pattern(p).text for p in patterns] if patterns else list(_STATE.patterns.keys())
    with _STATE.lock:
        for text in texts:
            _STATE.patterns.pop(text, None)
            _STATE.matched.pop(text, None)
            _STATE.notes.pop(text, None)
        for key, patch in list(_STATE.patches.items()):
            patch.patterns.difference_update(texts)
            if patch.patterns:
                continue
            patch.active = False
            _restore(patch)
            del _STATE.patches[key]
        if not _STATE.patterns:
            _STATE.graph = None
            if _STATE.finder is not None:
                try:
                    sys.meta_path.remove(_STATE.finder)
                except ValueError:
                    pass
                _STATE.finder = None


def _restore(patch: _Patch) -> None:
    owner = patch.owner
    if isinstance(owner, dict):  # wrapped at definition: find it again by qualname
        parts = patch.attr.split(".")
        holder: Any = owner
        for part in parts[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else vars(holder).get(part)
            if not isinstance(holder, type):
                return
        current = holder.get(parts[-1]) if isinstance(holder, dict) else vars(holder).get(parts[-1])
        if current is patch.wrapper:
            if isinstance(holder, dict):
                holder[parts[-1]] = patch.original
            else:
                setattr(holder, parts[-1], patch.original)
        return
    try:
        if vars(owner).get(patch.attr) is patch.wrapper:
            setattr(owner, patch.attr, patch.original)
    except Exception as exc:
        report_internal_error(Stage.UNINSTRUMENT, exc)


# --------------------------------------------------------------------------------------------
# OpenTelemetry instrumentor: `opentelemetry-instrument python app.py`
# --------------------------------------------------------------------------------------------


class TinyLLMInstrumentor(BaseInstrumentor):
    """Applies the patterns of ``TINYLLM_INSTRUMENT_TARGETS`` when OpenTelemetry instruments.

    Registered under the ``opentelemetry_instrumentor`` entry point, so ``opentelemetry-instrument
    python app.py`` picks it up. The program's own ``__main__`` is not rewritten there (the
    interpreter runs it); use ``tinyllm-instrument run`` for that.

    Example:
        >>> TinyLLMInstrumentor().instrument(targets=["myapp.agents:*"])
    """

    _applied: tuple[str, ...] = ()

    def instrumentation_dependencies(self) -> list[str]:
        return []

    def _instrument(self, **kwargs: Any) -> None:
        targets = kwargs.get("targets")
        graph = kwargs.get("graph")
        try:
            patterns = parse_targets(
                targets if targets is not None else _config.env_str(ENV_TARGETS)
            )
            if graph is None:
                graph = _config.env_str(ENV_GRAPH)
        except ValueError as exc:
            _log.warning("tinyllm_instrument: %s; nothing instrumented", exc)
            return
        instrument(*patterns, graph=graph)
        self._applied = tuple(patterns)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._applied:
            uninstrument(*self._applied)
        self._applied = ()
