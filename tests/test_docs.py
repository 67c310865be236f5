"""Every fenced block of README.md and docs/*.md runs, or is validated, so the docs cannot drift.

What each block language gets
-----------------------------
``python``   Executed in a fresh interpreter (``sys.executable -W error``), in a fresh temporary
             directory of its own; a few run at a time. A block asserts what its prose claims (or
             a hidden ``check:`` does); a failing assert fails the test, naming the block.
``bash`` ``sh`` ``console``
             Every command that calls ``tinyllm-instrument`` or ``python`` is run with
             ``.venv/bin`` first on ``PATH`` and must exit 0. A command may span lines with a
             trailing ``\\``; text after an unquoted `` #`` is a comment. In ``console``
             blocks commands start with ``$ `` and the other lines are the output shown: each
             shown line must match a line of the real output, in order, with digits, hex ids
             and timestamps free (a line ``...`` skips); in a span tree also its bars and
             column widths. (README.md's and docs/run.md's
             outputs are held closer still: tests/test_docs_run.py.)
             Other commands (``make``, ``curl``, ``docker``...) are not run.
``yaml``     ``yaml.safe_load``; with a ``promtool`` directive, checked by promtool.
``json``     ``json.loads``.
``promql``   Each query (blank-line or ``#``-comment separated) is parsed by promtool, wrapped as a
             recording rule in a temporary rules file (promtool has no offline query parser).
``text``     Illustrative output; not run. Any other language, or none, fails: label the block.

Directives: hidden HTML comments on the lines right before a fence (blank lines may separate)
-----------------------------------------------------------------------------------------------
``<!-- skip: REASON -->``        Do not run; pytest reports the skip with REASON (say what is
                                 missing, e.g. "needs Docker").
``<!-- continues -->``           (python) Run the page's previous python block(s) first, in the
                                 same interpreter: the chain goes back to the first block not
                                 marked ``continues``.
``<!-- setup: PATH -->``         (python) Execute PATH (repo-relative, usually
                                 ``tests/docs_support/...``) first, in the block's namespace.
                                 (shell) Start PATH as a background process first, wait for its
                                 ``READY`` line, stop it with SIGINT after the block.
                                 A setup may announce ``PORTS 9464=43121 ...`` (python: set
                                 ``DOC_PORTS = {9464: 43121}``): the block's ``:9464`` becomes
                                 ``:43121``, in commands and in the expected output, so the doc
                                 shows the usual port while the test uses a free one.
``<!-- ports: 9090 4317 -->``    Replace these ports in the block with free ones.
``<!-- check: PATH -->``         (python) Execute PATH after the block, in its namespace: hidden
                                 assertions on what the block printed (``DOC_OUTPUT()`` returns
                                 its stdout so far) or recorded, when the block is user-facing code
                                 that should not be cluttered with asserts.
``<!-- pytest -->``              (python) Run the block as a test file under pytest; it must pass.
``<!-- file: NAME -->``          (python) Also write the block to NAME in the page's workspaces, so
                                 shell blocks can run it (``tinyllm-instrument run app.py``) and
                                 other blocks import it. The block is still executed itself.
``<!-- copy: SRC DEST -->``     Copy the repository file SRC to DEST in the page's workspace
                                 (e.g. an example app as ``app.py``), before any block runs.
``<!-- file-only: NAME -->``    (python) Write the block to NAME, do not execute it on its own: a
                                 ``tinyllm-instrument`` command of the page must name it, or name a
                                 file-only block whose code names it (a child its parent starts).
``<!-- exit: N -->``             (shell) Every command of the block must exit N instead of 0.
``<!-- background: SECONDS -->`` (shell) The command serves until interrupted: start it, wait
                                 until the ``ports:`` it was given answer, let it run SECONDS more
                                 (it must still be up), send SIGINT, expect exit 0 (or the
                                 ``exit:`` directive's code, e.g. 130 for a program that Ctrl-C
                                 interrupts).
``<!-- promtool: config -->`` / ``<!-- promtool: rules -->``
                                 (yaml) ``promtool check config`` / ``check rules`` on the block.
``<!-- excerpt: PATH -->``       (yaml, json, text) Every non-blank line of the block appears in
                                 the shipped file PATH, in order: a quoted config cannot drift.

Workspaces: each python block runs in a fresh temporary directory; the shell blocks of a page share
one, in page order. Each holds ``examples/`` and ``deploy/`` (links to the repository's), the
page's ``file:`` blocks and ``copy:`` files. Environment variables that would change the kit's
behaviour (``TINYLLM_INSTRUMENT_*``, ``OTEL_*``, ``PROMETHEUS_MULTIPROC_DIR``) are removed.

Also checked: every block has a known language and known directives, relative links resolve, and
each section of the TinyLLM observability guide keeps its page and heading (GUIDE_SECTIONS).
Tests are parametrized by page, block index and first line, so a failure names its block.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
PROMTOOL = shutil.which("promtool")
DRIVER = ROOT / "tests" / "docs_support" / "driver.py"

RUN_LANGS = {"python", "bash", "sh", "console", "yaml", "json", "promql"}
KNOWN_LANGS = RUN_LANGS | {"text"}
DIRECTIVE_RE = re.compile(r"^<!--\s*([a-z-]+)\s*(?::\s*(.*?))?\s*-->$")
FENCE_RE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")
TIMEOUT = 60
#: Python blocks run this many at a time (each in its own fresh interpreter and workspace).
PARALLEL = max(2, min(4, os.cpu_count() or 2))


# --------------------------------------------------------------------------------------------
# Collecting blocks
# --------------------------------------------------------------------------------------------


@dataclass
class Block:
    page: Path
    index: int  # position among the page's fenced blocks, from 0
    lang: str
    line: int  # line number of the opening fence, from 1
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def rel(self) -> str:
        return str(self.page.relative_to(ROOT))

    @property
    def where(self) -> str:
        return f"{self.rel}:{self.line}"

    def first_line(self) -> str:
        for text in self.code.splitlines():
            if text.strip():
                return text.strip()[:50]
        return "(empty)"


def parse_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        text = lines[i]
        stripped = text.strip()
        directive = DIRECTIVE_RE.match(stripped)
        if directive:
            pending[directive.group(1)] = directive.group(2) or ""
            i += 1
            continue
        fence = FENCE_RE.match(text)
        if fence:
            indent, ticks, lang = fence.group(1), fence.group(2), fence.group(3).lower()
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not (
                lines[j].strip().startswith(ticks) and lines[j].strip().strip("`") == ""
            ):
                raw = lines[j]
                body.append(raw[len(indent) :] if raw.startswith(indent) else raw.lstrip())
                j += 1
            if j >= len(lines):
                raise AssertionError(f"{page}:{i + 1}: fence never closed")
            blocks.append(
                Block(page, len(blocks), lang, i + 1, "\n".join(body) + "\n", dict(pending))
            )
            pending = {}
            i = j + 1
            continue
        if stripped:
            pending = {}
        i += 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in parse_blocks(page)]


def _ids(blocks: list[Block]) -> list[str]:
    return [f"{b.rel}#{b.index}:{b.first_line()}" for b in blocks]


def _of(*langs: str) -> list[Block]:
    return [b for b in ALL_BLOCKS if b.lang in langs]


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

_WORKSPACES: dict[Path, Path] = {}


def _prepare(ws: Path, page: Path) -> Path:
    ws.mkdir(parents=True, exist_ok=True)
    for name in ("examples", "deploy"):
        (ws / name).symlink_to(ROOT / name)
    for block in parse_blocks(page):
        for key in ("file", "file-only"):
            if block.lang == "python" and key in block.directives:
                (ws / block.directives[key]).write_text(block.code, encoding="utf-8")
        if "copy" in block.directives:
            source, dest = block.directives["copy"].split()
            shutil.copy(ROOT / source, ws / dest)
    return ws


def workspace(page: Path, tmp_root: Path) -> Path:
    """The page's workspace for shell blocks, shared by them in page order (a log file one
    command writes, the next may read): examples/ and deploy/ linked, ``file:`` and ``copy:``
    files in place."""
    ws = _WORKSPACES.get(page)
    if ws is None:
        ws = _WORKSPACES[page] = _prepare(tmp_root / page.stem, page)
    return ws


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_", "PYTEST_"))
        and k
        not in ("PROMETHEUS_MULTIPROC_DIR", "PYTHONPATH", "TRACEPARENT", "COVERAGE_PROCESS_START")
    }
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apply_ports(text: str, ports: dict[int, int]) -> str:
    for old, new in ports.items():
        text = re.sub(rf"(?<=:){old}\b", str(new), text)
        text = re.sub(rf"(?<=port[ =]){old}\b", str(new), text)
    return text


def skip_if_asked(block: Block) -> None:
    if "skip" in block.directives:
        reason = block.directives["skip"]
        if not reason:
            pytest.fail(f"{block.where}: a skipped block must say why (<!-- skip: reason -->)")
        pytest.skip(f"{block.where}: {reason}")


def requested_ports(block: Block) -> dict[int, int]:
    return {int(p): free_port() for p in block.directives.get("ports", "").split()}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.fail(
            "promtool is not installed: install Debian's 'prometheus' package (.ci/run does)"
        )
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------------------------
# The collection itself
# --------------------------------------------------------------------------------------------


def test_docs_exist_and_have_blocks():
    assert (ROOT / "docs" / "index.md").is_file(), "docs/index.md is the map of the guide"
    assert len(ALL_BLOCKS) > 50, "the guide is made of runnable examples"


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=_ids(ALL_BLOCKS))
def test_block_is_labelled(block: Block):
    assert block.lang in KNOWN_LANGS, (
        f"{block.where}: fenced block with language {block.lang!r}; use one of "
        f"{sorted(KNOWN_LANGS)} (text for output that is not run)"
    )
    unknown = set(block.directives) - {
        "skip", "continues", "setup", "check", "copy", "file", "file-only", "ports", "pytest",
        "exit", "background", "promtool", "excerpt",
    }  # fmt: skip
    assert not unknown, f"{block.where}: unknown directive(s) {sorted(unknown)}"


#: Each section of the TinyLLM observability guide (../shared/spec/observability-guide.md, not in
#: this repository) and the page and heading that cover it for this kit.
GUIDE_SECTIONS = {
    "Overview": ("overview.md", "Overview: three pillars, plus events"),
    "Three Pillars of Observability": ("overview.md", "What each pillar answers"),
    "Metrics / Starting the Metrics Server": ("metrics.md", "Starting the metrics server"),
    "Metrics / Key Metrics": ("metrics.md", "Key metrics"),
    "Metrics / Cardinality Controls": ("metrics.md", "Cardinality controls"),
    "Metrics / Prometheus Configuration": ("metrics.md", "Prometheus configuration"),
    "Metrics / Example Queries": ("metrics.md", "Example queries"),
    "Logging / Configuration": ("logging.md", "Configuration"),
    "Logging / Using Loggers": ("logging.md", "Using loggers"),
    "Logging / Trace Correlation": ("logging.md", "Trace correlation"),
    "Logging / Context Binding": ("logging.md", "Context binding"),
    "Logging / Log Sampling": ("logging.md", "Log sampling"),
    "Logging / Sensitive Data Redaction": ("logging.md", "Sensitive data redaction"),
    "Tracing / Configuration": ("tracing.md", "Configuration"),
    "Tracing / Creating Spans": ("tracing.md", "Creating spans"),
    "Tracing / Decorators for Async Functions": ("tracing.md", "Decorators for async functions"),
    "Tracing / Recording Events": ("tracing.md", "Recording events and attributes"),
    "Tracing / Error Recording": ("tracing.md", "Error recording"),
    "Tracing / Jaeger Setup": ("tracing.md", "Jaeger setup"),
    "Events / Event Categories": ("events.md", "Event categories"),
    "Events / Event Severities": ("events.md", "Event severities"),
    "Events / Emitting Events": ("events.md", "Emitting events"),
    "Events / Event Handlers": ("events.md", "Event handlers"),
    "Events / CLI Event Testing": ("events.md", "CLI event testing"),
    "Debug Tools / Inspect Observability System": ("cli.md", "Inspect the observability system"),
    "Debug Tools / Test Trace Context": ("cli.md", "Test trace context"),
    "Debug Tools / View Cache Stats": ("cli.md", "View cache stats"),
    "Debug Tools / View System Health": ("cli.md", "View system health"),
    **{
        f"Best Practices / {n}. {title}": ("best-practices.md", f"{n}. {title}")
        for n, title in enumerate(
            [
                "Use structured logging",
                "Add context to spans",
                "Use events for business metrics",
                "Monitor cardinality",
                "Use sampling in production",
                "Redact sensitive data",
                "Correlate across systems",
            ],
            start=1,
        )
    },  # fmt: skip
    "Integration Examples / Grafana Dashboard": ("integrations.md", "Grafana dashboard"),
    "Integration Examples / ELK Stack Integration": ("integrations.md", "ELK stack"),
    "Integration Examples / Production Stack": ("integrations.md", "Production stack"),
    "Running with Full Observability": ("running.md", "Running with full observability"),
    "Troubleshooting / Metrics Not Appearing": ("troubleshooting.md", "Metrics not appearing"),
    "Troubleshooting / Logs Missing Trace IDs": ("troubleshooting.md", "Logs missing trace IDs"),
    "Troubleshooting / High Cardinality Warnings": (
        "troubleshooting.md",
        "High cardinality warnings",
    ),  # fmt: skip
    "Troubleshooting / Events Not Being Recorded": (
        "troubleshooting.md",
        "Events not being recorded",
    ),  # fmt: skip
    "Summary": ("index.md", "Summary"),
    # What this kit adds
    "@observe": ("observe.md", "`@observe`: four pillars from one decorator"),
    "zero-code run": ("run.md", "Zero-code: `tinyllm-instrument run`"),
    "testing capture": ("testing.md", "Testing your own graphs"),
    "overhead": ("overhead.md", "Overhead"),
    "scaling": ("scaling.md", "Scaling beyond one process and one machine"),
}


def test_no_block_a_reader_copies_needs_a_hidden_name():
    """A hidden setup or check may define and read ``DOC_*`` names; a block the reader sees and
    copies must run without them, so it never names one."""
    uses = [
        f"{b.where}: {name}"
        for b in ALL_BLOCKS
        for name in sorted(set(re.findall(r"\bDOC_[A-Z]+\b", b.code)))
    ]
    assert uses == []


@pytest.mark.parametrize("section", sorted(GUIDE_SECTIONS))
def test_guide_section_is_covered(section: str):
    page, heading = GUIDE_SECTIONS[section]
    path = ROOT / "docs" / page
    assert path.is_file(), f"the guide's {section!r} belongs in docs/{page}, which is missing"
    headings = {
        line.lstrip("#").strip().lower()
        for line in path.read_text().splitlines()
        if re.match(r"#{1,4} ", line)
    }
    assert heading.lower() in headings, f"docs/{page} lost its heading {heading!r} ({section})"
    index = (ROOT / "docs" / "index.md").read_text()
    assert page == "index.md" or f"]({page})" in index, f"docs/index.md does not link {page}"


def _anchors(page: Path) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces to '-'."""
    found: set[str] = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_docs_links_resolve():
    """Relative links between pages point at files that exist, and at headings they have."""
    broken = []
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = page.parent / target if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, "broken links: " + ", ".join(broken)


# --------------------------------------------------------------------------------------------
# python
# --------------------------------------------------------------------------------------------


def _python_chain(block: Block) -> list[Block]:
    page_blocks = [b for b in parse_blocks(block.page) if b.lang == "python"]
    at = next(i for i, b in enumerate(page_blocks) if b.index == block.index)
    chain = [block]
    while "continues" in chain[0].directives:
        at -= 1
        if at < 0:
            raise AssertionError(f"{block.where}: 'continues' but no python block before it")
        chain.insert(0, page_blocks[at])
    return chain


def _files_run_by_shell(page: Path) -> set[str]:
    """Names of file-only blocks that a tinyllm-instrument command runs, directly or through one."""
    blocks = parse_blocks(page)
    files = {b.directives["file-only"]: b.code for b in blocks if "file-only" in b.directives}
    commands = " ".join(
        c for b in blocks if b.lang in ("bash", "sh", "console")
        for c, _ in shell_commands(b) if c.startswith("tinyllm-instrument")
    )  # fmt: skip
    run = {name for name in files if name in commands}
    while True:
        more = {n for n in files if n not in run and any(n in files[r] for r in run)}
        if not more:
            return run
        run |= more


@pytest.mark.parametrize("block", _of("python"), ids=_ids(_of("python")))
def test_python_block(block: Block, tmp_root: Path, request: pytest.FixtureRequest):
    skip_if_asked(block)
    if "file-only" in block.directives:
        name = block.directives["file-only"]
        assert name in _files_run_by_shell(block.page), (
            f"{block.where}: file-only {name}, but no tinyllm-instrument command of the page runs "
            "it, nor another file-only block that such a command runs"
        )
        return
    selected = [
        item.callspec.params["block"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_python_block"
    ]
    result = _python_result(block, tmp_root, selected)
    if "pytest" in block.directives:
        assert result.returncode == 0, f"{block.where}\n{result.stdout}\n{result.stderr}"
        assert " passed" in result.stdout and " failed" not in result.stdout
        return
    assert result.returncode == 0, (
        f"{block.where} failed (exit {result.returncode})\n--- stdout\n{result.stdout[-4000:]}"
        f"\n--- stderr\n{result.stderr[-4000:]}"
    )


def _run_python(block: Block, tmp_root: Path) -> subprocess.CompletedProcess[str]:
    """Run one python block in a fresh interpreter, in a fresh workspace of its own."""
    ws = _prepare(tmp_root / f"{block.page.stem}-{block.index}", block.page)
    ports = requested_ports(block)
    if "pytest" in block.directives:
        name = f"test_{block.page.stem.replace('-', '_')}_{block.index}.py"
        (ws / name).write_text(apply_ports(block.code, ports), encoding="utf-8")
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", name],
            cwd=ws, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
    pieces = []
    for part in _python_chain(block):
        setup = part.directives.get("setup")
        if setup:
            pieces.append({"path": str(ROOT / setup), "source": None, "ports": False})
        pieces.append(
            {
                "path": f"{part.rel}:{part.line} (block {part.index})",
                "source": apply_ports(part.code, ports),
                "ports": True,
            }
        )
    if "check" in block.directives:
        pieces.append(
            {"path": str(ROOT / block.directives["check"]), "source": None, "ports": False}
        )
    spec = ws / f".block-{block.index}.json"
    spec.write_text(json.dumps({"pieces": pieces, "argv0": block.directives.get("file", "")}))
    return subprocess.run(
        [sys.executable, "-W", "error", str(DRIVER), str(spec)],
        cwd=ws, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


_PYTHON_RUNS: dict[tuple[Path, int], Future[subprocess.CompletedProcess[str]]] = {}
_POOL: list[ThreadPoolExecutor] = []


def _python_result(
    block: Block, tmp_root: Path, selected: list[Block]
) -> subprocess.CompletedProcess[str]:
    """The block's run. The first call starts every selected python block, a few interpreters at a
    time (each still fresh and alone in its workspace), so the suite does not wait for each in turn.
    """
    if not _POOL:
        pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="docs-python")
        _POOL.append(pool)
        for other in selected:
            if "skip" not in other.directives and "file-only" not in other.directives:
                _PYTHON_RUNS[(other.page, other.index)] = pool.submit(_run_python, other, tmp_root)
        pool.shutdown(wait=False)
    future = _PYTHON_RUNS.get((block.page, block.index))
    if future is None:  # selected on its own (-k), after the pool was made for others
        return _run_python(block, tmp_root)
    return future.result(timeout=TIMEOUT * 4)


# --------------------------------------------------------------------------------------------
# shell
# --------------------------------------------------------------------------------------------


def shell_commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, shown output lines) for each command of a shell or console block."""
    out: list[tuple[str, list[str]]] = []
    console = block.lang == "console"
    lines = block.code.splitlines()
    i = 0
    while i < len(lines):
        text = lines[i]
        if console:
            if not text.startswith("$ "):
                if out:
                    out[-1][1].append(text)
                i += 1
                continue
            text = text[2:]
        command = text
        while command.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        command = _strip_comment(command).strip()
        if command:
            out.append((command, []))
    return out


def _strip_comment(command: str) -> str:
    """Drop a trailing `` # comment`` that is outside quotes."""
    quote = None
    for k, ch in enumerate(command):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or command[k - 1].isspace()):
            return command[:k]
    return command


_HEX_RE = re.compile(r"\b[0-9a-f]{16,}\b")
_NUM_RE = re.compile(r"\d+(?:\.\d+)?")


_TREE_GLYPHS_RE = re.compile(r"[█·]")


def _tree_line_pattern(line: str) -> re.Pattern[str]:
    """A line of a span tree: its trace id (8 hex digits), numbers, the unit of a duration, the
    bar of when each span ran and the column widths (which follow the durations) match any value."""
    parts = []
    for token in line.split():
        if _TREE_GLYPHS_RE.fullmatch(token[:1]) and set(token) <= {"█", "·"}:
            parts.append("[█·]+")
        elif token in ("µs", "ms", "s"):
            parts.append("(?:µs|ms|s)")
        elif re.fullmatch(r"[0-9a-f]{8,}", token):
            parts.append("[0-9a-f]+")
        else:
            parts.append(r"\d+(?:\.\d+)?".join(re.escape(p) for p in _NUM_RE.split(token)))
    return re.compile(r"\s+".join(parts))


def _shown_line_pattern(line: str) -> re.Pattern[str]:
    """Ids (16+ hex digits) and numbers (counts, durations, ports, dates) match any value."""
    if _TREE_GLYPHS_RE.search(line):
        return _tree_line_pattern(line)
    parts = []
    for k, chunk in enumerate(_HEX_RE.split(line.strip())):
        if k:
            parts.append("[0-9a-f]+")
        pieces = _NUM_RE.split(chunk)
        parts.append(r"\d+(?:\.\d+)?".join(re.escape(p) for p in pieces))
    return re.compile("".join(parts))


def check_shown_output(block: Block, command: str, shown: list[str], actual: str) -> None:
    actual_lines = [a.strip() for a in actual.splitlines()]
    at = 0
    for line in shown:
        if not line.strip() or line.strip() == "...":
            continue
        pattern = _shown_line_pattern(line)
        for k in range(at, len(actual_lines)):
            if pattern.fullmatch(actual_lines[k]):
                at = k + 1
                break
        else:
            raise AssertionError(
                f"{block.where}: `{command}` no longer prints the line shown in the docs:\n"
                f"  {line.strip()}\nactual output:\n{actual}"
            )


class Background:
    """A setup process started for a shell block; announces ``READY`` and maybe ``PORTS a=b``."""

    def __init__(self, path: Path, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(path)], cwd=cwd, env=clean_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.ports: dict[int, int] = {}
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def read() -> None:
            try:
                for text in stdout:
                    lines.put(text)
            except (OSError, ValueError):  # closed by stop()
                pass

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"setup {path} ended early: {self.proc.stderr.read()}"
                    ) from None
                continue
            if line.startswith("PORTS"):
                for pair in line.split()[1:]:
                    old, new = pair.split("=")
                    self.ports[int(old)] = int(new)
            if line.strip() == "READY":
                return
        self.stop()
        raise AssertionError(f"setup {path} did not print READY within 30 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)


def _run_background(
    command: str, ws: Path, seconds: float, expected_exit: int, ports: list[int]
) -> None:
    proc = subprocess.Popen(
        "exec " + command, shell=True, cwd=ws, env=clean_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    for port in ports:  # serving already: SECONDS more, then SIGINT tests the clean stop
        _wait_for_port(port, proc)
    time.sleep(seconds)
    still_up = proc.poll() is None
    if still_up:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"`{command}` did not stop on SIGINT") from None
    assert still_up, f"`{command}` ended by itself (exit {proc.returncode}):\n{out}\n{err}"
    assert proc.returncode == expected_exit, (
        f"`{command}` exit {proc.returncode} on SIGINT, the docs say {expected_exit}:\n{out}\n{err}"
    )


SHELL_LANGS = ("bash", "sh", "console")
SHELL = _of(*SHELL_LANGS)


def is_run(command: str) -> bool:
    """A documented command the tests run: the kit's CLI, or ``python`` on a file of the page."""
    return command.startswith(("tinyllm-instrument", "python "))


@pytest.mark.parametrize("block", SHELL, ids=_ids(SHELL))
def test_shell_block(block: Block, tmp_root: Path):
    skip_if_asked(block)
    commands = [(c, shown) for c, shown in shell_commands(block) if is_run(c)]
    if not commands:
        # Nothing here is checked: the doc must say why with <!-- skip: reason -->, or use a
        # text block. A silent pass or skip would let such a block drift unseen.
        others = ", ".join(sorted({c.split()[0] for c, _ in shell_commands(block)})) or "nothing"
        pytest.fail(
            f"{block.where}: a shell block with no tinyllm-instrument or python command (it runs "
            f"{others}) needs <!-- skip: reason --> or a text fence"
        )
    ws = workspace(block.page, tmp_root)
    ports = requested_ports(block)
    setup = None
    if "setup" in block.directives:
        setup = Background(ROOT / block.directives["setup"], ws)
        ports.update(setup.ports)
    expected_exit = int(block.directives.get("exit", "0"))
    try:
        for command, shown in commands:
            command = apply_ports(command, ports)
            if "background" in block.directives:
                seconds = float(block.directives["background"] or 2)
                _run_background(command, ws, seconds, expected_exit, list(ports.values()))
                continue
            result = subprocess.run(
                command, shell=True, cwd=ws, env=clean_env(), capture_output=True, text=True,
                timeout=TIMEOUT,
            )  # fmt: skip
            assert result.returncode == expected_exit, (
                f"{block.where}: `{command}` exited {result.returncode}, the docs say "
                f"{expected_exit}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n"
                f"{result.stderr[-3000:]}"
            )
            if shown:
                shown = [apply_ports(s, ports) for s in shown]
                check_shown_output(block, command, shown, result.stdout + result.stderr)
    finally:
        if setup is not None:
            setup.stop()


# --------------------------------------------------------------------------------------------
# yaml, json, promql, excerpts
# --------------------------------------------------------------------------------------------


def check_excerpt(block: Block) -> None:
    path = ROOT / block.directives["excerpt"]
    assert path.is_file(), f"{block.where}: excerpt of {path}, which does not exist"
    shipped = [line.rstrip() for line in path.read_text().splitlines()]
    at = 0
    for line in block.code.splitlines():
        if not line.strip():
            continue
        try:
            at = shipped.index(line.rstrip(), at) + 1
        except ValueError:
            raise AssertionError(
                f"{block.where}: this line is not in {block.directives['excerpt']} "
                f"(in this order): {line.strip()!r}; update the doc or the file"
            ) from None


CONFIGS = _of("yaml", "json")


@pytest.mark.parametrize("block", CONFIGS, ids=_ids(CONFIGS))
def test_config_block(block: Block, tmp_path: Path):
    skip_if_asked(block)
    if "excerpt" in block.directives:
        check_excerpt(block)
    if block.lang == "json":
        json.loads(block.code)
        return
    loaded = yaml.safe_load(block.code)
    assert loaded is not None, f"{block.where}: empty YAML"
    kind = block.directives.get("promtool")
    if kind is None:
        return
    assert kind in ("config", "rules"), f"{block.where}: promtool: config or rules, not {kind!r}"
    path = tmp_path / ("prometheus.yml" if kind == "config" else "rules.yml")
    path.write_text(block.code)
    for rule_file in (loaded.get("rule_files") or []) if kind == "config" else []:
        shutil.copy(ROOT / "deploy" / rule_file, tmp_path / rule_file)
    result = promtool("check", kind, str(path))
    assert result.returncode == 0, f"{block.where}\n{result.stdout}{result.stderr}"


def promql_queries(code: str) -> list[str]:
    queries, current = [], []
    for line in code.splitlines() + [""]:
        if line.strip().startswith("#") or not line.strip():
            if current:
                queries.append("\n".join(current))
                current = []
            continue
        current.append(line)
    return queries


PROMQL = _of("promql")


@pytest.mark.parametrize("block", PROMQL, ids=_ids(PROMQL))
def test_promql_block(block: Block, tmp_path: Path):
    skip_if_asked(block)
    queries = promql_queries(block.code)
    assert queries, f"{block.where}: no query in a promql block"
    rules = {
        "groups": [
            {
                "name": "docs",
                "rules": [{"record": f"docs:query_{i}", "expr": q} for i, q in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "docs-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, f"{block.where}\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


TEXT_EXCERPTS = [b for b in _of("text") if "excerpt" in b.directives]


@pytest.mark.parametrize("block", TEXT_EXCERPTS, ids=_ids(TEXT_EXCERPTS))
def test_text_excerpt(block: Block):
    check_excerpt(block)
