"""bench.py table1: validate the SAPA paper's Table 1 against exact formulas and fvcore counts."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import pandas as pd

from ..cli_args import (TABLE_FORMATS, add_format_argument, check_out, emit, file_name, int_list, knob_pair, name_list,
                        positive_int_list, render_table, size_list)
from ..latex import booktabs
from ..table1 import (CHECKED, ERROR, NO_FORMULA, VALIDATED, Grid, knobs_not_shown, validation_table,
                      with_failed_probes)

HELP = "validate Table 1 of the SAPA paper: paper vs exact formula vs fvcore count, per operator and stage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", type=name_list, default=None, help="operators (comma list); default: all")
    parser.add_argument("--C", type=positive_int_list, default=[256], help="channels (comma list), default 256")
    parser.add_argument("--Cg", type=positive_int_list, default=[],
                        help="guide channels, for the operators that read a guide of any width; default: a guide of "
                             "C channels")
    parser.add_argument("--K", type=int_list, default=[], help="kernel sizes; default: each operator's own")
    parser.add_argument("--d", type=int_list, default=[], help="embedding widths; default: each operator's own")
    parser.add_argument("--knob", type=knob_pair, action="append", default=[], metavar="NAME=V1,V2",
                        help="any other knob, e.g. encoder_kernel=3,5 (repeatable); default: each operator's own")
    parser.add_argument("--N", type=positive_int_list, default=[1], help="batch sizes (comma list), default 1")
    parser.add_argument("--size", type=size_list, default=[(16, 16)], help="low-res sizes, e.g. 16,24x32; default 16")
    add_format_argument(parser, TABLE_FORMATS)
    parser.add_argument("--out", type=file_name, default=None, help="write the report to this file instead of stdout")
    parser.add_argument("--check", action="store_true",
                        help="also validate each operator at a probe point (N=2, H x H+1, a guide of C/2 channels "
                             "where it reads any) and exit 1 if any row is a mismatch or unexplained, there or in the "
                             "table (a point that failed always exits 1)")


def latex_name(column: str) -> str:
    return column.replace("_macs", " MACs").replace("_params", " params")


LATEX_KINDS = {"operator": "text", "stage": "text", "N": "int", "C": "int", "Cg": "int", "K": "int", "d": "int", "H": "int", "W": "int",
               "status": "text", **{latex_name(f"{source}_macs"): "macs" for source in ("paper", "exact", "fvcore", "torch")},
               **{latex_name(f"{source}_params"): "params" for source in ("paper", "exact", "fvcore")}}


def _point(row: pd.Series, columns: list[str]) -> str:
    """'C=8, K=5, 32x32': the grid point of a row, from its ``columns`` (those between stage and the counts)."""
    knobs = [f"{c}={row[c]}" for c in columns if c not in ("H", "W") and pd.notna(row[c])]
    return ", ".join([*knobs, f"{row['H']}x{row['W']}"])


def latex_notes(table: pd.DataFrame) -> list[str]:
    """One note per operator, stage and note text, naming the grid points it holds at unless it holds at all of
    that operator's: one note per row repeated a note once per point and left a failing point unnamed. A note of
    every row of an operator is one note of the operator."""
    columns = list(table.columns)
    columns = columns[columns.index("stage") + 1 : columns.index("paper_macs")]
    points = table.assign(_point=[_point(row, columns) for _, row in table.iterrows()])
    noted = points[points["note"].fillna("").astype(str) != ""]
    notes = []
    for (op, note), group in noted.groupby(["operator", "note"], sort=False):  # a note of every row of an operator
        rows_of_op = points[points["operator"] == op]
        if len(group) == len(rows_of_op):  # once, not once per stage ('no formulas stated', a zero-counted op)
            notes.append(f"{op}: {note}")
            noted = noted.drop(group.index)
    for (op, stage, note), group in noted.groupby(["operator", "stage", "note"], sort=False):
        everywhere = set(group["_point"]) == set(points.loc[points["operator"] == op, "_point"])
        where = "" if everywhere else " at " + "; ".join(dict.fromkeys(group["_point"]))
        notes.append(f"{op} / {stage}{where}: {note}")
    return notes


def render_latex(table: pd.DataFrame, more_notes: Sequence[str] = ()) -> str:
    """Every stage row, MACs and params in one unit each; the notes (why rows differ, then ``more_notes``) go under
    the table."""
    notes = [*latex_notes(table), *more_notes]
    latex_table = table.drop(columns="note").astype(object).rename(columns=latex_name)
    kinds = {column: LATEX_KINDS.get(column, "int") for column in latex_table.columns}  # other knobs: integers
    return booktabs(latex_table, kinds,
                    caption="Table 1 formulas (paper, exact) against traced counts (fvcore, torch)", notes=notes)


def run(args: argparse.Namespace) -> int:
    check_out(args.out)
    knobs: dict[str, list[int]] = {}
    for name, values in args.knob:
        knobs.setdefault(name, []).extend(values)
    grid = Grid(C=args.C, Cg=args.Cg, N=args.N, K=args.K, d=args.d, sizes=args.size, knobs=knobs)
    table = validation_table(args.ops, grid)
    if args.check:
        probed = with_failed_probes(table, args.ops, grid)
        table, probe = probed.table, probed.probe
        guide = f", Cg={probe.Cg[0]} where it reads a guide of any width" if probe.Cg else ""
        held = (f"{probed.failed} {'row does' if probed.failed == 1 else 'rows do'} not hold (added to the table)"
                if probed.failed else "all that ran hold")
        where = f"N={probe.N[0]}, {probe.sizes[0][0]}x{probe.sizes[0][1]}{guide}"
        print(f"table1: --check probed each operator at {where}: {held}", file=sys.stderr)
        for skipped in probed.skipped:  # an operator's own limits (square maps, guide widths): said, not failed
            print(f"table1: probe point not validated for {skipped}", file=sys.stderr)
        unstated = list(dict.fromkeys(table.loc[table["status"] == NO_FORMULA, "operator"]))
        if unstated:  # their counts are shown, but nothing of theirs was checked
            print(f"table1: --check has no formulas to check for {', '.join(unstated)} (register with "
                  f"formulas=Formulas(...) to check them)", file=sys.stderr)
    defaults = knobs_not_shown(args.ops, grid)
    at_defaults = f"knobs without a column, at their defaults: {'; '.join(defaults)}" if defaults else ""
    text = (render_latex(table, [at_defaults] if at_defaults else []) if args.format == "latex"
            else render_table(table, args.format, intfmt=","))
    emit(text, args.out)
    if at_defaults:  # where a CSV or Markdown table cannot say it (--knob NAME=V gives one a column)
        print(f"table1: {at_defaults} (--knob NAME=V gives one a column)", file=sys.stderr)
    counts = table["status"].value_counts().to_dict()
    print("table1: " + ", ".join(f"{n} {status}" for status, n in counts.items()), file=sys.stderr)
    failed = table[table["status"] == ERROR]
    for _, row in failed.iterrows():  # each failing point, named by its shape: several may fail alike
        point = "".join(f", {k}={row[k]}" for k in ("K", "d", *knobs) if pd.notna(row[k]))
        guide = f", Cg={row['Cg']}" if "Cg" in row and pd.notna(row["Cg"]) else ""
        batch = f"N={row['N']}, " if "N" in row and pd.notna(row["N"]) else ""
        print(f"table1: {row['operator']} at {batch}C={row['C']}{guide}, {row['H']}x{row['W']}{point}: {row['note']}",
              file=sys.stderr)
    if args.check and not table["status"].isin(VALIDATED).any():
        print("table1: --check validated nothing: no row compared formulas with counts (no formulas, or every "
              "point failed)", file=sys.stderr)
        return 1
    return 1 if len(failed) or (args.check and table["status"].isin(CHECKED).any()) else 0
