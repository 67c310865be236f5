"""`make demo`: run the example graph with all four pillars on, then say where to look.

Part 1 runs examples/graph_app.py, decorated with @observe. Part 2 runs examples/plain_app.py,
the same graph without a line of the kit, through `tinyllm-instrument run`.

Embedded defaults, nothing to set up: the first graph run is printed as a tree (the "tree"
exporter), every span also goes to a JSON file through the OpenTelemetry console exporter, metrics
are served on 127.0.0.1 and read back for the summary, logs are JSON lines in demo-output/app.log,
events go to the log and to tinyllm_events_total.

With --serve (``make demo SERVE=1``), /metrics stays up until Ctrl-C on port 9464, where
docs/cli.md's examples read it; if another process holds that port, the demo says so and serves
on a free one, printed. Without --serve the endpoint closes when the demo ends, so no URL is
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from tinyllm_instrument.events import BufferedEventHandler, get_event_emitter
from tinyllm_instrument.logging import configure_logging
from tinyllm_instrument.metrics import (
    MetricsServerError,
    get_metrics_collector,
    start_metrics_server,
)
from tinyllm_instrument.telemetry import (
    TelemetryConfig,
    add_span_processor,
    configure_telemetry,
    shutdown_telemetry,
)
from tinyllm_instrument.tree import TreeSpanExporter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import graph_app  # noqa: E402  (needs the path above)

#: Where `make demo SERVE=1` serves /metrics: the port docs/cli.md's examples read.
DOCUMENTED_PORT = 9464
#: The example graph's service name, in its spans and its log lines.
SERVICE = "tinyllm-demo"


class FirstGraphRun(SimpleSpanProcessor):
    """Passes on the spans of the first trace only: twelve trees would bury the summary."""

    def __init__(self, exporter: TreeSpanExporter) -> None:
        super().__init__(exporter)
        self.trace_id: int | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.trace_id is None and span.parent is None:
            self.trace_id = span.context.trace_id

    def on_end(self, span: ReadableSpan) -> None:
        if span.context.trace_id == self.trace_id:
            super().on_end(span)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep /metrics up until Ctrl-C")
    parser.add_argument("--out", default="demo-output", help="folder for spans and logs")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"metrics port (default: {DOCUMENTED_PORT} with --serve, else any free port)",
    )
    args = parser.parse_args()

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log_path, spans_path = out / "app.log", out / "spans.jsonl"
    for stale in (log_path, out / "run-app.log"):  # log files are appended to; start afresh
        stale.unlink(missing_ok=True)
    spans_file = spans_path.open("w", encoding="utf-8")

    # One name for the app in every pillar: the trees' header, the spans' service.name, the
    # log lines' "app".
    configure_logging(log_level="DEBUG", log_format="json", log_file=str(log_path), app=SERVICE)
    configure_telemetry(TelemetryConfig(enable_tracing=True, service_name=SERVICE, exporter="none"))
    add_span_processor(
        SimpleSpanProcessor(
            ConsoleSpanExporter(out=spans_file, formatter=lambda s: s.to_json(indent=None) + "\n")
        )
    )
    # The first graph run as exporter="tree" prints it, when its root span ends: below.
    add_span_processor(FirstGraphRun(TreeSpanExporter()))
    # Lifecycle events at every severity, kept in memory for the summary below. The log handler
    # takes INFO and up, so started/completed (DEBUG) do not write a line per call.
    events_buffer = get_event_emitter().add_handler(BufferedEventHandler(max_size=10_000))
    server, _thread = serve_metrics(args.port, serve=args.serve)
    url = f"http://127.0.0.1:{server.server_port}/metrics"

    print('The first graph run, as exporter="tree" prints each one:')
    answers = asyncio.run(graph_app.run())
    print()
    shutdown_telemetry()
    spans_file.close()

    spans = [json.loads(line) for line in spans_path.read_text().splitlines()]
    logs = [json.loads(line) for line in log_path.read_text().splitlines()]
    exposition = urllib.request.urlopen(url, timeout=5).read().decode()
    families = sorted(
        {
            line.split("{")[0].split(" ")[0]
            for line in exposition.splitlines()
            if line.startswith("tinyllm_")
        }
    )

    print(f"Answered {len(answers)} questions through the 'rag' graph; first: {answers[0]!r}\n")
    print("Traces  ", f"{len(spans)} spans in {spans_path}")
    by_name = Counter(s["name"] for s in spans)
    print("         " + ", ".join(f"{name} x{n}" for name, n in sorted(by_name.items())))
    errors = [s for s in spans if s["status"]["status_code"] == "ERROR"]
    print(f"         {len(errors)} spans with status ERROR (the fake model fails now and then)")
    if args.serve:
        print("Metrics ", url, "(served until Ctrl-C)")
    else:  # the endpoint closes with the demo: no URL that would be dead by the time it is read
        print("Metrics  read from /metrics before it closed; run `make demo SERVE=1` to keep it up")
    print(f"         {len(families)} tinyllm_* series names, e.g. tinyllm_node_executions_total:")
    for line in exposition.splitlines():
        if line.startswith("tinyllm_node_executions_total{"):
            print("           " + line)
    print("Logs    ", f"{len(logs)} JSON lines in {log_path}")
    sample = next(entry for entry in logs if entry.get("event") == "routed")
    print("         e.g. " + json.dumps(sample)[:300])
    events = Counter(event.event_type for event in events_buffer.get_events())
    print("Events  ", ", ".join(f"{k} x{v}" for k, v in sorted(events.items())))
    logged = sum(1 for entry in logs if "event_type" in entry)
    print(f"         {logged} of them (INFO and up: the failures) also went to the log")
    stats = get_metrics_collector().get_cardinality_stats()
    print(
        f"         cardinality: {stats['total_label_combinations']} label combinations "
        f"(limit {stats['max_cardinality']} per metric)"
    )

    run_zero_code(out)

    if args.serve:
        # The line is inside the try: a Ctrl-C that comes as soon as it is read still ends the
        # demo cleanly.
        try:
            print(f"\nServing {url} until Ctrl-C; the JSON logs are in {log_path}.")
            sys.stdout.flush()
            while True:
                _thread.join(1.0)
        except KeyboardInterrupt:
            pass
    server.shutdown()
    server.server_close()
    return 0


def serve_metrics(port: int | None, *, serve: bool) -> tuple[object, object]:
    """Serve /metrics: on the documented port with --serve (a free one if it is taken, said in
    one line), else on any free port, for the summary to read back."""
    if port is None and serve:
        try:
            return start_metrics_server(port=DOCUMENTED_PORT, addr="127.0.0.1")
        except MetricsServerError:
            server, thread = start_metrics_server(port=0, addr="127.0.0.1")
            print(
                f"Port {DOCUMENTED_PORT} is taken, so the metrics are served on "
                f"http://127.0.0.1:{server.server_port}/metrics instead: use that port in "
                "docs/cli.md's commands.\n"
            )
            return server, thread
    return start_metrics_server(port=port or 0, addr="127.0.0.1")


def run_zero_code(out: Path) -> None:
    """Part 2: the un-decorated app under `tinyllm-instrument run`, in a child process."""
    command = [
        str(Path(sys.executable).with_name("tinyllm-instrument")),
        "run",
        "--exporter",
        "tree",
        "--log-format",
        "json",
        "--log-file",
        str(out / "run-app.log"),
        "--print-plan",
        str(HERE / "plain_app.py"),
    ]
    print("\nZero-code: " + " ".join(command[1:]).replace(str(HERE) + "/", "examples/"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    (out / "run-stdout.txt").write_text(result.stdout)
    lines = result.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("trace ")]
    trees = [lines[a:b] for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]
    names = Counter(m[1] for tree in trees for line in tree[1:] if (m := _TREE_ROW.match(line)))
    logs = (out / "run-app.log").read_text().splitlines()
    print(f"         exit code {result.returncode}; the plan it printed:")
    for line in result.stderr.splitlines():
        print("           " + line)
    print(
        f"Traces   {len(trees)} trees, one per answer() call (run() is the entry point, not "
        f"wrapped by default), in {out / 'run-stdout.txt'}: "
        + ", ".join(f"{name} x{n}" for name, n in sorted(names.items()))
    )
    for tree in trees[:2]:
        for line in tree:
            print("         " + line)
    if len(trees) > 2:
        print(f"         ... {len(trees) - 2} more trees")
    print(f"Logs     {len(logs)} JSON lines in {out / 'run-app.log'}")


#: A line of a printed tree: the tree glyphs, then the span name.
_TREE_ROW = re.compile(r"^[│├└─ ]*(\S+)  ")


if __name__ == "__main__":
    raise SystemExit(main())
