"""The preset registry and its plumbing: instrument("@NAME"), the plan, versions, failures, CLI."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyllm_instrument import instrument, uninstrument
from tinyllm_instrument.patching import TinyLLMInstrumentor, get_instrumentation_plan
from tinyllm_instrument.presets import (
    PRESETS,
    Preset,
    disable_presets,
    enable_presets,
    enabled_presets,
    parse_preset,
)

CLI = str(Path(sys.executable).parent / "tinyllm-instrument")
PYTEST_MAJOR = int(importlib.metadata.version("pytest").split(".")[0])


class FakeLibrary:
    """What a preset does to a library, recorded: installs, uninstalls, labels reported."""

    def __init__(self, labels=("fake.mod:Client.call",), fail: BaseException | None = None):
        self.labels = labels
        self.fail = fail
        self.installs = 0
        self.uninstalls = 0

    def install(self, report):
        self.installs += 1
        for label in self.labels:
            report(label)
            report(label)  # told twice, listed once
        if self.fail is not None:
            raise self.fail

    def uninstall(self):
        self.uninstalls += 1


@pytest.fixture
def fake(monkeypatch):
    """A preset named @fake over the installed pytest distribution (so the version check passes)."""
    lib = FakeLibrary()
    preset = Preset("fake", "pytest", (PYTEST_MAJOR,), "Client.call", lib.install, lib.uninstall)
    monkeypatch.setitem(PRESETS, "fake", preset)
    yield lib
    uninstrument()


def test_instrument_at_name_installs_once_and_lists_what_it_wrapped(fake):
    instrument("@fake")
    instrument(" @fake ")  # idempotent, and the same name once stripped
    assert fake.installs == 1
    assert enabled_presets() == ["@fake"]
    assert get_instrumentation_plan() == {"@fake": ["fake.mod:Client.call"]}
    uninstrument("@fake")
    assert fake.uninstalls == 1
    uninstrument("@fake")
    assert fake.uninstalls == 1
    assert get_instrumentation_plan() == {}


def test_uninstrument_with_no_argument_removes_presets_too(fake):
    instrument("@fake", "json:dumps")
    uninstrument()
    assert fake.uninstalls == 1
    assert enabled_presets() == []


def test_unknown_preset_is_one_error_listing_the_known_ones_and_nothing_is_applied(fake):
    with pytest.raises(ValueError) as info:
        instrument("@fake", "@nope")
    message = str(info.value)
    assert "unknown preset '@nope'" in message
    assert "@fake" in message and "@openai" in message
    assert fake.installs == 0 and enabled_presets() == []


@pytest.mark.parametrize("text", ["@", "@Open AI", "@9x", "openai@"])
def test_malformed_preset_names_say_the_form(text):
    with pytest.raises(ValueError, match="@NAME"):
        parse_preset(text)


def test_a_library_not_installed_is_a_note_not_an_error(monkeypatch):
    lib = FakeLibrary()
    preset = Preset("ghost", "no-such-distribution-xyz", (1,), "x", lib.install, lib.uninstall)
    monkeypatch.setitem(PRESETS, "ghost", preset)
    try:
        instrument("@ghost")
        assert lib.installs == 0
        assert get_instrumentation_plan() == {
            "@ghost": ["skipped: no-such-distribution-xyz is not installed"]
        }
    finally:
        uninstrument()


def test_a_major_version_not_written_for_says_what_it_found(monkeypatch):
    lib = FakeLibrary()
    version = importlib.metadata.version("pytest")
    preset = Preset("old", "pytest", (0, 1), "x", lib.install, lib.uninstall)
    monkeypatch.setitem(PRESETS, "old", preset)
    try:
        instrument("@old")
        assert lib.installs == 0
        assert get_instrumentation_plan() == {
            "@old": [f"skipped: pytest {version} found; @old is written for 0.x/1.x"]
        }
    finally:
        uninstrument()


def test_a_failing_install_is_reported_once_counted_and_undone(fake, tinyllm_capture, caplog):
    fake.fail = RuntimeError("boom in the preset")
    instrument("@fake")  # does not raise into the program
    plan = get_instrumentation_plan()["@fake"]
    assert plan[-1] == "skipped: installing failed (RuntimeError); reported once"
    assert fake.uninstalls == 1  # what it wrapped before failing is restored
    assert (
        tinyllm_capture.sample("tinyllm_instrumentation_errors_total", {"stage": "instrument"}) == 1
    )
    warnings = [r for r in caplog.records if "boom in the preset" in r.getMessage()]
    assert len(warnings) == 1


def test_a_keyboard_interrupt_in_install_is_not_swallowed(fake):
    fake.fail = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        instrument("@fake")


def test_the_otel_instrumentor_reads_presets_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("TINYLLM_INSTRUMENT_TARGETS", "@fake, json:dumps")
    instrumentor = TinyLLMInstrumentor()
    instrumentor.instrument()
    try:
        assert fake.installs == 1
        assert "@fake" in get_instrumentation_plan()
    finally:
        instrumentor.uninstrument()
    assert fake.uninstalls == 1


def test_disable_presets_of_an_unknown_name_is_an_error():
    with pytest.raises(ValueError, match="unknown preset"):
        disable_presets(["@nope"])
    enable_presets([])  # nothing to do is fine
    assert enabled_presets() == []


# --- the command line --------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_")) and k != "PYTHONPATH"
    }
    env.update(extra)
    return env


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None, source: str = "print(1)\n"):
    app = tmp_path / "app.py"
    app.write_text(source)
    return subprocess.run(
        [CLI, "run", *args, str(app)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env if env is not None else _env(),
        timeout=60,
    )


def test_cli_unknown_preset_is_one_line_naming_the_known_ones(tmp_path):
    proc = _run(tmp_path, "--instrument", "@nope")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--instrument @nope" in lines[0]
    assert "unknown preset '@nope'; known presets: @anthropic, @langgraph, @openai" in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_unknown_preset_in_the_environment_names_the_variable(tmp_path):
    proc = _run(tmp_path, env=_env(TINYLLM_INSTRUMENT_TARGETS="app:*,@nope"))
    assert proc.returncode == 2, proc.stderr
    assert "TINYLLM_INSTRUMENT_TARGETS" in proc.stderr and "unknown preset '@nope'" in proc.stderr
