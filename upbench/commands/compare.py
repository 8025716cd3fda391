"""bench.py compare: reference vs compiled implementation on the same shapes, as ratios."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..export import check_formats, check_output_paths, write_outputs
from ..registry import available, get
from ..spec import SweepSpec
from ..sweep import run_sweep
from ..rowlog import log_path
from ..views import markdown_table, ratio_view
from .measuring import (AXIS_FLAGS, add_axis_arguments, add_isolation_arguments, add_resume_arguments, default_out,
                        failed_rows, note_a_fresh_resume, resume_settings, spec_mapping, summary,
                        warn_once_on_suspect_timing)

HELP = "reference vs compiled: latency (fwd, fwd+bwd) and peak memory side by side, with reference/compiled ratios"
DEFAULTS: dict[str, Any] = {"C": [256], "size": [(64, 64)]}


# The default operators are said once, on --ops; the group header gives the other axes' defaults.
AXES_DEFAULTS = "default: C=256, size 64, each operator's default knobs, N=1, fp32, device auto"
OPS_HELP = "operators; default: those with a compiled path (Upsampler.compiled_ops)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_axis_arguments(parser, AXES_DEFAULTS, ops_help=OPS_HELP)
    add_resume_arguments(parser)
    add_isolation_arguments(parser)


def operators_with_compiled_path() -> list[str]:
    return [name for name in available() if get(name).compiled_ops]


def run(args: argparse.Namespace) -> int:
    mapping = {"ops": operators_with_compiled_path(), **DEFAULTS, **spec_mapping(args, AXIS_FLAGS)}
    mapping.update(mode=["fwd", "fwd+bwd"], impl=["reference", "compiled"])
    if not mapping["ops"]:
        raise ValueError("no registered operator has a compiled path (Upsampler.compiled_ops)")
    formats = check_formats(args.formats)
    retry = resume_settings(args)
    spec = SweepSpec.from_mapping(mapping, source="the command line")
    out = log_path(args.out) if args.out else default_out(spec, None)  # rows go to a file as they finish
    check_output_paths(out, formats, args.out, appends=True)
    args.row_log = out
    note_a_fresh_resume("compare", args, out)
    rows = run_sweep(spec, out, resume=args.resume, progress=False if args.quiet else None,
                     on_row=warn_once_on_suspect_timing("compare"), isolate=args.isolate, row_timeout=args.row_timeout,
                     allow_mixed=args.allow_mixed, retry=retry)
    ratios = ratio_view(rows)
    written = [out, *write_outputs(rows, out, formats, [("Reference / compiled", ratios)])]
    if not args.quiet:  # as --quiet says: no tables on stdout (the ratios are in the --formats written)
        print("## Reference / compiled (ratio > 1: the compiled path is faster or leaner)\n")
        print(markdown_table(ratios))
    print(summary(rows, written), file=sys.stderr)  # where the files went, as sweep --quiet says it
    failed = failed_rows(rows, "their ratios are blank")
    for problem in failed:
        print(f"compare: {problem}", file=sys.stderr)
    return 1 if failed else 0
