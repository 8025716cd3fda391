"""Two runs side by side: each config's latency and peak memory in a base run and a new run, their ratio,
and whether the change stands out of the timing noise.

The rows are two sweeps' (:mod:`upbench.rows`), one per config. Configs pair by their axes: operator, impl,
C, Cg, knobs, N, size, dtype, device, mode. The runs may compare one axis on which, for each operator, each
run holds one value and the two differ (device ``cpu`` in one and ``cuda`` in the other, impl ``reference``
and ``compiled``, dtype, mode, a knob): configs pair across it (:attr:`RunDiff.across`). Pairing across a
shape (C, Cg, N, size) or across several axes compares different workloads, and is done only when asked.
Nothing here measures or renders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pandas as pd

from .rounds import combine_rounds
from .rows import ALL_SETTING_COLUMNS, is_suspect, knob_columns, latest_rows, rounds_of
from .vocabulary import MIB

# The config columns besides the operator and its knobs, as the rows hold them.
AXES = ("impl", "C", "Cg", "N", "H", "W", "dtype", "device", "mode")
# The axes two runs may compare without being asked (besides any knob): the same workload, measured another
# way. ``size`` names H and W together.
SAME_WORKLOAD_AXES = ("impl", "dtype", "device", "mode")
SIZE_AXES = ("H", "W")
# What else says how a run measured: the setup columns the report sets side by side (operator_source is per
# operator, and follows them).
SETUP_COLUMNS = ("device_name", "cpu_model", "torch_version", "cuda_version", "threads", "allocator", "tf32", "cache",
                 "git_commit", *ALL_SETTING_COLUMNS)
# A verdict for every pair: ``faster`` / ``slower`` when the ratio of medians is beyond the threshold and
# the two runs' p20-p80 ranges are apart; ``within noise`` when beyond the threshold but the ranges
# overlap; ``same`` within the threshold; ``suspect`` when either side's timing cannot be trusted;
# ``not measured`` when either side has no latency (not ok, or none recorded).
VERDICTS = ("faster", "slower", "same", "within noise", "suspect", "not measured")
TRUSTED = ("faster", "slower", "same", "within noise")


def _plain(value: Any) -> Any:
    """A cell as a pairing value: missing as None, a whole float as an int (a knob column that is empty for
    some operator reads as float), everything else as it is."""
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _pairing_frame(rows: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    """The config columns as pairing values; a guide of C channels is ``"C"``, so that a guide that follows C
    does not make C two axes, and the knobs an operator lacks are None."""
    frame = pd.DataFrame({axis: [_plain(v) for v in rows[axis]] if axis in rows else [None] * len(rows)
                          for axis in ["operator", *AXES, *knobs]}, index=rows.index, dtype=object)
    frame["Cg"] = ["C" if guide == channels else guide for guide, channels in zip(frame["Cg"], frame["C"])]
    return frame


def _values(frame: pd.DataFrame, axis: str) -> frozenset:
    return frozenset(v for v in frame[axis] if v is not None)


def _differences(base: pd.DataFrame, new: pd.DataFrame, axes: Sequence[str]) -> dict[str, dict[str, tuple]]:
    """axis -> {operator: (base value, new value)} for each operator whose rows hold one value of the axis in
    each run, and not the same one."""
    found: dict[str, dict[str, tuple]] = {}
    for operator in dict.fromkeys(base["operator"]):
        mine, theirs = base[base["operator"] == operator], new[new["operator"] == operator]
        if theirs.empty:
            continue
        for axis in axes:
            before, after = _values(mine, axis), _values(theirs, axis)
            if len(before) == 1 and len(after) == 1 and before != after:
                found.setdefault(axis, {})[operator] = (next(iter(before)), next(iter(after)))
    return found


def _asked_axes(asked: Iterable[str], axes: Sequence[str]) -> list[str]:
    """``--across`` names as row axes: ``size`` is H and W; anything not an axis is a ValueError."""
    names = []
    for name in asked:
        expanded = list(SIZE_AXES) if name == "size" else [name]
        unknown = [a for a in expanded if a not in axes]
        if unknown:
            raise ValueError(f"--across {name}: not an axis of these runs; expected some of "
                             f"{', '.join(a for a in axes if a not in SIZE_AXES)}, size")
        names += expanded
    return list(dict.fromkeys(names))


def _said(differences: dict[str, dict[str, tuple]]) -> str:
    """'C 8 -> 16; dtype fp32 -> fp16' (each distinct pair of values once)."""
    def value(v: Any) -> str:
        return "=C" if v == "C" else str(v)  # a guide that follows C (_pairing_frame)
    return "; ".join(f"{axis} " + ", ".join(f"{value(b)} -> {value(n)}" for b, n in dict.fromkeys(per_operator.values()))
                     for axis, per_operator in differences.items())


def compared_axes(base: pd.DataFrame, new: pd.DataFrame, knobs: Sequence[str],
                  asked: Sequence[str] | None = None) -> dict[str, dict[str, tuple]]:
    """The axes the runs compare: axis -> {operator: (base value, new value)} (:func:`_differences`).

    Without ``asked``: at most one axis, and one of :data:`SAME_WORKLOAD_AXES` or a knob; two runs that differ
    otherwise (in a shape, or in several axes) raise ValueError naming the differences. ``asked`` (axis names,
    ``size`` for H and W) allows exactly those, and refuses runs that differ in others too.
    """
    axes = [*AXES, *knobs]
    differences = _differences(base, new, axes)
    if asked is None:
        allowed = [a for a in differences if a in SAME_WORKLOAD_AXES or a in knobs]
        if len(differences) > 1 or len(allowed) < len(differences):
            raise ValueError(f"the runs differ in {_said(differences)}: pairing their configs across "
                             f"{'these axes' if len(differences) > 1 else 'it'} compares "
                             f"{'different workloads' if len(allowed) < len(differences) else 'several things at once'}; "
                             f"name the axes to pair across with --across "
                             f"(e.g. --across {','.join(_user_names(differences))}), or compare runs that share them")
        return differences
    asked_axes = _asked_axes(asked, axes)
    others = {a: v for a, v in differences.items() if a not in asked_axes}
    if others:
        raise ValueError(f"the runs also differ in {_said(others)}: add it to --across, or compare runs that share "
                         f"it")
    return {a: differences[a] for a in asked_axes if a in differences}


def _user_names(differences: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys("size" if a in SIZE_AXES else a for a in differences))


def _timed(row: pd.Series) -> bool:
    """Whether a row holds a latency: ok, with a positive finite median and p20/p80."""
    values = [row["latency_median_ms"], row["latency_p20_ms"], row["latency_p80_ms"]]
    return row["status"] == "ok" and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


def _apart(base: pd.Series, new: pd.Series) -> bool:
    """Whether the two rows' p20-p80 ranges do not overlap."""
    return new["latency_p20_ms"] > base["latency_p80_ms"] or base["latency_p20_ms"] > new["latency_p80_ms"]


def verdict(base: pd.Series, new: pd.Series, threshold: float) -> str:
    """One of :data:`VERDICTS` for a config's base and new row."""
    if not (_timed(base) and _timed(new)):
        return "not measured"
    if base["_suspect"] or new["_suspect"]:
        return "suspect"
    ratio = new["latency_median_ms"] / base["latency_median_ms"]
    if 1 / (1 + threshold) < ratio < 1 + threshold:
        return "same"
    if not _apart(base, new):
        return "within noise"
    return "faster" if ratio < 1 else "slower"


def _count_changes(base: pd.Series, new: pd.Series) -> list[str]:
    """'params 4,416 -> 4,672' for each count that differs between the two rows of one config."""
    changes = []
    columns = ["params", *[c for c in base.index if c.startswith("macs_") and c in new.index]]
    for column in columns:
        before, after = _plain(base[column]), _plain(new[column])
        if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before != after:
            changes.append(f"{column} {before:,} -> {after:,}")
    return changes


def _side_note(side: str, row: pd.Series) -> list[str]:
    if row["status"] != "ok":
        message = " ".join(str(_plain(row["message"]) or "").split())
        return [f"{side} {row['status']}" + (f": {message}" if message else "")]
    if not _timed(row):
        return [f"{side} ok without a positive latency"]
    if row["_suspect"]:  # the reasons' names; the run's own report gives each in full
        reasons = dict.fromkeys(reason.split(":")[0].strip() for reason in str(row["timing_suspect"]).split(";"))
        return [f"{side} timing suspect ({', '.join(reasons)})"]
    return []


@dataclass(frozen=True)
class Regressions:
    """What a gate on the diff found: ``failures`` fail it; ``doubts`` are slowdowns it could not judge
    (within the noise, or timed while other work disturbed either run), which fail it only when strict."""

    failures: list[str]
    doubts: list[str]


@dataclass(frozen=True)
class RunDiff:
    """The configs of two runs side by side.

    ``pairs``: one record per config both runs hold: its keys in both runs, its axes (for a compared axis, the
    base and the new value), both medians and p20/p80, the ratio new / base, the verdict, both peak memories
    and their ratio, and a note (a side without a latency or with a suspect one, counts that differ).
    ``axes``: the shared config columns of ``pairs``. ``across``: the compared axes (:func:`compared_axes`).
    ``only_base`` / ``only_new``: the keys of the configs one run holds and the other does not. ``setups``:
    what measured each run (:data:`SETUP_COLUMNS`, the load and time ranges, and the operators whose source
    files differ).
    """

    pairs: pd.DataFrame
    axes: list[str]
    across: dict[str, dict[str, tuple]]
    only_base: list[str]
    only_new: list[str]
    setups: pd.DataFrame
    threshold: float

    def counts(self) -> dict[str, int]:
        """How many pairs got each verdict (every verdict listed, zeros included)."""
        found = self.pairs["change"].value_counts()
        return {v: int(found.get(v, 0)) for v in VERDICTS}

    def geometric_mean(self) -> float:
        """The geometric mean of new / base over the pairs with a trusted verdict (NaN without one)."""
        trusted = list(self.pairs.loc[self.pairs["change"].isin(TRUSTED), "ms ratio"])
        return math.exp(sum(map(math.log, trusted)) / len(trusted)) if trusted else math.nan

    def regressions(self, slower_than: float, allow_missing: bool = False) -> Regressions:
        """The configs that got worse: slower than ``slower_than`` times the base (a ratio, e.g. 1.1; judged by
        that ratio, whatever the threshold) with the p20-p80 ranges apart; ok in the base and without a latency
        in the new run (failed, out of memory, over budget); or, unless ``allow_missing``, absent from the new
        run (a sweep a crash stopped). Slower pairs whose ranges overlap, or whose timing either run doubts,
        are :attr:`Regressions.doubts`."""
        failures, doubts = [], []
        for _, pair in self.pairs.iterrows():
            where = pair["key"] if pair["key"] == pair["new key"] else f"{pair['key']} -> {pair['new key']}"
            ratio = pair["ms ratio"]
            if pair["change"] in TRUSTED and ratio > slower_than:
                (failures if pair["apart"] else doubts).append(
                    f"{where}: {ratio:.3g}x slower" + ("" if pair["apart"] else " (p20-p80 ranges overlap)"))
            elif pair["change"] == "suspect" and ratio > slower_than:
                doubts.append(f"{where}: {ratio:.3g}x slower, timing suspect ({pair['note']})")
            elif pair["base status"] == "ok" and pair["change"] == "not measured" and not math.isnan(pair["base ms"]):
                failures.append(f"{where}: no latency in the new run (status {pair['new status']}); the base measured "
                                f"{pair['base ms']:.3g} ms")
        if not allow_missing:
            failures += [f"{key}: no row in the new run" for key in self.only_base]
        return Regressions(failures, doubts)


def _setups(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    base, new = (rows.assign(rounds=rounds_of(rows)) for rows in (base, new))  # a sweep of one round records none

    def joined(rows: pd.DataFrame, column: str) -> str:
        if column not in rows:
            return ""
        return " / ".join(sorted(rows[column].dropna().astype(str).unique()))

    def span(rows: pd.DataFrame, column: str, form: str = "{:g}") -> str:
        values = rows[column].dropna() if column in rows else pd.Series(dtype=object)
        if values.empty:
            return ""
        low, high = values.min(), values.max()
        return form.format(low) if low == high else f"{form.format(low)} to {form.format(high)}"

    records = [{"setup": column, "base": joined(base, column), "new": joined(new, column)} for column in SETUP_COLUMNS]
    records.append({"setup": "load (1 min)", "base": span(base, "load_1min"), "new": span(new, "load_1min")})
    records.append({"setup": "measured", "base": span(base, "timestamp", "{}"), "new": span(new, "timestamp", "{}")})
    if "operator_source" in base and "operator_source" in new:
        for operator in dict.fromkeys([*base["operator"], *new["operator"]]):
            before = joined(base[base["operator"] == operator], "operator_source")
            after = joined(new[new["operator"] == operator], "operator_source")
            if before and after and before != after:
                records.append({"setup": f"operator_source {operator}", "base": before, "new": after})
    return pd.DataFrame.from_records(records, columns=["setup", "base", "new"])


def _keys(frame: pd.DataFrame, leave_out: dict[str, set[str]], axes: Sequence[str]) -> list[tuple]:
    """Each row's pairing key: its operator and its axes' values, without those ``leave_out`` names for its
    operator."""
    return [tuple(None if axis in leave_out.get(record[0], ()) else value
                  for axis, value in zip(["operator", *axes], record))
            for record in frame[["operator", *axes]].itertuples(index=False)]


def diff_runs(base: pd.DataFrame, new: pd.DataFrame, threshold: float = 0.05,
              across: Sequence[str] | None = None) -> RunDiff:
    """Pair the configs of two runs' rows (each run's last row of a config, its rounds combined, as the reports
    take it) and compare their latencies and peak memory. ``threshold``: the relative change of the median below
    which a pair is ``same``. ``across``: the axes to pair across (:func:`compared_axes`; None: found, within limits).
    Raises ValueError when the runs share no config, or differ in a way that makes pairing a guess."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold {threshold!r}: expected a fraction between 0 and 1, e.g. 0.05 for 5%")
    measured_base, measured_new = latest_rows(base), latest_rows(new)  # every round: the load and time spans
    base, new = combine_rounds(measured_base), combine_rounds(measured_new)
    base, new = (rows.assign(_suspect=(rows["status"] == "ok") & is_suspect(rows)) for rows in (base, new))
    knobs = list(dict.fromkeys(knob_columns(base) + knob_columns(new)))
    base_frame, new_frame = _pairing_frame(base, knobs), _pairing_frame(new, knobs)
    compared = compared_axes(base_frame, new_frame, knobs, across)
    leave_out: dict[str, set[str]] = {}
    for axis, per_operator in compared.items():
        for operator in per_operator:
            leave_out.setdefault(operator, set()).add(axis)
    axes = [*AXES, *knobs]
    new_position = {key: position for position, key in enumerate(_keys(new_frame, leave_out, axes))}
    matched = [(b, new_position.get(key)) for b, key in enumerate(_keys(base_frame, leave_out, axes))]
    if not any(n is not None for _, n in matched):
        raise ValueError(f"the two runs share no config: the base holds {_holds(base_frame)}, the new run "
                         f"{_holds(new_frame)}")
    only_base = [base["key"].iloc[b] for b, n in matched if n is None]
    paired_new = {n for _, n in matched if n is not None}
    only_new = [key for position, key in enumerate(new["key"]) if position not in paired_new]

    shown = [a for a in axes if a not in compared and a in base]
    records = []
    for b, n in ((b, n) for b, n in matched if n is not None):
        before, after = base.iloc[b], new.iloc[n]
        record: dict[str, Any] = {"key": before["key"], "new key": after["key"], "operator": before["operator"]}
        record.update({axis: _plain(before[axis]) for axis in shown})
        for axis in compared:
            record[f"base {axis}"], record[f"new {axis}"] = _plain(before.get(axis)), _plain(after.get(axis))
        for side, row in (("base", before), ("new", after)):
            timed = _timed(row)
            record[f"{side} status"] = row["status"]
            for label, column in (("ms", "latency_median_ms"), ("ms p20", "latency_p20_ms"),
                                  ("ms p80", "latency_p80_ms")):
                record[f"{side} {label}"] = float(row[column]) if timed else math.nan
            memory = _plain(row["peak_mem_bytes"]) if row["status"] == "ok" else None
            record[f"{side} MiB"] = memory / MIB if isinstance(memory, (int, float)) else math.nan
        record["ms ratio"] = record["new ms"] / record["base ms"]
        record["change"] = verdict(before, after, threshold)
        record["apart"] = record["change"] in TRUSTED and _apart(before, after)
        record["MiB ratio"] = record["new MiB"] / record["base MiB"] if record["base MiB"] else math.nan
        record["note"] = "; ".join([*_side_note("base", before), *_side_note("new", after),
                                    *_count_changes(before, after)])
        records.append(record)
    pairs = pd.DataFrame.from_records(records)
    for column in [c for c in pairs.columns if c in axes or c.removeprefix("base ").removeprefix("new ") in axes]:
        if all(isinstance(_plain(v), int) for v in pairs[column].dropna()):  # integers stay integers where an
            pairs[column] = pairs[column].astype("Int64")                   # operator lacks a knob
    return RunDiff(pairs, shown, compared, only_base, only_new,
                   _setups(measured_base, measured_new), threshold)


def _holds(frame: pd.DataFrame) -> str:
    """'carafe, sapa-b; C=64; N=1; 8x8, 16x16; reference; fp32; cpu; fwd': what a run's rows cover, for the message
    that nothing pairs (where only a size differs besides an axis paired across, that size is the reason)."""
    def listed(axis: str) -> str:
        return ", ".join(map(str, sorted(_values(frame, axis), key=lambda v: (str(type(v)), v))))

    sizes = ", ".join(f"{h}x{w}" for h, w in sorted(set(zip(frame["H"], frame["W"])))) if "H" in frame else ""
    parts = [", ".join(dict.fromkeys(map(str, frame["operator"]))),
             *(f"{axis}={listed(axis)}" for axis in ("C", "N") if axis in frame), sizes]
    parts += [listed(axis) for axis in ("impl", "dtype", "device", "mode")]
    return "; ".join(filter(None, parts))
