"""bench.py selfcheck: does this machine's build of the compiled ops compute the right thing?"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from .. import kernels
from ..cli_args import (PLAIN_FORMATS, add_format_argument, check_out, emit, file_name, integer, name_list,
                        render_table, str_list)
from ..environment import check_device
from ..selfcheck import (CHECKED_OPS, DTYPES, ERROR, FAIL, PASS, SHAPES, build_rows, environment_rows, plan,
                         present_devices, run_checks)

HELP = ("check this machine: the environment, the kernel build, then every compiled op against its float64 "
        "definition on every device, dtype and awkward shape, forward and every gradient; exit 1 on any FAIL")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=name_list, default=None,
                        help="devices to check, default every one present (cpu, cuda:0, ...)")
    parser.add_argument("--dtypes", type=str_list, default=list(DTYPES),
                        help=f"default {','.join(DTYPES)}")
    parser.add_argument("--ops", type=str_list, default=[op.name for op in CHECKED_OPS],
                        help="compiled ops to check, default all: " + ",".join(op.name for op in CHECKED_OPS))
    parser.add_argument("--seed", type=integer, default=0, help="seed of the random inputs, default 0")
    add_format_argument(parser, PLAIN_FORMATS, "of the results table")
    parser.add_argument("--out", type=file_name, default=None, help="write the results table to this file as well")


def _choose(kind: str, given: list[str], known: dict) -> list:
    unknown = [name for name in given if name not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(unknown)}; expected some of {', '.join(known)}")
    if not given:
        raise ValueError(f"no {kind} given; expected some of {', '.join(known)}")
    return [known[name] for name in dict.fromkeys(given)]  # each once: a name given twice would check it twice


def _section(title: str, rows: list[tuple[str, str]]) -> str:
    table = pd.DataFrame(rows, columns=["", "value"])
    return f"## {title}\n\n{render_table(table, 'markdown')}\n"


def run(args: argparse.Namespace) -> int:
    check_out(args.out)
    ops = _choose("op", args.ops, {op.name: op for op in CHECKED_OPS})
    # the sweep's short names too (fp32, fp16, bf16, fp64), so one spelling works in every command
    short = {"fp64": "float64", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
    dtypes = _choose("dtype", [short.get(name.lower(), name) for name in args.dtypes], DTYPES)
    devices = present_devices() if args.devices is None else args.devices
    for device in devices:
        check_device(device)
    print(_section("Environment", environment_rows()), flush=True)
    info = kernels.build_info()  # builds on first use: its time is part of what this command reports
    print(_section("Build", build_rows(info, ops)), flush=True)
    if not info["available"]:
        print("selfcheck: FAIL: the compiled ops could not be built (error above)", file=sys.stderr)
        return 1
    checks = plan(ops, SHAPES, dtypes, devices)
    rows = []
    for row in run_checks(checks, args.seed):
        rows.append(row)
        if row["result"] != PASS:  # the table comes at the end; a failure should not wait for it
            print(f"selfcheck: {row['result']}: {row['device']} {row['op']} {row['dtype']} {row['case']}: "
                  f"{row['message']}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    print(f"## Compiled vs definition ({len(rows)} checks)\n")
    print("Each check compares, with the float64 definition on the CPU, " + "; ".join(op.describe() for op in ops)
          + ". error: the worst one's largest difference; allowed: its tolerance there.\n")
    print(render_table(table, args.format, floatfmt=".2g") if args.format == "markdown"
          else render_table(table, args.format))
    if args.out:
        emit(render_table(table, args.format), args.out)
    failed = table["result"].isin([FAIL, ERROR]).sum()
    verdict = f"selfcheck: {'FAIL' if failed else 'PASS'}: {len(rows) - failed} of {len(rows)} checks passed"
    print(f"\n{verdict}")
    if failed:
        print(verdict, file=sys.stderr)
    return 1 if failed else 0
