"""bench.py merge: join the CSV logs of one sweep's shards (or of a run and its resumption)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_args import check_not_an_input, file_name, str_list
from ..export import check_output_paths, write_outputs
from ..files import prepare_parent
from ..rowlog import check_replaceable, holds_nothing, log_path, read_log_noting
from ..rows import (FORMAT_SUFFIXES, REPORT_FORMATS, IncompleteSweep, check_complete, merge_frames, rounds_of,
                    write_csv)

HELP = "merge the CSVs of one sweep's shards into one (refuses files of different sweep specs, and missing configs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="sweep CSVs written with --shard (or --out)")
    parser.add_argument("--out", type=file_name, required=True,
                        help="the merged CSV (a report's name, x.md or x.tex, names x.csv); the --formats go beside it "
                             f"({', '.join(FORMAT_SUFFIXES.values())})")
    parser.add_argument("--formats", type=str_list, default=list(REPORT_FORMATS),
                        help=f"what to write beside the CSV: {','.join(REPORT_FORMATS)} (default all)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="write the merge even when configs of the sweep have no row (exit 0); "
                             "without it a partial merge writes nothing and exits 1")
    parser.add_argument("--allow-mixed", action="store_true", dest="allow_mixed",
                        help="merge rows of one device measured with different torch, CUDA, threads or git commit "
                             "(refused without it: their latencies do not belong in one table)")


def nothing_to_merge(inputs: list[Path]) -> str:
    return f"nothing to merge: {', '.join(map(str, inputs))} hold{'s' if len(inputs) == 1 else ''} no rows"


def run(args: argparse.Namespace) -> int:
    out = log_path(args.out)
    check_not_an_input(out, args.inputs)
    check_output_paths(out, args.formats, args.out)  # the log and the reports beside it writable
    empty = [path for path in args.inputs if holds_nothing(path)]
    for path in empty:
        print(f"merge: warning: {path} holds no rows (a shard killed before its first row); skipped", file=sys.stderr)
    logs = [path for path in args.inputs if path not in empty]
    if not logs:
        raise ValueError(nothing_to_merge(args.inputs))
    check_replaceable(out, logs)
    frames, notes = zip(*map(read_log_noting, logs))
    rows = merge_frames(list(frames), args.allow_mixed)
    for note in filter(None, notes):
        print(f"merge: warning: {note}", file=sys.stderr)
    if rows.empty:
        raise ValueError(nothing_to_merge(args.inputs))
    try:
        check_complete(rows)
    except IncompleteSweep as incomplete:
        if not args.allow_partial:
            print(f"merge: incomplete: {incomplete}; nothing written (--allow-partial writes it anyway)",
                  file=sys.stderr)
            return 1
        print(f"merge: partial merge: {incomplete}", file=sys.stderr)
    prepare_parent(out)
    written = [write_csv(rows, out), *write_outputs(rows, out, args.formats)]  # the reports combine a config's rounds
    total = int(rows["config_total"].max())
    rounds = rounds_of(rows)
    merged = (f"{len(rows)} of {total * rounds} rows ({total} configs x {rounds} rounds)" if rounds > 1
              else f"{len(rows)} of {total} configs")
    print(f"merged {merged} from {len(logs)} files", file=sys.stderr)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
