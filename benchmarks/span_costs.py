"""Where a span on the kit's provider costs more than on a stock one, and what each attribute costs.

Interleaved rounds in one process (every variant runs one short round in turn, many times); each
figure is the median over rounds of the ratio to the first variant of its group, taken within a
round. Not part of make test or make bench:

    .venv/bin/python benchmarks/span_costs.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased  # noqa: E402

from cases import DropSpanExporter, set_mode  # noqa: E402

#: The start attributes of a plain @observe(node=...) span, as the kit sets them.
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


def groups() -> dict[str, dict[str, Callable[[], None]]]:
    set_mode("full")  # the kit's provider, sampling 1.0, a BatchSpanProcessor added
    kit = trace.get_tracer_provider().get_tracer("span-costs")
    stock = _stock()
    attribute_rows = {"no attribute": _span(kit)}
    for key, value in KIT_ATTRIBUTES.items():
        attribute_rows[f"+ {key}"] = _span(kit, {key: value})
    attribute_rows["all four"] = _span(kit, KIT_ATTRIBUTES)
    return {
        "provider (start_span + end, no attribute)": {
            "stock: ALWAYS_ON + BatchSpanProcessor": _span(stock),
            "stock: ParentBased(ALWAYS_ON) + BatchSpanProcessor": _span(
                _stock(ParentBased(ALWAYS_ON))
            ),
            "kit's provider + the same BatchSpanProcessor": _span(kit),
        },
        "attributes on the kit's provider": attribute_rows,
    }


def _round(run: Callable[[], None], loops: int) -> float:
    # CPU time of the process, not wall time: on shared cores, time spent descheduled is not
    # the code's.
    t0 = time.process_time_ns()
    for _ in range(loops):
        run()
    return (time.process_time_ns() - t0) / loops


def measure(
    variants: dict[str, Callable[[], None]], rounds: int, round_ns: float = 10e6
) -> dict[str, list[float]]:
    loops = {}
    for name, run in variants.items():
        for _ in range(300):
            run()
        loops[name] = max(50, int(round_ns / _round(run, 300)))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            gc.collect()
            gc.disable()
            samples[name].append(_round(run, loops[name]))
            gc.enable()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    for title, variants in groups().items():
        samples = measure(variants, args.rounds)
        first = next(iter(samples.values()))
        print(f"\n{title}")
        for name, values in samples.items():
            ratios = sorted(a / b for a, b in zip(values, first, strict=True))
            print(
                f"  {name:55s} {statistics.median(values):8.0f} ns  x{statistics.median(ratios):.3f}"
                f" ({ratios[0]:.3f}-{ratios[-1]:.3f})"
            )


if __name__ == "__main__":
    main()
