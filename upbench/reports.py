"""The reports of a sweep's rows: Markdown (setup, notes, pivot views, every row) and a booktabs LaTeX table,
with the notes a reader needs beside the numbers (how they were measured, what could not be trusted, what was
counted as zero). Built from :mod:`upbench.views`; nothing here measures."""
from __future__ import annotations

import re
from typing import Callable, Sequence

import pandas as pd

from .latex import MISSING, booktabs
from .rounds import ROUND_SPREAD, ROUNDS_DISAGREE, rows_in_words
from .rows import ALL_SETTING_COLUMNS, ENVIRONMENT_COLUMNS, knob_columns, mixed_environments, mixed_sources, rounds_of
from .rules import counted_as_zero_note
from .views import (ABSENT, PIVOT_TITLES, SUSPECT_NOTE, axes_as_text, first_policy, flagged_cells, format_number,
                    latency_pivot, markdown_pivot, markdown_table, other_guides, paper_table, pivot, row_table,
                    suspect_rows, varying_axes)
from .vocabulary import MIB, MIN_PROBE_S

MODE_WORDS = {"fwd": "inference forward (eval mode, no_grad)", "fwd+bwd": "training forward and backward"}
CACHE_WORDS = {"warm": "warm cache", "cold": "cold cache (last-level cache flushed before each call)"}


def cache_words(cache: object) -> str:
    return CACHE_WORDS.get(str(cache), f"{cache} cache")


def measured_with(rows: pd.DataFrame) -> str:
    """How the rows were measured, for a caption: the device(s), and C, the guide's width where it is not C,
    batch, dtype, mode, CPU threads and rounds where the rows share one (else the table's columns say)."""
    def shared_in(frame: pd.DataFrame, column: str, say: Callable[[object], str]) -> str:
        values = frame[column].dropna().unique()
        return say(values[0]) if len(values) == 1 else f"{column} as in its column"

    def shared(column: str, say: Callable[[object], str]) -> str:
        return shared_in(rows, column, say)

    devices = ", ".join(sorted(rows["device_name"].dropna().astype(str).unique())) or "unknown device"
    parts = [shared("C", lambda c: f"C = {c}")]
    if other_guides(rows).any():  # a guide narrower or wider than C: say how wide, or where
        parts.append(shared_in(rows[rows["Cg"].fillna(0) != 0], "Cg", lambda g: f"guide C_g = {g}"))
    parts += [shared("N", lambda n: f"batch {n}"), shared("dtype", str), shared("mode", lambda m: MODE_WORDS.get(m, m))]
    if "cache" in rows and rows["cache"].notna().any():  # a cold-cache latency is another quantity than a warm one
        parts.append(shared("cache", cache_words))
    on_cuda = rows["device"].astype(str).str.startswith("cuda")
    if "tf32" in rows and rows.loc[on_cuda, "tf32"].notna().any():
        parts.append(shared_in(rows[on_cuda], "tf32", lambda t: "TF32 on" if t else "TF32 off"))
    if rows["device"].astype(str).str.startswith("cpu").all():
        parts.append(shared("threads", lambda t: f"{t} CPU thread{'' if t == 1 else 's'}"))
    if rounds_of(rows) > 1:  # a median of rounds is not one pass's median
        parts.append(shared("rounds", lambda r: f"latency the median of {r} rounds, each in an order of its own"))
    return f"{devices}; " + ", ".join(parts)


def unmeasured_note(rows: pd.DataFrame) -> str:
    """'not measured: carafe K=5 at 64, 128 (crash); ...' for the rows that are not ok, which a table leaves
    out or empty, each named by its operator, the axes that vary and its sizes; '' when every row is ok."""
    axes = varying_axes(rows)
    failed = axes_as_text(rows[rows["status"] != "ok"])
    if failed.empty:
        return ""
    where = []
    for key, group in failed.groupby(["operator", *axes, "status"], sort=False, dropna=False):
        operator, *values, status = key
        point = "".join(f" {axis}={value}" for axis, value in zip(axes, values))
        where.append(f"{operator}{point} at {', '.join(dict.fromkeys(group['size']))} ({status})")
    return f"not measured: {'; '.join(where)}; each row's status and message columns say why."


# A knob's or Cg's ABSENT (views.axes_as_text), beside the MISSING of a row not measured.
ABSENT_NOTE = f"{ABSENT}: not a knob of that operator (Cg: it reads no guide)."


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
    absent = any((table[(group, name)].astype(str) == ABSENT).any() for group, name in table.columns
                 if kinds.get(name) == "text")
    backward = (rows["mode"] == "fwd+bwd").any()
    forward_only = " (of one forward, also beside forward+backward latencies)" if backward else ""
    notes = [f"MACs{forward_only} under the {policy} counting policy, parameters including biases and norm "
             f"weights; latency (median) and peak memory (above the inputs and weights) on {measured_with(rows)}; "
             f"resolutions are the low-resolution input H x W.",
             operators_as_measured(rows),
             *filter(None, [mixed_setups_note(rows)]),
             *([SUSPECT_NOTE] if marked else []), *filter(None, [unprobed_note(rows)]),
             *(f"{MISSING}: {note}" for note in [unmeasured_note(rows)] if note),
             *([ABSENT_NOTE] if absent else []), *filter(None, [_counted_as_zero(rows)])]
    return booktabs(table, kinds, caption=f"Upsampler cost by input resolution ({policy} MACs)", notes=notes,
                    marked=marked)


_FULL_COMMIT = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{28}\b")


def mixed_setups_note(rows: pd.DataFrame) -> str:
    """'Measured with more than one setup (...): cpu: git_commit 1a2b3c4d5e6f / ...' where the rows of a device
    differ in what a latency depends on (merged or resumed with --allow-mixed), for a table with no environment
    table beside it; '' where they do not."""
    mixed = mixed_environments(rows)
    if not mixed:
        return ""
    said = _FULL_COMMIT.sub(r"\1", "; ".join(mixed))  # a commit by its first 12 digits: a note, not a log
    return (f"Measured with more than one setup (rows merged or resumed with --allow-mixed): {said}. Their latencies "
            f"do not all come from one setup.")


def operators_as_measured(rows: pd.DataFrame) -> str:
    """Each operator's implementation and knob values where the table has no column for them (one value for the
    operator, so no axis varies): 'As measured: carafe (compiled; K=5, encoder_kernel=3), nearest (reference)'.
    Paths 10-50x apart in speed, and a d of 32 where the operator's default is 64, would otherwise go unsaid."""
    shown = set(varying_axes(rows))
    said = []
    for operator, group in rows.groupby("operator", sort=False):
        def single(column: str) -> str | None:
            values = group[column].dropna().unique() if column in group else []
            return format_number(values[0]) if len(values) == 1 and column not in shown else None

        knobs = [f"{knob}={value}" for knob in knob_columns(rows) if (value := single(knob)) is not None]
        impl = single("impl")
        parts = "; ".join(filter(None, [impl, ", ".join(knobs)]))
        said.append(f"{operator} ({parts})" if parts else str(operator))
    return "As measured: " + ", ".join(said) + "."


def _counted_as_zero(rows: pd.DataFrame) -> str:
    """'counted as zero: mylib::op' for the custom ops of any row that no counting rule covered."""
    ops = {op for column in rows.columns if column.startswith("zero_ops_")
           for cell in rows[column].dropna() for op in str(cell).split(";") if op}
    return counted_as_zero_note(sorted(ops))


SETTING_LABELS = {"warmup": "{} warm-up call(s)", "min_run_time_s": "timed for at least {} s",
                  "budget_s": "row budget {} s", "seed": "seed {}", "rounds": "{} rounds"}


def _settings_line(rows: pd.DataFrame) -> str:
    """How the rows were measured ('Measured with 3 warm-up call(s), timed for at least 0.2 s, ..., warm cache'); ''
    for rows of an upbench that recorded none of it."""
    present = [column for column in ALL_SETTING_COLUMNS if column in rows and rows[column].notna().any()]
    said = [SETTING_LABELS[column].format(" / ".join(format_number(v) for v in dict.fromkeys(rows[column].dropna())))
            for column in present]
    caches = list(dict.fromkeys(rows["cache"].dropna())) if "cache" in rows else []
    if caches:
        said.append(cache_words(caches[0]) if len(caches) == 1 else
                    f"{' / '.join(map(str, caches))} cache as in the cache column")
    return "Measured with " + ", ".join(said) + "." if said else ""


def _environment_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per environment, with the range of the load average seen while measuring (of combined rounds, over
    each config's highest: a round measured at a lower load does not hide a loaded one)."""
    # a column no row records (rows older than it: allocator) is left out
    columns = [c for c in ENVIRONMENT_COLUMNS if c in rows and rows[c].notna().any()] or [
        c for c in ENVIRONMENT_COLUMNS if c in rows]
    table = rows.groupby(columns, sort=False, dropna=False)["load_1min"].agg(["min", "max"]).reset_index()
    table["load (1 min)"] = [f"{low:g}" if low == high else f"{low:g}-{high:g}"
                             for low, high in zip(table["min"], table["max"])]
    return table.drop(columns=["min", "max"])


CONTENTION_NOTE = """\
CPU latencies are only as good as the machine was quiet: a load above the core count means other
work competed for the cores (with all cores in use, a descheduled OpenMP thread stalls every call)."""
# How rows measured since per-call CPU timing (those with a cpu_others column) were timed and checked.
PER_CALL_NOTE = """\
Each row measures it while timing: `CPU util` is the process's CPU time over the wall time of the timed
calls (below 0.9: other work had the cores), `other work (cores)` the cores' worth of other processes'
CPU time and hypervisor steal on the usable cores meanwhile (from /proc/stat), and `timing suspect`
gives the reason when either, a wide p20-p80 spread, fewer than 5 timed calls or more threads than
usable cores means the latency cannot be trusted.
Latency is the median (p20, p80) of the timed calls, each call timed on its own."""
# Rows of a sweep of several rounds (upbench.rounds).
ROUNDS_NOTE = """\
Each config was measured once per round, every round visiting the configs in an order of its own, so
that no operator was always timed first or beside the same neighbour while the machine drifted: its
latency is the median of its ok rounds' medians (p20 and p80 likewise), `runs` the calls of all of
them, its load and peak memory the highest of its rounds, and `round spread` the slowest one's median
over the fastest's (above {disagree:g}: `timing suspect`, as are rounds missing or not ok)."""
# Rows of an upbench before per-call timing: what their latencies are, and what was not checked.
BLOCK_TIMING_NOTE = """\
These rows predate per-call CPU timing: their CPU latencies are the median (p20, p80) of block means
(torch.utils.benchmark's blocked_autorange), and other work on the usable cores was not measured{checked}."""
COUNTS_NOTE = """\
MACs, FLOPs (2 x MACs) and params are of one forward, under each counting policy. `fwd` is inference
(eval mode, no_grad); `fwd+bwd` is a training step's forward and backward into inputs and weights.
Peak memory is above the inputs and weights.
GFLOP/s and GB/s are given for `fwd` rows only: GB/s divides the compulsory traffic (x, guide and
weights read once, output written once) by the median, so it is a lower bound."""


def _timed_cpu(rows: pd.DataFrame) -> pd.DataFrame:
    """The CPU rows measured ok."""
    if not {"device", "status"} <= set(rows.columns):
        return rows.iloc[:0]
    return rows[rows["device"].astype(str).str.startswith("cpu") & (rows["status"] == "ok")]


def unprobed_note(rows: pd.DataFrame) -> str:
    """'3 of the 12 CPU rows were timed for under 0.05 s in all: ...' for rows of this upbench whose timing was too
    short to read other work from /proc/stat, so that their blank `other work` does not read as 'quiet'; '' where
    every row has it, or none (rows of an upbench that timed blocks of calls: :func:`method_notes` says so)."""
    timed = _timed_cpu(rows)
    if "cpu_others" not in timed or timed["cpu_others"].isna().all():
        return ""
    unprobed = int(timed["cpu_others"].isna().sum())
    return (f"{unprobed} of the {len(timed)} CPU rows were timed for under {MIN_PROBE_S:g} s in all, too short to "
            f"read other work from /proc/stat: for them no other work was measured, and only the other checks "
            f"guard their latency (--min-run-time {MIN_PROBE_S:g} or more gives every row the check)."
            if unprobed else "")


def method_notes(rows: pd.DataFrame) -> str:
    """How the rows were timed and checked, as they record it: CPU rows of an older upbench (no other work
    recorded, cpu_others) were timed in blocks of calls, and their blank contention cells mean 'not measured',
    not 'quiet'."""
    timed_cpu = _timed_cpu(rows)

    def recorded(column: str) -> bool:
        return column in timed_cpu and timed_cpu[column].notna().any()

    # a row of this upbench leaves cpu_others blank where its timed calls took under MIN_PROBE_S in all: only a
    # row timed well beyond that without it is of an upbench that timed blocks of calls
    blocks = timed_cpu["cpu_others"].isna() if "cpu_others" in timed_cpu else pd.Series(True, index=timed_cpu.index)
    if {"runs", "latency_median_ms"} <= set(timed_cpu.columns):
        blocks &= ~(timed_cpu["runs"] * timed_cpu["latency_median_ms"] < 2 * MIN_PROBE_S * 1e3)
    rounds = ROUND_SPREAD in rows  # rounds came after per-call timing; their summed runs would read as a block
    if timed_cpu.empty or recorded("cpu_others") or rounds or not blocks.any():
        timing = PER_CALL_NOTE
    else:
        checked = ("; CPU util (the process's CPU time over the wall time) was, and `timing suspect` rests on it "
                   "alone" if recorded("cpu_util") else ", so no latency carries a timing-suspect mark")
        timing = BLOCK_TIMING_NOTE.format(checked=checked)
    rounds_note = ROUNDS_NOTE.format(disagree=ROUNDS_DISAGREE) if rounds else ""
    return "\n".join(filter(None, [CONTENTION_NOTE, timing, unprobed_note(rows), rounds_note, COUNTS_NOTE]))


def _suspect_section(rows: pd.DataFrame) -> list[str]:
    suspect = suspect_rows(rows)
    if suspect.empty:
        return []
    counted = "configs" if rounds_of(rows) > 1 else "rows"  # a row per config, its rounds combined
    return [f"## Timing that cannot be trusted ({len(suspect)} of {len(rows)} {counted})\n\n"
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
        f"{rows_in_words(rows)}: " + ", ".join(f"{n} {status}" for status, n in statuses.items()),
        *filter(None, [_counted_as_zero(rows)]),
        markdown_table(_environment_table(rows)),
        *filter(None, [_settings_line(rows), operators_as_measured(rows), _mixed_sources_note(rows)]),
        method_notes(rows),
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
