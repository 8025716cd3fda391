"""What the two commands that measure rows, sweep and compare, share: their axis, measurement, output, resume and
isolation flags, the flags as sweep-file names, where the rows go by default, and the summary of the rows."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import pandas as pd

from ..cli_args import (file_name, int_list, integer, knob_pair, name_list, non_negative_int, positive_float,
                        positive_int, positive_int_list, size_list, str_list)
from ..counting import ALL_POLICIES, POLICIES
from ..environment import device_slug, file_timestamp
from ..rounds import rows_in_words
from ..rows import FAILED_STATUSES, FORMAT_SUFFIXES, REPORT_FORMATS, check_retry, is_suspect, rows_to_retry
from ..spec import AXIS_KEYS, SETTING_KEYS, SweepSpec
from ..timing import MIN_RUNS

RESULTS = Path("results")
# The defaults the help texts say, read from the spec they are the defaults of, so the two cannot drift.
DEFAULT = SimpleNamespace(**{field.name: field.default for field in fields(SweepSpec)})


def add_axis_arguments(parser: argparse.ArgumentParser, defaults: str,
                       ops_help: str = "operators; default: all registered") -> None:
    """Axis and measurement flags shared with ``compare``; unset flags fall back to ``defaults``."""
    axes = parser.add_argument_group("axes (comma lists)", defaults)
    axes.add_argument("--ops", type=name_list, help=ops_help)
    axes.add_argument("--C", type=positive_int_list, help="channels")
    axes.add_argument("--Cg", type=positive_int_list,
                      help="guide channels, for the operators that read a guide of any width (default: the guide has "
                           "C channels)")
    axes.add_argument("--K", type=int_list, help="kernel sizes, for the operators that have K")
    axes.add_argument("--d", type=int_list, help="embedding widths, for the operators that have d")
    axes.add_argument("--knob", type=knob_pair, action="append", default=[], metavar="NAME=V1,V2",
                      help="any other knob, e.g. encoder_kernel=3,5 (repeatable)")
    axes.add_argument("--size", type=size_list, help="low-res input sizes: 16 or 32x48")
    axes.add_argument("--N", type=positive_int_list, help="batch sizes")
    axes.add_argument("--dtype", type=str_list, help="fp32, fp16, bf16")
    axes.add_argument("--device", type=str_list, help="cpu, cuda, cuda:1, auto (the best present)")
    axes.add_argument("--policy", type=str_list,
                      help=f"counting policies: {', '.join(ALL_POLICIES)} (default {','.join(POLICIES)})")
    measure = parser.add_argument_group("measurement")
    measure.add_argument("--warmup", type=non_negative_int,
                         help=f"untimed calls before timing (default {DEFAULT.warmup}; at least one is made, and "
                              f"recorded: its time sets the pace the row budget is checked against)")
    measure.add_argument("--min-run-time", type=positive_float, dest="min_run_time",
                         help=f"seconds of timed calls per row (default {DEFAULT.min_run_time:g}; at least "
                              f"{MIN_RUNS} calls)")
    measure.add_argument("--budget", type=positive_float,
                         help=f"per-row time budget in seconds (default {DEFAULT.row_budget_s:g})")
    measure.add_argument("--seed", type=integer, help=f"seed of the random inputs (default {DEFAULT.seed})")
    measure.add_argument("--threads", type=positive_int,
                         help="CPU threads torch uses for each row (torch.set_num_threads; default: torch's own); "
                              "recorded in the row's threads column")
    measure.add_argument("--l2-flush", action="store_const", const=True, dest="l2_flush",
                         help="flush the caches before every timed call (cold-cache numbers): GPU L2; CPU every "
                              "level, by writing a buffer twice the last-level cache (slow: it adds that write to "
                              "each call's share of the row's run time)")
    measure.add_argument("--rounds", type=positive_int,
                         help=f"measure every config this many times, each round in an order of its own, so that no "
                              f"operator is always timed first or beside the same neighbour while the machine drifts; "
                              f"the tables show the median of the rounds, the round_spread column their slowest over "
                              f"fastest (default {DEFAULT.rounds}: one pass, in sweep order)")
    measure.add_argument("--tf32", action="store_const", const=True, dest="tf32",
                         help="GPU: let float32 matmuls and convolutions use TF32 (default off for all operators "
                              "alike; torch's own defaults differ between the two)")
    output = parser.add_argument_group("output")
    # a str, not a Path: Path("dir/") drops the slash that says a folder was meant
    output.add_argument("--out", type=file_name, help="the CSV to append rows to; the --formats go beside it "
                                                 f"({', '.join(FORMAT_SUFFIXES.values())}; a report's name, x.md or "
                                                 "x.tex, puts the rows in x.csv)")
    output.add_argument("--formats", type=str_list, default=list(REPORT_FORMATS),
                        help=f"what to write beside the CSV at the end: {','.join(REPORT_FORMATS)} (default all)")
    output.add_argument("--quiet", action="store_true", help="no progress bar and no tables on stdout")


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """--resume, --allow-mixed and --retry, shared with ``compare`` (see :func:`resume_settings`)."""
    parser.add_argument("--resume", action="store_true", help="continue --out, skipping the rows it holds")
    parser.add_argument("--allow-mixed", action="store_true", dest="allow_mixed",
                        help="resume (or merge shards) even where the rows were measured with another device, "
                             "torch, CUDA, thread count or git commit (refused without it)")
    parser.add_argument("--retry", type=str_list, default=[], metavar="KINDS",
                        help="with --resume: measure again the configs whose logged row is one of KINDS: failed "
                             "(error, crash, timeout), suspect (timing disturbed by other work: descheduled, shared, "
                             "unsteady, and every round of a config whose rounds disagree; doubts the row's own "
                             "settings cause are not retried); comma list. The log keeps both rows; the tables the "
                             "new one")


def note_a_fresh_resume(command: str, args: argparse.Namespace, out: Path, shard_files: Sequence[Path] = ()) -> None:
    """With --resume, where neither the log ``out`` nor any of a launch's ``shard_files`` exists: one line on stderr,
    and the sweep starts afresh. The sweep resumed may have been stopped before its log was written (and the
    resume command it printed must work), but a mistyped --out would otherwise go unnoticed."""
    if args.resume and not any(path.exists() for path in [out, *shard_files]):
        nor = f", nor do its shard logs in {shard_files[0].parent}" if shard_files else ""
        print(f"{command}: --resume: {out} does not exist{nor}; starting a fresh sweep", file=sys.stderr)


def resume_settings(args: argparse.Namespace) -> tuple[str, ...]:
    """The checked --retry kinds, after the checks that --resume has an --out and --retry a --resume."""
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out: the CSV to continue")
    if args.retry and not args.resume:
        raise ValueError("--retry needs --resume: it measures again rows of --out")
    return check_retry(args.retry)


def add_isolation_arguments(parser: argparse.ArgumentParser) -> None:
    isolation = parser.add_argument_group("isolation")
    isolation.add_argument("--isolate", action="store_true",
                           help="measure each row in a worker process: a row that segfaults, raises a CUDA error "
                                "or outlives --row-timeout is recorded (status crash / timeout) and the run goes on")
    isolation.add_argument("--row-timeout", type=positive_float, dest="row_timeout", metavar="S",
                           help="with --isolate: seconds a row may take, counting included, before its worker is killed")


def spec_mapping(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The flags the user gave, under the sweep-file names."""
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    for name, values in args.knob:
        if name in AXIS_KEYS or name in SETTING_KEYS:  # it would set that axis or setting, silently
            kind = "axis" if name in AXIS_KEYS else "setting"
            raise ValueError(f"--knob {name}={','.join(map(str, values))}: {name} is a sweep {kind}, not a knob; "
                             f"expected an operator's knob name (set the {kind} with --{name.replace('_', '-')})")
        given[name] = [*given.get(name, []), *values]  # repeated, or beside --K / --d: all the values, as table1
    return given


# The flags that set sweep-file names: every axis and setting, and the two knobs with flags of their own.
AXIS_FLAGS = (*AXIS_KEYS, "K", "d", *SETTING_KEYS)


def default_out(spec: SweepSpec, shard: tuple[int, int] | None) -> Path:
    slug = "+".join(device_slug(d) for d in spec.devices)
    suffix = f".shard{shard[0]}of{shard[1]}" if shard else ""
    return RESULTS / slug / f"{file_timestamp()}{suffix}.csv"


def warn_once_on_suspect_timing(prefix: str) -> Callable[[dict[str, Any]], None]:
    """An ``on_row`` callback: one line on stderr for the first row whose timing cannot be trusted."""
    warned = False

    def on_row(row: dict[str, Any]) -> None:
        nonlocal warned
        if row.get("timing_suspect") and not warned:
            warned = True
            print(f"{prefix}: warning: timing of {row['key']} cannot be trusted ({row['timing_suspect']}); "
                  f"such rows are marked in the timing_suspect column and listed in the report", file=sys.stderr)

    return on_row


def failed_rows(rows: pd.DataFrame, remedy: str) -> list[str]:
    """One line when rows failed (:data:`FAILED_STATUSES`): a command that has such rows exits 1."""
    failed = rows[rows["status"].isin(FAILED_STATUSES)]
    if failed.empty:
        return []
    counts = ", ".join(f"{n} {status}" for status, n in failed["status"].value_counts().items())
    return [f"{len(failed)} row(s) failed ({counts}); {remedy}"]


def summary(rows: pd.DataFrame, written: list[Path]) -> str:
    """Status counts, rows with suspect timing, every row that is not ok with its reason, and the files written."""
    statuses = ", ".join(f"{n} {status}" for status, n in rows["status"].value_counts().items())
    lines = [f"{rows_in_words(rows)}: {statuses}" if len(rows) else "0 rows: nothing was measured"]
    suspect = int(is_suspect(rows).sum())
    if suspect:
        retryable = int(rows_to_retry(rows, ["suspect"]).sum())
        lines.append(f"{suspect} row(s) with timing that cannot be trusted (column timing_suspect); "
                     f"{retryable} of them disturbed by other work, which --resume --retry suspect measures again")
    problems = rows[rows["status"] != "ok"]
    lines += [f"  {key}: {status}: {message}" for key, status, message
              in zip(problems["key"], problems["status"], problems["message"].fillna(""))]
    lines += [f"wrote {path}" for path in written]
    return "\n".join(lines)
