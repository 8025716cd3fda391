"""bench.py diff: two finished runs side by side, config by config (before and after a change to an operator,
one GPU against another, CPU against CUDA), with each latency change judged against the timing noise."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from ..cli_args import (PLAIN_FORMATS, add_format_argument, check_out, emit, file_name, name_list, positive_float,
                        render_table)
from ..diff import SIZE_AXES, TRUSTED, RunDiff, diff_runs
from ..rows import index_ranges, missing_configs
from ..rounds import combine_rounds
from ..views import format_number, markdown_table, size_label
from .reading import read_any

HELP = ("two finished runs side by side: latency and peak memory of every config both hold, new / base, each "
        "change judged against the timing noise")
# The unpaired configs the Markdown names one by one; the csv and json formats list every one.
LISTED_UNPAIRED = 8


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
    parser.add_argument("--across", type=name_list, default=None, metavar="AXES",
                        help="pair the configs across these axes (comma list: C, Cg, N, size, dtype, a knob...), on "
                             "which each run holds one value per operator; without it the runs may differ in one of "
                             "impl, dtype, device, mode or a knob, and are paired across it")
    gate = parser.add_argument_group("regression gate")
    gate.add_argument("--fail-slower", type=at_least_one, default=None, metavar="RATIO",
                      help="exit 1 when a config is more than RATIO x its base time (e.g. 1.1) with the p20-p80 ranges "
                           "apart, is ok in the base and has no latency in the new run, or has no row in the new run; "
                           "each goes to stderr")
    gate.add_argument("--strict", action="store_true",
                      help="with --fail-slower: also fail on slowdowns beyond RATIO that it cannot judge (p20-p80 "
                           "ranges overlapping, timing suspect in either run), which otherwise are warnings")
    gate.add_argument("--allow-missing", action="store_true",
                      help="with --fail-slower: a config of the base that the new run lacks is not a regression "
                           "(a new run of fewer operators)")
    add_format_argument(parser, PLAIN_FORMATS)
    parser.add_argument("--out", type=file_name, default=None,
                        help="write the comparison to this file instead of stdout")


VERDICT_NOTE = ("change: faster or slower where the medians differ by more than the threshold and the p20-p80 "
                "ranges of the two runs do not overlap; within noise where they overlap; same within the "
                "threshold; suspect where either run's timing cannot be trusted (the note says why); not measured "
                "where either row has no latency. Latencies are medians [p20, p80] in ms; memory is the peak above "
                "the inputs, in MiB; ratios are new / base; counts that differ between the runs are named in the "
                "note.")


def _milliseconds(median: float, p20: float, p80: float) -> str:
    return "" if math.isnan(median) else f"{format_number(median)} [{format_number(p20)}, {format_number(p80)}]"


def _has_size(result: RunDiff) -> bool:
    return all(axis in result.axes for axis in SIZE_AXES)


def _shown_axes(result: RunDiff) -> list[str]:
    """The axes besides operator and size that vary among the pairs of some operator."""
    per_operator = result.pairs.groupby("operator", sort=False)
    in_size = SIZE_AXES if _has_size(result) else ()
    return [a for a in result.axes if a not in in_size and (per_operator[a].nunique(dropna=False) > 1).any()]


def display_table(result: RunDiff) -> pd.DataFrame:
    """The pairs for reading: the axes that vary, the size, both latencies with their p20-p80, the ratios."""
    pairs = result.pairs
    table = pairs[["operator", *_shown_axes(result)]].astype(object).where(lambda t: t.notna(), "-")
    if _has_size(result):
        table["size"] = [size_label(int(h), int(w)) for h, w in zip(pairs["H"], pairs["W"])]
    for side in ("base", "new"):
        table[f"{side} ms"] = [_milliseconds(*v) for v in
                               zip(pairs[f"{side} ms"], pairs[f"{side} ms p20"], pairs[f"{side} ms p80"])]
    for column in ("ms ratio", "change", "base MiB", "new MiB", "MiB ratio"):
        table[column] = pairs[column]
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
    return f"{_configs(len(result.pairs))} in both runs: {said}{spread}."


def _configs(count: int) -> str:
    return f"{count} config{'' if count == 1 else 's'}"


def _unpaired(result: RunDiff) -> list[str]:
    """'Only in the base (41 configs: carafe 12, sapa-b 29): `a`, `b`, ... and 33 more' for each side."""
    lines = []
    for side, keys in (("base", result.only_base), ("new run", result.only_new)):
        if not keys:
            continue
        per_operator = pd.Series([key.split("|")[0] for key in keys]).value_counts(sort=False)
        listed = ", ".join(f"`{k}`" for k in keys[:LISTED_UNPAIRED])
        more = len(keys) - LISTED_UNPAIRED
        lines.append(f"Only in the {side} ({_configs(len(keys))}: "
                     f"{', '.join(f'{op} {n}' for op, n in per_operator.items())}): {listed}"
                     + (f" and {more} more (the csv and json formats list every one)" if more > 0 else ""))
    return lines


def _across_line(result: RunDiff) -> list[str]:
    if not result.across:
        return []
    said = "; ".join(f"{axis} " + ", ".join(f"{b} (base) -> {n} (new)" for b, n in dict.fromkeys(values.values()))
                     for axis, values in result.across.items())
    return [f"Paired across {said}."]


def to_markdown(result: RunDiff, base: Path, new: Path) -> str:
    setups = result.setups
    # a blank side is not known (a column older logs lack, a cache no failed row reports): no difference seen
    differ = [s for s, b, n in zip(setups["setup"], setups["base"], setups["new"])
              if b and n and b != n and s not in ("load (1 min)", "measured")]
    parts = [f"# upbench diff: {base} (base) -> {new} (new)", *_across_line(result),
             markdown_table(setups),
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


def read_run(path: Path) -> pd.DataFrame:
    """A run's rows as the report reads them, with the columns the diff needs besides."""
    rows = read_any(path, "diff", combine=False)  # diff_runs combines them, and spans every round's time and load
    absent = [c for c in ("config_index", "config_total", "latency_p20_ms", "latency_p80_ms") if c not in rows]
    if absent:
        raise ValueError(f"{path}: not upbench sweep rows a diff can pair (no {', '.join(absent)} column)")
    missing = missing_configs(combine_rounds(rows))  # a config without some round shows as incomplete
    if missing:
        print(f"diff: warning: {path} has no row for {len(missing)} of its sweep's {int(rows['config_total'].max())} "
              f"configs (indices {index_ranges(missing)}): a sweep stopped early, or one shard of several",
              file=sys.stderr)
    return rows


def run(args: argparse.Namespace) -> int:
    check_out(args.out, [args.base, args.new])
    if (args.strict or args.allow_missing) and args.fail_slower is None:
        raise ValueError("--strict and --allow-missing refine --fail-slower, which was not given")
    base, new = read_run(args.base), read_run(args.new)
    result = diff_runs(base, new, args.threshold, args.across)
    if args.format == "markdown":
        text = to_markdown(result, args.base, args.new)
    else:
        text = render_table(plain_table(result), args.format)
    emit(text.rstrip("\n"), args.out)
    if args.fail_slower is None:
        return 0
    found = result.regressions(args.fail_slower, allow_missing=args.allow_missing)
    for failure in found.failures:
        print(f"diff: regression: {failure}", file=sys.stderr)
    for doubt in found.doubts:
        print(f"diff: {'regression' if args.strict else 'warning: not judged'}: {doubt}", file=sys.stderr)
    unjudged = result.counts()["suspect"]
    if unjudged and not args.strict:  # a gate that passes them silently would pass whatever they hide
        print(f"diff: warning: {_configs(unjudged)} not judged: their timing is suspect in either run "
              f"(--strict fails on their slowdowns)", file=sys.stderr)
    return 1 if found.failures or (args.strict and found.doubts) else 0
