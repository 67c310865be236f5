"""Ratios measured by round-robin: every case of a kind runs one short round in turn, many times.

A cross-check of the pytest-benchmark table that is less exposed to a machine whose load changes
while the suite runs (each case's median comes from rounds spread over the same period).

    .venv/bin/python benchmarks/interleaved.py [--rounds 15] [--kinds sync,async] [--cases ...]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import CASES, KINDS, REFERENCES, make_runner, set_mode  # noqa: E402


def _round(run, loops: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(loops):
        run()
    return (time.perf_counter_ns() - t0) / loops


def measure(kinds, cases, rounds: int, round_ns: float = 20e6) -> dict:
    results: dict = {}
    for kind in kinds:
        runners = [make_runner(kind, case) for case in cases]
        loops = {}
        for r in runners:  # calibrate: a round of about round_ns
            set_mode(r.mode)
            for _ in range(200):
                r.run()
            per = _round(r.run, 200)
            loops[r.case] = max(50, int(round_ns / per))
        samples: dict = {r.case: [] for r in runners}
        gc_was = gc.isenabled()
        for _ in range(rounds):
            for r in runners:
                set_mode(r.mode)
                gc.collect()
                gc.disable()
                samples[r.case].append(_round(r.run, loops[r.case]) / r.per_call)
                if gc_was:
                    gc.enable()
        results[kind] = samples
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    cases = args.cases.split(",")
    results = measure(kinds, cases, args.rounds)
    for kind, samples in results.items():
        print(f"\n{kind}")
        med = {c: statistics.median(v) for c, v in samples.items()}
        for case, values in samples.items():
            line = f"  {case:22s} {med[case]:10.0f} ns  (min {min(values):.0f})"
            ref = REFERENCES.get(case)
            if ref and ref[0] in med:
                # ratio per round (paired), then its median and range
                ratios = sorted(a / b for a, b in zip(values, samples[ref[0]], strict=True))
                line += (
                    f"  x{med[case] / med[ref[0]]:.3f} of {ref[0]}"
                    f"  (paired: median {statistics.median(ratios):.3f},"
                    f" {ratios[0]:.3f}-{ratios[-1]:.3f})"
                )
            print(line)


if __name__ == "__main__":
    main()
