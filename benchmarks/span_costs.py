"""Where a span on the kit's provider costs more than on a stock one, and what start attributes
cost: ``start_span(...).end()`` per variant, no decorator around it.

Every variant runs a short round (``--calls`` spans) in turn, ``--rounds`` times; a variant's
figure is its fastest round, which time spent descheduled on a shared machine cannot inflate.
Not part of make test or make bench:

    .venv/bin/python benchmarks/span_costs.py [--rounds 300] [--calls 200]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import DropSpanExporter, set_mode  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased  # noqa: E402

#: The start attributes of a plain @observe(node=...) span, in the order the kit sets them.
KIT_ATTRIBUTES = {
    "code.function": "bench_sync",
    "code.namespace": "cases",
    "tinyllm.node": "bench_sync",
    "openinference.span.kind": "CHAIN",
}


def _stock(sampler: Any = ALWAYS_ON) -> trace.Tracer:
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(DropSpanExporter()))
    return provider.get_tracer("span-costs")


def _span(tracer: trace.Tracer, attributes: dict[str, Any] | None = None) -> Callable[[], None]:
    start = tracer.start_span

    def run() -> None:
        start("bench", attributes=attributes).end()

    return run


def variants() -> dict[str, Callable[[], None]]:
    set_mode("full")  # the kit's provider, sampling 1.0, a BatchSpanProcessor added
    kit = trace.get_tracer_provider().get_tracer("span-costs")
    rows = {
        "stock provider: ALWAYS_ON": _span(_stock()),
        "stock provider: ParentBased(ALWAYS_ON)": _span(_stock(ParentBased(ALWAYS_ON))),
        "kit's provider (the reference below)": _span(kit),
    }
    items = list(KIT_ATTRIBUTES.items())
    for n in range(1, len(items) + 1):
        rows[f"kit's provider, {n} start attribute{'s' if n > 1 else ''}"] = _span(
            kit, dict(items[:n])
        )
    for key, value in items:
        rows[f"kit's provider, {key} alone"] = _span(kit, {key: value})
    return rows


def measure(rows: dict[str, Callable[[], None]], rounds: int, calls: int) -> dict[str, float]:
    best = {name: float("inf") for name in rows}
    for run in rows.values():
        for _ in range(300):
            run()
    for _ in range(rounds):
        for name, run in rows.items():
            gc.disable()
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                run()
            best[name] = min(best[name], (time.perf_counter_ns() - t0) / calls)
            gc.enable()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    best = measure(variants(), args.rounds, args.calls)
    reference = best["kit's provider (the reference below)"]
    print("| span | fastest ns | vs the kit's provider, no attribute |")
    print("|---|---:|---:|")
    for name, ns in best.items():
        print(f"| {name} | {ns:,.0f} | {ns - reference:+,.0f} ns ({ns / reference:.2f}x) |")


if __name__ == "__main__":
    main()
