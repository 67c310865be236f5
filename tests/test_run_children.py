"""``run`` and the Python child processes of the program: their stdout, their end, their names.

A child's stdout belongs to the child: a parent that parses it must find only what the child
printed. A child whose own script the kit runs must end as Python ends it (atexit, buffered files
flushed, finalizers, non-daemon threads joined) with its own exit code. A script whose name is not
an identifier (``my-agent.py``) is a module named by its stem, in the parent and in children.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receivers import GrpcTraceReceiver

BIN = Path(sys.executable).parent
CLI = str(BIN / "tinyllm-instrument")
APPS = Path(__file__).parent / "apps"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_"))
        and k not in ("TRACEPARENT", "TRACESTATE", "BAGGAGE", "PYTHONPATH", "NO_COLOR")
    }
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "run", *args], capture_output=True, text=True, cwd=APPS, env=_env(), timeout=timeout
    )


def _report(result: subprocess.CompletedProcess[str]) -> dict:
    """The launcher's one ``RESULT {json}`` line about its child."""
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0][len("RESULT ") :])


# --- a child's stdout holds only what the child prints --------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--tracing"],
        ["--tracing", "--exporter", "console"],
        ["--log-format", "json"],
        ["--log-format", "console", "--log-level", "debug"],
    ],
    ids=["tree", "console-spans", "json-logs", "console-logs"],
)
def test_a_childs_stdout_holds_only_what_the_child_prints(flags):
    result = run_cli(
        "--instrument", "json_child:*", *flags, "launcher.py", "--parse", "json_child.py"
    )
    report = _report(result)  # the launcher parsed the child's stdout as JSON: it did not crash
    assert report["rc"] == 0
    assert report["stdout"] == '{"answer": 42}\n'
    if "--tracing" in flags:  # the child's own part of the trace, on its stderr
        assert "compute" in report["stderr"]
    else:  # the library's warning, on the child's stderr as it would be without the kit
        assert "a library warning" in report["stderr"]


def test_the_parents_tree_still_goes_to_the_parents_stdout():
    result = run_cli("--instrument", "launcher:*", "--tracing", "launcher.py", "json_child.py")
    assert result.returncode == 0, result.stderr
    report = _report(result)
    assert report["stdout"] == '{"answer": 42}\n'
    # the tree exporter prints on the program's stdout by design: the parent's trace is there
    assert any(line.lstrip("└├─ ").startswith("launch ") for line in result.stdout.splitlines())


# --- a child the kit runs ends as Python would end it -------------------------------------------


@pytest.mark.parametrize("mode", ["script", "module"])
def test_a_child_run_by_the_kit_ends_as_python_ends_it(tmp_path, mode):
    out = tmp_path / "child.txt"
    child = ["unflushed_child.py"] if mode == "script" else ["-m", "unflushed_child"]
    result = run_cli(
        "--instrument", "unflushed_child:*", "launcher.py", *child, str(out), timeout=120
    )
    report = _report(result)
    assert report["rc"] == 3, report["stderr"]
    # the file object was never closed: interpreter shutdown flushed it
    assert out.read_text() == "written by the child"
    err = report["stderr"].splitlines()
    assert {"thread finished", "atexit ran", "finalizer ran"} <= set(err), err
    # in Python's order: threads joined, then atexit, then module teardown
    assert err.index("thread finished") < err.index("atexit ran") < err.index("finalizer ran")


def test_without_the_kit_the_same_child_ends_the_same_way(tmp_path):
    """The reference for the test above."""
    out = tmp_path / "child.txt"
    child = subprocess.run(
        [sys.executable, "unflushed_child.py", str(out)],
        capture_output=True,
        text=True,
        cwd=APPS,
        env=_env(),
        timeout=60,
    )
    assert child.returncode == 3
    assert out.read_text() == "written by the child"
    assert child.stderr.splitlines() == ["thread finished", "atexit ran", "finalizer ran"]


def test_a_child_run_by_the_kit_has_its_functions_wrapped_and_runs_once(tmp_path):
    with GrpcTraceReceiver() as receiver:
        result = run_cli(
            "--instrument",
            "unflushed_child:*",
            "--otlp-endpoint",
            receiver.endpoint,
            "launcher.py",
            "unflushed_child.py",
            str(tmp_path / "child.txt"),
        )
        report = _report(result)
        assert report["rc"] == 3, report["stderr"]
        spans = receiver.wait_for(2)
    assert sorted(s.name for s in spans) == ["late", "write"]
    # the program ran once: one atexit line, one finalizer line
    assert report["stderr"].count("atexit ran") == 1
    assert report["stderr"].count("finalizer ran") == 1


def test_a_package_child_run_with_dash_m_is_wrapped_by_its_package_pattern():
    with GrpcTraceReceiver() as receiver:
        result = run_cli(
            "--instrument",
            "shop.*:*",
            "--otlp-endpoint",
            receiver.endpoint,
            "launcher.py",
            "-m",
            "shop",
            "a",
            "b",
        )
        report = _report(result)
        assert (report["rc"], report["stdout"]) == (0, "items=2\n"), report["stderr"]
        spans = receiver.wait_for(4)
    assert sorted(s.name for s in spans) == ["Cart.add", "Cart.add", "checkout", "total"]


# --- a script named my-agent.py ------------------------------------------------------------------


def test_a_hyphenated_script_is_named_by_its_stem_in_the_parent_and_in_children():
    with GrpcTraceReceiver() as receiver:
        result = run_cli(
            "--instrument",
            "my-agent:*",
            "--otlp-endpoint",
            receiver.endpoint,
            "my-agent.py",
            "--spawn",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["HELLO", "spawn exit code 0"]
        spans = receiver.wait_for(4)
    names = sorted(s.name for s in spans)
    assert names == ["main", "spawned", "think", "think"]
    assert {s.resource["service.name"] for s in spans} == {"my-agent"}
    assert {s.attributes["code.namespace"] for s in spans} <= {
        "my-agent",
        "__main__",
        "__mp_main__",
    }


def test_a_hyphenated_child_is_wrapped_when_a_pattern_names_it():
    with GrpcTraceReceiver() as receiver:
        result = run_cli(
            "--instrument",
            "my-agent:think",
            "--otlp-endpoint",
            receiver.endpoint,
            "launcher.py",
            "my-agent.py",
        )
        report = _report(result)
        assert report["rc"] == 0 and report["stdout"] == "HELLO\n", report["stderr"]
        assert [s.name for s in receiver.wait_for(1)] == ["think"]


def test_print_plan_shows_the_hyphenated_module():
    result = run_cli("--instrument", "my-agent:*", "--print-plan", "my-agent.py")
    assert result.returncode == 0, result.stderr
    plan = result.stderr[result.stderr.index("tinyllm-instrument plan:") :].splitlines()
    assert plan[:5] == [
        "tinyllm-instrument plan:",
        "  my-agent:*",
        "    my-agent:think",
        "    my-agent:spawned",
        "    my-agent:main",
    ]


# --- the version guard on the CPython internals -----------------------------------------------


def test_on_a_python_version_not_checked_the_child_hooks_do_nothing_and_say_so_once(
    caplog, monkeypatch
):
    import multiprocessing.spawn
    import subprocess as subprocess_module

    from tinyllm_instrument import _children

    monkeypatch.setattr(_children, "_said_unchecked", set())
    caplog.set_level(logging.DEBUG, logger="tinyllm_instrument")
    popen_init = subprocess_module.Popen.__init__
    spawn_functions = dict(vars(multiprocessing.spawn))
    unchecked = (3, 99)
    assert _children.install_propagation(version=unchecked) is False
    assert _children.install_propagation(version=unchecked) is False
    assert subprocess_module.Popen.__init__ is popen_init
    assert dict(vars(multiprocessing.spawn)) == spawn_functions
    assert _children.take_over_main(lambda kind, target: None, version=unchecked) is False
    notes = [r.getMessage() for r in caplog.records if "3.99" in r.getMessage()]
    assert len(notes) == 1, notes
    assert "not checked" in notes[0] and "child processes" in notes[0]
    assert _children.guard_note(unchecked) == notes[0]


def test_the_guard_knows_the_checked_versions():
    from tinyllm_instrument import _children

    assert _children.is_checked((3, 11))
    assert not _children.is_checked((3, 99))
    assert _children.guard_note((3, 11)) is None


def test_print_plan_says_when_children_are_not_followed(monkeypatch, capsys):
    from tinyllm_instrument import _children
    from tinyllm_instrument._exit_report import ExitReport

    def print_plan() -> None:
        ExitReport(("app",), "app.py", print_plan=True, started=True)()

    print_plan()
    assert "not checked" not in capsys.readouterr().err
    monkeypatch.setattr(_children, "CHECKED_VERSIONS", frozenset())
    print_plan()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "tinyllm-instrument plan:"
    assert lines[-1].startswith("  Python 3.") and "is not checked" in lines[-1]
