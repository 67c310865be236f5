"""The tree exporter: a fixed trace through its exact output, then real runs through the kit."""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from tinyllm_instrument import observe
from tinyllm_instrument._runner import RunOptions
from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    configure_telemetry,
    flush_telemetry,
    shutdown_telemetry,
)
from tinyllm_instrument.tree import TreeSpanExporter

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "tinyllm-instrument")

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
OTHER = 0x0AF7651916CD43DD8448EB211C80319C
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
RESOURCE = Resource({"service.name": "demo-svc"})


def span(
    name: str,
    span_id: int,
    parent: int | None,
    start_ms: float,
    end_ms: float,
    *,
    trace_id: int = TRACE,
    attributes: dict | None = None,
    status: Status | None = None,
    events: tuple[Event, ...] = (),
    remote_parent: bool = False,
) -> ReadableSpan:
    flags = TraceFlags(TraceFlags.SAMPLED)
    return ReadableSpan(
        name,
        context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags),
        parent=None
        if parent is None
        else SpanContext(trace_id, parent, is_remote=remote_parent, trace_flags=flags),
        resource=RESOURCE,
        attributes=attributes or {},
        events=events,
        status=status or Status(StatusCode.UNSET),
        start_time=T0 + round(start_ms * MS),
        end_time=T0 + round(end_ms * MS),
    )


def failed(description: str, exception_type: str) -> dict:
    """Keyword arguments of a span that failed as @observe records it."""
    return {
        "status": Status(StatusCode.ERROR, description),
        "events": (Event("exception", {"exception.type": exception_type}, timestamp=T0),),
    }


# One graph run: a nested node, one of each status, tokens and a time to first item.
ROOT_SPAN = span("rag", 1, None, 0, 40, attributes={"tinyllm.graph": "rag"})
CHILDREN = [
    span("router", 2, 1, 0.5, 1.0),
    span("retriever", 3, 1, 1, 3),
    span("cache", 7, 3, 1.2, 1.5),
    span("fetch", 8, 1, 2, 12, attributes={"tinyllm.cancelled": True}),
    span(
        "llm",
        4,
        1,
        4,
        30,
        **failed("FlakyModelError: the fake model timed out", "app.FlakyModelError"),
    ),
    span(
        "llm",
        5,
        1,
        30,
        36,
        attributes={"gen_ai.usage.input_tokens": 24, "gen_ai.usage.output_tokens": 15},
    ),
    span(
        "stream",
        6,
        1,
        36,
        39,
        attributes={
            "gen_ai.usage.output_tokens": 9,
            "tinyllm.time_to_first_item_ms": 0.25,
            "tinyllm.generator.items": 3,
            "tinyllm.generator.closed_early": True,
        },
    ),
    span("on_exit", 9, 1, 39, 40, attributes={"tinyllm.interrupted": "KeyboardInterrupt"}),
]

EXPECTED = """\
trace 4bf92f35 · demo-svc
rag           40.0 ms  ████████████████████  ok
├─ router      500 µs  █···················  ok
├─ retriever   2.0 ms  ██··················  ok
│  └─ cache    300 µs  █···················  ok
├─ fetch      10.0 ms  ·█████··············  cancelled
├─ llm        26.0 ms  ··█████████████·····  error FlakyModelError
├─ llm         6.0 ms  ···············███··  ok                             in 24 / out 15 tok
├─ stream      3.0 ms  ··················██  closed early                   out 9 tok, ttfi 250 µs
└─ on_exit     1.0 ms  ···················█  interrupted KeyboardInterrupt
"""


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _colour_env(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_a_fixed_trace_prints_as_this_exact_tree_when_its_root_arrives_last():
    out = io.StringIO()
    exporter = TreeSpanExporter(out)
    # As spans end: children first, and in no particular order among themselves.
    shuffled = CHILDREN[:]
    random.Random(3).shuffle(shuffled)
    assert exporter.export(shuffled) is SpanExportResult.SUCCESS
    assert out.getvalue() == ""  # nothing until the root ends
    exporter.export([ROOT_SPAN])
    assert out.getvalue() == EXPECTED


def test_the_tree_is_the_same_when_the_root_comes_first_in_its_batch():
    out = io.StringIO()
    TreeSpanExporter(out).export([ROOT_SPAN, *reversed(CHILDREN)])
    assert out.getvalue() == EXPECTED


def test_colour_only_on_a_terminal():
    small = [span("router", 2, 1, 0, 10), span("rag", 1, None, 0, 20)]
    failing = span("llm", 3, 1, 10, 20, **failed("ValueError: x", "ValueError"))
    tty = FakeTerminal()
    TreeSpanExporter(tty).export([small[0], failing, small[1]])
    assert tty.getvalue() == (
        "\x1b[1mtrace 4bf92f35 · demo-svc\x1b[0m\n"
        "\x1b[1mrag\x1b[0m        20.0 ms  \x1b[36m████████████████████\x1b[0m  \x1b[32mok\x1b[0m\n"
        "\x1b[2m├─ \x1b[0mrouter  10.0 ms  \x1b[36m██████████\x1b[0m\x1b[2m··········\x1b[0m"
        "  \x1b[32mok\x1b[0m\n"
        "\x1b[2m└─ \x1b[0mllm     10.0 ms  \x1b[2m··········\x1b[0m\x1b[31m██████████\x1b[0m"
        "  \x1b[31merror ValueError\x1b[0m\n"
    )
    plain = io.StringIO()
    TreeSpanExporter(plain).export([small[0], failing, small[1]])
    assert "\x1b" not in plain.getvalue()
    assert plain.getvalue() == re.sub(r"\x1b\[\d+m", "", tty.getvalue())


def test_no_color_turns_colour_off_on_a_terminal_and_the_flag_overrides_both(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    tty = FakeTerminal()
    TreeSpanExporter(tty).export([ROOT_SPAN])
    assert "\x1b" not in tty.getvalue()
    forced = FakeTerminal()
    TreeSpanExporter(forced, colour=True).export([ROOT_SPAN])
    assert "\x1b[32mok\x1b[0m" in forced.getvalue()
    monkeypatch.delenv("NO_COLOR")
    off = FakeTerminal()
    TreeSpanExporter(off, colour=False).export([ROOT_SPAN])
    assert off.getvalue() == "trace 4bf92f35 · demo-svc\nrag  40.0 ms  ████████████████████  ok\n"


def test_the_error_type_comes_from_the_exception_event_when_the_status_does_not_name_it():
    out = io.StringIO()
    bad = span("call", 2, 1, 0, 1, **failed("connection refused", "requests.ConnectionError"))
    bare = span("other", 3, 1, 1, 2, status=Status(StatusCode.ERROR))
    TreeSpanExporter(out).export([bad, bare, span("g", 1, None, 0, 2)])
    lines = out.getvalue().splitlines()
    assert lines[2].endswith("  error ConnectionError")
    assert lines[3].endswith("  error")


def test_interleaved_traces_each_print_their_own_tree_when_their_root_ends():
    out = io.StringIO()
    exporter = TreeSpanExporter(out)
    a_child = span("a_node", 2, 1, 1, 2)
    b_child = span("b_node", 12, 11, 1, 3, trace_id=OTHER)
    b_root = span("b_graph", 11, None, 0, 4, trace_id=OTHER)
    a_root = span("a_graph", 1, None, 0, 5)
    exporter.export([a_child, b_child])
    exporter.export([b_root])
    assert out.getvalue() == (
        "trace 0af76519 · demo-svc\n"
        "b_graph    4.0 ms  ████████████████████  ok\n"
        "└─ b_node  2.0 ms  ·····██████████·····  ok\n"
    )
    exporter.export([a_root])
    assert out.getvalue().endswith(
        "trace 4bf92f35 · demo-svc\n"
        "a_graph    5.0 ms  ████████████████████  ok\n"
        "└─ a_node  1.0 ms  ····████············  ok\n"
    )


def test_a_span_with_a_remote_parent_is_the_root_of_this_process_part():
    out = io.StringIO()
    TreeSpanExporter(out).export(
        [span("step", 22, 21, 1, 2), span("worker", 21, 99, 0, 2, remote_parent=True)]
    )
    assert out.getvalue().splitlines()[1:] == [
        "worker   2.0 ms  ████████████████████  ok",
        "└─ step  1.0 ms  ··········██████████  ok",
    ]


def test_the_buffer_is_bounded_drops_the_oldest_unfinished_trace_and_says_so():
    out = io.StringIO()
    exporter = TreeSpanExporter(out, max_traces=2, max_spans=100)
    stale = span("stale_node", 2, 1, 0, 1)  # its root never ends
    exporter.export([stale, span("x", 32, 31, 0, 1, trace_id=OTHER)])
    third = 0x1234567890ABCDEF1234567890ABCDEF
    exporter.export([span("y", 42, 41, 0, 1, trace_id=third)])
    assert exporter.dropped_spans == 1
    exporter.export([span("graph", 41, None, 0, 2, trace_id=third)])
    assert out.getvalue() == (
        "trace 12345678 · demo-svc\n"
        "graph  2.0 ms  ████████████████████  ok\n"
        "└─ y   1.0 ms  ██████████··········  ok\n"
        "(tree: 1 span(s) of unfinished traces dropped; at most 2 traces and 100 spans are held)\n"
    )


def test_the_span_bound_holds_over_all_traces():
    exporter = TreeSpanExporter(io.StringIO(), max_spans=3)
    exporter.export([span(f"n{i}", 100 + i, 1, 0, 1) for i in range(5)])
    assert exporter.dropped_spans == 3  # the trace was dropped whole at 3 held, then 2 more held
    exporter.export([span(f"m{i}", 200 + i, 5, 0, 1, trace_id=OTHER) for i in range(2)])
    assert exporter.dropped_spans == 5


def test_shutdown_prints_what_never_got_its_root_as_incomplete_then_refuses_more():
    out = io.StringIO()
    exporter = TreeSpanExporter(out)
    exporter.export([span("done", 2, 1, 0, 1), span("late_child", 3, 2, 0.5, 1)])
    exporter.shutdown()
    assert out.getvalue() == (
        "trace 4bf92f35 · demo-svc · incomplete: its root span was not seen\n"
        "done           1.0 ms  ████████████████████  ok\n"
        "└─ late_child  500 µs  ··········██████████  ok\n"
    )
    assert exporter.export([ROOT_SPAN]) is SpanExportResult.FAILURE
    exporter.shutdown()
    assert out.getvalue().count("trace ") == 1


def test_control_characters_in_names_cannot_break_the_tree_or_drive_the_terminal():
    out = io.StringIO()
    TreeSpanExporter(out).export([span("evil\n\x1b[31mname", 1, None, 0, 1)])
    assert out.getvalue().splitlines()[1] == "evil??[31mname  1.0 ms  ████████████████████  ok"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"colour": "yes"}, "colour='yes'"),
        ({"max_traces": 0}, "max_traces=0"),
        ({"max_spans": True}, "max_spans=True"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TreeSpanExporter(**kwargs)


def test_tree_is_an_exporter_of_the_config_and_bogus_ones_list_it():
    assert TelemetryConfig(exporter="tree").exporter == "tree"
    with pytest.raises(ValueError, match="'tree'"):
        TelemetryConfig(exporter="trees")


def _fields(text: str) -> list[list[str]]:
    """Each line's columns, with durations and bars (which vary run to run) masked."""
    text = re.sub(r"\d+(\.\d+)? (µs|ms|s)\b", "T", text)
    text = re.sub(r"[█·]{20}", "BAR", text)
    text = re.sub(r"trace [0-9a-f]{8} ", "trace ID ", text)
    rows = []
    for line in text.splitlines():
        prefix, rest = re.fullmatch(r"((?:[│ ]  )*(?:[├└]─ )?)(.*)", line).groups()
        fields = re.split(r"\s{2,}", rest)
        rows.append([prefix + fields[0], *fields[1:]])
    return rows


def test_an_observed_graph_run_prints_its_tree_on_flush(capsys):
    @observe(node="lookup")
    def lookup(question: str) -> str:
        return question.upper()

    @observe(node="explode")
    def explode() -> None:
        raise ValueError("boom")

    @observe(node="words")
    def words(text: str):
        yield from text.split()

    @observe(graph="qa")
    def qa(question: str) -> list[str]:
        lookup(question)
        try:
            explode()
        except ValueError:
            pass
        return list(words("a b c"))

    configure_telemetry(TelemetryConfig(enable_tracing=True, service_name="e2e", exporter="tree"))
    qa("why?")
    assert flush_telemetry()
    printed = capsys.readouterr().out
    shutdown_telemetry()
    assert _fields(printed) == [
        ["trace ID · e2e"],
        ["qa", "T", "BAR", "ok"],
        ["├─ lookup", "T", "BAR", "ok"],
        ["├─ explode", "T", "BAR", "error ValueError"],
        ["└─ words", "T", "BAR", "ok", "ttfi T"],
    ]
    assert capsys.readouterr().out == ""  # shutdown had nothing left to print


def test_run_with_tracing_and_no_endpoint_defaults_to_the_tree():
    assert RunOptions(tracing=True).tracing_plan() == (True, "tree")
    assert RunOptions(tracing=True, exporter="console").tracing_plan() == (True, "console")
    assert RunOptions(otlp_endpoint="http://127.0.0.1:1").tracing_plan() == (True, "otlp")


def test_run_tracing_prints_a_tree_per_graph_run_of_an_unmodified_app():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TINYLLM_INSTRUMENT_", "OTEL_")) and k != "NO_COLOR"
    }
    result = subprocess.run(
        [
            CLI,
            "run",
            "--tracing",
            "--instrument",
            "plain_app:*",
            "--graph",
            "answer",
            str(ROOT / "examples" / "plain_app.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b" not in out and '"context"' not in out  # plain text, no JSON spans
    # plain_app:* wraps main's run() too, but --graph answer makes each answer() call a trace of
    # its own (linked to run's span): twelve trees of a graph run, and run's alone.
    trees = [_fields(t) for t in re.split(r"^trace [0-9a-f]{8} · plain_app\n", out, flags=re.M)[1:]]
    assert len(trees) == 13
    assert [["run", "T", "BAR", "ok"]] in trees
    runs = [t for t in trees if t[0][0] == "answer"]
    assert len(runs) == 12
    rows = [row for t in runs for row in t]
    for t in runs:
        assert t[0][1:] == ["T", "BAR", "ok"]  # the graph catches the model's failures
        nodes = [re.sub(r"^[├└]─ ", "", row[0]) for row in t[1:4]]
        assert nodes == ["route", "retrieve", "call_model"]
    model_calls = [row for row in rows if row[0].endswith("─ call_model")]
    assert len(model_calls) == 12
    for row in model_calls:
        assert row[3] == "error FlakyModelError" or (
            row[3] == "ok" and re.fullmatch(r"in \d+ / out \d+ tok", row[4])
        )
    streams = [row for row in rows if row[0].endswith("─ stream_answer")]
    assert streams and all(row[3:] == ["ok", "ttfi T"] for row in streams)
    assert len(streams) == sum(row[3] == "ok" for row in model_calls)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_print_the_parents_unfinished_traces():
    read_end, write_end = os.pipe()
    exporter = TreeSpanExporter(io.StringIO())
    exporter.export([span("parents_node", 2, 1, 0, 1)])
    with warnings.catch_warnings():
        # 3.12+ warns about fork() with threads running; this child uses none of them.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report what its shutdown would print, then leave at once
        out = io.StringIO()
        exporter._out = out
        exporter.shutdown()
        os.write(write_end, out.getvalue().encode() or b"nothing")
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        printed = reader.read().decode()
    os.waitpid(pid, 0)
    assert printed == "nothing"
    parent_out = io.StringIO()
    exporter._out = parent_out
    exporter.shutdown()
    assert "parents_node" in parent_out.getvalue()


def test_a_priced_model_call_shows_its_cost_beside_its_tokens():
    out = io.StringIO()
    tokens = {"gen_ai.usage.input_tokens": 31, "gen_ai.usage.output_tokens": 7}
    TreeSpanExporter(out).export(
        [
            span("cheap", 2, 1, 0, 1, attributes={**tokens, "llm.cost.total": 8.025e-06}),
            span("dear", 3, 1, 1, 2, attributes={**tokens, "llm.cost.total": 1.25}),
            span("odd", 4, 1, 2, 3, attributes={**tokens, "llm.cost.total": "free"}),
            span("g", 1, None, 0, 3),
        ]
    )
    rows = {row[0].split()[-1]: row for row in _fields(out.getvalue())[1:]}
    assert rows["cheap"][4] == "in 31 / out 7 tok, $0.000008"
    assert rows["dear"][4] == "in 31 / out 7 tok, $1.25"
    assert rows["odd"][4] == "in 31 / out 7 tok"  # not a number: not shown
