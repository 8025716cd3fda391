"""Running a sweep: the configs of a spec (or of one shard), each measured into a row and logged.

Data flows one way, one module a step::

    spec.SweepSpec --expand--> [spec.Config] --measure.measure_config--> row dict
        --> rowlog.RowLog (CSV) --> rows.read_rows (DataFrame) --> views, reports, plot (export writes them)

A row is appended to the CSV log (flushed and fsynced) as soon as it is measured, so a sweep
killed at any point keeps every finished row, and ``resume=True`` skips the configs already
logged. ``shard=(i, n)`` measures configs i, i+n, i+2n, ... of the expansion, so several
processes or machines can split one sweep; their logs merge back with :func:`upbench.rows.merge_frames`.
A spec of several ``rounds`` measures every config once per round, each round in an order of its own
(:mod:`upbench.rounds`), logs a row per config and round, and returns one row per config, the median of its rounds.

Every row carries the spec's ``spec_id`` (a hash of the axes and measurement settings) so logs of
different specs are never mixed, and ``config_index`` / ``config_total`` so a merge can say what
is missing.
"""
from __future__ import annotations

import csv
import io
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from tqdm import tqdm

from .allocator import settle_allocator
from .environment import check_device
from .checks import is_whole
from .isolate import IsolatedMeasurer, check_row_timeout
from .measure import failed_row, measure_config
from .resume import logged_keys
from .rounds import combine_rounds, measurement_order
from .rowlog import RowLog, check_log_name
from .rows import check_resume_retry, latest_rows, measurement_key, read_rows
from .spec import Config, SweepSpec

# -- sharding ---------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n), 0 <= i < n: the slice of configs i, i+n, i+2n, ..."""
    index, slash, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not slash or not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return shard


def check_shard(shard: object) -> tuple[int, int] | None:
    """``shard`` as (i, n) with 0 <= i < n, or None; ValueError naming it otherwise (a (3, 2) measured shard 1's
    configs, which a merge would then hold twice)."""
    if shard is None:
        return None
    if not (isinstance(shard, tuple) and len(shard) == 2 and all(is_whole(v) for v in shard)
            and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard={shard!r}: expected (i, n) with 0 <= i < n, e.g. (0, 4)")
    return shard


def shard_configs(configs: list[Config], shard: tuple[int, int] | None) -> list[tuple[int, Config]]:
    """(index in the whole sweep, config) of one shard; round-robin spreads sizes evenly."""
    indexed = list(enumerate(configs))
    if shard is None:
        return indexed
    index, count = shard
    return indexed[index::count]


def progress_bar(total: int | None, enabled: bool | None, desc: str = "sweep") -> tqdm:
    """A bar of rows on stderr (``enabled`` None: only on a terminal)."""
    enabled = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, disable=not enabled, unit="row", desc=desc, file=sys.stderr, dynamic_ncols=True)


# Runs in a row that must die measuring one config before a resume records it as a crash instead of measuring
# it again: once may be a preempted job's kill, twice is the row.
DEATHS_TO_CRASH = 2
DIED_MEASURING = (f"the sweep's process died {DEATHS_TO_CRASH} times while measuring this row, before recording it "
                  f"(a segfault or abort in a library, the OOM killer, or a kill from outside: SIGKILL, a preempted "
                  f"job); --isolate measures each row in a child process, and --resume --retry failed tries it again")


Todo = list[tuple[int, int, Config]]  # (index in the whole sweep, round, config), in the order measured


def _measurement(config: Config, number: int, spec: SweepSpec) -> str:
    return measurement_key(config.key, number if spec.rounds > 1 else None)


def _record_the_row_that_killed(log: RowLog, todo: Todo, spec: SweepSpec, total: int, rows: list[dict[str, Any]],
                                on_row: Callable[[dict[str, Any]], None] | None) -> Todo:
    """``todo`` without the config the log's last runs died measuring (:attr:`RowLog.died_measuring`) if they
    died on it :data:`DEATHS_TO_CRASH` times: its ``crash`` row is logged and added to ``rows``, and one for each of
    its other rounds still to measure, saying it was not measured (it would kill the process in every one)."""
    if log.died_measuring is None or log.died_measuring[1] < DEATHS_TO_CRASH:
        return todo
    died_in = log.died_measuring[0]
    killer = next((config for _, number, config in todo if _measurement(config, number, spec) == died_in), None)
    if killer is None:
        return todo
    for index, number, config in todo:
        if config == killer:
            message = (DIED_MEASURING if _measurement(config, number, spec) == died_in else
                       f"not measured: the config killed the sweep's process {DEATHS_TO_CRASH} times in another round")
            row = failed_row(config, spec, index, total, "crash", message, number)
            log.write(row)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return [(index, number, config) for index, number, config in todo if config != killer]


def run_sweep(
    spec: SweepSpec,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    progress: bool | None = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    isolate: bool = False,
    row_timeout: float | None = None,
    allow_mixed: bool = False,
    retry: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Measure every config of ``spec`` (or of one ``shard``), once per round, and return the rows as a DataFrame,
    one per config (its rounds combined, :func:`upbench.rounds.combine_rounds`).

    With ``out``, each row is appended to that CSV as it finishes; an existing file is refused
    unless ``resume``, which skips the configs it already holds (whatever their status, but see
    ``retry``) and returns
    its old rows with the new. ``progress``: a bar with ETA on stderr (None: only on a terminal).
    ``on_row`` sees every new row after it is logged. ``isolate``: each row in a worker process
    (:mod:`upbench.isolate`), so a row that crashes it, or outlives ``row_timeout`` seconds, is
    recorded ``crash`` / ``timeout`` and the sweep goes on. A resume is refused when the log's rows were
    measured with another device, torch, CUDA, thread count or commit, unless ``allow_mixed``;
    ``retry`` ("failed", "suspect") measures again the configs whose logged row failed (error, crash,
    timeout) or whose timing is suspect: the new row is appended and replaces the old one in what is
    returned and exported.
    """
    check_row_timeout(row_timeout, isolate)
    settle_allocator()  # an unknown UPBENCH_ALLOCATOR is refused before the log is opened
    shard = check_shard(shard)
    retry = check_resume_retry(retry, resume)
    if out is not None:
        check_log_name(out)
    for device in spec.devices:
        check_device(device)
    configs = spec.expand()
    todo = measurement_order(shard_configs(configs, shard), spec.rounds, spec.seed)
    # Built (and its arguments checked) before the log is opened; its worker starts with the first row.
    isolated = IsolatedMeasurer(spec, row_timeout, any(c.impl == "compiled" for _, _, c in todo)) if isolate else None
    columns = spec.columns()
    log = None
    if out is not None:
        out = Path(out)
        if out.exists() and out.stat().st_size > 0 and not resume:
            raise FileExistsError(f"{out} exists: resume it (--resume) or choose another output")
        log = RowLog(out, columns)  # locked from here: a second sweep on this file is refused
    rows = []
    try:
        if log is not None:
            if resume:  # the whole log is read and checked before it is changed at all
                done = logged_keys(out, spec, columns, {config.key for config in configs}, allow_mixed, retry)
                todo = [(index, number, config) for index, number, config in todo
                        if _measurement(config, number, spec) not in done]
            log.open()
            if resume:
                if isolated is None:
                    todo = _record_the_row_that_killed(log, todo, spec, len(configs), rows, on_row)
                log.forget_death()
        with progress_bar(len(todo), progress) as bar, ExitStack() as stack:
            if isolated is not None:
                measure = stack.enter_context(isolated).measure
            else:
                def measure(config: Config, index: int, total: int, number: int) -> dict[str, Any]:
                    return measure_config(config, spec, index, total, number)
            for index, number, config in todo:
                bar.set_postfix_str(_measurement(config, number, spec), refresh=False)
                if log is not None and isolated is None:
                    log.begin(_measurement(config, number, spec))
                row = measure(config, index, len(configs), number)
                rows.append(row)
                if log is not None:
                    log.write(row)
                bar.update()
                if on_row is not None:
                    on_row(row)
    finally:
        if log is not None:
            log.close()
    if out is not None:
        return combine_rounds(latest_rows(read_rows(out)))
    # Through CSV text, so an in-memory sweep types its columns exactly as a logged one reads back.
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    text.seek(0)
    return combine_rounds(read_rows(text))
