"""instrument()/uninstrument() by target pattern: wrap functions where they are defined, on import.

Patterns
--------
``module:function``, ``module:Class.method``, ``module:*`` (every function and every method of every
class *defined* in the module, not imported into it), ``module:Class.*`` and ``package.*:*`` (every
submodule of the package, at any depth; the package's own ``__init__`` is ``package:*``).
Wildcards take Python functions only and skip special methods other than ``__call__``; name a
special method (``module:Class.__init__``) or a builtin (``time:sleep``) explicitly to wrap it.
The module of a script run by ``tinyllm-instrument run`` is its file stem as written:
``my-agent.py`` is ``my-agent``, so ``my-agent:*``. A leading ``!`` makes an exclusion:
``!app:main`` removes ``app:main`` from what the other patterns select, whenever they are given
(see :mod:`tinyllm_instrument._patterns`).

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
Already ``@observe``'d callables are left alone. ``models={PATTERN: NAME}`` names the model of
what PATTERN selects (``tinyllm-instrument run --model``); see :func:`_model_for`.
"""

from __future__ import annotations

import importlib.abc
import inspect
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from wrapt.importer import ImportHookFinder

from . import _config
from . import presets as _presets
from ._errors import KIT_LOGGER_NAME, Stage, report_internal_error
from ._patterns import PATTERN_FORMS, TargetPattern, parse_models, parse_pattern, parse_targets
from .observe import GRAPH, GRAPH_OR_NODE, NODE, observe_as
from .observe import is_observed as _is_observed

__all__ = [
    "ENV_GRAPH",
    "ENV_MODELS",
    "ENV_TARGETS",
    "PATTERN_FORMS",
    "TargetPattern",
    "TinyLLMInstrumentor",
    "get_instrumentation_plan",
    "get_model_plan",
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
#: Comma-separated ``PATTERN=NAME`` model assignments (``--model``).
ENV_MODELS = _config.ENV_PREFIX + "MODELS"
#: Names of a module kept for a pattern that matched nothing there, for a did-you-mean.
_SEEN_MAX = 500

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
        self.patterns: dict[str, TargetPattern] = {}  # inclusions and exclusions, in given order
        self.patches: dict[tuple[int, str], _Patch] = {}
        # Per pattern text: labels wrapped (an exclusion: labels it removed), skip notes, and the
        # names its module(s) hold when it matched nothing there.
        self.matched: dict[str, list[str]] = {}
        self.notes: dict[str, list[str]] = {}
        self.seen: dict[str, list[str]] = {}
        self.graph: str | None = None
        self.models: dict[str, tuple[TargetPattern, str]] = {}  # pattern text -> (pattern, model)
        self.label_models: dict[str, str] = {}  # wrapped label -> its model
        self.finder: _SubmoduleFinder | None = None
        # Told of each new match and each module seen without one: (kind, pattern text, data).
        # ``tinyllm-instrument run`` sets it in child processes, to tell the run what matched.
        self.listener: Callable[[str, str, Any], None] | None = None


_STATE = _State()


def instrumented_patterns() -> list[str]:
    """The patterns currently instrumented, exclusions included, in the order they were given."""
    with _STATE.lock:
        return list(_STATE.patterns)


def get_instrumentation_plan() -> dict[str, list[str]]:
    """For each active pattern and preset, what it wrapped so far (``module:qualname``) and what it
    skipped (a preset whose library is missing: ``"skipped: openai is not installed"``).

    Skipped entries start with ``"skipped "``; an exclusion's entries start with ``"removed "``,
    one per callable it kept another pattern from wrapping. An empty list means nothing matched
    (yet): the module was never imported, or holds nothing of that name.

    Example:
        >>> instrument("shop:*", "!shop:price")
        >>> import shop
        >>> get_instrumentation_plan()
        {'shop:*': ['shop:checkout'], '!shop:price': ['removed shop:price']}
    """
    with _STATE.lock:
        plan = {}
        for text, pattern in _STATE.patterns.items():
            matched = _STATE.matched.get(text, [])
            if pattern.exclude:
                matched = [f"removed {label}" for label in matched]
            plan[text] = list(matched) + list(_STATE.notes.get(text, []))
    plan.update(_presets.preset_plan())
    return plan


def get_model_plan() -> dict[str, str]:
    """The model named for each wrapped callable (``module:qualname`` -> model), by ``models=``.

    Example:
        >>> instrument("app:*", models={"app:call_model": "gpt-4o-mini"})
        >>> get_model_plan()   # once app is imported
        {'app:call_model': 'gpt-4o-mini'}
    """
    with _STATE.lock:
        return dict(_STATE.label_models)


def _note(pattern: TargetPattern, message: str) -> None:
    notes = _STATE.notes.setdefault(pattern.text, [])
    if message not in notes:
        notes.append(message)
        _log.debug("tinyllm_instrument: pattern %r: %s", pattern.text, message)


def _tell(kind: str, text: str, data: Any) -> None:
    listener = _STATE.listener
    if listener is not None:
        try:
            listener(kind, text, data)
        except Exception as exc:  # telling is a courtesy; wrapping goes on
            report_internal_error(Stage.INSTRUMENT, exc)


def _record_match(pattern: TargetPattern, label: str) -> None:
    matched = _STATE.matched.setdefault(pattern.text, [])
    if label not in matched:
        matched.append(label)
        _tell("match", pattern.text, label)


def _record_seen(pattern: TargetPattern, names: list[str]) -> None:
    """The module(s) of ``pattern`` were imported and held ``names``, none of them selected."""
    seen = _STATE.seen.setdefault(pattern.text, [])
    fresh = [n for n in names if n not in seen][: max(0, _SEEN_MAX - len(seen))]
    if fresh:
        seen.extend(fresh)
        _tell("seen", pattern.text, fresh)


def _excluded_by(module_names: tuple[str, ...], qualname: str) -> TargetPattern | None:
    """The exclusion that removes ``qualname`` of a module called any of ``module_names``."""
    for pattern in _STATE.patterns.values():
        if (
            pattern.exclude
            and pattern.matches_qualname(qualname)
            and any(pattern.matches_module(name) for name in module_names)
        ):
            return pattern
    return None


def _model_for(label: str) -> str | None:
    """The model ``models=`` names for ``module:qualname``: the first assignment that selects it."""
    for pattern, model in _STATE.models.values():
        if pattern.matches_label(label):
            return model
    return None


def _new_wrapper(raw: Any, qualname: str, label: str, patch: _Patch) -> _PatchedFunction:
    """Every wrapper a pattern installs is made here (by :func:`_apply` and by the rewrite)."""
    model = _model_for(label)
    if model is not None:
        _STATE.label_models[label] = model
    # The model --model / instrument(models=) names labels the span and the request and token
    # metrics, as @observe(model=) does; without one, a result that names its model labels them.
    return _make_wrapper(raw, qualname, label, patch, model)


def _names_defined_in(module: ModuleType) -> list[str]:
    """Qualnames of the functions, classes and methods ``module`` defines, for a did-you-mean."""
    name = module.__name__
    out: list[str] = []
    for attr, raw in list(vars(module).items()):
        try:  # a module's objects may do anything on attribute access: a hint is not worth it
            func = getattr(raw, "__wrapped__", raw)
            if getattr(func, "__module__", None) != name or attr.startswith("__"):
                continue
            if isinstance(raw, type):
                out.append(attr)
                out.extend(
                    f"{attr}.{member}"
                    for member, value in vars(raw).items()
                    if inspect.isfunction(_function_of(value)) and not _is_special(member)
                )
            elif callable(func):
                out.append(attr)
        except Exception:
            continue
    return out[:_SEEN_MAX]


def _is_special(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and name != "__call__"


# --------------------------------------------------------------------------------------------
# The wrapper: one observed callable per target, graph or node decided per call
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


def _make_wrapper(
    target: Any, qualname: str, label: str, patch: _Patch, model: str | None = None
) -> Any:
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

    # A named graph called inside a wrapped main() or loop is still one trace per call, linked
    # to the enclosing span (issue 17 point 3); the first-on-the-stack role is a root anyway.
    wrapper = observe_as(
        target, role, graph=qualname, is_active=active, model=model, new_trace=role == GRAPH
    )
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
        if _STATE.patterns.get(pattern.text) is not pattern or pattern.exclude:
            return  # uninstrumented in the meantime; an exclusion wraps nothing
        try:
            candidates = _candidates(module, pattern)
            for owner, attr, raw, qualname in candidates:
                label = f"{module.__name__}:{qualname}"
                exclusion = _excluded_by((module.__name__,), qualname)
                if exclusion is not None:
                    _record_match(exclusion, label)
                    continue
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
                patch.wrapper = _new_wrapper(raw, qualname, label, patch)
                setattr(owner, attr, patch.wrapper)
                patch.patterns.add(pattern.text)
                _STATE.patches[key] = patch
                _record_match(pattern, label)
            if not candidates:
                _record_seen(pattern, _names_defined_in(module))
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


def instrument(
    *patterns: str, graph: str | None = None, models: Mapping[str, str] | None = None
) -> None:
    """Observe the functions and methods the patterns select, now and whenever their module loads.

    Idempotent: a pattern given twice, or a callable selected by two patterns, is wrapped once.

    Args:
        *patterns: ``module:function``, ``module:Class.method``, ``module:*``, ``module:Class.*`` or
            ``package.*:*``, or a preset ``@NAME`` (``@openai``, see
            :mod:`tinyllm_instrument.presets`); with a leading ``!``, an exclusion: what it
            matches is not wrapped by the other patterns (and is unwrapped if they wrapped it
            already). A pattern whose module is never imported is not an error; see
            :func:`get_instrumentation_plan`.
        graph: the qualname (or ``module:qualname``) of the callable that is the graph; by default
            a wrapped call made outside any graph is one. Applies to callables wrapped from now on.
        models: ``{PATTERN: MODEL}``: the model of each callable PATTERN selects among those the
            patterns wrap (the first assignment that selects it wins); see
            :func:`get_model_plan`. Applies to callables wrapped from now on.

    Raises:
        ValueError: a pattern or a model assignment is malformed, or a preset is unknown (the
            message lists the known ones); nothing is instrumented then.

    Example:
        >>> import tinyllm_instrument
        >>> tinyllm_instrument.instrument("myapp.agents:*", "myapp.tools.*:*", "!myapp.agents:main")
        >>> tinyllm_instrument.instrument("@openai")
    """
    preset_names = [p for p in patterns if _presets.is_preset(p)]
    for name in preset_names:
        _presets.parse_preset(name)  # an unknown preset: nothing is instrumented
    parsed = [parse_pattern(p) for p in patterns if not _presets.is_preset(p)]
    if graph is not None and (not isinstance(graph, str) or not graph.strip()):
        raise ValueError(f"graph={graph!r} must be a non-empty qualname such as 'answer'")
    if models is not None and not isinstance(models, Mapping):
        raise ValueError(f"models={models!r} must be a dict such as {{'app:llm': 'gpt-4o'}}")
    assigned = parse_models(models)
    todo: list[TargetPattern] = []
    with _STATE.lock:
        if graph is not None:
            _STATE.graph = graph.strip()
        for text, model in assigned.items():
            _STATE.models[text] = (parse_pattern(text), model)
        for pattern in parsed:
            if pattern.text in _STATE.patterns:
                continue
            _STATE.patterns[pattern.text] = pattern
            _STATE.matched.setdefault(pattern.text, [])
            if pattern.exclude:
                _unwrap_excluded(pattern)
            else:
                todo.append(pattern)
        if any(p.submodules for p in todo) and _STATE.finder is None:
            _STATE.finder = _SubmoduleFinder()
            sys.meta_path.insert(0, _STATE.finder)
    _presets.enable_presets(preset_names)
    for pattern in todo:
        _apply_everywhere(pattern)
        if not _STATE.matched.get(pattern.text):
            _log.debug(
                "tinyllm_instrument: pattern %r matches nothing yet (module not imported, or "
                "nothing of that name); it applies when the module is imported",
                pattern.text,
            )


def _apply_everywhere(pattern: TargetPattern) -> None:
    """Apply to the pattern's modules imported already, and to each one when it is imported."""
    if pattern.submodules:
        for name, module in list(sys.modules.items()):
            if module is not None and pattern.matches_module(name):
                _apply(pattern, module)
    else:
        # fires at once when the module is imported already
        wrapt.register_post_import_hook(_hook_for(pattern), pattern.module)


def _unwrap_excluded(exclusion: TargetPattern) -> None:
    """A new exclusion: undo what the other patterns wrapped already and it matches."""
    for key, patch in list(_STATE.patches.items()):
        if not exclusion.matches_label(patch.label):
            continue
        for text in patch.patterns:
            matched = _STATE.matched.get(text, [])
            if patch.label in matched:
                matched.remove(patch.label)
        patch.active = False
        _restore(patch)
        del _STATE.patches[key]
        _record_match(exclusion, patch.label)


def uninstrument(*patterns: str) -> None:
    """Undo :func:`instrument` for these patterns (all of them when none is given).

    Every attribute a pattern replaced gets its original object back (the same object); a callable
    that another still-active pattern selects stays wrapped. References to a wrapper taken while
    instrumented turn into plain pass-throughs. Removing an exclusion wraps what it kept the
    other patterns from wrapping, in modules (not the program's ``__main__``, whose functions
    are wrapped only as they are defined). With no pattern given, the ``models`` go too.
    Idempotent.

    Raises:
        ValueError: a pattern is malformed.

    Example:
        >>> uninstrument("myapp.agents:*")
    """
    preset_names = [p for p in patterns if _presets.is_preset(p)]
    _presets.disable_presets(preset_names if patterns else None)
    if patterns and len(preset_names) == len(patterns):
        return
    texts = (
        [parse_pattern(p).text for p in patterns if not _presets.is_preset(p)]
        if patterns
        else list(_STATE.patterns.keys())
    )
    with _STATE.lock:
        lifted = [p for t in texts if (p := _STATE.patterns.get(t)) is not None and p.exclude]
        for text in texts:
            _STATE.patterns.pop(text, None)
            _STATE.matched.pop(text, None)
            _STATE.notes.pop(text, None)
            _STATE.seen.pop(text, None)
        for key, patch in list(_STATE.patches.items()):
            patch.patterns.difference_update(texts)
            if patch.patterns:
                continue
            patch.active = False
            _restore(patch)
            del _STATE.patches[key]
            _STATE.label_models.pop(patch.label, None)
        if not patterns:
            _STATE.models.clear()
            _STATE.label_models.clear()
        if not _STATE.patterns:
            _STATE.graph = None
            if _STATE.finder is not None:
                try:
                    sys.meta_path.remove(_STATE.finder)
                except ValueError:
                    pass
                _STATE.finder = None
        still = [p for p in _STATE.patterns.values() if not p.exclude] if lifted else []
    for pattern in still:  # what a lifted exclusion held back, wrapped now
        _apply_everywhere(pattern)


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
    python app.py`` picks it up (with ``TINYLLM_INSTRUMENT_GRAPH`` and ``..._MODELS`` too). The
    program's own ``__main__`` is not rewritten there (the interpreter runs it); use
    ``tinyllm-instrument run`` for that.

    Example:
        >>> TinyLLMInstrumentor().instrument(targets=["myapp.agents:*"])
    """

    _applied: tuple[str, ...] = ()

    def instrumentation_dependencies(self) -> list[str]:
        return []

    def _instrument(self, **kwargs: Any) -> None:
        targets = kwargs.get("targets")
        graph = kwargs.get("graph")
        models = kwargs.get("models")
        try:
            patterns = parse_targets(
                targets if targets is not None else _config.env_str(ENV_TARGETS)
            )
            if graph is None:
                graph = _config.env_str(ENV_GRAPH)
            if models is None:
                models = parse_models(_config.env_str(ENV_MODELS))
            instrument(*patterns, graph=graph, models=models)
        except ValueError as exc:
            _log.warning("tinyllm_instrument: %s; nothing instrumented", exc)
            return
        self._applied = tuple(patterns)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._applied:
            uninstrument(*self._applied)
        self._applied = ()
