"""The type checker sees an @observe'd callable with its original signature."""

from __future__ import annotations

from pathlib import Path

from mypy import api

SAMPLE = Path(__file__).parent / "typing" / "observe_types.py"


def test_mypy_sees_original_signatures_and_rejects_wrong_arguments(tmp_path):
    stdout, stderr, _status = api.run(
        [
            str(SAMPLE),
            "--no-error-summary",
            "--hide-error-context",
            "--show-error-codes",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--python-version",
            "3.11",
        ]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    expected_lines = {
        i + 1
        for i, line in enumerate(SAMPLE.read_text().splitlines())
        if "# expected error" in line
    }
    got_lines = {int(line.split(":")[1]) for line in errors}
    # assert_type mismatches would add lines; wrong arguments must be caught exactly where marked
    assert got_lines == expected_lines, stdout + stderr
    assert all("[arg-type]" in line for line in errors), stdout
