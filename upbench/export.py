"""Sweep rows as files and views: CSV / JSON readers, merging shards, Markdown with pivot views,
LaTeX (one operator per row), log-log plots, and the reference / compiled ratio view.

Everything here takes the DataFrame of rows (the layout of :meth:`upbench.spec.SweepSpec.columns`)
and never measures anything.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import IO, Iterable, Sequence

import pandas as pd
from tabulate import tabulate

from .latex import booktabs
from .rules import counted_as_zero_note
from .timing import TRANSIENT_DOUBTS

FORMATS = ("markdown", "json", "png", "latex")
MIB = 2**20
# Columns that are text whatever they look like (a hash of digits only must not become a number).
TEXT_COLUMNS = ("spec_id", "key", "operator", "impl", "dtype", "device", "mode", "cache", "timing_suspect",
                "status", "message",
                "device_name", "torch_version", "cuda_version", "cpu_model", "git_commit", "timestamp")
ENVIRONMENT_COLUMNS = ("device_name", "torch_version", "cuda_version", "cpu_model", "threads", "cpu_cores",
                       "git_commit")
# What a latency depends on besides the config: rows of one device that differ in any of these were measured
# on other hardware, by other software or with other threads, and do not belong in one table. (The CPU
# model is left out: shards of a GPU sweep may run on nodes with different host CPUs; so is the thread
# count of GPU rows, which follows the node's cores. A commit's "+dirty" mark is left out: it cannot tell
# one set of uncommitted edits from another, so comparing it would only refuse a requeued job.)
MEASURED_WITH = ("device_name", "torch_version", "cuda_version", "threads", "git_commit")


# -- reading and merging ----------------------------------------------------------------------
def _text_dtypes(columns: Iterable[str]) -> dict[str, str]:
    return {c: "str" for c in columns if c in TEXT_COLUMNS or c.startswith("zero_ops_")}


def read_rows(source: str | Path | IO[str]) -> pd.DataFrame:
    """Rows of a sweep CSV (a path or an open text stream), text columns kept as text."""
    if not isinstance(source, (str, Path)):
        source = io.StringIO(source.read())
    header = pd.read_csv(source, nrows=0).columns
    if isinstance(source, io.StringIO):
        source.seek(0)
    return pd.read_csv(source, dtype=_text_dtypes(header))


def read_json_rows(path: str | Path) -> pd.DataFrame:
    """Rows of a sweep JSON (records), text columns kept as text and timestamps as written."""
    frame = pd.read_json(path, orient="records", dtype=False)
    return frame.astype(_text_dtypes(frame.columns))


def write_csv(rows: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(path, index=False)
    return path


def write_json(rows: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    rows.to_json(path, orient="records", indent=1, double_precision=15)
    return path


# A row whose config did not run to the end through a fault (a bug, a crash, a hang), not a measured limit
# (oom) or a choice (skipped): a command with such a row exits 1, and a resume can measure it again.
FAILED_STATUSES = ("error", "crash", "timeout")
# What a resume may measure again (``retry``): failed rows, and rows whose timing is suspect for a reason
# that measuring again can clear (:data:`upbench.timing.TRANSIENT_DOUBTS`).
RETRY_KINDS = ("failed", "suspect")


def check_retry(kinds: Iterable[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple, or ValueError naming those that are not :data:`RETRY_KINDS`."""
    kinds = tuple(kinds)
    unknown = sorted(set(kinds) - set(RETRY_KINDS))
    if unknown:
        raise ValueError(f"retry {', '.join(unknown)}: expected some of {', '.join(RETRY_KINDS)}")
    return kinds


def rows_to_retry(rows: pd.DataFrame, kinds: Iterable[str]) -> pd.Series:
    """Which of ``rows`` a resume with ``retry=kinds`` measures again (see :data:`RETRY_KINDS`)."""
    kinds = check_retry(kinds)
    again = pd.Series(False, index=rows.index)
    if "failed" in kinds:
        again |= rows["status"].isin(FAILED_STATUSES)
    if "suspect" in kinds:
        doubts = rows["timing_suspect"].fillna("").astype(str)
        transient = [any(d.strip().startswith(TRANSIENT_DOUBTS) for d in text.split(";")) for text in doubts]
        again |= pd.Series(transient, index=rows.index, dtype=bool)
    return again


def latest_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per config, in sweep order: its last ``ok`` row, else its last row (a resume that retries rows
    appends the new row after the old; a retry that fails does not replace a measurement)."""
    ok_last = rows.assign(_ok=rows["status"].eq("ok")).sort_values("_ok", kind="stable")
    kept = ok_last.drop_duplicates("key", keep="last").drop(columns="_ok")
    return kept.sort_values("config_index", kind="stable").reset_index(drop=True)


def mixed_environments(rows: pd.DataFrame) -> list[str]:
    """'cpu: threads 1 / 2' for each device whose rows differ in a :data:`MEASURED_WITH` column."""
    mixed = []
    for device, group in rows.groupby("device", sort=True):
        for column in MEASURED_WITH:
            if column not in group or (column == "threads" and not str(device).startswith("cpu")):
                continue
            values = group[column].dropna().astype(str)
            if column == "git_commit":
                values = values.str.removesuffix("+dirty")
            values = sorted(values.unique())
            if len(values) > 1:
                mixed.append(f"{device}: {column} {' / '.join(values)}")
    return mixed


def merge_frames(frames: Sequence[pd.DataFrame], allow_mixed: bool = False) -> pd.DataFrame:
    """Rows of several logs (shards, or a run and its resumption) of ONE spec, in sweep order.

    Raises ValueError for logs of different specs or layouts, for logs that number the configs differently,
    and (unless ``allow_mixed``) for rows of one device measured with different :data:`MEASURED_WITH`.
    A config present in several logs keeps one row, as :func:`latest_rows` chooses.
    """
    if not frames:
        raise ValueError("nothing to merge")
    spec_ids = sorted({s for frame in frames for s in frame["spec_id"].dropna()})
    if len(spec_ids) > 1:
        raise ValueError(f"refusing to merge rows of different sweep specs ({', '.join(spec_ids)}): "
                         f"merge only the shards of one sweep")
    layouts = {tuple(frame.columns) for frame in frames}
    if len(layouts) > 1:
        raise ValueError("refusing to merge files with different columns (written by different upbench versions)")
    merged = pd.concat(frames, ignore_index=True)
    merged = latest_rows(merged)
    keys_per_index = merged.groupby("config_index")["key"].unique()
    clashing = keys_per_index[keys_per_index.map(len) > 1]
    if not clashing.empty:
        index, keys = next(iter(clashing.items()))
        raise ValueError(f"refusing to merge: config {index} has rows for different configs ({', '.join(keys)}); "
                         f"the logs expanded the sweep differently (impl auto resolves to compiled only where the "
                         f"kernels build, and operators come from plugins)")
    mixed = mixed_environments(merged)
    if mixed and not allow_mixed:
        raise ValueError(f"refusing to merge rows measured with different setups ({'; '.join(mixed)}): their "
                         f"latencies do not belong in one table (--allow-mixed merges them anyway)")
    return merged


def missing_configs(rows: pd.DataFrame) -> list[int]:
    """Indices of the sweep's configs that have no row."""
    if rows.empty:
        return []
    total = int(rows["config_total"].max())
    return sorted(set(range(total)) - set(rows["config_index"].astype(int)))


def index_ranges(indices: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    spans: list[list[int]] = []
    for index in sorted(indices):
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    return ", ".join(f"{low}" if low == high else f"{low}-{high}" for low, high in spans)


class IncompleteSweep(ValueError):
    """Merged rows that miss configs of their sweep (a shard not run, not finished or not given)."""


def check_complete(rows: pd.DataFrame) -> None:
    """Raise :class:`IncompleteSweep` listing the config indices that have no row (a partial merge)."""
    if rows.empty:
        raise IncompleteSweep("no rows at all")
    missing = missing_configs(rows)
    if missing:
        total = int(rows["config_total"].max())
        raise IncompleteSweep(f"{len(missing)} of {total} configs have no row: config indices {index_ranges(missing)} "
                              f"(a shard not given, not finished or not run)")


# -- display helpers --------------------------------------------------------------------------
def knob_columns(rows: pd.DataFrame) -> list[str]:
    """The row layout puts the knob columns between ``Cg`` and ``N``."""
    columns = list(rows.columns)
    return columns[columns.index("Cg") + 1 : columns.index("N")]


def size_label(H: int, W: int) -> str:
    return f"{H}" if H == W else f"{H}x{W}"


def _format(value: object) -> str:
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
    """The config axes as display text ("-" for a knob the operator lacks) plus a ``size`` label."""
    frame = rows.copy()
    for column in knob_columns(rows):
        frame[column] = [_format(v) or "-" for v in rows[column]]
    frame["size"] = [size_label(int(h), int(w)) for h, w in zip(rows["H"], rows["W"])]
    return frame


def varying_axes(rows: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """Config axes (besides operator and size) that take more than one value for some operator.

    An axis that differs only between operators (K of 5 for one and absent for another, impl
    compiled for one and reference for another) is told apart by the operator already.
    """
    candidates = ["impl", "C", *knob_columns(rows), "N", "dtype", "device", "mode"]
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
    index = ["operator", *varying_axes(ok)]
    table = frame.pivot_table(index=index, columns="size", values=value, aggfunc="first", sort=False)
    return table[[s for s in _size_order(ok) if s in table.columns]].reset_index()


def markdown_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "(no ok rows)"
    cells = [[_format(v) for v in record] for record in table.astype(object).itertuples(index=False)]
    return tabulate(cells, headers=[str(c) for c in table.columns], tablefmt="pipe", disable_numparse=True)


# -- tables -----------------------------------------------------------------------------------
def row_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The main columns of every row, scaled for reading (MMACs, MiB)."""
    frame = _axes(rows)
    policies = [c.removeprefix("macs_") for c in rows.columns if c.startswith("macs_")]
    table = frame[["operator", "impl", "C", *knob_columns(rows), "N", "size", "dtype", "device", "mode"]].copy()
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
    table["other work (cores)"] = rows.get("cpu_others")  # absent from logs of earlier upbench versions
    table["timing suspect"] = rows["timing_suspect"]
    table["status"] = rows["status"]
    table["message"] = rows["message"]
    return table


def suspect_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose timing cannot be trusted, with the reason."""
    suspect = rows[rows["timing_suspect"].fillna("") != ""]
    return pd.DataFrame({"key": suspect["key"], "threads": suspect["threads"], "load (1 min)": suspect["load_1min"],
                         "CPU util": suspect["cpu_util"], "other work (cores)": suspect.get("cpu_others"),
                         "why the timing is suspect": suspect["timing_suspect"]})


def ratio_view(rows: pd.DataFrame) -> pd.DataFrame:
    """Reference vs compiled on the same configs: latency and peak memory, and their ratios
    (reference / compiled: above 1 means the compiled path is faster or leaner)."""
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
        record["note"] = "; ".join(dict.fromkeys(
            f"{impl} {status}: {message}" for impl, status, message
            in zip(problems["impl"], problems["status"], problems["message"].fillna(""))
        ))
        records.append(record)
    return pd.DataFrame.from_records(records)


def paper_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per operator (and per other varying axis), as in the SAPA paper's Tables 2 and 3: params,
    then MACs (the first counting policy of the rows), latency and peak memory at every resolution.

    Columns are (resolution, quantity) pairs; latency and memory are blank where a row is not ok.
    """
    frame = _axes(rows)
    macs_column = next(c for c in rows.columns if c.startswith("macs_"))
    ok = rows["status"] == "ok"
    frame["MACs"] = rows[macs_column]
    frame["Latency"] = rows["latency_median_ms"].where(ok)
    frame["Memory"] = (rows["peak_mem_bytes"] / MIB).where(ok)
    index = ["operator", *varying_axes(rows)]
    # grouped, not pivot_table(dropna=False), which would add a row for every combination of the index's
    # values: a K row for nearest, which has no K
    measured = frame.groupby([*index, "size"], sort=False, dropna=False)[["MACs", "Latency", "Memory"]].first()
    wide = measured.unstack("size")
    present = frame[index].drop_duplicates()
    order = pd.MultiIndex.from_frame(present) if len(index) > 1 else pd.Index(present[index[0]])
    wide = wide.reindex(order)
    params = frame.groupby(index, sort=False, dropna=False)["params"].first()
    table = pd.DataFrame({("", name): wide.index.get_level_values(name) for name in index})
    table[("", "Params")] = params.reindex(wide.index).to_numpy()
    for size in [s for s in _size_order(rows) if ("MACs", s) in wide.columns]:
        for quantity in ("MACs", "Latency", "Memory"):
            table[(size, quantity)] = wide[(quantity, size)].to_numpy()
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def to_latex(rows: pd.DataFrame) -> str:
    """The sweep as a booktabs table: :func:`paper_table`, units and rounding stated under it."""
    table = paper_table(rows)
    kinds = {"Params": "params", "MACs": "macs", "Latency": "ms", "Memory": "mib",
             **{name: "text" for group, name in table.columns if group == "" and name != "Params"}}
    policy = next(c for c in rows.columns if c.startswith("macs_")).removeprefix("macs_")
    devices = ", ".join(sorted(rows["device_name"].dropna().astype(str).unique())) or "unknown device"
    notes = [f"MACs under the {policy} counting policy; latency and memory on {devices}, batch and dtype as "
             f"in the rows; resolutions are the low-resolution input H x W."]
    zero_note = _counted_as_zero(rows)
    return booktabs(table, kinds, caption=f"Upsampler cost by input resolution ({policy} MACs)",
                    notes=notes + ([zero_note] if zero_note else []))


def _counted_as_zero(rows: pd.DataFrame) -> str:
    """'counted as zero: mylib::op' for the custom ops of any row that no counting rule covered."""
    ops = {op for column in rows.columns if column.startswith("zero_ops_")
           for cell in rows[column].dropna() for op in str(cell).split(";") if op}
    return counted_as_zero_note(sorted(ops))


def _environment_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per environment, with the range of the load average seen while measuring."""
    columns = list(ENVIRONMENT_COLUMNS)
    table = rows.groupby(columns, sort=False, dropna=False)["load_1min"].agg(["min", "max"]).reset_index()
    table["load (1 min)"] = [f"{low:g}-{high:g}" for low, high in zip(table["min"], table["max"])]
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


def to_markdown(rows: pd.DataFrame, sections: Sequence[tuple[str, pd.DataFrame]] = ()) -> str:
    """The report: environment, notes, pivot views, any extra ``sections``, then every row."""
    spec_ids = ", ".join(sorted(rows["spec_id"].dropna().unique())) or "none"
    statuses = rows["status"].value_counts()
    parts = [
        f"# upbench sweep {spec_ids}",
        f"{len(rows)} rows: " + ", ".join(f"{n} {status}" for status, n in statuses.items()),
        *filter(None, [_counted_as_zero(rows)]),
        markdown_table(_environment_table(rows)),
        NOTES,
        *_suspect_section(rows),
        *[part for title, table in sections for part in (f"## {title}", markdown_table(table))],
        "## Latency median (ms) by operator x resolution",
        markdown_table(pivot(rows, "latency_median_ms")),
        "## Peak memory (MiB) by operator x resolution",
        markdown_table(pivot(rows, "peak_mem_bytes", 1 / MIB)),
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
    suspect = frame[frame["timing_suspect"].fillna("") != ""]
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


def write_outputs(
    rows: pd.DataFrame, csv_path: str | Path, formats: Iterable[str] = FORMATS,
    sections: Sequence[tuple[str, pd.DataFrame]] = (),
) -> list[Path]:
    """Markdown, JSON, PNG and LaTeX (.tex) beside ``csv_path`` (same stem), as ``formats`` asks."""
    csv_path = Path(csv_path)
    written = []
    for fmt in check_formats(formats):
        if fmt == "markdown":
            path = csv_path.with_suffix(".md")
            path.write_text(to_markdown(rows, sections))
            written.append(path)
        elif fmt == "json":
            written.append(write_json(rows, csv_path.with_suffix(".json")))
        elif fmt == "latex":
            path = csv_path.with_suffix(".tex")
            path.write_text(to_latex(rows))
            written.append(path)
        elif fmt == "png":
            plotted = plot(rows, csv_path.with_suffix(".png"))
            written.extend([plotted] if plotted else [])
    return written
