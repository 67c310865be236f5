"""``tinyllm-instrument run app.py`` with no flag: the default targets, one trace per graph call,
what matched nothing said at exit, models, and the ``app`` of log lines. Real command, real apps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receivers import GrpcTraceReceiver, ReceivedSpan

BIN = Path(sys.executable).parent
CLI = str(BIN / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"
BOT_NODES = ["route", "retrieve", "lookup_order", "call_model", "stream_words"]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TINYLLM_INSTRUMENT_")
        and k not in ("TRACEPARENT", "TRACESTATE", "BAGGAGE", "PYTHONPATH", "NO_COLOR")
    }
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [CLI, "run", *args],
        capture_output=True,
        text=True,
        cwd=APPS,
        env=env if env is not None else _env(),
        timeout=timeout,
    )


def _kit_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tinyllm-instrument: ")]


def _plan(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = lines.index("tinyllm-instrument plan:")
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines)
    )
    return lines[start:end]


@pytest.fixture
def receiver():
    with GrpcTraceReceiver() as rec:
        yield rec


def _traces(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        out.setdefault(span.trace_id, []).append(span)
    return out


# --- 1. the default targets: the program's own functions, not its entry point ------------------


def test_no_flag_prints_one_tree_per_graph_call():
    """The closing note's run: a main() that asks the graph three times gives three trees."""
    result = run_cli("support_bot.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [  # the program's stdout is its own
        "Refunds take 5 days. (asked: How long do refunds take?)",
        "Order A-1001 is shipped. (asked: Where is order A-1001?)",
        "That order could not be found. (asked: Where is order A-9999?)",
    ]
    lines = result.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("trace ")]
    assert len(starts) == 3, result.stdout
    for at in starts:
        assert re.fullmatch(r"trace [0-9a-f]{8} · support_bot", lines[at])
        assert re.match(r"answer +\d", lines[at + 1])  # the root of each: the graph call
        assert lines[at + 2].startswith("├─ route ")
    assert not any(re.match(r"main\s", line) for line in lines)
    # the third question's order is unknown: the tool fails, the answer does not
    third = lines[starts[2] :]
    assert any(re.match(r"├─ lookup_order .* error OrderNotFound", line) for line in third)
    assert re.search(r"call_model .* ok +in 24 / out 12 tok", "\n".join(third))
    assert _kit_lines(result.stderr) == []  # every default pattern matched: nothing to say


def test_no_flag_gives_separate_traces_each_with_the_graph_as_root(receiver):
    result = run_cli("--otlp-endpoint", receiver.endpoint, "support_bot.py")
    assert result.returncode == 0, result.stderr
    spans = receiver.wait_for(3 + 3 * 4 + 2)  # three answers; lookup_order twice
    traces = _traces(spans)
    assert len(traces) == 3
    for trace in traces.values():
        [root] = [s for s in trace if s.parent_span_id is None]
        assert root.name == "answer" and root.attributes["tinyllm.graph"] == "answer"
        assert all(s.parent_span_id == root.span_id for s in trace if s is not root)
        assert all(s.attributes["tinyllm.graph"] == "answer" for s in trace)
    assert "main" not in {s.name for s in spans}
    assert sorted({s.name for s in spans}) == sorted(["answer", *BOT_NODES])


def test_the_default_is_shown_in_the_plan_with_what_its_exclusion_removed():
    result = run_cli("--exporter", "none", "--print-plan", "support_bot.py")
    assert result.returncode == 0, result.stderr
    assert _plan(result.stderr) == [
        "tinyllm-instrument plan:",
        "  support_bot:*  (default: the program's own functions)",
        *(f"    support_bot:{name}" for name in [*BOT_NODES, "answer"]),
        "  !support_bot:main  (default: its entry point)",
        "    removed support_bot:main",
    ]


def test_a_package_run_with_dash_m_gets_its_modules_by_default():
    result = run_cli("--exporter", "none", "--print-plan", "-m", "shop", "tea")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "items=1\n"
    assert _plan(result.stderr) == [
        "tinyllm-instrument plan:",
        "  shop:*  (default: the program's own functions)",
        f"    nothing in shop ({APPS}/shop/__main__.py) matches",
        "  shop.*:*  (default: the program's own functions)",
        "    shop.cart:Cart.add",
        "    shop.cart:total",
        f"    nothing in shop ({APPS}/shop/__main__.py) matches",
        "  !shop:checkout  (default: its entry point)",
        "    removed shop:checkout",
    ]


def test_instrument_replaces_the_default(receiver):
    result = run_cli(
        "--instrument", "support_bot:route", "--otlp-endpoint", receiver.endpoint, "support_bot.py"
    )
    assert result.returncode == 0, result.stderr
    assert [s.name for s in receiver.wait_for(3)] == ["route"] * 3


def test_exclusions_alone_narrow_the_default(receiver):
    result = run_cli(
        "--instrument",
        "!support_bot:stream_words",
        "--otlp-endpoint",
        receiver.endpoint,
        "support_bot.py",
    )
    assert result.returncode == 0, result.stderr
    names = {s.name for s in receiver.wait_for(3 + 3 * 3 + 2)}
    assert names == {"answer", "route", "retrieve", "lookup_order", "call_model"}


@pytest.mark.parametrize(
    "how",
    [["--no-default-targets"], ["env", "0"], ["env", "off"]],
    ids=["flag", "env-0", "env-off"],
)
def test_the_default_can_be_turned_off(how):
    if how[0] == "env":
        env = _env(TINYLLM_INSTRUMENT_DEFAULT_TARGETS=how[1])
        result = run_cli("--print-plan", "support_bot.py", env=env)
    else:
        result = run_cli(*how, "--print-plan", "support_bot.py")
    assert result.returncode == 0, result.stderr
    assert "trace " not in result.stdout
    assert _plan(result.stderr) == ["tinyllm-instrument plan:", "  (no patterns)"]


def test_help_says_what_runs_by_default():
    result = subprocess.run([CLI, "run", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert "--default-targets / --no-default-targets" in text
    assert "Without --instrument: wrap the program's own functions" in text
    assert "except its entry point: main, run, and a function the" in text
    assert "TINYLLM_INSTRUMENT_DEFAULT_TARGETS=0 turns it off" in text
    assert "A pattern that is not an exclusion replaces the default targets" in text


def test_a_hyphenated_script_and_its_spawned_child_get_the_default(receiver):
    result = run_cli("--otlp-endpoint", receiver.endpoint, "my-agent.py", "--spawn", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "spawn exit code 0" in result.stdout
    spans = receiver.wait_for(3)
    assert [s.name for s in spans].count("think") == 2  # main's call, and the spawned child's
    assert "main" not in {s.name for s in spans}
    spawned = next(s for s in spans if s.name == "spawned")
    assert spawned.parent_span_id is None  # main is not wrapped: a trace of its own


# --- 2. what matched nothing, said at exit -------------------------------------------------------

_PREFIX = "tinyllm-instrument: "


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--instrument", "support_bot.py:*"],
            "pattern 'support_bot.py:*' matched nothing: a script is named by its file stem, "
            "use 'support_bot:*'",
        ),
        (
            ["--instrument", "__main__:answer"],
            "pattern '__main__:answer' matched nothing: a script is named by its file stem, "
            "use 'support_bot:answer'",
        ),
        (
            ["--instrument", "support_bot:anwser"],
            "pattern 'support_bot:anwser' matched nothing: no function or class 'anwser' in "
            "support_bot; did you mean 'support_bot:answer'?",
        ),
        (
            ["--instrument", "support_bot:Complection.*"],
            "pattern 'support_bot:Complection.*' matched nothing: no class 'Complection' in "
            "support_bot; did you mean 'support_bot:Completion.*'?",
        ),
        (
            ["--instrument", "dataclass:*"],
            "pattern 'dataclass:*' matched nothing: module 'dataclass' was never imported; "
            "did you mean 'dataclasses:*'?",
        ),
        (
            ["--instrument", "nosuchmodule:*"],
            "pattern 'nosuchmodule:*' matched nothing: module 'nosuchmodule' was never imported",
        ),
        (
            ["--instrument", "support_bot:*", "--instrument", "!support_bot:mian"],
            "pattern '!support_bot:mian' removed nothing: no function or class 'mian' in what "
            "is wrapped in support_bot; did you mean '!support_bot:main'?",
        ),
        (
            ["--instrument", "support_bot:main", "--instrument", "!support_bot:main"],
            "pattern 'support_bot:main' matched nothing: what it selects is removed by "
            "'!support_bot:main'",
        ),
        (
            ["--graph", "anwser"],
            "--graph anwser matched no wrapped function; did you mean 'answer'?",
        ),
        (
            ["--model", "support_bot:cal_model=gpt-4o"],
            "--model support_bot:cal_model=gpt-4o matched no wrapped function; did you mean "
            "'support_bot:call_model'?",
        ),
    ],
)
def test_what_matched_nothing_is_one_line_at_exit_with_a_did_you_mean(args, line):
    result = run_cli("--exporter", "none", *args, "support_bot.py")
    assert result.returncode == 0, result.stderr
    assert _kit_lines(result.stderr) == [_PREFIX + line]
    assert result.stderr.splitlines()[-1] == _PREFIX + line  # at exit: after everything else


def test_an_environment_graph_is_named_by_its_variable():
    env = _env(TINYLLM_INSTRUMENT_GRAPH="anwser", TINYLLM_INSTRUMENT_EXPORTER="none")
    result = run_cli("support_bot.py", env=env)
    assert _kit_lines(result.stderr) == [
        _PREFIX + "TINYLLM_INSTRUMENT_GRAPH=anwser matched no wrapped function; did you mean "
        "'answer'?"
    ]


def test_a_pattern_already_observed_says_it_wrapped_nothing(tmp_path):
    app = tmp_path / "bot.py"
    app.write_text(
        "from tinyllm_instrument import observe\n\n\n"
        "@observe(graph='g')\ndef answer():\n    return 1\n\n\nanswer()\n"
    )
    result = run_cli("--exporter", "none", "--instrument", "bot:answer", str(app))
    assert _kit_lines(result.stderr) == [
        _PREFIX + "pattern 'bot:answer' wrapped nothing: skipped bot:answer: already @observe'd"
    ]


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("print('hi')\n", "/hello.py defines no function; name what to wrap with --instrument"),
        (
            "def main():\n    print('hi')\n\n\nmain()\n",
            "/hello.py defines no function besides its entry point main (not wrapped by "
            "default); name what to wrap with --instrument",
        ),
    ],
)
def test_a_default_that_wraps_nothing_says_so(tmp_path, source, line):
    app = tmp_path / "hello.py"
    app.write_text(source)
    result = run_cli(str(app))
    assert result.returncode == 0
    assert result.stdout == "hi\n"
    assert _kit_lines(result.stderr) == [
        f"{_PREFIX}the default 'hello:*' wrapped nothing: {tmp_path}{line}"
    ]


_TYPO = "waiter:wrok"
_TYPO_LINE = (
    f"{_PREFIX}pattern 'waiter:wrok' matched nothing: no function or class 'wrok' in waiter; "
    "did you mean 'waiter:work'?"
)


@pytest.mark.parametrize(
    ("program", "code"),
    [
        (["sample_app.py", "--fail"], 1),  # an uncaught exception
        (["sample_app.py", "5"], 5),  # sys.exit(5)
    ],
)
def test_the_exit_report_comes_after_an_exception_or_sys_exit(program, code):
    result = run_cli("--exporter", "none", "--instrument", "sample_app:explod", *program)
    assert result.returncode == code
    assert result.stderr.splitlines()[-1] == (
        f"{_PREFIX}pattern 'sample_app:explod' matched nothing: no function or class 'explod' "
        "in sample_app; did you mean 'sample_app:explode'?"
    )


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)])
def test_the_exit_report_comes_after_a_signal(sig, code):
    reset_sigint = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    reset_sigint += "os.execv(sys.argv[1], sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", reset_sigint, CLI, "run", "--instrument", _TYPO, "waiter.py"],
        cwd=APPS,
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    assert _kit_lines(err) == [_TYPO_LINE]


def test_a_program_that_does_not_compile_gets_no_report(tmp_path):
    app = tmp_path / "broken.py"
    app.write_text("def broken(:\n    pass\n")
    result = run_cli("--instrument", "nosuch:*", str(app))
    assert result.returncode == 1
    assert _kit_lines(result.stderr) == []


def test_a_pattern_that_matches_in_a_child_only_is_not_reported():
    result = run_cli(
        "--exporter",
        "none",
        "--print-plan",
        "--instrument",
        "spawner:launch_subprocess",
        "--instrument",
        "child_worker:*",
        "--instrument",
        "child_worker:wrk",
        "spawner.py",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    plan = _plan(result.stderr)
    assert "  child_worker:*" in plan
    assert plan[plan.index("  child_worker:*") + 1] == "    child_worker:work  (in a child process)"
    assert plan[plan.index("  child_worker:wrk") + 1] == "    matched nothing (no such name)"
    # the names the child saw make the did-you-mean; the report file is gone
    assert _kit_lines(result.stderr) == [
        f"{_PREFIX}pattern 'child_worker:wrk' matched nothing: no function or class 'wrk' in "
        "child_worker; did you mean 'child_worker:work'?"
    ]


def test_the_report_reads_what_children_told_and_removes_their_file(tmp_path, capsys):
    from tinyllm_instrument._exit_report import ExitReport, child_listener
    from tinyllm_instrument.patching import instrument, uninstrument

    told = tmp_path / "children.jsonl"
    told.write_text("")
    tell = child_listener(str(told))
    tell("match", "kid:*", "kid:work")
    tell("seen", "kid:wrk", ["work", "Helper", "Helper.run"])
    with open(told, "a") as f:
        f.write('{"kind": "match", "pattern": "kid:*"')  # a child killed mid-write
    instrument("kid:*", "kid:wrk")
    try:
        report = ExitReport(("parent",), "parent.py", print_plan=True, children_file=str(told))
        report.start()
        report()
        report()  # once only
    finally:
        uninstrument()
    assert capsys.readouterr().err.splitlines() == [
        "tinyllm-instrument plan:",
        "  kid:*",
        "    kid:work  (in a child process)",
        "  kid:wrk",
        "    matched nothing (no such name)",
        f"{_PREFIX}pattern 'kid:wrk' matched nothing: no function or class 'wrk' in kid; did "
        "you mean 'kid:work'?",
    ]
    assert not told.exists()


# --- 4. models: parsed, validated, shown, passed on --------------------------------------------


def test_models_are_shown_in_the_plan_from_flags_and_the_environment():
    env = _env(TINYLLM_INSTRUMENT_MODELS="support_bot:stream_words=gpt-4o")
    result = run_cli(
        "--exporter",
        "none",
        "--print-plan",
        "--model",
        "support_bot:call_model=gpt-4o-mini",
        "support_bot.py",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    plan = _plan(result.stderr)
    assert "    support_bot:call_model  model=gpt-4o-mini" in plan
    assert "    support_bot:route" in plan  # no model: no annotation
    assert plan[-1] == "  model support_bot:call_model=gpt-4o-mini"  # flags replace the env twin
    assert _kit_lines(result.stderr) == []


def test_models_reach_the_child_processes():
    from tinyllm_instrument._runner import RunOptions

    options = RunOptions(models=(("app:llm", "gpt-4o"), ("app:Judge.*", "claude-3-5-haiku")))
    env = options.child_env()
    assert env["TINYLLM_INSTRUMENT_MODELS"] == "app:llm=gpt-4o,app:Judge.*=claude-3-5-haiku"
    assert RunOptions.from_env(env).models == options.models


# --- 7. the app field of log lines is the service, in the program and in its children ---------


@pytest.mark.parametrize("service", ["support-desk", None])
def test_log_lines_carry_the_service_as_app_in_parent_and_child(tmp_path, service):
    log = tmp_path / "app.log"
    flags = ["--service-name", service] if service else []
    result = run_cli(
        *flags, "--log-format", "json", "--log-file", str(log), "logs_and_child.py", timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    events = {line["event"] for line in lines}
    assert {"a line from the parent", "a library warning"} <= events
    assert {line["app"] for line in lines} == {service or "logs_and_child"}


def test_a_graph_named_after_the_entry_point_says_how_to_wrap_it():
    result = run_cli("--exporter", "none", "--graph", "main", "support_bot.py")
    assert _kit_lines(result.stderr) == [
        f"{_PREFIX}--graph main matched no wrapped function: main is the program's entry point, "
        "which the default targets leave alone; wrap it with --instrument 'support_bot:*'"
    ]


def test_a_script_no_pattern_can_name_says_so(tmp_path):
    app = tmp_path / "my app.py"
    app.write_text("def f():\n    return 1\n\n\nprint(f())\n")
    result = run_cli(str(app))
    assert (result.returncode, result.stdout) == (0, "1\n")
    assert _kit_lines(result.stderr) == [
        f"{_PREFIX}nothing wrapped by default: a pattern cannot name 'my app' (a module name is "
        "letters, digits, _ and -); name what to wrap with --instrument, or rename the program"
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1\n2", "'1\\n2'"),  # a newline would make the error two lines
        ("9" * 500, "'" + "9" * 119 + "…'"),  # a huge value is cut short
    ],
)
def test_a_bad_value_stays_one_short_line(value, shown):
    result = run_cli("--metrics-port", value, "support_bot.py")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: --metrics-port {shown}: must be a port number from 0 to 65535 (0: any free port)"
    ]


def test_a_child_that_outlives_the_run_tells_nobody_and_does_not_fail(tmp_path):
    from tinyllm_instrument._exit_report import child_listener

    tell = child_listener(str(tmp_path / "gone.jsonl"))  # the run removed its file
    tell("match", "kid:*", "kid:work")
    tell("match", "kid:*", "kid:other")
    assert not (tmp_path / "gone.jsonl").exists()


def test_a_forked_child_tells_the_run_and_does_not_report_itself():
    result = run_cli(
        "--exporter",
        "none",
        "--instrument",
        "forker:*",
        "--instrument",
        "helpers:shout",
        "--instrument",
        "nosuch:*",
        "forker.py",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "forked child done\n"
    # once, by the run: not again by the fork's own exit; helpers:shout matched in the fork
    assert _kit_lines(result.stderr) == [
        f"{_PREFIX}pattern 'nosuch:*' matched nothing: module 'nosuch' was never imported"
    ]
