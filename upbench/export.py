"""Views of sweep rows: Markdown with pivot views, LaTeX (one operator per row), log-log plots, the
reference / compiled ratio view, and the files they go to beside a row log.

Everything here takes the DataFrame of rows (the layout of :meth:`upbench.spec.SweepSpec.columns`,
read and merged by :mod:`upbench.rows`) and never measures anything.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
from tabulate import tabulate

from .files import check_writable
from .latex import MARK, booktabs, decimals_for
from .rows import (ENVIRONMENT_COLUMNS, FORMAT_SUFFIXES, FORMATS, SETTING_COLUMNS, is_suspect, knob_columns,
                   mixed_sources, whole_columns_as_ints, write_json)
from .rules import counted_as_zero_note
from .vocabulary import MIB


# What the views read of every row; LATER_COLUMNS came with later upbench versions, and rows written before
# them (the committed results among them) render with those cells empty.
VIEW_COLUMNS = ("spec_id", "key", "operator", "impl", "C", "Cg", "N", "H", "W", "dtype", "device", "mode", "params",
                "latency_median_ms", "latency_p20_ms", "latency_p80_ms", "runs", "peak_mem_bytes", "gbytes_per_s",
                "status", "message", *ENVIRONMENT_COLUMNS, "load_1min")
LATER_COLUMNS = ("cpu_util", "cpu_others", "timing_suspect")


def check_viewable(rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """``rows`` with any of :data:`LATER_COLUMNS` they lack added empty, or ValueError naming ``source`` and
    the columns the views need that it lacks."""
    absent = [c for c in VIEW_COLUMNS if c not in rows.columns]
    policies = [c.removeprefix("macs_") for c in rows.columns if c.startswith("macs_")]
    absent += [f"gflops_per_s_{p}" for p in policies if f"gflops_per_s_{p}" not in rows.columns]
    if not policies:
        absent.append("macs_<policy>")
    if absent:
        raise ValueError(f"{source}: not upbench sweep rows a report can render (no {', '.join(absent)} column)")
    return rows.assign(**{c: None for c in LATER_COLUMNS if c not in rows.columns})


def first_policy(rows: pd.DataFrame) -> str:
    """The counting policy of the rows' first ``macs_`` column: the one single-policy views show."""
    return next(c for c in rows.columns if c.startswith("macs_")).removeprefix("macs_")


# -- display helpers --------------------------------------------------------------------------
# The pivot views' titles, units included, in the sweep's report, its printout and bench.py report.
PIVOT_TITLES = {
    "latency": "Latency median (ms) by operator x resolution",
    "memory": "Peak memory (MiB) by operator x resolution",
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


def _axes(rows: pd.DataFrame) -> pd.DataFrame:
    """The config axes as display text ("-" for a knob the operator lacks, and for the guide channels of
    one that reads no guide) plus a ``size`` label."""
    frame = rows.copy()
    for column in knob_columns(rows):
        frame[column] = [format_number(v) or "-" for v in rows[column]]
    frame["Cg"] = [format_number(v) if pd.notna(v) and v != 0 else "-" for v in rows["Cg"]]
    frame["size"] = [size_label(int(h), int(w)) for h, w in zip(rows["H"], rows["W"])]
    return frame


def axes_as_numbers(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``table`` (a :func:`pivot` of ``rows``) with the axes :func:`_axes` labels as text, the knobs and Cg, as the
    numbers they show, missing where they show "-": for csv and json, whose readers take "5" for a string."""
    shown = _axes(rows)
    labels = [column for column in ("Cg", *knob_columns(rows)) if column in table.columns]
    numbers = {column: pd.to_numeric(table[column].map({**dict(zip(shown[column], rows[column])), "-": None}))
               for column in labels}
    return whole_columns_as_ints(table.assign(**numbers), labels)


def _other_guides(rows: pd.DataFrame) -> pd.Series:
    """Which rows read a guide whose width is not C (a swept Cg): a guide of C channels, or none, says nothing
    that C does not."""
    return (rows["Cg"].fillna(0) != 0) & (rows["Cg"] != rows["C"])


def varying_axes(rows: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """Config axes (besides operator and size) that take more than one value for some operator.

    An axis that differs only between operators (K of 5 for one and absent for another, impl
    compiled for one and reference for another) is told apart by the operator already.
    """
    candidates = ["impl", "C", *(["Cg"] if _other_guides(rows).any() else []), *knob_columns(rows), "N", "dtype",
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
    frame = _axes(ok).assign(**{value: ok[value].astype(float) * scale})
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
    frame = _axes(rows)
    policies = [c.removeprefix("macs_") for c in rows.columns if c.startswith("macs_")]
    table = frame[["operator", "impl", "C", "Cg", *knob_columns(rows), "N", "size", "dtype", "device", "mode"]].copy()
    for policy in policies:
        table[f"MMACs {policy}"] = rows[f"macs_{policy}"] / 1e6
    table["params"] = rows["params"]
    table["ms median"] = rows["latency_median_ms"]
    table["ms p20"] = rows["latency_p20_ms"]
    table["ms p80"] = rows["latency_p80_ms"]
    table["runs"] = rows["runs"]
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
    frame = _axes(rows)
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
    frame = _axes(rows)
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


MODE_WORDS = {"fwd": "inference forward (eval mode, no_grad)", "fwd+bwd": "training forward and backward"}
TEXT_MARK = "\N{DAGGER}"  # the Markdown and terminal twin of the LaTeX MARK


def suspect_note(mark: str) -> str:
    return (f"{mark}: timing suspect (other work on the machine, a wide p20-p80 spread, few timed calls or more "
            f"threads than cores; the Markdown report and the rows' timing_suspect column give each reason): not a "
            f"measurement to cite.")


SUSPECT_NOTE = suspect_note(MARK)


def flagged_cells(flags: pd.DataFrame, columns: Iterable[Any],
                  cell: Callable[[Any], Any] = lambda column: column) -> set[tuple[int, Any]]:
    """(row position, ``cell(column)``) of every true value of ``flags`` in ``columns`` (missing is false): the
    cells a booktabs table marks."""
    return {(position, cell(column)) for column in columns
            for position, flagged in enumerate(flags[column]) if pd.notna(flagged) and bool(flagged)}


def measured_with(rows: pd.DataFrame) -> str:
    """How the rows were measured, for a caption: the device(s), and C, the guide's width where it is not C,
    batch, dtype, mode and CPU threads where the rows share one (else the table's columns say)."""
    def shared_in(frame: pd.DataFrame, column: str, say: Callable[[object], str]) -> str:
        values = frame[column].dropna().unique()
        return say(values[0]) if len(values) == 1 else f"{column} as in its column"

    def shared(column: str, say: Callable[[object], str]) -> str:
        return shared_in(rows, column, say)

    devices = ", ".join(sorted(rows["device_name"].dropna().astype(str).unique())) or "unknown device"
    parts = [shared("C", lambda c: f"C = {c}")]
    if _other_guides(rows).any():  # a guide narrower or wider than C: say how wide, or where
        parts.append(shared_in(rows[rows["Cg"].fillna(0) != 0], "Cg", lambda g: f"guide C_g = {g}"))
    parts += [shared("N", lambda n: f"batch {n}"), shared("dtype", str), shared("mode", lambda m: MODE_WORDS.get(m, m))]
    if rows["device"].astype(str).str.startswith("cpu").all():
        parts.append(shared("threads", lambda t: f"{t} CPU thread{'' if t == 1 else 's'}"))
    return f"{devices}; " + ", ".join(parts)


def unmeasured_note(rows: pd.DataFrame) -> str:
    """'not measured: carafe K=5 at 64, 128 (crash); ...' for the rows that are not ok, which a table leaves
    out or empty, each named by its operator, the axes that vary and its sizes; '' when every row is ok."""
    axes = varying_axes(rows)
    failed = _axes(rows[rows["status"] != "ok"])
    if failed.empty:
        return ""
    where = []
    for key, group in failed.groupby(["operator", *axes, "status"], sort=False, dropna=False):
        operator, *values, status = key
        point = "".join(f" {axis}={value}" for axis, value in zip(axes, values))
        where.append(f"{operator}{point} at {', '.join(dict.fromkeys(group['size']))} ({status})")
    return f"not measured: {'; '.join(where)}; each row's status and message columns say why."


def to_latex(rows: pd.DataFrame) -> str:
    """The sweep as a booktabs table: :func:`paper_table`, units, rounding, how it was measured and which
    latencies are suspect (marked) stated under it."""
    table = paper_table(rows, with_suspect=True)
    suspect_columns = [c for c in table.columns if c[1] == "Suspect"]
    marked = flagged_cells(table, suspect_columns, lambda column: (column[0], "Latency"))
    table = table.drop(columns=suspect_columns)
    kinds = {"Params": "params", "MACs": "macs", "Latency": "ms", "Memory": "mib",
             **{name: "text" for group, name in table.columns if group == "" and name != "Params"}}
    policy = first_policy(rows)
    forward_only = " (of one forward, also beside forward+backward latencies)" if (rows["mode"] == "fwd+bwd").any() else ""
    notes = [f"MACs{forward_only} under the {policy} counting policy, parameters including biases and norm "
             f"weights; latency and peak memory above the inputs on {measured_with(rows)}; resolutions are the "
             f"low-resolution input H x W.",
             *([SUSPECT_NOTE] if marked else []),
             *(f"--: {note}" for note in [unmeasured_note(rows)] if note), *filter(None, [_counted_as_zero(rows)])]
    return booktabs(table, kinds, caption=f"Upsampler cost by input resolution ({policy} MACs)", notes=notes,
                    marked=marked)


def _counted_as_zero(rows: pd.DataFrame) -> str:
    """'counted as zero: mylib::op' for the custom ops of any row that no counting rule covered."""
    ops = {op for column in rows.columns if column.startswith("zero_ops_")
           for cell in rows[column].dropna() for op in str(cell).split(";") if op}
    return counted_as_zero_note(sorted(ops))


SETTING_LABELS = {"warmup": "{} warm-up calls", "min_run_time_s": "timed for at least {} s",
                  "budget_s": "row budget {} s", "seed": "seed {}"}


def _settings_line(rows: pd.DataFrame) -> str:
    """How the rows were measured ('Measured with 3 warm-up calls, timed for at least 0.2 s, ...'); '' for rows
    of an upbench that did not record it."""
    present = [column for column in SETTING_COLUMNS if column in rows and rows[column].notna().any()]
    if not present:
        return ""
    said = [SETTING_LABELS[column].format(" / ".join(format_number(v) for v in dict.fromkeys(rows[column].dropna())))
            for column in present]
    return "Measured with " + ", ".join(said) + "."


def _environment_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per environment, with the range of the load average seen while measuring."""
    columns = list(ENVIRONMENT_COLUMNS)
    table = rows.groupby(columns, sort=False, dropna=False)["load_1min"].agg(["min", "max"]).reset_index()
    table["load (1 min)"] = [f"{low:g}" if low == high else f"{low:g}-{high:g}"
                             for low, high in zip(table["min"], table["max"])]
    return table.drop(columns=["min", "max"])


NOTES = """\
CPU latencies are only as good as the machine was quiet: a load above the core count means other
work competed for the cores (with all cores in use, a descheduled OpenMP thread stalls every call).
Each row measures it while timing: `CPU util` is the process's CPU time over the wall time of the timed
calls (below 0.9: other work had the cores), `other work (cores)` the cores' worth of other processes'
CPU time and hypervisor steal on the usable cores meanwhile (from /proc/stat), and `timing suspect`
gives the reason when either, a wide p20-p80 spread, fewer than 5 timed calls or more threads than
usable cores means the latency cannot be trusted.
MACs, FLOPs (2 x MACs) and params are of one forward, under each counting policy. `fwd` is inference
(eval mode, no_grad); `fwd+bwd` is a training step's forward and backward into inputs and weights.
Latency is the median (p20, p80) of the timed calls, each call timed on its own; peak memory is
above the inputs and weights.
GFLOP/s and GB/s are given for `fwd` rows only: GB/s divides the compulsory traffic (x, guide and
weights read once, output written once) by the median, so it is a lower bound."""


def _suspect_section(rows: pd.DataFrame) -> list[str]:
    suspect = suspect_rows(rows)
    if suspect.empty:
        return []
    return [f"## Timing that cannot be trusted ({len(suspect)} of {len(rows)} rows)\n\n"
            "Measure these rows again on a quiet machine before citing them.",
            markdown_table(suspect)]


def _mixed_sources_note(rows: pd.DataFrame) -> str:
    """Which operators' rows were measured from more than one version of their source (merged or resumed with
    --allow-mixed); '' when none were, or the rows predate the column."""
    mixed = [f"{operator} ({' / '.join(versions)})" for operator, versions in mixed_sources(rows).items()]
    return (f"Measured from more than one version of the operator's source files (operator_source): "
            f"{', '.join(mixed)}. Their rows do not all time the same code." if mixed else "")


def to_markdown(rows: pd.DataFrame, sections: Sequence[tuple[str, pd.DataFrame]] = ()) -> str:
    """The report: environment, notes, pivot views, any extra ``sections``, then every row."""
    spec_ids = ", ".join(sorted(rows["spec_id"].dropna().unique())) or "none"
    statuses = rows["status"].value_counts()
    latency_table, suspect_cells = latency_pivot(rows)
    parts = [
        f"# upbench sweep {spec_ids}",
        f"{len(rows)} rows: " + ", ".join(f"{n} {status}" for status, n in statuses.items()),
        *filter(None, [_counted_as_zero(rows)]),
        markdown_table(_environment_table(rows)),
        *filter(None, [_settings_line(rows), _mixed_sources_note(rows)]),
        NOTES,
        *_suspect_section(rows),
        *[part for title, table in sections for part in (f"## {title}", markdown_table(table))],
        f"## {PIVOT_TITLES['latency']}",
        markdown_pivot(latency_table, rows, suspect_cells),
        f"## {PIVOT_TITLES['memory']}",
        markdown_pivot(pivot(rows, "peak_mem_bytes", 1 / MIB), rows),
        *filter(None, [unmeasured_note(rows)]),  # the pivots' empty cells and missing lines, named
        "## Rows",
        markdown_table(row_table(rows)),
    ]
    return "\n\n".join(parts) + "\n"


PLOT_MARKERS = ("o", "s", "^", "D")
PLOT_DASHES = ("-", "--", ":", "-.")


def plot(rows: pd.DataFrame, path: str | Path) -> Path | None:
    """Latency and peak memory against resolution, log-log, one line per operator (and per any
    other axis that varies), rows whose timing is suspect crossed. None when no row is ok."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return None
    frame = _axes(ok).assign(side=(ok["H"] * ok["W"]) ** 0.5)
    series = ["operator", *varying_axes(ok)]
    fixed = [f"{a}={frame[a].iloc[0]}" for a in ("impl", "C", *knob_columns(ok), "N", "dtype", "device", "mode")
             if a not in series and frame[a].nunique() == 1]
    figure = Figure(figsize=(12, 4.8))
    FigureCanvasAgg(figure)
    latency_axes, memory_axes = figure.subplots(1, 2)
    for number, (key, group) in enumerate(frame.groupby(series, sort=False)):
        group = group.sort_values("side")
        label = " ".join(str(k) if a == "operator" else f"{a}={k}" for a, k in zip(series, key))
        # ten colours, then the next marker and dash: no two lines look alike however many operators
        style = dict(color=f"C{number % 10}", marker=PLOT_MARKERS[number // 10 % len(PLOT_MARKERS)],
                     linestyle=PLOT_DASHES[number // 10 % len(PLOT_DASHES)], label=label)
        latency_axes.plot(group["side"], group["latency_median_ms"], **style)
        positive = group[group["peak_mem_bytes"] > 0]
        memory_axes.plot(positive["side"], positive["peak_mem_bytes"] / MIB, **style)
    suspect = frame[is_suspect(frame)]
    if not suspect.empty:
        latency_axes.scatter(suspect["side"], suspect["latency_median_ms"], marker="x", s=80, color="black",
                             zorder=3, label="timing suspect")
        latency_axes.legend(handles=latency_axes.collections, loc="best", fontsize="small")
    sides = sorted(frame["side"].unique())
    labels = dict(zip(frame["side"], frame["size"]))
    for axes, ylabel in ((latency_axes, "latency, median (ms)"), (memory_axes, "peak memory above inputs (MiB)")):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(sides, [labels[s] for s in sides])
        axes.minorticks_off()
        axes.set_xlabel("input resolution H (x W)")
        axes.set_ylabel(ylabel)
        axes.grid(True, which="major", alpha=0.3)
    figure.suptitle(f"{ok['device_name'].iloc[0]}   " + ", ".join(fixed))
    memory_axes.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def check_formats(formats: Iterable[str]) -> list[str]:
    """``formats`` if every one is known (checked before a sweep, not after it)."""
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}: expected some of {', '.join(FORMATS)}")
    return formats


def check_output_paths(csv_path: Path, formats: Iterable[str], given: str | None) -> None:
    """The row log and the reports :func:`write_outputs` puts beside it, checked writable before anything is
    measured: a report that cannot be written lost a long sweep's summary at its end. ``given``: the --out
    as typed (None for the default path)."""
    named = f"{csv_path} (the default)" if given is None else given
    for path in [csv_path, *(csv_path.with_suffix(FORMAT_SUFFIXES[fmt]) for fmt in check_formats(formats))]:
        check_writable(path, "--out", named)


def write_outputs(
    rows: pd.DataFrame, csv_path: str | Path, formats: Iterable[str] = FORMATS,
    sections: Sequence[tuple[str, pd.DataFrame]] = (),
) -> list[Path]:
    """Markdown, JSON, PNG and LaTeX beside ``csv_path`` (same stem, :data:`FORMAT_SUFFIXES`), as ``formats`` asks."""
    csv_path = Path(csv_path)
    rows = check_viewable(rows, str(csv_path))
    written = []
    for fmt in check_formats(formats):
        path = csv_path.with_suffix(FORMAT_SUFFIXES[fmt])
        if fmt == "markdown":
            path.write_text(to_markdown(rows, sections))
        elif fmt == "json":
            write_json(rows, path)
        elif fmt == "latex":
            path.write_text(to_latex(rows))
        elif fmt == "png" and plot(rows, path) is None:
            continue
        written.append(path)
    return written
