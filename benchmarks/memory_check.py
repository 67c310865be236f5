"""No memory retained: N observed calls, a flush, then tracemalloc's answer.

    .venv/bin/python benchmarks/memory_check.py [--calls 1000000] [--limit-kib 64]

The kit is configured as for the benchmarks (full mode: every span sampled and exported to an
exporter that drops it). After a warm-up (first-call caches, prebound handles, the first exemplar
per bucket), tracemalloc starts; then ``--calls`` sync calls plus a tenth as many of each other
kind (async, generator, method); then the span pipeline is flushed and the garbage collected.
The script prints the memory still allocated relative to the start and the biggest growth by
line, and exits 1 if the growth exceeds ``--limit-kib``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import KINDS, make_runner, set_mode, setup_kit  # noqa: E402

from tinyllm_instrument.telemetry import flush_telemetry  # noqa: E402


def _settle() -> None:
    flush_telemetry(timeout=30)
    time.sleep(0.2)  # let the batch processor's worker go back to waiting
    flush_telemetry(timeout=30)
    gc.collect()
    gc.collect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--limit-kib", type=float, default=64.0)
    args = parser.parse_args()

    exporter = setup_kit()
    set_mode("full")
    runners = {kind: make_runner(kind, "observe") for kind in KINDS}
    counts = {kind: args.calls if kind == "sync" else args.calls // 10 for kind in KINDS}
    for runner in runners.values():
        for _ in range(5_000):
            runner.run()
    _settle()

    tracemalloc.start(1)
    _settle()
    before_snapshot = tracemalloc.take_snapshot()
    before, _ = tracemalloc.get_traced_memory()
    exported_before = exporter.exported
    t0 = time.perf_counter()
    for kind, runner in runners.items():
        run = runner.run
        for _ in range(counts[kind]):
            run()
    elapsed = time.perf_counter() - t0
    _settle()
    after, peak = tracemalloc.get_traced_memory()
    after_snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()

    grown_kib = (after - before) / 1024
    calls = ", ".join(f"{counts[k]:,} {k}" for k in KINDS)
    print(f"calls: {calls} in {elapsed:.1f}s (under tracemalloc)")
    print(f"spans handed to the exporter: {exporter.exported - exported_before:,}")
    print(
        f"traced memory: {before / 1024:.1f} KiB before, {after / 1024:.1f} KiB after flush "
        f"(peak {peak / 1024:.1f} KiB); retained {grown_kib:+.1f} KiB, limit {args.limit_kib} KiB"
    )
    stats = after_snapshot.compare_to(before_snapshot, "lineno")
    print("largest differences by line:")
    for stat in stats[:8]:
        print(f"  {stat}")
    if grown_kib > args.limit_kib:
        print("FAIL: memory retained")
        return 1
    print("OK: no memory retained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
