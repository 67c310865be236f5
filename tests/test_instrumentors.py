"""Installed OpenTelemetry instrumentations under `run`: loaded once, disabled, conflicts, failures.

The instrumentations are real entry points of fake distributions written into a temporary
directory on sys.path (a .dist-info with METADATA and entry_points.txt), found by
importlib.metadata exactly as installed ones are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from tinyllm_instrument import _instrumentors
from tinyllm_instrument._instrumentors import instrumentation_plan, load_instrumentations

CLI = str(Path(sys.executable).parent / "tinyllm-instrument")

_INSTRUMENTOR = """
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

CALLS = []


class Instrumentor(BaseInstrumentor):
    def instrumentation_dependencies(self):
        return []

    def _instrument(self, **kwargs):
        {body}

    def _uninstrument(self, **kwargs):
        CALLS.append("uninstrument")
"""


def _fake_distribution(root: Path, name: str, entry: str, body: str, requires: str = "") -> None:
    module = f"fake_{name}_inst"
    (root / f"{module}.py").write_text(_INSTRUMENTOR.replace("{body}", body))
    info = root / f"fake_{name}-1.0.dist-info"
    info.mkdir()
    metadata = f"Metadata-Version: 2.1\nName: fake-{name}\nVersion: 1.0\n"
    if requires:
        metadata += (
            f"Provides-Extra: instruments\nRequires-Dist: {requires}; extra == 'instruments'\n"
        )
    (info / "METADATA").write_text(metadata)
    (info / "entry_points.txt").write_text(
        f"[opentelemetry_instrumentor]\n{entry} = {module}:Instrumentor\n"
    )


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """Three fake instrumentations: one that works, one that fails, one for a missing library."""
    _fake_distribution(
        tmp_path, "good", "fakegood", 'CALLS.append(("instrument", kwargs.get("tracer_provider")))'
    )
    _fake_distribution(tmp_path, "broken", "fakebroken", 'raise RuntimeError("cannot patch")')
    _fake_distribution(tmp_path, "broken2", "fakebroken2", 'raise RuntimeError("nor this one")')
    _fake_distribution(
        tmp_path, "conflict", "fakeconflict", "CALLS.append('never')", "no-such-lib-xyz>=1"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", raising=False)
    _instrumentors.reset_instrumentations()
    yield tmp_path
    _instrumentors.reset_instrumentations()
    for name in ("fake_good_inst", "fake_broken_inst", "fake_broken2_inst", "fake_conflict_inst"):
        sys.modules.pop(name, None)


def test_every_entry_point_is_loaded_once_and_failures_are_skipped(fakes, tinyllm_capture, caplog):
    provider = TracerProvider()
    plan = load_instrumentations(tracer_provider=provider)
    assert plan["fakegood"] == "loaded"
    assert plan["fakebroken"] == "failed: RuntimeError; reported once"
    assert plan["fakeconflict"].startswith("skipped: ")
    assert "no-such-lib-xyz" in plan["fakeconflict"]
    assert plan["httpx2"] == "loaded"  # the real one, installed with the test extra
    assert "tinyllm_instrument" not in plan  # the kit's own entry point: never loaded here
    import fake_good_inst

    assert fake_good_inst.CALLS == [("instrument", provider)]
    assert load_instrumentations() == plan  # once per process
    assert fake_good_inst.CALLS == [("instrument", provider)]
    assert instrumentation_plan() == plan
    # each broken one said once, by name (two of the same error type are two lines)
    warnings = sorted(r.getMessage() for r in caplog.records if "fakebroken" in r.getMessage())
    assert len(warnings) == 2
    assert "'fakebroken' failed" in warnings[0] and "RuntimeError: cannot patch" in warnings[0]
    assert "'fakebroken2' failed" in warnings[1] and "nor this one" in warnings[1]
    errors = {"stage": "instrument"}
    assert tinyllm_capture.sample("tinyllm_instrumentation_errors_total", errors) == 2


@pytest.mark.parametrize("value", ["fakegood", " httpx2 , fakegood ", "*"])
def test_disabled_instrumentations_are_not_loaded(fakes, monkeypatch, value):
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", value)
    plan = load_instrumentations()
    assert plan["fakegood"] == "disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
    import fake_good_inst

    assert fake_good_inst.CALLS == []
    if value == "*":
        assert set(plan.values()) == {"disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"}


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_")) and k != "PYTHONPATH"
    }
    env.update(extra)
    return env


def test_run_with_a_failing_instrumentation_still_runs_the_program(fakes):
    app = fakes / "app.py"
    app.write_text("print('the app ran')\n")
    result = subprocess.run(
        # with a preset, --print-plan lists what became of each instrumentation
        [CLI, "run", "--instrument", "@openai", "--exporter", "none", "--print-plan", str(app)],
        capture_output=True,
        text=True,
        cwd=fakes,
        env=_env(PYTHONPATH=str(fakes)),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the app ran\n"
    assert result.stderr.count("'fakebroken' failed") == 1, result.stderr
    assert "    fakebroken: failed: RuntimeError; reported once" in result.stderr
    assert "    fakegood: loaded" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_tracing_loads_nothing(fakes):
    app = fakes / "app.py"
    app.write_text("import fake_good_inst\nprint(fake_good_inst.CALLS)\n")
    result = subprocess.run(
        [CLI, "run", "--no-tracing", str(app)],
        capture_output=True,
        text=True,
        cwd=fakes,
        env=_env(PYTHONPATH=str(fakes)),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
