"""What ``run`` says at exit about its patterns: the plan, and what matched nothing, and why.

The run process owns the patterns: it prints, at its exit, one line on stderr for each pattern,
``--graph`` and ``--model`` that matched nothing, with a did-you-mean from the names that exist
(and the whole plan with ``--print-plan``). Its Python children apply the same patterns (a
pattern often names a child's own code), so each tells the run what matched there: a JSON line
per match, appended to a file the run names in ``TINYLLM_INSTRUMENT_RUN_REPORT``, written as the
match happens (a child killed later has told already). A child that is still starting when the
run ends has not; what matches only there is reported as unmatched.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _config
from ._children import guard_note
from ._errors import Stage, report_internal_error
from ._instrumentors import instrumentation_plan
from ._patterns import TargetPattern, parse_pattern
from .patching import _STATE
from .presets import PRESETS, preset_plan

__all__ = ["ENV_RUN_REPORT", "ExitReport", "child_listener", "new_report_file"]

#: The file where a run's children append what their patterns matched (set by the run).
ENV_RUN_REPORT = _config.ENV_PREFIX + "RUN_REPORT"

_PREFIX = "tinyllm-instrument: "
_NEVER_IMPORTED = "matched nothing (its module was never imported, or has no such name)"


def new_report_file() -> str:
    """A fresh, empty file for the children's lines; the report deletes it at exit."""
    fd, path = tempfile.mkstemp(prefix="tinyllm-instrument-run-", suffix=".jsonl")
    os.close(fd)
    return path


def child_listener(path: str) -> Callable[[str, str, Any], None]:
    """The patching listener of a child: one JSON line per match (or module seen) to ``path``."""

    gone = False

    def tell(kind: str, text: str, data: Any) -> None:
        nonlocal gone
        if gone:
            return
        line = json.dumps({"kind": kind, "pattern": text, "data": data}) + "\n"
        try:
            # One write of one line with O_APPEND: lines of several children never interleave.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError:  # the run has ended (and removed the file): nobody left to tell
            gone = True
            return
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    return tell


@dataclass
class _View:
    """What the patterns did, in this process and in its children."""

    patterns: list[TargetPattern]
    matched: dict[str, list[str]]
    notes: dict[str, list[str]]
    seen: dict[str, list[str]]
    in_children: set[tuple[str, str]] = field(default_factory=set)  # (pattern, label)

    def labels(self) -> list[str]:
        """Every label wrapped (by an inclusion), in this process or a child."""
        by_include = (
            self.matched.get(p.text, []) for p in self.patterns if not p.exclude
        )  # fmt: skip
        return list(dict.fromkeys(label for labels in by_include for label in labels))


@dataclass
class ExitReport:
    """Printed once at exit by the run process (an ``atexit`` handler), if its program started.

    Args of note: ``defaults`` maps each pattern the run chose by default to what it is for
    (shown in the plan; a default exclusion that removed nothing is not reported); ``graph`` and
    ``models`` come with the words that say how the user gave them (``--graph answer``).
    """

    program_names: tuple[str, ...]
    program_file: str | None  # the script as given; None for -m
    print_plan: bool = False
    defaults: Mapping[str, str] = field(default_factory=dict)
    entry_points: Sequence[str] = ()
    graph: tuple[str, str] | None = None  # (graph, as the user gave it)
    models: Sequence[tuple[str, str, str]] = ()  # (pattern, model, as the user gave it)
    children_file: str | None = None
    unnamed_default: str | None = None  # a program no default pattern can name, as its name
    started: bool = False
    _done: bool = False

    def __post_init__(self) -> None:
        self._pid = os.getpid()

    def start(self) -> None:
        """The program compiled and starts: from now on there is something to report."""
        self.started = True

    def __call__(self) -> None:
        # A forked child inherits the atexit handler: the process that made the report owns it.
        if self._done or os.getpid() != self._pid:
            return
        self._done = True
        try:
            if self.started:
                lines = self.lines()
                if lines:
                    print("\n".join(lines), file=sys.stderr, flush=True)
        except Exception as exc:  # the report must not turn a clean exit into a traceback
            report_internal_error(Stage.INSTRUMENT, exc)
        finally:
            if self.children_file is not None:
                try:
                    os.unlink(self.children_file)
                except OSError:
                    pass

    def lines(self) -> list[str]:
        """The plan (when asked for), then one line per pattern, graph and model unmatched."""
        view = self._view()
        out = self._plan(view) if self.print_plan else []
        out += self._unmatched(view)
        return out

    # -- gathering -------------------------------------------------------------------------------

    def _view(self) -> _View:
        with _STATE.lock:
            view = _View(
                list(_STATE.patterns.values()),
                {k: list(v) for k, v in _STATE.matched.items()},
                {k: list(v) for k, v in _STATE.notes.items()},
                {k: list(v) for k, v in _STATE.seen.items()},
            )
        for entry in self._children_lines():
            text, data = entry.get("pattern"), entry.get("data")
            if not isinstance(text, str):
                continue
            if entry.get("kind") == "match" and isinstance(data, str):
                matched = view.matched.setdefault(text, [])
                if data not in matched:
                    matched.append(data)
                    view.in_children.add((text, data))
            elif entry.get("kind") == "seen" and isinstance(data, list):
                seen = view.seen.setdefault(text, [])
                seen.extend(n for n in data if isinstance(n, str) and n not in seen)
        return view

    def _children_lines(self) -> Iterable[dict[str, Any]]:
        if self.children_file is None:
            return []
        try:
            with open(self.children_file, encoding="utf-8") as f:
                raw = f.read().splitlines()
        except OSError:
            return []
        out = []
        for line in raw:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a child ended in the middle of its write
            if isinstance(entry, dict):
                out.append(entry)
        return out

    # -- the plan --------------------------------------------------------------------------------

    def _plan(self, view: _View) -> list[str]:
        with _STATE.lock:
            models = dict(_STATE.label_models)
        lines = ["tinyllm-instrument plan:"]
        presets = preset_plan()
        if not view.patterns and not presets:
            lines.append("  (no patterns)")
        for pattern in view.patterns:
            why = self.defaults.get(pattern.text)
            lines.append(f"  {pattern.text}" + (f"  ({why})" if why else ""))
            matched = view.matched.get(pattern.text, [])
            notes = view.notes.get(pattern.text, [])
            if not matched and not notes:
                seen = pattern.text in view.seen  # by a child: its module was imported there
                lines.append(
                    "    matched nothing (no such name)" if seen else f"    {_NEVER_IMPORTED}"
                )
            for label in matched:
                line = f"    removed {label}" if pattern.exclude else f"    {label}"
                if label in models and not pattern.exclude:
                    line += f"  model={models[label]}"
                if (pattern.text, label) in view.in_children:
                    line += "  (in a child process)"
                lines.append(line)
            lines.extend(f"    {n}" for n in notes)
        for text, entries in presets.items():
            lines.extend(self._preset_lines(text, entries, view))
        for text, model, _given in self.models:
            lines.append(f"  model {text}={model}")
        loaded = instrumentation_plan()
        # Shown with a preset, whose calls' HTTP spans they make (a failure is warned anyway).
        if loaded and presets:
            lines.append("  OpenTelemetry instrumentations:")
            lines.extend(f"    {name}: {what}" for name, what in sorted(loaded.items()))
        note = guard_note()
        if note is not None:  # children are not followed on this Python: say so here too
            lines.append("  " + note.removeprefix(_PREFIX))
        return lines

    def _preset_lines(self, text: str, entries: list[str], view: _View) -> list[str]:
        """A preset, what it covers, and what it wrapped here and in the children (or why not)."""
        preset = PRESETS.get(text[1:])
        lines = [f"  {text}" + (f"  ({preset.covers})" if preset is not None else "")]
        shown = [f"    {entry}" for entry in entries]
        for label in view.matched.get(text, []):  # told by a child
            if label not in entries:
                shown.append(f"    {label}  (in a child process)")
        if not shown:
            library = preset.distribution if preset is not None else text[1:]
            shown.append(f"    matched nothing ({library} was never imported)")
        return lines + shown

    # -- what matched nothing --------------------------------------------------------------------

    def _unmatched(self, view: _View) -> list[str]:
        out: list[str] = []
        defaults_missed = [
            p
            for p in view.patterns
            if p.text in self.defaults and not p.exclude and not view.matched.get(p.text)
        ]
        if defaults_missed and len(defaults_missed) == sum(
            1 for p in view.patterns if p.text in self.defaults and not p.exclude
        ):
            out.append(_PREFIX + self._default_missed(defaults_missed, view))
        for pattern in view.patterns:
            if pattern.text in self.defaults or view.matched.get(pattern.text):
                continue
            out.append(_PREFIX + self._why(pattern, view))
        if self.unnamed_default is not None:
            out.append(
                f"{_PREFIX}nothing wrapped by default: a pattern cannot name "
                f"{self.unnamed_default!r} (a module name is letters, digits, _ and -); name "
                "what to wrap with --instrument, or rename the program"
            )
        labels = view.labels()
        if self.graph is not None:
            graph, given = self.graph
            qualnames = [label.partition(":")[2] for label in labels]
            if graph not in labels and graph not in qualnames:
                hint = self._graph_hint(graph, qualnames)
                out.append(f"{_PREFIX}{given} matched no wrapped function{hint}")
        for text, _model, given in self.models:
            pattern = parse_pattern(text)
            if not any(pattern.matches_label(label) for label in labels):
                out.append(
                    f"{_PREFIX}{given} matched no wrapped function"
                    + (_did_you_mean(text, labels) if labels else " (nothing was wrapped)")
                )
        return out

    def _graph_hint(self, graph: str, qualnames: list[str]) -> str:
        name = graph.rpartition(":")[2]
        if self.defaults and name in self.entry_points:
            return (
                f": {name} is the program's entry point, which the default targets leave "
                f"alone; wrap it with --instrument '{self.program_names[0]}:*'"
            )
        return _did_you_mean(graph, qualnames) if qualnames else " (nothing was wrapped)"

    def _default_missed(self, patterns: list[TargetPattern], view: _View) -> str:
        shown = ", ".join(repr(p.text) for p in patterns)
        head = f"the default {shown} wrapped nothing: "
        program = self.program_file or self.program_names[0]
        notes = [n for p in patterns for n in _skips(view.notes.get(p.text, []))]
        if notes:
            return head + _first_of(notes)
        entry = ", ".join(self.entry_points)
        if entry:
            return (
                f"{head}{program} defines no function besides its entry point {entry} (not "
                f"wrapped by default); name what to wrap with --instrument"
            )
        return f"{head}{program} defines no function; name what to wrap with --instrument"

    def _why(self, pattern: TargetPattern, view: _View) -> str:
        verb = "removed nothing" if pattern.exclude else "matched nothing"
        head = f"pattern {pattern.text!r} {verb}: "
        stem = self._stem_fix(pattern)
        if stem is not None:
            return head + stem
        if not pattern.exclude:
            for other in view.patterns:
                removed = view.matched.get(other.text, []) if other.exclude else []
                if any(pattern.matches_label(label) for label in removed):
                    return head + f"what it selects is removed by {other.text!r}"
            skips = _skips(view.notes.get(pattern.text, []))
            if skips:
                return f"pattern {pattern.text!r} wrapped nothing: " + _first_of(skips)
        if pattern.exclude:
            names = [
                label.partition(":")[2]
                for label in view.labels()
                if pattern.matches_module(label.partition(":")[0])
            ]
            imported = bool(names) or self._imported(pattern)
        else:
            names = view.seen.get(pattern.text, [])
            imported = pattern.text in view.seen or self._imported(pattern)
        if not imported:
            return head + self._not_imported(pattern)
        return head + _missing(pattern, names)

    def _stem_fix(self, pattern: TargetPattern) -> str | None:
        """For ``bot.py:*`` and ``__main__:*``: how the program is named instead."""
        module = pattern.module
        if module.endswith(".py") and not pattern.submodules:
            fixed = module[: -len(".py")]
        elif module == "__main__":
            fixed = self.program_names[0]
        else:
            return None
        what = (
            "a script is named by its file stem"
            if self.program_file is not None or module != "__main__"
            else "a program run with -m is named by its module"
        )
        return f"{what}, use {_with_module(pattern, fixed)!r}"

    def _imported(self, pattern: TargetPattern) -> bool:
        names = [*self.program_names, *sys.modules.copy()]  # threads may still import
        return any(pattern.matches_module(name) for name in names)

    def _not_imported(self, pattern: TargetPattern) -> str:
        imported = (n for n in sys.modules.copy() if not n.startswith("_"))
        modules = sorted({*self.program_names, *imported})
        if pattern.submodules:
            what = f"no submodule of {pattern.module!r} was imported"
        else:
            what = f"module {pattern.module!r} was never imported"
        match = difflib.get_close_matches(pattern.module, modules, n=1)
        if match:
            return f"{what}; did you mean {_with_module(pattern, match[0])!r}?"
        return what


def _skips(notes: Iterable[str]) -> list[str]:
    """The notes that say why something selected was not wrapped (not "not defined there")."""
    return [
        n
        for n in notes
        if n.startswith("skipped ")
        and not n.endswith("not defined there")
        and ": no class " not in n
    ]


def _first_of(notes: list[str]) -> str:
    more = len(notes) - 1
    return notes[0] + (f" (and {more} more; --print-plan lists them)" if more else "")


def _with_module(pattern: TargetPattern, module: str) -> str:
    bang = "!" if pattern.exclude else ""
    star = ".*" if pattern.submodules else ""
    return f"{bang}{module}{star}:{'.'.join(pattern.path)}"


def _with_path(pattern: TargetPattern, path: str) -> str:
    bang = "!" if pattern.exclude else ""
    star = ".*" if pattern.submodules else ""
    return f"{bang}{pattern.module}{star}:{path}"


def _missing(pattern: TargetPattern, names: Sequence[str]) -> str:
    """Why nothing in an imported module matched, with the nearest name that exists."""
    where = f"the submodules of {pattern.module}" if pattern.submodules else pattern.module
    if pattern.exclude:
        where = f"what is wrapped in {where}"
    if not pattern.wildcard:
        target = ".".join(pattern.path)
        match = difflib.get_close_matches(target, names, n=1)
        hint = f"; did you mean {_with_path(pattern, match[0])!r}?" if match else ""
        return f"no function or class {target!r} in {where}{hint}"
    prefix = ".".join(pattern.path[:-1])
    if prefix:
        classes = [n.rsplit(".", 1)[0] for n in names if "." in n] + list(names)
        if prefix not in classes:
            match = difflib.get_close_matches(prefix, list(dict.fromkeys(classes)), n=1)
            hint = f"; did you mean {_with_path(pattern, match[0] + '.*')!r}?" if match else ""
            return f"no class {prefix!r} in {where}{hint}"
        return f"class {prefix!r} in {where} has no method of its own"
    return f"{where} defines no function or method"


def _did_you_mean(word: str, candidates: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(dict.fromkeys(candidates)), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""
