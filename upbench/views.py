"""Views of sweep rows as tables: the rows checked viewable, their config axes as text, pivots (operator x
resolution), the Markdown tables, the row table, the reference / compiled ratio view and the paper's table of
one operator per row. Everything here takes the DataFrame of rows (the layout of
:meth:`upbench.spec.SweepSpec.columns`, read and merged by :mod:`upbench.rows`) and never measures anything."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import pandas as pd
from tabulate import tabulate

from .latex import MARK, decimals_for
from .rounds import ROUND_SPREAD, combine_rounds
from .rows import ENVIRONMENT_COLUMNS, is_suspect, knob_columns, whole_columns_as_ints
from .vocabulary import MIB


# What the views read of every row; LATER_COLUMNS came with later upbench versions, and rows written before
# them (the committed results among them) render with those cells empty.
LATER_COLUMNS = ("cpu_util", "cpu_others", "timing_suspect", "allocator")
VIEW_COLUMNS = ("spec_id", "key", "operator", "impl", "C", "Cg", "N", "H", "W", "dtype", "device", "mode", "params",
                "latency_median_ms", "latency_p20_ms", "latency_p80_ms", "runs", "peak_mem_bytes", "gbytes_per_s",
                "status", "message", *(c for c in ENVIRONMENT_COLUMNS if c not in LATER_COLUMNS), "load_1min")


def check_viewable(rows: pd.DataFrame, source: str, combine: bool = True) -> pd.DataFrame:
    """``rows`` one per config (the rounds of a sweep of several combined, :func:`upbench.rounds.combine_rounds`;
    unless not ``combine``, for a reader that needs every round's time and load) with any of :data:`LATER_COLUMNS`
    they lack added empty, or ValueError naming ``source`` and the columns the views need that it lacks."""
    absent = [c for c in VIEW_COLUMNS if c not in rows.columns]
    policies = [c.removeprefix("macs_") for c in rows.columns if c.startswith("macs_")]
    absent += [f"gflops_per_s_{p}" for p in policies if f"gflops_per_s_{p}" not in rows.columns]
    if not policies:
        absent.append("macs_<policy>")
    if absent:
        raise ValueError(f"{source}: not upbench sweep rows a report can render (no {', '.join(absent)} column)")
    later = {column: None for column in LATER_COLUMNS if column not in rows.columns}
    return (combine_rounds(rows) if combine else rows).assign(**later)


def first_policy(rows: pd.DataFrame) -> str:
    """The counting policy of the rows' first ``macs_`` column: the one single-policy views show."""
    return next(c for c in rows.columns if c.startswith("macs_")).removeprefix("macs_")


# -- display helpers --------------------------------------------------------------------------
# The pivot views' titles, units included, in the sweep's report, its printout and bench.py report.
PIVOT_TITLES = {
    "latency": "Latency median (ms) by operator x resolution",
    "memory": "Peak memory (MiB, above the inputs and weights) by operator x resolution",
    "macs": "MACs by operator x resolution",
    "params": "Params by operator x resolution",
}


def size_label(H: int, W: int) -> str:
    return f"{H}" if H == W else f"{H}x{W}"


def format_number(value: object) -> str:
    """A cell as the Markdown tables print it: blank for missing, thousands separated, 3 significant digits below
    1,000."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# A knob's cell for an operator without that knob, and Cg's for one that reads no guide.
ABSENT = "-"


def axes_as_text(rows: pd.DataFrame) -> pd.DataFrame:
    """The config axes as display text ("-" for a knob the operator lacks, and for the guide channels of
    one that reads no guide) plus a ``size`` label."""
    frame = rows.copy()
    for column in knob_columns(rows):
        frame[column] = [format_number(v) or ABSENT for v in rows[column]]
    frame["Cg"] = [format_number(v) if pd.notna(v) and v != 0 else ABSENT for v in rows["Cg"]]
    frame["size"] = [size_label(int(h), int(w)) for h, w in zip(rows["H"], rows["W"])]
    return frame


def axes_as_numbers(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``table`` (a :func:`pivot` of ``rows``) with the axes :func:`_axes` labels as text, the knobs and Cg, as the
    numbers they show, missing where they show "-": for csv and json, whose readers take "5" for a string."""
    shown = axes_as_text(rows)
    labels = [column for column in ("Cg", *knob_columns(rows)) if column in table.columns]
    numbers = {column: pd.to_numeric(table[column].map({**dict(zip(shown[column], rows[column])), ABSENT: None}))
               for column in labels}
    return whole_columns_as_ints(table.assign(**numbers), labels)


def other_guides(rows: pd.DataFrame) -> pd.Series:
    """Which rows read a guide whose width is not C (a swept Cg): a guide of C channels, or none, says nothing
    that C does not."""
    return (rows["Cg"].fillna(0) != 0) & (rows["Cg"] != rows["C"])


def varying_axes(rows: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """Config axes (besides operator and size) that take more than one value for some operator.

    An axis that differs only between operators (K of 5 for one and absent for another, impl
    compiled for one and reference for another) is told apart by the operator already.
    """
    candidates = ["impl", "C", *(["Cg"] if other_guides(rows).any() else []), *knob_columns(rows), "N", "dtype",
                  "device", "mode"]
    per_operator = rows.groupby("operator", sort=False)
    return [a for a in candidates if a not in exclude and (per_operator[a].nunique(dropna=False) > 1).any()]


def _size_order(rows: pd.DataFrame) -> list[str]:
    pairs = sorted({(int(h), int(w)) for h, w in zip(rows["H"], rows["W"])}, key=lambda p: (p[0] * p[1], p))
    return [size_label(h, w) for h, w in pairs]


def pivot(rows: pd.DataFrame, value: str, scale: float = 1.0) -> pd.DataFrame:
    """``value`` of the ok rows by operator (and every other varying axis) x resolution."""
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    frame = axes_as_text(ok).assign(**{value: ok[value].astype(float) * scale})
    index = ["operator", *varying_axes(rows)]  # all rows': the axis a failed config differs in still labels the rest
    table = frame.pivot_table(index=index, columns="size", values=value, aggfunc="first", sort=False)
    return table[[s for s in _size_order(ok) if s in table.columns]].reset_index()


def _cell_text(value: object) -> str:
    """:func:`format_number`, kept to one table cell: a message's newline or pipe would end the cell or the row."""
    return " ".join(format_number(value).split()).replace("|", "\\|")


def markdown_table(table: pd.DataFrame, marked: set[tuple[int, Any]] = frozenset(),
                   right: Iterable[str] = ()) -> str:
    """A pipe table; the ``marked`` cells, (row position, column), carry :data:`TEXT_MARK`; the ``right``
    columns are right-aligned."""
    if table.empty:
        return "(no ok rows)"
    cells = [[_cell_text(value) + (f" {TEXT_MARK}" if (position, column) in marked else "")
              for column, value in zip(table.columns, record)]
             for position, record in enumerate(table.astype(object).itertuples(index=False))]
    right = set(right)
    return tabulate(cells, headers=[str(c) for c in table.columns], tablefmt="pipe", disable_numparse=True,
                    colalign=["right" if column in right else "left" for column in table.columns])


def markdown_pivot(table: pd.DataFrame, rows: pd.DataFrame, marked: set[tuple[int, Any]] = frozenset()) -> str:
    """A :func:`pivot` of ``rows`` as a pipe table to paste: its value columns right-aligned, with one number of
    decimals through the table (as the LaTeX tables: enough for two significant digits of the smallest value),
    where three significant digits a cell printed 40 beside 46.8 and 2 beside 0.812; the mark explained under it."""
    values = size_columns(table, rows)
    numbers = [v for column in values for v in table[column] if pd.notna(v)]
    if any(not float(v).is_integer() for v in numbers):  # counts stay whole numbers, thousands separated
        decimals = decimals_for(numbers, least=2)
        table = table.assign(**{column: [None if pd.isna(v) else f"{v:,.{decimals}f}" for v in table[column]]
                                for column in values})
    text = markdown_table(table, marked, right=values)
    return text + (f"\n\n{suspect_note(TEXT_MARK)}" if marked else "")


def size_columns(table: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """The resolution columns of a :func:`pivot` of ``rows``: all but its index, which are row columns."""
    return [column for column in table.columns if column not in rows.columns]


def latency_pivot(rows: pd.DataFrame) -> tuple[pd.DataFrame, set[tuple[int, str]]]:
    """:func:`pivot` of the median latency, and its cells (row position, resolution) whose timing is suspect:
    the same ok rows pivoted the same way, so cell for cell the flags of the latencies."""
    table = pivot(rows, "latency_median_ms")
    flags = pivot(rows.assign(_suspect=is_suspect(rows)), "_suspect")
    return table, flagged_cells(flags, size_columns(table, rows))


# -- tables -----------------------------------------------------------------------------------
def row_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The main columns of every row, scaled for reading (MMACs, MiB)."""
    frame = axes_as_text(rows)
    policies = [c.removeprefix("macs_") for c in rows.columns if c.startswith("macs_")]
    table = frame[["operator", "impl", "C", "Cg", *knob_columns(rows), "N", "size", "dtype", "device", "mode"]].copy()
    for policy in policies:
        table[f"MMACs {policy}"] = rows[f"macs_{policy}"] / 1e6
    table["params"] = rows["params"]
    table["ms median"] = rows["latency_median_ms"]
    table["ms p20"] = rows["latency_p20_ms"]
    table["ms p80"] = rows["latency_p80_ms"]
    table["runs"] = rows["runs"]
    if ROUND_SPREAD in rows:  # a sweep of several rounds
        table["round spread"] = rows[ROUND_SPREAD]
    table["peak MiB"] = rows["peak_mem_bytes"] / MIB
    for policy in policies:
        table[f"GFLOP/s {policy}"] = rows[f"gflops_per_s_{policy}"]
    table["GB/s"] = rows["gbytes_per_s"]
    table["CPU util"] = rows["cpu_util"]
    table["other work (cores)"] = rows["cpu_others"]
    table["timing suspect"] = rows["timing_suspect"]
    table["status"] = rows["status"]
    table["message"] = rows["message"]
    return table


def suspect_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose timing cannot be trusted, with the reason."""
    suspect = rows[is_suspect(rows)]
    return pd.DataFrame({"key": suspect["key"], "threads": suspect["threads"], "load (1 min)": suspect["load_1min"],
                         "CPU util": suspect["cpu_util"], "other work (cores)": suspect["cpu_others"],
                         "why the timing is suspect": suspect["timing_suspect"]})


def ratio_view(rows: pd.DataFrame) -> pd.DataFrame:
    """Reference vs compiled on the same configs: latency and peak memory, and their ratios
    (reference / compiled: above 1 means the compiled path is faster or leaner); the note names any side that
    failed or whose timing is suspect."""
    frame = axes_as_text(rows)
    keys = ["operator", *varying_axes(rows, exclude=("impl", "mode")), "size", "mode"]
    records = []
    for key, group in frame.groupby(keys, sort=False):
        record = dict(zip(keys, key))
        by_impl = {impl: group[group["impl"] == impl] for impl in ("reference", "compiled")}

        def ok_value(impl: str, column: str) -> float:
            chosen = by_impl[impl]
            chosen = chosen[chosen["status"] == "ok"]
            return float(chosen[column].iloc[0]) if len(chosen) else math.nan

        for label, column, scale in (("ms", "latency_median_ms", 1.0), ("MiB", "peak_mem_bytes", 1 / MIB)):
            reference, compiled = ok_value("reference", column), ok_value("compiled", column)
            record[f"reference {label}"] = reference * scale
            record[f"compiled {label}"] = compiled * scale
            record[f"{label} ref/compiled"] = reference / compiled if compiled else math.nan
        problems = group[group["status"] != "ok"]
        doubted = group[(group["status"] == "ok") & is_suspect(group)]
        record["note"] = "; ".join(dict.fromkeys([
            *(f"no {impl} row (the operator has no {impl} path)" for impl, chosen in by_impl.items()
              if chosen.empty),
            *(f"{impl} {status}: {message}" for impl, status, message
              in zip(problems["impl"], problems["status"], problems["message"].fillna(""))),
            *(f"{impl} timing suspect" for impl in doubted["impl"]),
        ]))
        records.append(record)
    return pd.DataFrame.from_records(records)


def paper_table(rows: pd.DataFrame, with_suspect: bool = False) -> pd.DataFrame:
    """One row per operator (and per other varying axis), as in the SAPA paper's Tables 2 and 3: params,
    then MACs (the first counting policy of the rows), latency and peak memory at every resolution.

    Columns are (resolution, quantity) pairs; latency and memory are blank where a row is not ok.
    ``with_suspect``: a (resolution, "Suspect") column too, True where that latency's timing is suspect.
    """
    frame = axes_as_text(rows)
    macs_column = f"macs_{first_policy(rows)}"
    ok = rows["status"] == "ok"
    frame["MACs"] = rows[macs_column]
    frame["Latency"] = rows["latency_median_ms"].where(ok)
    frame["Memory"] = (rows["peak_mem_bytes"] / MIB).where(ok)
    frame["Suspect"] = ok & is_suspect(rows)
    quantities = ["MACs", "Latency", "Memory", *(["Suspect"] if with_suspect else [])]
    index = ["operator", *varying_axes(rows)]
    # grouped, not pivot_table(dropna=False), which would add a row for every combination of the index's
    # values: a K row for nearest, which has no K
    measured = frame.groupby([*index, "size"], sort=False, dropna=False)[quantities].first()
    wide = measured.unstack("size")
    present = frame[index].drop_duplicates()
    order = pd.MultiIndex.from_frame(present) if len(index) > 1 else pd.Index(present[index[0]])
    wide = wide.reindex(order)
    params = frame.groupby(index, sort=False, dropna=False)["params"].first()
    table = pd.DataFrame({("", name): wide.index.get_level_values(name) for name in index})
    table[("", "Params")] = params.reindex(wide.index).to_numpy()
    for size in [s for s in _size_order(rows) if ("MACs", s) in wide.columns]:
        for quantity in quantities:
            table[(size, quantity)] = wide[(quantity, size)].to_numpy()
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


TEXT_MARK = "\N{DAGGER}"  # the Markdown and terminal twin of the LaTeX MARK


def suspect_note(mark: str) -> str:
    return (f"{mark}: timing suspect (other work on the machine, a wide p20-p80 spread, few timed calls, more "
            f"threads than cores, or rounds that disagree or are missing; the Markdown report and the rows' "
            f"timing_suspect column give each reason): not a measurement to cite.")


SUSPECT_NOTE = suspect_note(MARK)


def flagged_cells(flags: pd.DataFrame, columns: Iterable[Any],
                  cell: Callable[[Any], Any] = lambda column: column) -> set[tuple[int, Any]]:
    """(row position, ``cell(column)``) of every true value of ``flags`` in ``columns`` (missing is false): the
    cells a booktabs table marks."""
    return {(position, cell(column)) for column in columns
            for position, flagged in enumerate(flags[column]) if pd.notna(flagged) and bool(flagged)}
