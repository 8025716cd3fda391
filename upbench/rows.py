"""Sweep rows as files: the CSV / JSON a sweep writes and reads back, one row per config (per config and round
in a sweep of several rounds: :mod:`upbench.rounds` makes them one), merging the logs
of one sweep's shards or resumptions, which rows a resume measures again, and whether a sweep is complete.

Rows are the layout of :meth:`upbench.spec.SweepSpec.columns`; nothing here measures or renders them
(:mod:`upbench.views` and :mod:`upbench.reports` render them).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Iterable, Sequence

import pandas as pd

from .files import write_whole
from .vocabulary import DIRTY, ENVIRONMENT_FIELDS, TRANSIENT_DOUBTS

# What can be written beside a row log, and the suffix each takes: a report's name given as --out names
# its log too (:func:`upbench.rowlog.log_path`).
FORMAT_SUFFIXES = {"markdown": ".md", "json": ".json", "png": ".png", "latex": ".tex"}
REPORT_FORMATS = tuple(FORMAT_SUFFIXES)
# Columns that are text whatever they look like (a hash of digits only must not become a number).
TEXT_COLUMNS = ("spec_id", "key", "operator", "impl", "dtype", "device", "mode", "cache", "timing_suspect",
                "status", "message", "operator_source",
                "device_name", "torch_version", "cuda_version", "cpu_model", "allocator", "git_commit", "timestamp")
# The environment columns that tell one setup from another (the load and the time differ row by row).
ENVIRONMENT_COLUMNS = tuple(f for f in ENVIRONMENT_FIELDS if f not in ("load_1min", "timestamp"))
# What a latency depends on besides the config: rows of one device that differ in any of these were measured
# on other hardware, by other software or with other threads, and do not belong in one table. (The CPU
# model is left out: shards of a GPU sweep may run on nodes with different host CPUs; so is the thread
# count of GPU rows, which follows the node's cores. Uncommitted edits are compared by their hash, so a
# requeued job on the same edits is not refused: rows._differing_code.)
# The allocator's state (upbench.allocator) changes CPU latencies as much as the threads do.
MEASURED_WITH = ("device_name", "torch_version", "cuda_version", "threads", "allocator", "git_commit")
# ... of which these only CPU latencies: GPU shards on nodes of other core counts or C libraries still merge.
CPU_SETUPS = ("threads", "allocator")
# The measurement settings every row records beside its numbers (l2-flush, tf32 and threads have columns of their
# own): what a reader of the rows, `diff` and a refused --resume need to see, which the spec_id hash cannot show.
SETTING_COLUMNS = ("warmup", "min_run_time_s", "budget_s", "seed")
# ... and every setting column any row may have: ``rounds`` only rows of a sweep of several rounds (upbench.rounds).
ALL_SETTING_COLUMNS = (*SETTING_COLUMNS, "rounds")
# Between the setups a config's rounds were measured with where they differ (upbench.rounds): one cell holds them all.
SETUP_JOIN = " / "


def is_text_column(column: object) -> bool:
    """Whether a row column holds text (every other holds numbers, or nothing)."""
    return column in TEXT_COLUMNS or str(column).startswith("zero_ops_")


def _text_dtypes(columns: Iterable[object]) -> dict[object, str]:
    return {c: "str" for c in columns if is_text_column(c)}


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
    frame.columns = [str(c) for c in frame.columns]  # a record's keys are names, even where they look like numbers
    return frame.astype(_text_dtypes(frame.columns))


# Row columns that hold integers (besides the knobs' and the macs_ / flops_ columns).
INTEGER_COLUMNS = ("config_index", "config_total", "C", "Cg", "N", "H", "W", "params", "bytes_moved", "runs",
                   "peak_mem_bytes", "threads", "cpu_cores")


def integer_columns_as_ints(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with its integer columns as nullable integers. pandas reads a column with an empty cell (a failed
    row's counts, a knob another operator lacks) as float, and writing it back gave 4096.0 MACs, 64.0 params and
    a knob of 8.0 in a merged log, the JSON and ``report --format csv|json``; a column holding anything but
    whole numbers is left as it is."""
    knobs = knob_columns(rows) if {"Cg", "N"} <= set(rows.columns) else []
    columns = [c for c in rows.columns if c in INTEGER_COLUMNS or c in knobs or str(c).startswith(("macs_", "flops_"))]
    return whole_columns_as_ints(rows, columns)


def whole_columns_as_ints(frame: pd.DataFrame, columns: Iterable[object]) -> pd.DataFrame:
    """``frame`` with those of ``columns`` that are float and hold whole numbers only (blanks aside) as nullable
    integers; the others as they are."""
    whole = {c: frame[c].astype("Int64") for c in columns
             if pd.api.types.is_float_dtype(frame[c]) and frame[c].dropna().map(float.is_integer).all()}
    return frame.assign(**whole)


def write_csv(rows: pd.DataFrame, path: str | Path) -> Path:
    """``rows`` as the CSV ``path``, replaced whole or not at all (a merge over its earlier self on a full disk)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_whole(path, lambda temporary: integer_columns_as_ints(rows).to_csv(temporary, index=False))


def write_json(rows: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    integer_columns_as_ints(rows).to_json(path, orient="records", indent=1, double_precision=15)
    return path


# A row whose config did not run to the end through a fault (a bug, a crash, a hang), not a measured limit
# (oom) or a choice (skipped): a command with such a row exits 1, and a resume can measure it again.
FAILED_STATUSES = ("error", "crash", "timeout")
# Every status a row may have: measured, skipped by its budget, out of memory, or failed.
ROW_STATUSES = ("ok", "skipped", "oom", *FAILED_STATUSES)
# What a resume may measure again (``retry``): failed rows, and rows whose timing is suspect for a reason
# that measuring again can clear (:data:`upbench.vocabulary.TRANSIENT_DOUBTS`).
RETRY_KINDS = ("failed", "suspect")


def check_retry(kinds: Iterable[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple, or ValueError naming those that are not :data:`RETRY_KINDS`."""
    kinds = tuple(kinds)
    unknown = sorted(set(kinds) - set(RETRY_KINDS))
    if unknown:
        raise ValueError(f"retry {', '.join(unknown)}: expected some of {', '.join(RETRY_KINDS)}")
    return kinds


def check_resume_retry(retry: object, resume: bool) -> tuple[str, ...]:
    """A sweep's ``retry`` checked with its ``resume``: a string would be read as its letters, and a retry without
    a resume has no logged rows to measure again."""
    if isinstance(retry, str) or (retry and not resume):
        raise ValueError(f"retry={retry!r}: expected a tuple of {', '.join(RETRY_KINDS)}, with resume=True")
    return check_retry(retry)  # type: ignore[arg-type]


def knob_columns(rows: pd.DataFrame) -> list[str]:
    """The knob columns: the row layout puts them between ``Cg`` and ``N``."""
    columns = list(rows.columns)
    return columns[columns.index("Cg") + 1 : columns.index("N")]


def is_suspect(rows: pd.DataFrame) -> pd.Series:
    """Which of ``rows`` have a timing that cannot be trusted (a reason in ``timing_suspect``)."""
    return rows["timing_suspect"].fillna("").astype(str).ne("")


def newer_environment(older: Sequence[str], newer: Sequence[str]) -> list[str]:
    """The environment columns ``newer`` has and ``older`` lacks where that is all they differ in: a log written by
    an upbench before the column (allocator), which neither resumes nor merges with rows that have it."""
    added = [c for c in newer if c not in older]
    same_otherwise = [c for c in newer if c not in added] == list(older)
    return added if added and same_otherwise and set(added) <= set(ENVIRONMENT_COLUMNS) else []


def column_difference(columns: Sequence[str], other: Sequence[str], name: str, other_name: str) -> str:
    """'only <name> has a, b; only <other_name> has c' for two headers, or that they differ in order only."""
    only = [c for c in columns if c not in other]
    only_other = [c for c in other if c not in columns]
    return "; ".join(filter(None, [
        f"only {name} has {', '.join(only)}" if only else "",
        f"only {other_name} has {', '.join(only_other)}" if only_other else "",
    ])) or "the same columns in another order"


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


def rounds_of(rows: pd.DataFrame) -> int:
    """How many rounds the rows' sweep has: rows of a sweep of one round record none."""
    return int(rows["rounds"].max()) if "rounds" in rows and rows["rounds"].notna().any() else 1


def measurement_key(key: str, round_number: object = None) -> str:
    """What one row measures: its config's ``key`` and, in a sweep of several rounds, its round (1 to R)."""
    return key if round_number is None or pd.isna(round_number) else f"{key}|round={int(round_number)}"


def measurement_keys(rows: pd.DataFrame) -> pd.Series:
    """:func:`measurement_key` of every row: its config's key, and its round where the rows have a ``round``."""
    if "round" not in rows:
        return rows["key"]
    return pd.Series([measurement_key(key, number) for key, number in zip(rows["key"], rows["round"])],
                     index=rows.index, dtype=object)


def latest_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per measurement (a config, and its round in a sweep of several), in sweep order: its newest ``ok``
    row, else its newest row (a resume that retries rows appends the new row after the old; a retry that fails
    does not replace a measurement). Newest by the rows' timestamps, then by their order: a config in two merged
    logs kept the last file's row, so the merge depended on the order of its arguments."""
    when = pd.to_datetime(rows["timestamp"], utc=True, errors="coerce") if "timestamp" in rows else None
    ordered = rows.assign(_ok=rows["status"].eq("ok"), _when=when, _measurement=measurement_keys(rows))
    ordered = ordered.sort_values("_when", kind="stable", na_position="first").sort_values("_ok", kind="stable")
    kept = ordered.drop_duplicates("_measurement", keep="last").drop(columns=["_ok", "_when", "_measurement"])
    order = ["config_index", "round"] if "round" in kept else ["config_index"]
    return kept.sort_values(order, kind="stable").reset_index(drop=True)


# Why an operator's rows differ in ``operator_source``, for the messages that refuse to mix them.
SOURCE_HINT = ": an operator's source differs when its files were edited between the runs"


def _differing_code(commits: Sequence[str]) -> list[str]:
    """The git_commit values that name different code: different commits, or different uncommitted edits of
    one (``+dirty.<hash>``). A bare ``+dirty`` (rows from before the edits were hashed) says only that there
    were edits, so it agrees with its commit however edited."""
    bases = sorted({commit.partition(DIRTY)[0] for commit in commits})
    if len(bases) > 1:
        return bases
    edited = sorted({commit for commit in commits if commit != bases[0] + DIRTY})
    return edited if len(edited) > 1 else []


def _setups(cells: pd.Series) -> list[str]:
    """The values of a setup column, each of a cell that holds several (:data:`SETUP_JOIN`) on its own."""
    return [value for cell in cells.dropna().astype(str) for value in cell.split(SETUP_JOIN)]


def mixed_sources(rows: pd.DataFrame) -> dict[str, list[str]]:
    """The operators whose rows were measured from more than one version of their source files
    (``operator_source``: a plugin edited between two runs), each with its versions; none for rows that
    predate the column."""
    if "operator_source" not in rows:
        return {}
    versions = {operator: sorted(set(_setups(sources)))
                for operator, sources in rows.groupby("operator", sort=False)["operator_source"]}
    return {operator: found for operator, found in versions.items() if len(found) > 1}


def mixed_environments(rows: pd.DataFrame) -> list[str]:
    """'cpu: threads 1 / 2' for each device whose rows differ in a :data:`MEASURED_WITH` column, and
    'mine: source 1a2b / 3c4d' for each operator whose rows were measured with different source files
    (``operator_source``: a plugin edited between two runs)."""
    mixed = [f"{operator}: source {' / '.join(versions)}" for operator, versions in mixed_sources(rows).items()]
    for device, group in rows.groupby("device", sort=True) if "device" in rows else ():  # a log cut to its keys
        for column in MEASURED_WITH:
            if column not in group or (column in CPU_SETUPS and not str(device).startswith("cpu")):
                continue
            values = sorted(set(_setups(group[column])))
            if column == "git_commit":
                values = _differing_code(values)
            if len(values) > 1:
                mixed.append(f"{device}: {column} {' / '.join(values)}")
    return mixed


def _differing_settings(frames: Sequence[pd.DataFrame]) -> list[str]:
    """'rounds 1 / 3' for each setting the rows record (a log of one round records no rounds: 1; --threads, --tf32
    and --l2-flush are columns of their own) and the config count, where the logs differ in it."""
    said = []
    for column in ("config_total", *ALL_SETTING_COLUMNS, "threads", "tf32", "cache"):
        values = {f"{value:g}" if isinstance(value, float) else str(value) for frame in frames
                  for value in ([rounds_of(frame)] if column == "rounds" else
                                frame[column].dropna() if column in frame else [])}
        if len(values) > 1:
            said.append(f"{column} {' / '.join(sorted(values))}")
    return said


def merge_frames(frames: Sequence[pd.DataFrame], allow_mixed: bool = False) -> pd.DataFrame:
    """Rows of several logs (shards, or a run and its resumption) of ONE spec, in sweep order.

    Raises ValueError for logs of different specs or layouts, for logs that number the configs differently,
    and (unless ``allow_mixed``) for rows of one device measured with different :data:`MEASURED_WITH`.
    A config (a config's round, in a sweep of several rounds) present in several logs keeps one row, as
    :func:`latest_rows` chooses.
    """
    if not frames:
        raise ValueError("nothing to merge")
    spec_ids = sorted({s for frame in frames for s in frame["spec_id"].dropna()})
    if len(spec_ids) > 1:
        differ = _differing_settings(frames)
        raise ValueError(f"refusing to merge rows of different sweep specs ({', '.join(spec_ids)}"
                         f"{'; ' + '; '.join(differ) if differ else ''}): merge only the shards of one sweep")
    first = list(frames[0].columns)
    for number, frame in enumerate(frames[1:], start=2):
        if list(frame.columns) != first:
            differ = column_difference(first, list(frame.columns), "log 1", f"log {number}")
            newer = newer_environment(first, list(frame.columns)) or newer_environment(list(frame.columns), first)
            why = (f"one was written by an upbench before the {', '.join(newer)} column, and merges only with logs "
                   f"of that upbench" if newer else "they were written by different upbench versions or with "
                   "different --plugin operators")
            raise ValueError(f"refusing to merge logs with different columns ({differ}): {why}")
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
        hint = SOURCE_HINT if any(": source " in m for m in mixed) else ""
        raise ValueError(f"refusing to merge rows measured with different setups ({'; '.join(mixed)}{hint}): their "
                         f"latencies do not belong in one table (--allow-mixed merges them anyway)")
    return merged


def is_per_round(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` hold a row per config and round (a sweep of several rounds, its rounds not combined yet)."""
    return "round" in rows and rows["round"].notna().any()


def missing_configs(rows: pd.DataFrame) -> list[int]:
    """Indices of the sweep's configs that have no row (in the rows of a sweep of several rounds: no row of some
    round; once its rounds are combined, :func:`upbench.rounds.combine_rounds`, no row)."""
    if rows.empty:
        return []
    total = int(rows["config_total"].max())
    if not is_per_round(rows):
        return sorted(set(range(total)) - set(rows["config_index"].astype(int)))
    rounds = rounds_of(rows)
    measured = set(zip(rows["config_index"].astype(int), rows["round"].astype(int)))
    return sorted({index for index in range(total) for number in range(1, rounds + 1)
                   if (index, number) not in measured})


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
        what = "miss the row of a round or more" if is_per_round(rows) else "have no row"
        raise IncompleteSweep(f"{len(missing)} of {total} configs {what}: config indices "
                              f"{index_ranges(missing)} (a shard not given, not finished or not run)")
