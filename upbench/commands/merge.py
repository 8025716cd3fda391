"""bench.py merge: join the CSV logs of one sweep's shards (or of a run and its resumption)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_args import str_list
from ..export import FORMATS, merge_frames, missing_configs, read_rows, write_csv, write_outputs

HELP = "merge the CSVs of one sweep's shards into one (refuses files of different sweep specs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="sweep CSVs written with --shard (or --out)")
    parser.add_argument("--out", type=Path, required=True, help="the merged CSV; .md, .json, .png go beside it")
    parser.add_argument("--formats", type=str_list, default=list(FORMATS),
                        help=f"what to write beside the CSV: {','.join(FORMATS)} (default all)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.out.resolve() in {path.resolve() for path in args.inputs}:
            raise ValueError(f"--out {args.out} is one of the inputs")
        rows = merge_frames([read_rows(path) for path in args.inputs])
        written = [write_csv(rows, args.out), *write_outputs(rows, args.out, args.formats)]
    except (ValueError, OSError) as error:
        print(f"merge: {error}", file=sys.stderr)
        return 2
    missing = missing_configs(rows)
    total = int(rows["config_total"].max()) if len(rows) else 0
    print(f"merged {len(rows)} of {total} configs from {len(args.inputs)} files", file=sys.stderr)
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        print(f"missing config indices ({len(missing)}): {shown}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
