"""Two runs side by side: each config's latency and peak memory in a base run and a new run, their ratio,
and whether the change stands out of the timing noise.

The rows are two sweeps' (:mod:`upbench.rows`), one per config. Configs pair by their axes: operator, impl,
C, Cg, knobs, N, size, dtype, device, mode. An axis on which each run holds one value, and the two differ
(device ``cpu`` in one and ``cuda`` in the other, impl ``reference`` and ``compiled``, dtype), is what the
runs compare: it is left out of the pairing and named (:attr:`RunDiff.across`). Nothing here measures or
renders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .memory import MIB
from .rows import is_suspect, latest_rows

# The config columns besides the operator and its knobs. Two runs may differ on any of these and on a
# knob, never on the operator: operators differ in their knobs, and the pivot tables set them side by side.
AXES = ("impl", "C", "Cg", "N", "H", "W", "dtype", "device", "mode")
# The setup columns that the report sets side by side (operator_source is per operator, and follows them).
SETUP_COLUMNS = ("device_name", "cpu_model", "torch_version", "cuda_version", "threads", "git_commit")
# A verdict for every pair: ``faster`` / ``slower`` when the ratio of medians is beyond the threshold and
# the two runs' p20-p80 ranges are apart; ``within noise`` when beyond the threshold but the ranges
# overlap; ``same`` within the threshold; ``suspect`` when either side's timing cannot be trusted;
# ``not measured`` when either side is not ok.
VERDICTS = ("faster", "slower", "same", "within noise", "suspect", "not measured")
TRUSTED = ("faster", "slower", "same", "within noise")


def _plain(value: Any) -> Any:
    """A cell as a pairing value: missing as None, a whole float as an int (a knob column that is empty for
    some operator reads as float), everything else as it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def knob_names(rows: pd.DataFrame) -> list[str]:
    """The knob columns: the row layout puts them between ``Cg`` and ``N``."""
    columns = list(rows.columns)
    return columns[columns.index("Cg") + 1: columns.index("N")]


def _values(rows: pd.DataFrame, column: str) -> set[Any]:
    if column not in rows:
        return set()
    return {v for v in map(_plain, rows[column]) if v is not None}


def compared_axes(base: pd.DataFrame, new: pd.DataFrame) -> dict[str, tuple[Any, Any]]:
    """Each axis on which both runs hold one value, and not the same one: axis -> (base value, new value)."""
    across = {}
    for axis in [*AXES, *dict.fromkeys(knob_names(base) + knob_names(new))]:
        base_values, new_values = _values(base, axis), _values(new, axis)
        if len(base_values) == 1 and len(new_values) == 1 and base_values != new_values:
            across[axis] = (next(iter(base_values)), next(iter(new_values)))
    return across


def pairing_keys(rows: pd.DataFrame, leave_out: set[str]) -> list[tuple]:
    """Each row's config without the ``leave_out`` axes: the operator, the other axes, and the knobs it has."""
    knobs = [k for k in knob_names(rows) if k not in leave_out]
    axes = [a for a in AXES if a not in leave_out]
    keys = []
    for record in rows[["operator", *axes, *knobs]].itertuples(index=False):
        values = [_plain(v) for v in record]
        own_knobs = tuple((name, value) for name, value in zip(knobs, values[1 + len(axes):]) if value is not None)
        keys.append((values[0], *values[1: 1 + len(axes)], own_knobs))
    return keys


def verdict(base: pd.Series, new: pd.Series, threshold: float) -> str:
    """One of :data:`VERDICTS` for a config's base and new row."""
    if base["status"] != "ok" or new["status"] != "ok":
        return "not measured"
    if base["_suspect"] or new["_suspect"]:
        return "suspect"
    ratio = new["latency_median_ms"] / base["latency_median_ms"]
    if 1 / (1 + threshold) < ratio < 1 + threshold:
        return "same"
    apart = new["latency_p20_ms"] > base["latency_p80_ms"] or base["latency_p20_ms"] > new["latency_p80_ms"]
    if not apart:
        return "within noise"
    return "faster" if ratio < 1 else "slower"


def _count_changes(base: pd.Series, new: pd.Series) -> list[str]:
    """'params 4,416 -> 4,672' for each count that differs between the two rows of one config."""
    changes = []
    columns = ["params", *[c for c in base.index if c.startswith("macs_") and c in new.index]]
    for column in columns:
        before, after = _plain(base[column]), _plain(new[column])
        if before is not None and after is not None and before != after:
            changes.append(f"{column} {before:,} -> {after:,}")
    return changes


def _side_note(side: str, row: pd.Series) -> list[str]:
    if row["status"] != "ok":
        message = str(_plain(row["message"]) or "").strip()
        return [f"{side} {row['status']}" + (f": {message}" if message else "")]
    if row["_suspect"]:  # the reasons' names; the run's own report gives each in full
        reasons = dict.fromkeys(reason.split(":")[0].strip() for reason in str(row["timing_suspect"]).split(";"))
        return [f"{side} timing suspect ({', '.join(reasons)})"]
    return []


@dataclass(frozen=True)
class RunDiff:
    """The configs of two runs side by side.

    ``pairs``: one record per config both runs hold, with its axes, both medians and p20/p80, the ratio new /
    base, the verdict, both peak memories and their ratio, and a note (a side not ok or suspect, counts that
    differ). ``axes``: the config columns of ``pairs`` (the compared axes left out). ``across``: the compared axes (:func:`compared_axes`). ``only_base`` / ``only_new``: the keys
    of the configs one run holds and the other does not. ``setups``: what measured each run
    (:data:`SETUP_COLUMNS`, the load and time ranges, and the operators whose source files differ).
    """

    pairs: pd.DataFrame
    axes: list[str]
    across: dict[str, tuple[Any, Any]]
    only_base: list[str]
    only_new: list[str]
    setups: pd.DataFrame
    threshold: float

    def counts(self) -> dict[str, int]:
        """How many pairs got each verdict (every verdict listed, zeros included)."""
        found = self.pairs["change"].value_counts() if len(self.pairs) else pd.Series(dtype=int)
        return {v: int(found.get(v, 0)) for v in VERDICTS}

    def geometric_mean(self) -> float:
        """The geometric mean of new / base over the pairs with a trusted verdict (NaN without one)."""
        trusted = self.pairs.loc[self.pairs["change"].isin(TRUSTED), "ms ratio"] if len(self.pairs) else []
        return float(math.exp(sum(map(math.log, trusted)) / len(trusted))) if len(trusted) else math.nan

    def regressions(self, slower_than: float) -> list[str]:
        """The pairs that got worse: slower by more than ``slower_than`` (a ratio, e.g. 1.1) with the timing
        noise apart, or ok in the base and not ok in the new run (failed, out of memory, over budget)."""
        found = []
        for _, pair in self.pairs.iterrows():
            if pair["change"] == "slower" and pair["ms ratio"] > slower_than:
                found.append(f"{pair['key']}: {pair['ms ratio']:.3g}x slower")
            elif pair["base status"] == "ok" and pair["new status"] != "ok":
                found.append(f"{pair['key']}: {pair['new status']} in the new run, ok in the base")
        return found


def _setups(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    def joined(rows: pd.DataFrame, column: str) -> str:
        if column not in rows:
            return ""
        return " / ".join(sorted(rows[column].dropna().astype(str).unique()))

    def span(rows: pd.DataFrame, column: str, form: str = "{:g}") -> str:
        values = rows[column].dropna() if column in rows else pd.Series(dtype=object)
        if values.empty:
            return ""
        low, high = values.min(), values.max()
        return form.format(low) if low == high else f"{form.format(low)} - {form.format(high)}"

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


def diff_runs(base: pd.DataFrame, new: pd.DataFrame, threshold: float = 0.05) -> RunDiff:
    """Pair the configs of two runs' rows (each run's last row of a config, as the reports take it) and compare
    their latencies and peak memory. ``threshold``: the relative change of the median below which a pair is
    ``same``. Raises ValueError when the runs share no config."""
    if not threshold > 0:
        raise ValueError(f"threshold {threshold!r}: expected a positive fraction, e.g. 0.05 for 5%")
    base, new = latest_rows(base), latest_rows(new)
    base, new = (rows.assign(_suspect=(rows["status"] == "ok") & is_suspect(rows)) for rows in (base, new))
    across = compared_axes(base, new)
    base_keys = pairing_keys(base, set(across))
    new_keys = pairing_keys(new, set(across))
    new_position = {key: position for position, key in enumerate(new_keys)}
    matched = [(b, new_position[key]) for b, key in enumerate(base_keys) if key in new_position]
    if not matched:
        raise ValueError(f"the two runs share no config: the base holds {_holds(base)}, the new run {_holds(new)}")
    paired_new = {n for _, n in matched}
    only_base = [k for k, key in zip(base["key"], base_keys) if key not in new_position]
    only_new = [k for position, k in enumerate(new["key"]) if position not in paired_new]

    axes = [a for a in [*AXES, *knob_names(base)] if a not in across]
    records = []
    for b, n in matched:
        before, after = base.iloc[b], new.iloc[n]
        record: dict[str, Any] = {"key": before["key"], "operator": before["operator"]}
        record.update({axis: _plain(before[axis]) for axis in axes})
        for side, row in (("base", before), ("new", after)):
            ok = row["status"] == "ok"
            record[f"{side} status"] = row["status"]
            for label, column in (("ms", "latency_median_ms"), ("ms p20", "latency_p20_ms"),
                                  ("ms p80", "latency_p80_ms")):
                record[f"{side} {label}"] = float(row[column]) if ok else math.nan
            record[f"{side} MiB"] = float(row["peak_mem_bytes"]) / MIB if ok else math.nan
        record["ms ratio"] = record["new ms"] / record["base ms"]
        record["change"] = verdict(before, after, threshold)
        record["MiB ratio"] = record["new MiB"] / record["base MiB"] if record["base MiB"] else math.nan
        record["note"] = "; ".join([*_side_note("base", before), *_side_note("new", after),
                                    *_count_changes(before, after)])
        records.append(record)
    pairs = pd.DataFrame.from_records(records)
    for axis in axes:  # integers stay integers where an operator lacks a knob (or a table adds rows)
        if all(isinstance(_plain(v), int) for v in pairs[axis].dropna()):
            pairs[axis] = pairs[axis].astype("Int64")
    return RunDiff(pairs, axes, across, only_base, only_new, _setups(base, new), threshold)


def _holds(rows: pd.DataFrame) -> str:
    """'carafe, sapa-b; cpu; fp32; fwd' : what a run's rows cover, for the message that nothing pairs."""
    parts = [", ".join(dict.fromkeys(rows["operator"].astype(str)))]
    parts += [", ".join(map(str, sorted(_values(rows, axis), key=str))) for axis in ("impl", "dtype", "device", "mode")]
    return "; ".join(parts)
