"""README.md's and docs/run.md's commands print what the pages show, held closely.

tests/test_docs.py runs every documented command and finds each shown line somewhere in order,
any number free. Here, for the two pages a new user reads first, every command block (but the
``make`` lines, checked with ``make -n``) must be a ``console`` block that shows its output, and
that output must be the real one: the shown
lines between two ``...`` lines appear as consecutive real lines, the first shown line is the
first real one unless the block starts with ``...`` (the last likewise), and only ids (hex, 8
digits or more), timings (durations, ISO timestamps, the bars of a span tree and the column
widths that follow them) and ports (``ports:`` / ``setup:`` directives) may differ.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import test_docs as docs

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "docs" / "run.md"]

_ID = r"[0-9a-f]{8,}"
_TIMING = r"\d+(?:\.\d+)? ?(?:µs|ms|s)"
_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?"
_BAR = r"[█·]{20}"
_FREE = re.compile(rf"(?<![\w-])(?:{_TIMESTAMP}|{_TIMING}|{_ID}|{_BAR})(?![\w-])")


def _line_pattern(shown: str) -> re.Pattern[str]:
    """The shown line, literal but for ids, timings and bars; a run of spaces matches any."""
    parts, at = [], 0
    for match in _FREE.finditer(shown):
        parts.append(re.escape(shown[at : match.start()]))
        text = match.group(0)
        if re.fullmatch(_TIMESTAMP, text):
            parts.append(_TIMESTAMP)
        elif re.fullmatch(_TIMING, text):
            parts.append(_TIMING)
        elif re.fullmatch(_BAR, text):
            parts.append(_BAR)
        else:
            parts.append(_ID)
        at = match.end()
    parts.append(re.escape(shown[at:]))
    return re.compile(re.sub(r"(?:\\ )+", r" +", "".join(parts)))


def check_output(shown: list[str], actual: list[str]) -> str | None:
    """None when ``actual`` is what ``shown`` shows; else what differs."""
    chunks: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1].append(line.rstrip())
    anchored_start, anchored_end = bool(chunks[0]), bool(chunks[-1])
    at = 0
    for k, chunk in enumerate(chunks):
        if not chunk:
            continue
        patterns = [_line_pattern(line) for line in chunk]
        last_start = len(actual) - len(chunk)
        starts = [0] if (k == 0 and anchored_start) else range(at, last_start + 1)
        if k == len(chunks) - 1 and anchored_end:
            starts = [s for s in starts if s == last_start]
        found = next(
            (
                s
                for s in starts
                if 0 <= s <= last_start
                and all(p.fullmatch(actual[s + i]) for i, p in enumerate(patterns))
            ),
            None,
        )
        if found is None:
            where = "at the start" if k == 0 and anchored_start else "in order"
            if k == len(chunks) - 1 and anchored_end:
                where += ", at the end"
            return f"these shown lines are not the real output ({where}):\n  " + "\n  ".join(chunk)
        at = found + len(chunk)
    return None


SHELL_BLOCKS = [b for page in PAGES for b in docs.parse_blocks(page) if b.lang in docs.SHELL_LANGS]
#: Blocks of ``make`` lines: not run from here (``make test`` would run itself), but each line
#: is a real target (test_the_make_lines_are_real_targets) and tests/test_examples.py runs the demo.
MAKE_BLOCKS = [
    b for b in SHELL_BLOCKS if all(c.startswith("make ") for c, _ in docs.shell_commands(b))
]
BLOCKS = [b for b in SHELL_BLOCKS if b not in MAKE_BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=docs._ids(BLOCKS))
def test_each_run_command_prints_what_the_page_shows(block: docs.Block, tmp_path: Path):
    assert block.lang == "console", (
        f"{block.where}: show what the command prints: a console block, `$ command` then output"
    )
    assert "skip" not in block.directives and "background" not in block.directives
    ws = docs._prepare(tmp_path / "ws", block.page)
    ports = docs.requested_ports(block)
    expected_exit = int(block.directives.get("exit", "0"))
    setup = None
    if "setup" in block.directives:  # a server the commands talk to (its ports announced)
        setup = docs.Background(ROOT / block.directives["setup"], ws)
        ports.update(setup.ports)
    try:
        _run_commands(block, ws, ports, expected_exit)
    finally:
        if setup is not None:
            setup.stop()


def _run_commands(block: docs.Block, ws: Path, ports: dict[int, int], expected_exit: int) -> None:
    for command, shown in docs.shell_commands(block):
        assert docs.is_run(command), f"{block.where}: `{command}` is not run"
        assert [s for s in shown if s.strip() not in ("", "...")], (
            f"{block.where}: `{command}` shows no output"
        )
        command = docs.apply_ports(command, ports)
        result = subprocess.run(
            command,
            shell=True,
            cwd=ws,
            env=docs.clean_env(),
            capture_output=True,
            text=True,
            timeout=docs.TIMEOUT,
        )
        assert result.returncode == expected_exit, f"{block.where}: {result.stderr[-3000:]}"
        actual = (result.stdout + result.stderr).splitlines()
        problem = check_output([docs.apply_ports(s, ports) for s in shown], actual)
        assert problem is None, (
            f"{block.where}: `{command}`: {problem}\nreal output:\n" + "\n".join(actual)
        )


def test_the_pages_show_a_tree_and_the_default_run():
    commands = [c for b in BLOCKS for c, _ in docs.shell_commands(b)]
    assert "tinyllm-instrument run app.py" in commands  # the zero-flag run, on both pages
    assert sum(c == "tinyllm-instrument run app.py" for c in commands) == 2


@pytest.mark.parametrize(
    ("shown", "actual", "ok"),
    [
        (["a", "...", "c"], ["a", "b", "c"], True),
        (["a", "c"], ["a", "b", "c"], False),  # not consecutive
        (["b", "..."], ["a", "b"], False),  # the first shown line must be the first real one
        (["...", "b"], ["b", "c"], False),  # the last likewise
        (["in 27 / out 15 tok"], ["in 24 / out 15 tok"], False),  # counts are not free
        (["answer   5.8 ms  ██··  ok"], ["answer  12.1 ms  ██··  ok"], True),
        (["trace c778203a · app"], ["trace 0088d7f3 · app"], True),
        (["trace c778203a · app"], ["trace 0088d7f3 · bot"], False),
        (['{"a":1,"timestamp":"2026-12-02T07:19:45.065141Z"}'], ['{"a":1,"timestamp":"x"}'], False),
    ],
)
def test_the_comparison_frees_ids_timings_and_bars_only(shown, actual, ok):
    bar_shown = [s.replace("██··", "█" * 5 + "·" * 15) for s in shown]
    bar_actual = [a.replace("██··", "·" * 19 + "█") for a in actual]
    assert (check_output(bar_shown, bar_actual) is None) is ok


def test_every_command_block_of_the_pages_is_run_here():
    """No shell block of the two pages escapes: each is run above, or is make lines only."""
    assert BLOCKS and MAKE_BLOCKS
    for block in MAKE_BLOCKS:
        assert "skip" in block.directives, block.where


@pytest.mark.parametrize(
    "command", [c for b in MAKE_BLOCKS for c, _ in docs.shell_commands(b)], ids=str
)
def test_the_make_lines_are_real_targets(command: str):
    dry = subprocess.run(
        [*command.split(), "-n", "PY=python", "STAMP=", "VENV=.venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    wanted = {
        "make demo": "python examples/demo.py",
        "make demo SERVE=1": "python examples/demo.py --serve",
        "make test": "python -m pytest -q",
    }[command]
    assert wanted in [line.strip() for line in dry.stdout.splitlines()], dry.stdout


def test_the_quickstart_on_the_page_is_examples_quickstart():
    """The README shows examples/quickstart.py whole, so the linked file and the page agree."""
    [shown] = [b for b in docs.parse_blocks(ROOT / "README.md") if b.lang == "python"]
    assert shown.code == (ROOT / "examples" / "quickstart.py").read_text()
    assert "[examples/quickstart.py](examples/quickstart.py)" in (ROOT / "README.md").read_text()
