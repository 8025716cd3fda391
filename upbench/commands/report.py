"""bench.py report: re-render a finished sweep's CSV (or JSON) without measuring again."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ..cli_args import TABLE_FORMATS, add_format_argument, check_out, emit, file_name, render_table
from ..latex import COUNT_KINDS, booktabs
from ..reports import measured_with, operators_as_measured, to_latex, to_markdown, unmeasured_note
from ..rows import integer_columns_as_ints, whole_columns_as_ints
from ..views import (PIVOT_TITLES, SUSPECT_NOTE, axes_as_numbers, first_policy, latency_pivot,
                     markdown_pivot, pivot, size_columns)
from ..vocabulary import MIB
from .reading import read_any

HELP = "re-render a finished sweep (CSV or JSON rows) as latex, markdown, csv or json, optionally one pivot view"
# --pivot names: the row column and its scale, and the LaTeX kind of the pivoted values.
PIVOTS = {
    "latency": ("latency_median_ms", 1.0, "ms"),
    "memory": ("peak_mem_bytes", 1 / MIB, "mib"),
    "macs": (None, 1.0, "macs"),  # the rows' first counting policy
    "params": ("params", 1.0, "params"),
}
# The unit column of a csv or json pivot, which has no caption or header to say it in.
PIVOT_UNITS = {"latency": "ms (median)", "memory": "MiB (peak)", "macs": "MACs", "params": "params"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rows", type=Path, help="a sweep's rows: the .csv (or .json) it wrote")
    add_format_argument(parser, TABLE_FORMATS)
    parser.add_argument("--pivot", choices=list(PIVOTS), default=None,
                        help="only this quantity, operator x resolution (default: the whole report)")
    parser.add_argument("--out", type=file_name, default=None, help="write the report to this file instead of stdout")


def pivot_column(rows: pd.DataFrame, quantity: str) -> str:
    return PIVOTS[quantity][0] or f"macs_{first_policy(rows)}"


def pivoted_rows(rows: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """The rows a pivot of ``quantity`` has cells for are those its status calls ok. Counts are made before
    timing: a row skipped by its budget or out of memory has them, which the whole report shows, so for a
    count only a row that failed before counting is left out."""
    if PIVOTS[quantity][2] not in COUNT_KINDS:
        return rows
    return rows.assign(status=rows["status"].where(rows[pivot_column(rows, quantity)].isna(), "ok"))


def pivot_caption(rows: pd.DataFrame, quantity: str) -> str:
    """What a pivot of ``quantity`` holds, with its unit. The MACs name their counting policy: fvcore's and
    torch's differ from the paper's, and a sweep may count under several (the rows' first is shown)."""
    title = PIVOT_TITLES[quantity]
    return title.replace("MACs", f"MACs ({first_policy(rows)} counting policy)") if quantity == "macs" else title


def render_pivot(rows: pd.DataFrame, quantity: str, fmt: str) -> str:
    """The pivot of ``quantity`` over ``rows`` as :func:`pivoted_rows` gives them."""
    _, scale, kind = PIVOTS[quantity]
    column = pivot_column(rows, quantity)
    table, marked = latency_pivot(rows) if quantity == "latency" else (pivot(rows, column, scale), set())
    if table.empty:
        raise ValueError("no ok rows to pivot")
    sizes = size_columns(table, rows)
    if fmt == "latex":
        kinds = {c: (kind if c in sizes else "text") for c in table.columns}
        notes = [f"{measured_with(rows)}; columns: the low-resolution input H x W (the output is 2H x 2W).",
                 operators_as_measured(rows),
                 *([SUSPECT_NOTE] if marked else []), *filter(None, [unmeasured_note(rows)])]
        return booktabs(table.astype(object), kinds, caption=pivot_caption(rows, quantity), notes=notes,
                        marked=marked)
    if fmt == "markdown":  # a row that is not ok has no cell (an operator none of whose rows is ok, no line): say so
        return "\n\n".join(filter(None, [pivot_caption(rows, quantity), markdown_pivot(table, rows, marked),
                                          operators_as_measured(rows), unmeasured_note(rows)]))
    if kind in COUNT_KINDS:  # pivot() scales as floats: 4096 MACs printed as 4096.0 in csv and json
        table = whole_columns_as_ints(table, sizes)
    table = axes_as_numbers(table, rows)
    if kind == "macs":  # no caption in csv or json to name the counting policy in: a column beside the counts
        table.insert(len(table.columns) - len(sizes), "policy", first_policy(rows))
    table.insert(len(table.columns) - len(sizes), "unit", PIVOT_UNITS[quantity])
    return render_table(table, fmt)  # numbers only: the rows' timing_suspect column holds the flags


def render(rows: pd.DataFrame, fmt: str) -> str:
    if fmt == "latex":
        return to_latex(rows)
    if fmt == "markdown":
        return to_markdown(rows)
    return render_table(integer_columns_as_ints(rows), fmt)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, [args.rows])
    rows = read_any(args.rows)
    if args.pivot:
        rows = pivoted_rows(rows, args.pivot)
        text = render_pivot(rows, args.pivot, args.format)
        note = unmeasured_note(rows)
        if args.format in ("csv", "json"):  # numbers only: the notes and the marks go aside
            suspect = len(latency_pivot(rows)[1]) if args.pivot == "latency" else 0
            for warning in filter(None, [note, suspect and f"{suspect} latencies rest on timing that cannot be "
                                                           f"trusted: the rows' timing_suspect column says why"]):
                print(f"report: warning: {warning}", file=sys.stderr)
    else:
        text = render(rows, args.format)
    emit(text.rstrip("\n"), args.out)
    return 0
