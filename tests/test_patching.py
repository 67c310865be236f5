"""instrument()/uninstrument() in-process: patterns, import hooks, graphs, exact restoration."""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import traceback
from pathlib import Path

import pytest

from tinyllm_instrument._rewrite import DEFINITION_HOOK_NAME, compile_with_patterns, definition_hook
from tinyllm_instrument.observe import ObservedFunction
from tinyllm_instrument.patching import (
    TargetPattern,
    TinyLLMInstrumentor,
    get_instrumentation_plan,
    instrument,
    instrumented_patterns,
    parse_pattern,
    parse_targets,
    uninstrument,
)

APPS = Path(__file__).parent / "apps"


@pytest.fixture(autouse=True)
def _targets(monkeypatch):
    """patchme importable; never imported, instrumented or left behind across tests."""
    monkeypatch.syspath_prepend(str(APPS))
    _forget_patchme()
    yield
    uninstrument()
    _forget_patchme()


def _forget_patchme() -> None:
    for name in [n for n in sys.modules if n == "patchme" or n.startswith("patchme.")]:
        del sys.modules[name]


def _is_wrapped(obj) -> bool:
    return isinstance(obj, ObservedFunction)


# --- patterns ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app:main", TargetPattern("app:main", "app", False, ("main",))),
        (
            "pkg.mod:Agent.run",
            TargetPattern("pkg.mod:Agent.run", "pkg.mod", False, ("Agent", "run")),
        ),
        ("app:*", TargetPattern("app:*", "app", False, ("*",))),
        ("app:Agent.*", TargetPattern("app:Agent.*", "app", False, ("Agent", "*"))),
        (" pkg.*:* ", TargetPattern("pkg.*:*", "pkg", True, ("*",))),
    ],
)
def test_each_pattern_form_parses(text, expected):
    assert parse_pattern(text) == expected


@pytest.mark.parametrize(
    "text", ["app", "app:", ":f", "app:*.f", "a*b:f", "app:f:g", "app:Cls.*.x", "1app:f", "app:f()"]
)
def test_malformed_patterns_are_refused_with_the_forms_named(text):
    with pytest.raises(ValueError, match=r"module:function, module:Class\.method"):
        parse_pattern(text)
    with pytest.raises(ValueError):
        instrument(text)


def test_targets_are_comma_separated_and_blanks_ignored():
    assert parse_targets(" a:f, b.*:* ,,") == ["a:f", "b.*:*"]
    assert parse_targets(None) == []


def test_package_pattern_matches_submodules_not_the_package():
    pattern = parse_pattern("pkg.*:*")
    assert pattern.matches_module("pkg.a") and pattern.matches_module("pkg.a.b")
    assert not pattern.matches_module("pkg") and not pattern.matches_module("pkgx.a")


# --- before and after import ----------------------------------------------------------------


def test_a_module_imported_before_instrument_is_patched_at_once(tinyllm_capture):
    alpha = importlib.import_module("patchme.alpha")
    original = alpha.double
    instrument("patchme.alpha:double")
    assert _is_wrapped(alpha.double)
    assert alpha.double(21) == 42
    assert tinyllm_capture.span("double").attributes["tinyllm.graph"] == "double"
    uninstrument("patchme.alpha:double")
    assert alpha.double is original


def test_a_module_imported_after_instrument_is_patched_when_imported(tinyllm_capture):
    instrument("patchme.alpha:Greeter.greet")
    assert get_instrumentation_plan() == {"patchme.alpha:Greeter.greet": []}
    alpha = importlib.import_module("patchme.alpha")
    original = vars(alpha.Greeter)["greet"].__wrapped__  # patched already, on import
    assert alpha.Greeter("ann").greet() == "hi ann 2"
    assert [s.name for s in tinyllm_capture.spans] == ["Greeter.greet"]
    assert get_instrumentation_plan() == {
        "patchme.alpha:Greeter.greet": ["patchme.alpha:Greeter.greet"]
    }
    uninstrument()
    assert vars(alpha.Greeter)["greet"] is original


def test_star_takes_what_the_module_defines_and_nothing_it_imports():
    alpha = importlib.import_module("patchme.alpha")
    before = dict(vars(alpha))
    greeter_before = dict(vars(alpha.Greeter))
    instrument("patchme.alpha:*")
    for name in ("double", "outer"):
        assert _is_wrapped(getattr(alpha, name)), name
    for name in ("greet", "shout", "make", "__call__"):
        assert _is_wrapped(vars(alpha.Greeter)[name]), name
    # imported names, special methods, properties and @observe'd functions are left as they were
    assert alpha.sqrt is before["sqrt"] and alpha.helper_b is before["helper_b"]
    assert vars(alpha.Greeter)["__init__"] is greeter_before["__init__"]
    assert vars(alpha.Greeter)["__repr__"] is greeter_before["__repr__"]
    assert vars(alpha.Greeter)["size"] is greeter_before["size"]
    assert alpha.already is before["already"]
    plan = get_instrumentation_plan()["patchme.alpha:*"]
    assert "skipped patchme.alpha:already: already @observe'd" in plan
    assert "patchme.alpha:Greeter.make" in plan and "patchme.alpha:helper_b" not in plan
    uninstrument("patchme.alpha:*")
    assert dict(vars(alpha)) == before
    assert all(vars(alpha.Greeter)[k] is v for k, v in greeter_before.items())


def test_methods_keep_their_binding_when_wrapped(tinyllm_capture):
    instrument("patchme.alpha:Greeter.*")
    alpha = importlib.import_module("patchme.alpha")
    made = alpha.Greeter.make()
    assert isinstance(made, alpha.Greeter) and made.name == "made"
    assert alpha.Greeter.shout("a") == made.shout("a") == "A"
    assert made() == "hi made 2"
    assert inspect.signature(alpha.Greeter.greet) == inspect.signature(
        vars(alpha.Greeter)["greet"].__wrapped__
    )
    names = [s.name for s in tinyllm_capture.spans]
    assert names == [
        "Greeter.make",
        "Greeter.shout",
        "Greeter.shout",
        "Greeter.greet",
        "Greeter.__call__",
    ]


def test_package_pattern_covers_submodules_imported_before_and_after(tinyllm_capture):
    beta = importlib.import_module("patchme.beta")  # before
    instrument("patchme.*:*")
    assert _is_wrapped(beta.helper_b)
    alpha = importlib.import_module("patchme.alpha")  # after
    assert _is_wrapped(alpha.double)
    assert alpha.outer(1) == 4
    spans = {s.name: s for s in tinyllm_capture.spans}
    assert set(spans) == {"outer", "double", "helper_b"}
    assert spans["double"].parent.span_id == spans["outer"].context.span_id


# --- observing ------------------------------------------------------------------------------------


def test_the_first_wrapped_callable_on_the_stack_is_the_graph(tinyllm_capture):
    instrument("patchme.alpha:*", "patchme.beta:*")
    alpha = importlib.import_module("patchme.alpha")
    alpha.outer(1)
    alpha.double(1)  # on its own: a graph of its own
    (outer,) = tinyllm_capture.spans_named("outer")
    nested, alone = tinyllm_capture.spans_named("double")
    assert outer.attributes["tinyllm.graph"] == "outer" and "tinyllm.node" not in outer.attributes
    assert nested.attributes["tinyllm.node"] == "double"
    assert nested.attributes["tinyllm.graph"] == "outer"
    assert alone.attributes["tinyllm.graph"] == "double" and alone.parent is None
    assert (
        tinyllm_capture.sample(
            "tinyllm_node_executions_total", {"node": "helper_b", "graph": "outer"}
        )
        == 1
    )


def test_a_named_graph_is_the_only_graph(tinyllm_capture):
    instrument("patchme.alpha:*", graph="patchme.alpha:Greeter.greet")
    alpha = importlib.import_module("patchme.alpha")
    alpha.double(1)
    alpha.Greeter("x").greet()
    first, inner = tinyllm_capture.spans_named("double")
    assert first.attributes["tinyllm.node"] == "double" and "tinyllm.graph" not in first.attributes
    assert inner.attributes["tinyllm.graph"] == "Greeter.greet"
    assert tinyllm_capture.span("Greeter.greet").attributes["tinyllm.graph"] == "Greeter.greet"


def test_exceptions_pass_through_unchanged_and_are_recorded(tinyllm_capture):
    instrument("patchme.beta:helper_b")
    beta = importlib.import_module("patchme.beta")
    with pytest.raises(TypeError):
        beta.helper_b("not a number")
    assert tinyllm_capture.span("helper_b").status.status_code.name == "ERROR"


# --- idempotence and restoration -----------------------------------------------------------------


def test_instrument_and_uninstrument_are_idempotent():
    alpha = importlib.import_module("patchme.alpha")
    original = alpha.double
    instrument("patchme.alpha:double")
    wrapper = alpha.double
    instrument("patchme.alpha:double", "patchme.alpha:*")
    assert alpha.double is wrapper  # selected twice, wrapped once
    assert instrumented_patterns() == ["patchme.alpha:double", "patchme.alpha:*"]
    uninstrument("patchme.alpha:*")
    assert alpha.double is wrapper  # still selected by the other pattern
    uninstrument("patchme.alpha:double")
    uninstrument("patchme.alpha:double")
    assert alpha.double is original
    assert instrumented_patterns() == []


def test_a_reference_kept_from_before_uninstrument_becomes_a_pass_through(tinyllm_capture):
    alpha = importlib.import_module("patchme.alpha")
    instrument("patchme.alpha:double")
    kept = alpha.double
    uninstrument()
    assert kept(2) == 4
    assert tinyllm_capture.spans == []


def test_a_pattern_that_matches_nothing_is_reported_at_debug_not_raised(caplog):
    caplog.set_level(logging.DEBUG, logger="tinyllm_instrument")
    instrument("no_such_module_anywhere:*", "patchme.alpha:Missing.run")
    importlib.import_module("patchme.alpha")
    plan = get_instrumentation_plan()
    assert plan["no_such_module_anywhere:*"] == []
    assert plan["patchme.alpha:Missing.run"] == [
        "skipped patchme.alpha:Missing.run: no class 'Missing'"
    ]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("no_such_module_anywhere:*" in m and "matches nothing" in m for m in debug)
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


# --- the program's own module ------------------------------------------------------------------

SOURCE = """\
import functools


@functools.lru_cache(maxsize=None)
def cached(x):
    return x


def fails():
    raise RuntimeError("line 10")


class Box:
    def open(self):
        return fails()
"""


def _run_source(names=("script",)):
    code, labels = compile_with_patterns(SOURCE, "/virtual/script.py", names)
    namespace = {"__name__": "__main__"}
    namespace[DEFINITION_HOOK_NAME] = definition_hook(namespace)
    exec(code, namespace)
    return namespace, labels


def test_the_program_is_compiled_with_its_definitions_wrapped_and_lines_kept(tinyllm_capture):
    instrument("script:*")
    namespace, labels = _run_source()
    assert labels == ["script:cached", "script:fails", "script:Box.open"]
    assert _is_wrapped(namespace["fails"]) and _is_wrapped(vars(namespace["Box"])["open"])
    assert namespace["fails"].__wrapped__.__code__.co_firstlineno == 9
    assert namespace["cached"].__wrapped__.__code__.co_firstlineno == 4
    # a wildcard takes Python functions only: the lru_cache object is left alone
    assert not _is_wrapped(namespace["cached"])
    assert "skipped script:cached: not a function" in get_instrumentation_plan()["script:*"]
    with pytest.raises(RuntimeError) as info:
        namespace["Box"]().open()
    frames = [(f.name, f.lineno) for f in traceback.extract_tb(info.value.__traceback__)]
    assert ("open", 15) in frames and frames[-1] == ("fails", 10)
    open_span = tinyllm_capture.span("Box.open")
    assert tinyllm_capture.span("fails").parent.span_id == open_span.context.span_id


def test_the_program_is_left_as_is_without_a_matching_pattern():
    instrument("other:*")
    namespace, labels = _run_source()
    assert labels == [] and not _is_wrapped(namespace["fails"])


def test_uninstrument_restores_the_programs_own_definitions():
    instrument("script:fails", "script:Box.open")
    namespace, _ = _run_source()
    wrapped_open = vars(namespace["Box"])["open"]
    uninstrument()
    assert not _is_wrapped(namespace["fails"])
    assert vars(namespace["Box"])["open"] is wrapped_open.__wrapped__


# --- the OpenTelemetry instrumentor ------------------------------------------------------------


def test_instrumentor_applies_the_environment_targets(monkeypatch, tinyllm_capture):
    monkeypatch.setenv("TINYLLM_INSTRUMENT_TARGETS", "patchme.beta:helper_b")
    instrumentor = TinyLLMInstrumentor()
    assert list(instrumentor.instrumentation_dependencies()) == []
    beta = importlib.import_module("patchme.beta")
    original = beta.helper_b
    instrumentor.instrument()
    try:
        assert beta.helper_b(1) == 2
        assert tinyllm_capture.span("helper_b")
    finally:
        instrumentor.uninstrument()
    assert beta.helper_b is original


# --- exclusions ---------------------------------------------------------------------------------


def test_an_exclusion_parses_with_a_bang_and_matches_what_it_names():
    pattern = parse_pattern(" !patchme.alpha:Greeter.* ")
    assert pattern == TargetPattern(
        "!patchme.alpha:Greeter.*", "patchme.alpha", False, ("Greeter", "*"), exclude=True
    )
    assert pattern.matches_label("patchme.alpha:Greeter.__init__")  # an exclusion takes all
    assert not parse_pattern("patchme.alpha:Greeter.*").matches_label(
        "patchme.alpha:Greeter.__init__"
    )
    assert parse_targets("app:*, !app:main") == ["app:*", "!app:main"]
    for bad in ["!", "!!app:main", "! ", "app:!main"]:
        with pytest.raises(ValueError, match="with ! in front to exclude"):
            parse_pattern(bad)


def test_an_exclusion_removes_what_the_other_patterns_select_and_the_plan_says_so():
    instrument("patchme.alpha:*", "!patchme.alpha:double", "!patchme.alpha:Greeter.*")
    alpha = importlib.import_module("patchme.alpha")
    assert not _is_wrapped(alpha.double) and _is_wrapped(alpha.outer)
    assert not any(_is_wrapped(v) for v in vars(alpha.Greeter).values())
    plan = get_instrumentation_plan()
    assert plan["!patchme.alpha:double"] == ["removed patchme.alpha:double"]
    assert plan["!patchme.alpha:Greeter.*"] == [
        "removed patchme.alpha:Greeter.greet",
        "removed patchme.alpha:Greeter.shout",
        "removed patchme.alpha:Greeter.make",
        "removed patchme.alpha:Greeter.__call__",
    ]
    assert "patchme.alpha:double" not in plan["patchme.alpha:*"]


def test_an_exclusion_given_later_unwraps_and_lifting_it_wraps_again():
    alpha = importlib.import_module("patchme.alpha")
    original = alpha.double
    instrument("patchme.alpha:*")
    assert _is_wrapped(alpha.double)
    instrument("!patchme.alpha:double")
    assert alpha.double is original
    assert "patchme.alpha:double" not in get_instrumentation_plan()["patchme.alpha:*"]
    uninstrument("!patchme.alpha:double")
    assert _is_wrapped(alpha.double)
    assert "patchme.alpha:double" in get_instrumentation_plan()["patchme.alpha:*"]


def test_an_exclusion_removes_a_definition_of_the_program_itself():
    instrument("script:*", "!script:Box.open")
    namespace, labels = _run_source()
    assert labels == ["script:cached", "script:fails"]
    assert not _is_wrapped(vars(namespace["Box"])["open"]) and _is_wrapped(namespace["fails"])
    assert get_instrumentation_plan()["!script:Box.open"] == ["removed script:Box.open"]


def test_the_instrumentor_takes_exclusions_and_models_from_the_environment(monkeypatch):
    from tinyllm_instrument.patching import get_model_plan

    monkeypatch.setenv("TINYLLM_INSTRUMENT_TARGETS", "patchme.alpha:*, !patchme.alpha:double")
    monkeypatch.setenv("TINYLLM_INSTRUMENT_MODELS", "patchme.alpha:outer=gpt-4o")
    alpha = importlib.import_module("patchme.alpha")
    instrumentor = TinyLLMInstrumentor()
    instrumentor.instrument()
    try:
        assert _is_wrapped(alpha.outer) and not _is_wrapped(alpha.double)
        assert get_model_plan() == {"patchme.alpha:outer": "gpt-4o"}
    finally:
        instrumentor.uninstrument()


# --- models -------------------------------------------------------------------------------------


def test_model_assignments_parse_and_a_malformed_one_is_one_clear_error():
    from tinyllm_instrument._patterns import parse_model, parse_models

    assert parse_model(" app:call_model = gpt-4o-mini ") == ("app:call_model", "gpt-4o-mini")
    assert parse_models("a:f=m1, b.*:*=models/gemini-1.5-pro,") == {
        "a:f": "m1",
        "b.*:*": "models/gemini-1.5-pro",
    }
    assert parse_models({"a:f": "m1"}) == {"a:f": "m1"}
    cases = {
        "gpt-4o": "model 'gpt-4o': must be PATTERN=NAME, such as 'app:call_model=gpt-4o-mini'",
        "a:f=": "model 'a:f=': must be PATTERN=NAME, such as 'app:call_model=gpt-4o-mini'",
        "a f=x": "model 'a f=x': 'a f' is not a valid pattern; use module:function, "
        "module:Class.method, module:*, module:Class.* or package.*:*",
        "!a:f=x": "model '!a:f=x': '!a:f' is an exclusion; a model is named for what is wrapped",
        "a:f=x y": "model 'a:f=x y': model name 'x y' must not hold spaces, commas or control "
        "characters",
        "a:f=x,a:f=y": "model 'a:f=y': a:f already has model 'x'; give each pattern one model",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError) as info:
            parse_models(text)
        assert str(info.value) == message
    with pytest.raises(ValueError, match="must be a dict"):
        instrument("patchme.alpha:*", models=["a:f=x"])  # type: ignore[arg-type]


def test_instrument_keeps_the_model_of_each_wrapped_callable_for_the_plan():
    from tinyllm_instrument.patching import _model_for, get_model_plan

    instrument(
        "patchme.alpha:*",
        models={"patchme.alpha:Greeter.*": "claude-3-5-haiku", "patchme.alpha:outer": "gpt-4o"},
    )
    importlib.import_module("patchme.alpha")
    assert get_model_plan() == {
        "patchme.alpha:outer": "gpt-4o",
        "patchme.alpha:Greeter.greet": "claude-3-5-haiku",
        "patchme.alpha:Greeter.shout": "claude-3-5-haiku",
        "patchme.alpha:Greeter.make": "claude-3-5-haiku",
        "patchme.alpha:Greeter.__call__": "claude-3-5-haiku",
    }
    assert _model_for("patchme.alpha:double") is None
    assert _model_for("patchme.alpha:outer") == "gpt-4o"
    uninstrument()
    assert get_model_plan() == {}


# --- the program's entry point -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "entry"),
    [
        ("def main(): ...\ndef run(): ...\ndef answer(): ...\n", ["main", "run"]),
        ("class C:\n    def main(self): ...\n", []),  # a method is not the program's entry
        (
            "import sys\ndef go(): ...\ndef answer(): ...\n"
            "if __name__ == '__main__':\n    sys.exit(go())\n",
            ["go"],
        ),
        (
            "import asyncio\nasync def serve(): ...\n"
            "if '__main__' == __name__:\n    asyncio.run(serve())\n",
            ["serve"],
        ),
        (
            "def answer(q): ...\nif __name__ == '__main__':\n    for q in 'ab':\n"
            "        print(answer(q))\n",
            [],
        ),
        (
            "def answer(q): ...\nif __name__ == '__main__':\n    print(answer('a'))\n"
            "    print(answer('b'))\n",
            [],
        ),
        ("def answer(q): ...\nif __name__ == '__main__':\n    [answer(q) for q in 'ab']\n", []),
        (
            "def answer(q): ...\nif __name__ == '__main__':\n    while True:\n        answer(1)\n",
            [],
        ),
        (
            "def answers(): ...\nif __name__ == '__main__':\n    for a in answers():\n"
            "        print(a)\n",
            ["answers"],
        ),
        (
            "def helper(): ...\nif __name__ == '__main__':\n    def local(): helper()\n"
            "    local()\n",
            [],
        ),
        ("def answer(): ...\nanswer()\n", []),  # a call outside the guard is no entry point
        ("try:\n    def main(): ...\nexcept ImportError:\n    pass\n", ["main"]),
        ("def main(:\n", []),  # does not compile: Python reports it when it runs
    ],
)
def test_the_entry_point_is_main_run_or_what_the_main_block_calls_once(source, entry):
    from tinyllm_instrument._rewrite import entry_points

    assert entry_points(source) == entry


def test_a_module_with_hostile_attributes_gives_names_for_the_hint_without_an_error(
    tinyllm_capture,
):
    import types

    from tinyllm_instrument.patching import _STATE

    class Hostile:
        def __getattr__(self, name):
            raise RuntimeError("do not touch")

    module = types.ModuleType("hostile_mod")
    exec("def helper():\n    return 1\n", module.__dict__)
    module.trap = Hostile()
    sys.modules["hostile_mod"] = module
    try:
        instrument("hostile_mod:helpr")
        assert get_instrumentation_plan()["hostile_mod:helpr"] == [
            "skipped hostile_mod:helpr: not defined there"
        ]
        with _STATE.lock:
            assert _STATE.seen["hostile_mod:helpr"] == ["helper"]
    finally:
        uninstrument()
        del sys.modules["hostile_mod"]
    assert tinyllm_capture.sample(
        "tinyllm_instrumentation_errors_total", {"stage": "instrument"}
    ) in (None, 0)
