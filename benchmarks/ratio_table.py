"""Print the overhead ratio table from one or more pytest-benchmark JSON files (one per run).

    .venv/bin/python benchmarks/ratio_table.py .benchmarks/run-*.json [--markdown]

Per run and round, each case's figure is its fastest ns per unit (per call; per item for
generators; ``--stat median`` for the median) and its ratio is taken against its reference *of
the same round*. The fastest time is the one that time spent descheduled cannot inflate: on 2
shared cores the medians of two cases measured seconds apart moved by up to ±40% between rounds,
their minimums by a few percent. Across runs the table shows the median of those per-run
figures and, with more than one run, the spread (min-max of the ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import CASES, ITEMS, KIND_TARGETS, KINDS, REFERENCES, STOCK_REFERENCES  # noqa: E402
from log_cases import LOG_CASES, REDACTION_CASES  # noqa: E402

#: Like-for-like references shown beside the target ones: the raw span with the same attributes,
#: and the raw span sampled out by the same sampler as the kit's sampled-out calls.
_LIKE_FOR_LIKE = {"observe": "otel_attrs", "observe_sampled_out": "otel_sampled_out"}


Sample = dict[tuple[str, str], float]


def load(paths: list[str], stat: str = "min") -> list[list[Sample]]:
    """Per file (one run): per round, each case's ``stat`` ns per unit (``median`` or ``min``)."""
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        rounds: dict[int, Sample] = {}
        for bench in data["benchmarks"]:
            info = bench.get("extra_info") or {}
            if "kind" not in info:
                continue
            per_call = info.get("per_call", 1)
            sample = rounds.setdefault(info.get("round", 0), {})
            sample[(info["kind"], info["case"])] = bench["stats"][stat] * 1e9 / per_call
        runs.append([rounds[r] for r in sorted(rounds)])
    return runs


def _run_ratio(run: list[Sample], kind: str, case: str, ref: str) -> float | None:
    """One run's ratio: the median over its rounds of the ratio within each round."""
    ratios = [
        r[(kind, case)] / r[(kind, ref)] for r in run if (kind, case) in r and (kind, ref) in r
    ]
    return statistics.median(ratios) if ratios else None


def _ratio_cell(
    runs: list[list[Sample]], kind: str, case: str, ref: str
) -> tuple[str, float | None]:
    ratios = [x for x in (_run_ratio(run, kind, case, ref) for run in runs) if x is not None]
    if not ratios:
        return "", None
    med = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{med:.2f}", med
    return f"{med:.2f} ({min(ratios):.2f}-{max(ratios):.2f})", med


def _verdict(
    runs: list[list[Sample]],
    kind: str,
    case: str,
    ref: str,
    target: float | None,
    verdicts: list[tuple[str, str, float, float, bool]],
) -> tuple[str, str, str]:
    """The ratio cell of ``case`` to ``ref``, its target and whether it is met (noted in
    ``verdicts``); a kind's own target (KIND_TARGETS) replaces the case's."""
    cell, med = _ratio_cell(runs, kind, case, ref)
    if not cell:
        return "", "", ""
    target = KIND_TARGETS.get((kind, case), target)
    if target is None or med is None:
        return f"{cell} of {ref}", "", ""
    ok = med <= target
    verdicts.append((kind, f"{case} vs {ref}", med, target, ok))
    return f"{cell} of {ref}", f"≤ {target:.1f}", "yes" if ok else "no"


def table(runs: list[list[Sample]]) -> str:
    lines = []
    n = len(runs)
    rounds = sum(len(run) for run in runs)
    lines.append(
        f"Overhead of @observe: fastest ns per call (generator: per item, {ITEMS} items per "
        f"call) over {rounds} rounds in {n} run{'s' if n != 1 else ''}. A ratio is taken within "
        "each round (the cases of a kind run seconds apart), its median over the rounds of a run "
        "is that run's ratio; shown: the median of the runs' ratios (min-max across runs)."
    )
    lines.append("")
    lines.append(
        "| kind | case | ns | × reference | target | met | × stock SDK span | target | met "
        "| × like-for-like raw OTel |"
    )
    lines.append("|---|---|---:|---:|---:|:---:|---:|---:|:---:|---:|")
    verdicts = []
    for kind in KINDS:
        for case, (_, label) in CASES.items():
            values = [r[(kind, case)] for run in runs for r in run if (kind, case) in r]
            if not values:
                continue
            ns = statistics.median(values)
            ref_text = target_text = met = like = ""
            stock_text = stock_target = stock_met = ""
            if case in REFERENCES:
                ref, target = REFERENCES[case]
                ref_text, target_text, met = _verdict(runs, kind, case, ref, target, verdicts)
            if case in STOCK_REFERENCES:
                ref, target = STOCK_REFERENCES[case]
                stock_text, stock_target, stock_met = _verdict(
                    runs, kind, case, ref, target, verdicts
                )
            if case in _LIKE_FOR_LIKE:
                cell, _ = _ratio_cell(runs, kind, case, _LIKE_FOR_LIKE[case])
                like = f"{cell} of {_LIKE_FOR_LIKE[case]}" if cell else ""
            lines.append(
                f"| {kind} | {label} | {ns:,.0f} | {ref_text} | {target_text} | {met} "
                f"| {stock_text} | {stock_target} | {stock_met} | {like} |"
            )
    lines.append("")
    missed = [v for v in verdicts if not v[4]]
    lines.append(
        f"Targets met: {len(verdicts) - len(missed)} of {len(verdicts)}"
        + (
            "; missed: " + ", ".join(f"{k}/{c} {m:.2f} > {t:.1f}" for k, c, m, t, _ in missed)
            if missed
            else ""
        )
    )
    return "\n".join(lines)


def log_table(runs: list[list[Sample]]) -> str:
    """The log-line rows (ratios to structlog's native line) and redaction's cost per KB."""
    lines: list[str] = []
    rows = []
    verdicts = []
    for case, (label, ref, target) in LOG_CASES.items():
        values = [r[("log", case)] for run in runs for r in run if ("log", case) in r]
        if not values:
            continue
        ref_text = target_text = met = ""
        if ref is not None:
            cell, med = _ratio_cell(runs, "log", case, ref)
            ref_text = f"{cell} of {ref}" if cell else ""
            if target is not None and med is not None:
                target_text = f"≤ {target:.1f}"
                met = "yes" if med <= target else "no"
                verdicts.append((case, med, target, med <= target))
        rows.append(
            f"| {label} | {statistics.median(values):,.0f} | {ref_text} | {target_text} | {met} |"
        )
    if rows:
        lines.append(
            "Log line: fastest ns per line, one JSON line to a file inside a recording span; "
            "ratios taken within each round as above."
        )
        lines.append("")
        lines.append("| case | ns | × reference | target | met |")
        lines.append("|---|---:|---:|---:|:---:|")
        lines.extend(rows)
        lines.append("")
        missed = [v for v in verdicts if not v[3]]
        lines.append(
            f"Log-line targets met: {len(verdicts) - len(missed)} of {len(verdicts)}"
            + (
                "; missed: " + ", ".join(f"{c} {m:.2f} > {t:.1f}" for c, m, t, _ in missed)
                if missed
                else ""
            )
        )
    redaction = []
    for case, kb in REDACTION_CASES.items():
        values = [r[("redaction", case)] for run in runs for r in run if ("redaction", case) in r]
        if values:
            per_kb = statistics.median(values)
            redaction.append(f"| {kb:,} KB | {per_kb / 1000:,.1f} | {per_kb * kb / 1e6:,.1f} |")
    if redaction:
        if lines:
            lines.append("")
        lines.append(
            "Redaction of a signed URL (credentials, token, long signature): cost per KB, which "
            "stays flat as the text grows (linear time)."
        )
        lines.append("")
        lines.append("| text | µs per KB | ms per text |")
        lines.append("|---:|---:|---:|")
        lines.extend(redaction)
    return "\n".join(lines)


def _keyed_rounds(paths: list[str], key: str, stat: str) -> list[list[dict[str, float]]]:
    """Per run, per round: ``extra_info[key]`` case -> ``stat`` ns per unit (presets, LangGraph)."""
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        rounds: dict[int, dict[str, float]] = {}
        for bench in data["benchmarks"]:
            info = bench.get("extra_info") or {}
            if key in info:
                per_call = info.get("per_call", 1)
                sample = rounds.setdefault(info.get("round", 0), {})
                sample[info[key]] = bench["stats"][stat] * 1e9 / per_call
        if rounds:
            runs.append([rounds[r] for r in sorted(rounds)])
    return runs


def _paired(runs: list[list[dict[str, float]]], case: str, ref: str) -> str:
    per_run = []
    for run in runs:
        ratios = [r[case] / r[ref] for r in run if case in r and ref in r]
        if ratios:
            per_run.append(statistics.median(ratios))
    if not per_run:
        return ""
    med = statistics.median(per_run)
    spread = f" ({min(per_run):.2f}-{max(per_run):.2f})" if len(per_run) > 1 else ""
    return f"{med:.2f}{spread}"


def presets_table(paths: list[str], stat: str) -> str:
    """Presets on against off for calls they do not wrap; a LangGraph invoke per preset state."""
    lines: list[str] = []
    runs = _keyed_rounds(paths, "preset_case", stat)
    rows = []
    for case, label in (
        ("plain", "a plain function"),
        ("observed", "an @observe'd node"),
        ("sdk_unwrapped", "an SDK method no preset wraps"),
    ):
        cell = _paired(runs, f"{case}_presets_on", f"{case}_presets_off")
        if cell:
            rows.append(f"| {label} | {cell} |")
    if rows:
        lines.append(
            "Presets (@openai, @anthropic, @langgraph) installed, against not installed, for "
            "calls they do not wrap (ratio within each round, as above; 1.0 = no cost):"
        )
        lines += ["", "| call | on / off |", "|---|---:|", *rows]
    runs = _keyed_rounds(paths, "langgraph_case", stat)
    rows = []
    for case, label in (
        ("observed", "@langgraph: graph span + a span per node"),
        ("built_before", "@langgraph, graph built before install: graph span only"),
        ("uninstalled", "@langgraph installed then uninstalled"),
    ):
        cell = _paired(runs, case, "plain")
        if cell:
            rows.append(f"| {label} | {cell} |")
    if rows:
        if lines:
            lines.append("")
        lines.append("A LangGraph invoke (3 nodes) against the same invoke with no preset:")
        lines += ["", "| case | × plain invoke |", "|---|---:|", *rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="pytest-benchmark --benchmark-json outputs")
    parser.add_argument(
        "--stat",
        choices=["median", "min"],
        default="min",
        help="each case's figure in a round: its fastest time (default), which time spent "
        "descheduled on a shared machine cannot inflate, or its median",
    )
    args = parser.parse_args()
    runs = [run for run in load(args.files, args.stat) if run]
    if not runs:
        print("no benchmark results in " + ", ".join(args.files), file=sys.stderr)
        return 1
    print(table(runs))
    for extra in (log_table(runs), presets_table(args.files, args.stat)):
        if extra:
            print()
            print(extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
