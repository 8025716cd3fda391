"""A sweep of several rounds: the order in which each round visits the configs, and the one row the tables
show for a config measured once per round.

One pass over the configs, operator by operator, times the operators of one table minutes apart: a machine
that warms up, throttles or takes on other work meanwhile favours whichever operator ran first. Several rounds,
each in an order of its own, spread that drift over every operator, and the spread of a config's rounds shows
how large it was. Nothing here measures; :mod:`upbench.sweep` measures in this order, and the readers of rows
(:func:`upbench.sweep.run_sweep`, ``report``, ``diff``, ``merge``) combine the rounds with :func:`combine_rounds`.
"""
from __future__ import annotations

import random
import re
from typing import Sequence, TypeVar

import pandas as pd

from .rows import (ENVIRONMENT_COLUMNS, FAILED_STATUSES, SETUP_JOIN, is_per_round, is_text_column, latest_rows,
                   rounds_of)
from .vocabulary import INCOMPLETE_DOUBT, ROUNDS_DISAGREE_DOUBT

Item = TypeVar("Item")

# A config whose slowest round's median is more than this many times its fastest's was timed while the machine
# changed under it: its median of rounds is flagged (timing_suspect), as a row whose p80/p20 exceeds 1.5 is.
ROUNDS_DISAGREE = 1.2
# The column of a combined row: its slowest ok round's median over its fastest's (empty with fewer than two).
ROUND_SPREAD = "round_spread"
# Which of a config's rounds its combined row shows where one failed, or none is ok: its first round of the first of
# these kinds of status that it has.
_SHOWN_FIRST = (FAILED_STATUSES, ("oom",), ("skipped",))
_NUMBER = re.compile(r"\b\d+(\.\d+)?(e[-+]?\d+)?\b")  # a figure, not the 2 of conv2d or the 16 of fp16


def measurement_order(indexed: Sequence[tuple[int, Item]], rounds: int, seed: int) -> list[tuple[int, int, Item]]:
    """(index, round, item) for every round of ``indexed``, round 1 first. One round keeps the given order; with
    several, each round visits the items in a shuffled order drawn from ``seed`` and its number, the same in every
    run of the sweep (so a resume continues the same order) and in each shard."""
    if rounds == 1:
        return [(index, 1, item) for index, item in indexed]
    order = []
    for number in range(1, rounds + 1):
        shuffled = list(indexed)
        random.Random(f"upbench rounds: seed {seed}, round {number}").shuffle(shuffled)
        order += [(index, number, item) for index, item in shuffled]
    return order


def round_spread(medians: pd.Series) -> float:
    """The slowest median over the fastest of a config's ok rounds (NaN without two positive medians)."""
    medians = medians.dropna()
    if len(medians) < 2 or medians.min() <= 0:
        return float("nan")
    return float(medians.max() / medians.min())


def _by_round(cells: pd.Series, numbers: pd.Series) -> str:
    """The '; '-joined parts of a column over a config's rounds, each kind once (its text before a colon, numbers
    aside: 'timed for 0.12 s of the 0.2 s asked' is one kind whatever each round's seconds): the first round's
    words, with the rounds it came in ('shared: ... (rounds 1, 3)', and where their figures differ, '(rounds 1, 3;
    round 1's figures)'), so that a doubt or message of one round does not read as the whole config's."""
    seen: dict[str, tuple[str, list[int], set[str]]] = {}
    for cell, number in zip(cells, numbers):
        for part in ([] if pd.isna(cell) else str(cell).split(";")):
            if part := part.strip():
                kind = _NUMBER.sub("#", part.partition(":")[0])
                _, came_in, texts = seen.setdefault(kind, (part, [], set()))
                came_in.append(int(number))
                texts.add(part)
    said = []
    for text, came_in, texts in seen.values():
        figures = f"; round {came_in[0]}'s figures" if len(texts) > 1 else ""
        said.append(f"{text} (round{'s' if len(came_in) > 1 else ''} {', '.join(map(str, came_in))}{figures})")
    return "; ".join(said)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _setup(group: pd.DataFrame, row: pd.Series) -> None:
    """The setup columns of ``row`` as its rounds recorded them: a value that differs between rounds (a resume with
    --allow-mixed on another commit, or with other --threads) is every round's, joined with :data:`SETUP_JOIN` as
    text, a number's column too (the timestamp stays the round's whose row it is)."""
    for column in (*ENVIRONMENT_COLUMNS, "operator_source"):
        if column in group:
            cells = group[column].dropna()
            texts = cells.astype(str) if is_text_column(column) else cells.map(_number_text)
            values = list(dict.fromkeys(texts))
            if len(values) > 1:
                row[column] = SETUP_JOIN.join(values)


def _shown_round(group: pd.DataFrame, rounds: int) -> pd.Series:
    """A config none of whose rounds is ok, or one of whose rounds failed: its first such round, named."""
    for statuses in _SHOWN_FIRST:
        failed = group[group["status"].isin(statuses)]
        if not failed.empty:
            row = failed.iloc[0].copy()
            said = row["message"] if pd.notna(row["message"]) and row["message"] else row["status"]
            row["message"] = f"round {int(row['round'])} of {rounds}: {said}"
            return row
    raise AssertionError("a config with no ok round has a round of another status")


def _combined(group: pd.DataFrame) -> pd.Series:
    """One config's rounds as one row: the median of its ok rounds, or the round that failed (or, none ok, the
    round that ran out of memory or was skipped)."""
    rounds = rounds_of(group)
    ok = group[group["status"] == "ok"]
    if ok.empty or group["status"].isin(FAILED_STATUSES).any():
        row = _shown_round(group, rounds)
    else:
        row = ok.iloc[-1].copy()
        medians = ok["latency_median_ms"].astype(float)
        row["latency_median_ms"] = medians.median()
        for column in ("latency_p20_ms", "latency_p80_ms"):
            row[column] = ok[column].astype(float).median()
        row["runs"] = ok["runs"].sum()
        row["cpu_util"] = ok["cpu_util"].min()
        for column in ("cpu_others", "peak_mem_bytes", "load_1min"):
            row[column] = ok[column].max()
        seconds = row["latency_median_ms"] / 1e3
        for column in [c for c in ok.columns if c.startswith("gflops_per_s_")]:
            if pd.notna(row[column]):
                row[column] = row[f"flops_{column.removeprefix('gflops_per_s_')}"] / seconds / 1e9
        if pd.notna(row["gbytes_per_s"]):
            row["gbytes_per_s"] = row["bytes_moved"] / seconds / 1e9
        spread = round_spread(medians)
        row[ROUND_SPREAD] = spread
        doubts = [_by_round(ok["timing_suspect"], ok["round"])]
        if spread > ROUNDS_DISAGREE:
            doubts.append(f"{ROUNDS_DISAGREE_DOUBT}: the slowest round's median is {spread:.2f}x the fastest's")
        if len(ok) < rounds:  # a sweep cut short, or rounds skipped by their budget: fewer medians than said
            others = [f"round {int(number)} {status}" for number, status in zip(group["round"], group["status"])
                      if status != "ok"]
            doubts.append(f"{INCOMPLETE_DOUBT}: {len(ok)} of {rounds} rounds measured ok"
                          f"{' (' + ', '.join(others) + ')' if others else ''}")
        row["timing_suspect"] = "; ".join(filter(None, doubts))
        row["message"] = _by_round(group["message"], group["round"])
    _setup(group, row)
    row["round"] = float("nan")
    return row


def combine_rounds(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per config, in sweep order, from the rows of a sweep of several rounds (of each round, the row
    :func:`upbench.rows.latest_rows` keeps: the newest ok one, else the newest): where no round failed and some are
    ok, the median of the ok rounds' medians (of an even number of rounds, the mean of the middle two), p20 and p80,
    the calls of all of them, the lowest ``cpu_util`` and the highest ``cpu_others``, peak memory and load, the
    rates of that median, each kind of doubt of its rounds once, and in :data:`ROUND_SPREAD` the slowest round's
    median over the fastest's (past :data:`ROUNDS_DISAGREE`, a doubt of its own, as are rounds missing or not ok);
    otherwise its first round that failed (or, none ok, ran out of memory or was skipped), its message naming it.
    Setups that differ between its rounds are all kept (:func:`_setup`). Its ``round`` is empty, so combined
    rows pass through again unchanged; rows of a sweep of one round have no ``round`` column and are returned as
    they are."""
    if not is_per_round(rows):
        return rows
    rows = latest_rows(rows)
    if ROUND_SPREAD in rows:
        combined = rows
    else:  # beside the other measures of spread
        columns = list(rows.columns)
        combined = rows.assign(**{ROUND_SPREAD: float("nan")})[
            [*columns[:columns.index("runs") + 1], ROUND_SPREAD, *columns[columns.index("runs") + 1:]]]
    out = []
    for _, group in combined.groupby("key", sort=False):
        if group["round"].isna().all():  # combined already (a report of a sweep's JSON)
            out.append(group.iloc[-1])
        else:
            out.append(_combined(group[group["round"].notna()].sort_values("round", kind="stable")))
    frame = pd.DataFrame(out, columns=combined.columns)
    frame = frame.astype({column: dtype for column, dtype in combined.dtypes.items()
                          if column not in ("round", "runs", ROUND_SPREAD) and dtype != object}, errors="ignore")
    return frame.sort_values("config_index", kind="stable").reset_index(drop=True)


def rows_in_words(rows: pd.DataFrame) -> str:
    """'48 rows', or of a sweep of several rounds, '48 configs x 3 rounds'."""
    rounds = rounds_of(rows)
    return f"{rows['key'].nunique()} configs x {rounds} rounds" if rounds > 1 else f"{len(rows)} rows"


def disagreeing_configs(rows: pd.DataFrame) -> set[str]:
    """Keys of the configs whose rounds disagree (:data:`ROUNDS_DISAGREE`), from one row per config and round."""
    if "round" not in rows:
        return set()
    ok = rows[rows["status"].eq("ok") & rows["round"].notna()]
    spreads = ok.groupby("key")["latency_median_ms"].apply(lambda medians: round_spread(medians.astype(float)))
    return set(spreads[spreads > ROUNDS_DISAGREE].index)
