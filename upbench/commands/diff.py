"""bench.py diff: two finished runs side by side, config by config (before and after a change to an operator,
one GPU against another, CPU against CUDA), with each latency change judged against the timing noise."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from ..cli_args import PLAIN_FORMATS, emit, positive_float, render_table
from ..diff import TRUSTED, RunDiff, diff_runs
from ..export import markdown_table, size_label
from .report import read_any

HELP = ("two finished runs side by side: latency and peak memory of every config both hold, new / base, each "
        "change judged against the timing noise")


def at_least_one(text: str) -> float:
    value = positive_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a ratio of at least 1 (1.1: 10% slower), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", type=Path, help="the run to compare against: a sweep's .csv (or .json)")
    parser.add_argument("new", type=Path, help="the run to compare: a sweep's .csv (or .json)")
    parser.add_argument("--threshold", type=positive_float, default=0.05,
                        help="a change of the median latency below this fraction is 'same' (default 0.05: 5%%)")
    parser.add_argument("--fail-slower", type=at_least_one, default=None, metavar="RATIO",
                        help="exit 1 when a config is slower than RATIO x its base time (e.g. 1.1) with the timing "
                             "noise apart, or is ok in the base and not in the new run; the regressions go to stderr")
    parser.add_argument("--format", choices=PLAIN_FORMATS, default="markdown")
    parser.add_argument("--out", default=None, help="write the comparison to this file instead of stdout")


VERDICT_NOTE = ("change: faster or slower where the medians differ by more than the threshold and the p20-p80 "
                "ranges of the two runs do not overlap; within noise where they overlap; same within the "
                "threshold; suspect where either run's timing cannot be trusted (the note says why); not measured "
                "where either row is not ok. Latencies are medians (p20-p80) in ms; memory is the peak above the "
                "inputs, in MiB; ratios are new / base; counts that differ between the runs are named in the note.")


def _milliseconds(median: float, p20: float, p80: float) -> str:
    return "" if math.isnan(median) else f"{median:.3g} ({p20:.3g}-{p80:.3g})"


def _shown_axes(result: RunDiff) -> list[str]:
    """The axes besides operator and size that vary among the pairs of some operator."""
    per_operator = result.pairs.groupby("operator", sort=False)
    in_size = ("H", "W") if _has_size(result) else ()
    return [a for a in result.axes if a not in in_size and (per_operator[a].nunique(dropna=False) > 1).any()]


def _has_size(result: RunDiff) -> bool:
    """Whether the pairs hold both H and W (one of them may be a compared axis)."""
    return "H" in result.axes and "W" in result.axes


def display_table(result: RunDiff) -> pd.DataFrame:
    """The pairs for reading: the axes that vary, the size, both latencies with their p20-p80, the ratios."""
    pairs = result.pairs
    table = pairs[["operator", *_shown_axes(result)]].astype(object).where(lambda t: t.notna(), "-")
    if _has_size(result):
        table["size"] = [size_label(int(h), int(w)) for h, w in zip(pairs["H"], pairs["W"])]
    for side in ("base", "new"):
        table[f"{side} ms"] = [_milliseconds(*v) for v in
                               zip(pairs[f"{side} ms"], pairs[f"{side} ms p20"], pairs[f"{side} ms p80"])]
    table["ms ratio"] = pairs["ms ratio"]
    table["change"] = pairs["change"]
    table["base MiB"] = pairs["base MiB"]
    table["new MiB"] = pairs["new MiB"]
    table["MiB ratio"] = pairs["MiB ratio"]
    if pairs["note"].astype(bool).any():
        table["note"] = pairs["note"]
    return table


def _summary(result: RunDiff) -> str:
    counts = result.counts()
    said = ", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n)
    trusted = sum(counts[v] for v in TRUSTED)
    mean = result.geometric_mean()
    spread = (f"; geometric mean of new / base {mean:.3g} over the {trusted} whose timing both runs trust"
              if trusted else "; no pair whose timing both runs trust")
    return f"{len(result.pairs)} configs in both runs: {said}{spread}."


def _unpaired(result: RunDiff) -> list[str]:
    lines = []
    for side, keys in (("base", result.only_base), ("new run", result.only_new)):
        if keys:
            lines.append(f"Only in the {side} ({len(keys)}): " + ", ".join(f"`{k}`" for k in keys))
    return lines


def to_markdown(result: RunDiff, base: Path, new: Path) -> str:
    setups = result.setups
    differ = [s for s, b, n in zip(setups["setup"], setups["base"], setups["new"])
              if b != n and s not in ("load (1 min)", "measured")]
    parts = [f"# upbench diff: {base} (base) -> {new} (new)"]
    if result.across:
        parts.append("Paired across " + "; ".join(f"{axis} {b} (base) -> {n} (new)"
                                                  for axis, (b, n) in result.across.items()) + ".")
    parts += [markdown_table(setups),
              f"The setups differ in: {', '.join(differ)}." if differ else "The setups are the same.",
              f"**{_summary(result)}**", *_unpaired(result),
              markdown_table(display_table(result)), VERDICT_NOTE + f" Threshold: {result.threshold:g}."]
    return "\n\n".join(parts)


def plain_table(result: RunDiff) -> pd.DataFrame:
    """Every pair with all its numbers, and a row for each config one run alone holds."""
    unpaired = [{"key": key, "change": f"only in {side}"}
                for side, keys in (("base", result.only_base), ("new", result.only_new)) for key in keys]
    return pd.concat([result.pairs, pd.DataFrame.from_records(unpaired, columns=["key", "change"])],
                     ignore_index=True)


def run(args: argparse.Namespace) -> int:
    base, new = read_any(args.base, "diff"), read_any(args.new, "diff")
    result = diff_runs(base, new, args.threshold)
    if args.format == "markdown":
        text = to_markdown(result, args.base, args.new)
    else:
        text = render_table(plain_table(result), args.format)
    emit(text.rstrip("\n"), args.out)
    if args.fail_slower is None:
        return 0
    regressions = result.regressions(args.fail_slower)
    for regression in regressions:
        print(f"diff: regression: {regression}", file=sys.stderr)
    unjudged = result.counts()["suspect"]
    if unjudged:  # a gate that passes them silently would pass whatever they hide
        print(f"diff: warning: {unjudged} config(s) not judged: their timing is suspect in either run",
              file=sys.stderr)
    return 1 if regressions else 0
