"""The plot of a sweep's rows: latency and peak memory against resolution, log-log (matplotlib, loaded on use)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .rows import is_suspect, knob_columns
from .views import axes_as_text, varying_axes
from .vocabulary import MIB

PLOT_MARKERS = ("o", "s", "^", "D")
PLOT_DASHES = ("-", "--", ":", "-.")


def plot(rows: pd.DataFrame, path: str | Path) -> Path:
    """Latency and peak memory against resolution, log-log, one line per operator (and per any
    other axis that varies), rows whose timing is suspect crossed. Where no row is ok, the figure says so
    and counts the rows' statuses: a run that measured nothing still leaves the file it was asked for."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        figure = Figure(figsize=(8, 2))
        FigureCanvasAgg(figure)
        statuses = ", ".join(f"{n} {status}" for status, n in rows["status"].value_counts().items())
        figure.text(0.5, 0.5, f"nothing to plot: no row was measured ok ({statuses or 'no rows'})", ha="center",
                    va="center")
        figure.savefig(path, dpi=120)
        return path
    frame = axes_as_text(ok).assign(side=(ok["H"] * ok["W"]) ** 0.5)
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
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path
