"""End to end: observed calls with their spans exported over OTLP gRPC to a live receiver in
another process, flush included; the kit against the SDK's BatchSpanProcessor + OTLPSpanExporter.

Not part of make test or make bench (it takes a minute or two). Each run is a fresh worker
process (so each gets its own global provider) calling ``def f(x): return x + 1`` ``--calls``
times in a tight loop, then flushing; the two setups alternate, ``--runs`` times each:

- ``kit``: ``@observe(node=...)`` with ``configure_telemetry(exporter="otlp")`` (the kit's export
  pipeline, every span exported or counted as dropped; the default ``on_queue_full="block"``);
- ``sdk``: ``@tracer.start_as_current_span(...)`` on a stock ``TracerProvider`` (``ALWAYS_ON``)
  with a ``BatchSpanProcessor`` around an ``OTLPSpanExporter`` (their defaults), which drops
  what does not fit its queue without telling the app.

Per run: wall time and the process's CPU time (the export thread's included: it runs under the
same GIL) from the first call to the end of the flush, and the spans the receiver decoded.

    .venv/bin/python benchmarks/e2e_otlp.py [--calls 20000] [--runs 3]
    .venv/bin/python benchmarks/e2e_otlp.py --worker kit --endpoint 127.0.0.1:4317 --calls 20000

With ``--worker kit`` alone it runs one worker against a receiver of its own, for a profiler:
``py-spy record --threads -o kit.txt -f raw -- .venv/bin/python benchmarks/e2e_otlp.py
--worker kit --calls 50000`` shows where the export thread (``tinyllm-span-export``) spends
its time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_TESTS = os.path.join(os.path.dirname(_HERE), "tests")


def _f(x: int) -> int:
    return x + 1


def _worker(setup: str, endpoint: str, calls: int) -> dict[str, Any]:
    """Run ``calls`` observed calls and a flush in this process; what it cost and dropped."""
    if setup == "kit":
        from tinyllm_instrument import observe
        from tinyllm_instrument.metrics import get_metrics_collector
        from tinyllm_instrument.telemetry import configure_telemetry, flush_telemetry

        configure_telemetry(
            enable_tracing=True, exporter="otlp", otlp_endpoint=f"http://{endpoint}"
        )
        f = observe(node="e2e")(_f)

        def flush() -> None:
            flush_telemetry(timeout=60)

    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        provider = TracerProvider(sampler=ALWAYS_ON)
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
        )
        f = provider.get_tracer("e2e").start_as_current_span("e2e")(_f)

        def flush() -> None:
            provider.force_flush(60_000)

    for _ in range(200):  # warm up (imports, first connection)
        f(1)
    flush()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        f(1)
    flush()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    result: dict[str, Any] = {"setup": setup, "calls": calls, "wall": wall, "cpu": cpu}
    if setup == "kit":
        registry = get_metrics_collector().registry
        dropped = 0.0
        for metric in registry.collect():
            if metric.name == "tinyllm_spans_dropped":
                dropped += sum(s.value for s in metric.samples if s.name.endswith("_total"))
        result["kit_counted_dropped"] = dropped
    return result


_RECEIVER = """
import sys
sys.path.insert(0, {tests!r})
from otlp_receivers import GrpcTraceReceiver
receiver = GrpcTraceReceiver().start()
print(receiver.endpoint.split("//")[-1], flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        print(len(receiver.spans), flush=True)
    elif line.strip() == "clear":
        receiver.clear()
        print("ok", flush=True)
receiver.stop()
"""


class _Receiver:
    """The OTLP gRPC receiver of tests/otlp_receivers.py, in a process of its own."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER.format(tests=_TESTS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()

    def _ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def count(self, expected: int, settle: float = 2.0) -> int:
        """Spans received so far, once the count has stopped moving (or reached ``expected``)."""
        last, since = -1, time.monotonic()
        while True:
            n = int(self._ask("count"))
            if n >= expected:
                return n
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since > settle:
                return n
            time.sleep(0.1)

    def clear(self) -> None:
        self._ask("clear")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _run_worker(setup: str, endpoint: str, calls: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", setup, "--endpoint", endpoint,
         "--calls", str(calls)],
        check=True,
        capture_output=True,
        text=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", choices=["kit", "sdk"])
    parser.add_argument("--endpoint")
    args = parser.parse_args()
    if args.worker:
        receiver = None if args.endpoint else _Receiver()
        try:
            endpoint = args.endpoint or receiver.endpoint  # type: ignore[union-attr]
            print(json.dumps(_worker(args.worker, endpoint, args.calls)))
        finally:
            if receiver is not None:
                receiver.close()
        return 0
    receiver = _Receiver()
    rows: dict[str, list[dict[str, Any]]] = {"kit": [], "sdk": []}
    try:
        for _ in range(args.runs):
            for setup in ("kit", "sdk"):
                receiver.clear()
                result = _run_worker(setup, receiver.endpoint, args.calls)
                # The warm-up's 200 spans were flushed before the timed calls.
                result["received"] = receiver.count(args.calls + 200) - 200
                rows[setup].append(result)
                print(json.dumps(result), file=sys.stderr)
    finally:
        receiver.close()
    print(f"{args.calls:,} calls per run, {args.runs} runs per setup, medians (min-max)\n")
    print("| setup | calls/s | µs per call, wall | CPU µs per call | spans delivered | dropped |")
    print("|---|---:|---:|---:|---:|---:|")
    for setup, label in (
        ("kit", "kit: @observe, ExportPipeline + OTLP gRPC"),
        ("sdk", "SDK: start_as_current_span, BatchSpanProcessor + OTLPSpanExporter"),
    ):
        runs = rows[setup]

        def cell(values: list[float], fmt: str) -> str:
            return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"

        calls = args.calls
        rate = [calls / r["wall"] for r in runs]
        wall = [r["wall"] / calls * 1e6 for r in runs]
        cpu = [r["cpu"] / calls * 1e6 for r in runs]
        delivered = [100 * r["received"] / calls for r in runs]
        dropped = [calls - r["received"] for r in runs]
        print(
            f"| {label} | {cell(rate, ',.0f')} | {cell(wall, '.1f')} | {cell(cpu, '.1f')} "
            f"| {cell(delivered, '.1f')}% | {cell(dropped, ',.0f')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
