"""The CSV row log a sweep appends to: one flushed and fsynced line per finished row, so a sweep killed
at any point keeps every finished row; a resume reads it back (:mod:`upbench.resume` decides what it keeps).

A log is locked (``<log>.lock``, with filelock) while a sweep writes it, so two sweeps resuming the same
file cannot both append. A log is read back whole and checked line by line before anything is appended
to it: a corrupted line is named by file and line number.
"""
from __future__ import annotations

import csv
from datetime import datetime
import io
import os
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import pandas as pd
from filelock import FileLock, Timeout

from .files import names_a_stream, prepare_parent
from .rows import (ENVIRONMENT_COLUMNS, FORMAT_SUFFIXES, ROW_STATUSES, SETUP_JOIN, column_difference, is_per_round,
                   is_text_column, latest_rows, newer_environment, read_rows)
from .vocabulary import ENVIRONMENT_FIELDS

# Columns every upbench log has, whatever its spec: what merge and resume rely on.
REQUIRED_COLUMNS = ("spec_id", "config_index", "config_total", "key", "status")
# A report named as --out (``.markdown`` too, the long name of a Markdown file) names the log beside it.
REPORT_SUFFIXES = (*FORMAT_SUFFIXES.values(), ".markdown")


def log_path(out: str | Path) -> Path:
    """The row log for ``--out``: always a .csv. ``x.md``, ``x.json``, ``x.tex`` or ``x.png`` names a report, so
    the log is ``x.csv`` beside it (a report never overwrites the rows); any other name gets ``.csv`` appended."""
    if str(out).endswith(("/", os.sep)) or Path(out).is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name, e.g. {Path(out) / 'sweep.csv'}")
    path = Path(out)
    if names_a_stream(path):  # /dev/stdout.csv would be a file made in /dev
        raise ValueError(f"--out {out} is a device or pipe; a row log is a file: give a file name, e.g. sweep.csv")
    if path.suffix.lower() == ".csv":
        return path
    if path.suffix.lower() in REPORT_SUFFIXES:
        return path.with_suffix(".csv")
    return path.with_name(path.name + ".csv")


def check_log_name(out: str | Path) -> None:
    """ValueError unless ``out`` can name a row log: not a folder, not a report's name (run_sweep writes the rows
    to exactly ``out``; the command line's --out x.md means x.csv, :func:`log_path`)."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"out={str(out)!r} is a folder; expected the row log's file name, e.g. {path / 'sweep.csv'}")
    if path.suffix.lower() in REPORT_SUFFIXES:
        raise ValueError(f"out={str(out)!r} names a report; expected the row log's .csv ({path.with_suffix('.csv')}), "
                         f"beside which upbench.export.write_outputs puts the reports")


def lock_file(path: str | Path) -> Path:
    """The lock a sweep holds while it writes the log at ``path``: beside the file itself, so a second sweep
    reaching it through a symbolic link (or another spelling of the path) meets the same lock."""
    real = Path(path).resolve()
    return real.with_name(real.name + ".lock")


def check_not_being_written(path: str | Path) -> None:
    """ValueError where a sweep is writing the log at ``path`` (it holds the log's lock)."""
    if not lock_file(path).exists():  # a sweep writing the log holds its lock file; none made here for nothing
        return
    lock = FileLock(lock_file(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(f"{path} is being written by a sweep (it holds {lock.lock_file}); wait for it to finish "
                         f"or choose another --out") from None
    except OSError:  # a folder we cannot write: whoever writes there says so
        return
    lock.release()


class RowLog:
    """The CSV a sweep appends its rows to, locked against other writers, one fsynced line per row.

    Where rows are measured in the sweep's own process, :meth:`begin` names the config being measured in
    ``<log>.measuring`` until its row is written. A process that dies inside a row (a segfault in a
    library, the OOM killer, but also a preempted job's kill) leaves that file: the next run on the log
    finds the config, and how many runs in a row died measuring it, in :attr:`died_measuring`, so a
    resume can record a row that keeps killing its process as a crash instead of dying on it forever.

    Making one takes the lock and leaves the file alone; :meth:`open` starts appending once the log is
    accepted, so a resume refused by its checks leaves the log byte for byte as it was.
    """

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns
        self.measuring = path.with_name(path.name + ".measuring")
        self.died_measuring: tuple[str, int] | None = None  # (config key, runs that died measuring it)
        self.marking = False  # whether this run's mark is in <log>.measuring
        prepare_parent(path)
        self.lock = FileLock(lock_file(path))
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            if not Path(self.lock.lock_file).exists():  # filelock retries a lock file it could not create
                raise ValueError(f"cannot write {path}: cannot create its lock file {self.lock.lock_file}") from None
            raise ValueError(f"{path} is being written by another sweep (it holds {self.lock.lock_file}); "
                             f"wait for it to finish or choose another --out") from None
        except OSError as error:
            raise ValueError(f"cannot write {path}: cannot create its lock file {self.lock.lock_file}: "
                             f"{error.strerror}") from None
        self.file: IO[str] | None = None

    def open(self) -> None:
        """Start appending, once the log is accepted (a resume's checks passed): cut a last line a kill left
        half-written, write a fresh log's header, read the mark of a row the last run died measuring. Until
        then the file is as it was: a refused resume changes nothing."""
        path = self.path
        try:
            if path.exists():  # under the lock: a kill mid-line (even mid-header) leaves a line to cut
                drop_torn_line(path)
            fresh = not path.exists() or path.stat().st_size == 0
            if self.measuring.exists() and fresh:
                self.measuring.unlink()  # left by a run whose log is gone
            elif self.measuring.exists():  # kept until a resume accepts the log (forget_death)
                key, _, earlier = self.measuring.read_text().strip().partition("\t")
                if key:
                    self.died_measuring = (key, (int(earlier) if earlier.isdigit() else 0) + 1)
            self.file = open(path, "a", newline="")
        except OSError as error:
            raise ValueError(f"cannot write the row log {path}: {error.strerror}") from None
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns)
        if fresh:
            self.writer.writeheader()
            self._sync()

    def _sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def forget_death(self) -> None:
        """Drop the mark of the row the last run died measuring, once a resume has accepted the log (and kept
        :attr:`died_measuring` to act on): a refused resume must not reset the count of deaths."""
        self.measuring.unlink(missing_ok=True)

    def begin(self, key: str) -> None:
        """Mark ``key`` as being measured in this process, until its row is written."""
        died_before = self.died_measuring[1] if self.died_measuring and self.died_measuring[0] == key else 0
        self.measuring.write_text(f"{key}\t{died_before}\n")
        self.marking = True

    def write(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow(row)
        self._sync()
        if self.marking:
            self.measuring.unlink(missing_ok=True)
            self.marking = False

    def close(self) -> None:
        """Also after an exception: a row stopped by Ctrl-C or an error did not kill the process."""
        if self.marking:
            self.measuring.unlink(missing_ok=True)
        if self.file is not None:
            self.file.close()
        self.lock.release()


def _whole_row(line: bytes, header: bytes) -> bool:
    """Whether ``line`` is a whole row that lacks only its newline: as many fields as the header, down to a
    whole timestamp, the last column, as rows write it (a cut inside it leaves a prefix such as 2026-11-22,
    which parses as a date but does not read back the same)."""
    try:
        fields = next(csv.reader([line.decode()]), [])
        columns = next(csv.reader([header.decode()]), [])
        stamp = fields[-1].strip()
        whole_stamp = datetime.fromisoformat(stamp).isoformat(timespec="seconds") == stamp
    except (UnicodeDecodeError, csv.Error, ValueError, IndexError):
        return False
    return whole_stamp and len(fields) == len(columns) and columns[-1:] == [ENVIRONMENT_FIELDS[-1]]


def _torn_line_start(data: bytes) -> int | None:
    """Where the last line of a log's bytes starts if a kill left it half-written (every complete line ends
    with a newline), else None: a whole row that lacks only its newline (a file edited by hand) is whole."""
    if not data or data.endswith(b"\n"):
        return None
    start = data.rfind(b"\n") + 1
    return None if start and _whole_row(data[start:], data[:data.find(b"\n")]) else start


def drop_torn_line(path: Path) -> None:
    """Cut a last line a kill left half-written; give a whole row that lacks only its newline its newline."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    start = _torn_line_start(data)
    with open(path, "r+b") as handle:
        if start is None:
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")
        else:
            handle.truncate(start)


def holds_nothing(path: str | Path) -> bool:
    """Whether the log at ``path`` is empty or holds only a header a kill cut (a shard killed at its start): a
    first line without its newline that begins as every log's header does, not another program's one line."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    first = REQUIRED_COLUMNS[0].encode()  # every log's header begins with it (SweepSpec.columns)
    torn_header = _torn_line_start(data) == 0 and (data.startswith(first) or first.startswith(data))
    return not data or torn_header


def is_row_log(path: str | Path) -> bool:
    """Whether ``path`` is a file whose first line is a row log's header (it names every required column)."""
    if not Path(path).is_file():  # a pipe's first line (/dev/stdout read back) would wait for ever
        return False
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 16).decode(errors="replace")
    except OSError:
        return False
    columns = next(csv.reader([first]), [])
    return bool(columns) and columns[0] == REQUIRED_COLUMNS[0] and set(REQUIRED_COLUMNS) <= set(columns)


def _is_count(text: str) -> bool:
    return text.isascii() and text.isdigit()


FLAG_COLUMNS = ("tf32",)  # True / False


def _is_number(text: str, column: str) -> bool:
    """A number as pandas reads one (float() also takes '1_000' and ' 5 ', which it reads as text), or a flag
    in a :data:`FLAG_COLUMNS` column; in an environment column, the numbers of a config's rounds measured with
    different setups ('1 / 2' threads: upbench.rounds)."""
    if column in FLAG_COLUMNS:
        return text in ("True", "False")
    if column in ENVIRONMENT_COLUMNS and SETUP_JOIN in text:
        return all(_is_number(part, "") for part in text.split(SETUP_JOIN))
    if "_" in text or text != text.strip():
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_log(path: Path, columns: list[str] | None = None, text: str | None = None) -> list[str]:
    """The header of the log at ``path`` after checking every line, or ValueError naming the file and line.

    ``columns``: the exact header expected (resuming); without it, any header with the upbench columns.
    ``text``: the log's content, where it was read already.
    """
    try:
        handle = open(path, newline="") if text is None else io.StringIO(text, newline="")
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, [])
            absent = [c for c in REQUIRED_COLUMNS if c not in header]
            if absent:
                raise ValueError(f"{path}: not an upbench sweep log (no {', '.join(absent)} column)")
            if columns is not None and header != columns:
                differ = column_difference(header, columns, "the log", "this sweep")
                why = ("a sweep of several rounds (--rounds above 1) has the columns round and rounds, one of a "
                       "single round neither" if {"round", "rounds"} & set(header).symmetric_difference(columns) else
                       f"the log was written by an upbench before the {', '.join(newer)} column: finish it with that "
                       f"upbench, or start a new log" if (newer := newer_environment(header, columns)) else
                       "count columns come from --policy, in its order, and knob columns from the operators, so --ops "
                       "naming other operators than the log's changes them, as does a --plugin left out, and so does "
                       "another upbench version")
                raise ValueError(f"{path}: its columns differ from this sweep's ({differ}: {why}); refusing to resume "
                                 f"into it")
            position = {c: header.index(c) for c in REQUIRED_COLUMNS}
            numeric = [(i, c) for i, c in enumerate(header) if not is_text_column(c)]
            for record in reader:
                where = f"{path}, line {reader.line_num}"
                if len(record) != len(header):
                    raise ValueError(f"{where}: {len(record)} fields where the header has {len(header)}: "
                                     f"a corrupted line (repair or delete it)")
                for column in ("config_index", "config_total"):
                    if not _is_count(record[position[column]]):
                        raise ValueError(f"{where}: {column} {record[position[column]]!r} is not a count: "
                                         f"a corrupted line (repair or delete it)")
                if not record[position["spec_id"]] or not record[position["key"]]:
                    raise ValueError(f"{where}: no spec_id or key: a corrupted line (repair or delete it)")
                if record[position["status"]] not in ROW_STATUSES:  # a resume took an unknown one for done
                    raise ValueError(f"{where}: status {record[position['status']]!r} is none of "
                                     f"{', '.join(ROW_STATUSES)}: a corrupted line (repair or delete it)")
                for i, column in numeric:  # one bad cell made every later reader fail, or misread the column
                    if record[i] and not _is_number(record[i], column):
                        raise ValueError(f"{where}: {column} {record[i]!r} is not a number: a corrupted line "
                                         f"(repair or delete it)")
        except csv.Error as error:
            raise ValueError(f"{path}, line {reader.line_num}: {error}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a text CSV file") from None
    return header


def whole_text(path: str | Path) -> tuple[str, int | None]:
    """A log's text without a last line a kill left half-written (as ``--resume`` cuts it), and where that line
    started (None: no torn line). The file is not changed."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    start = _torn_line_start(data)
    try:
        return (data[:start].decode() if start is not None else data.decode()), start
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV file") from None


def read_log_noting(path: str | Path) -> tuple[pd.DataFrame, str | None]:
    """The rows of an upbench CSV log, every line checked first (see :func:`check_log`), the last row of a
    config measured again replacing its earlier one; and what was left out, if anything: a last line a kill
    left half-written, as ``--resume`` cuts it. The file is not changed."""
    text, start = whole_text(path)
    check_log(Path(path), text=text)
    lines = text.count("\n")  # the torn line, if any, is the one after the last newline
    note = None if start is None else (f"{path}: line {lines + 1} was cut mid-write (a killed sweep); read without "
                                       f"it (--resume cuts it and measures its config again)")
    return latest_rows(read_rows(io.StringIO(text, newline=""))), note


def read_log(path: str | Path) -> pd.DataFrame:
    """:func:`read_log_noting`'s rows."""
    return read_log_noting(path)[0]


def every_row(path: str | Path) -> pd.DataFrame:
    """Every row of a log, a config measured again in each of its rows (:func:`read_log_noting` keeps the last)."""
    text, _ = whole_text(path)
    check_log(Path(path), text=text)
    return read_rows(io.StringIO(text, newline=""))


# A row as one measurement: its config, when (to the second) and what it measured, which two runs within one
# second tell apart. A config's rounds combined (a report's CSV of a sweep of several rounds, its ``round`` empty)
# show the median of the rounds, measured by none of them: such a row is one of its rounds' by its time alone.
ROW_IDENTITY = ("key", "timestamp", "latency_median_ms", "peak_mem_bytes")
COMBINED_ROW_IDENTITY = ("key", "timestamp")


def _row_ids(rows: pd.DataFrame, identity: Sequence[str] = ROW_IDENTITY) -> set[tuple[str, ...]]:
    """Each row's :data:`ROW_IDENTITY`, numbers compared as numbers: a column that also holds a blank reads back as
    floats, so 73728 in one log is 73728.0 in another."""
    def cells(column: str) -> pd.Series:
        if is_text_column(column):
            return rows[column].astype(str)
        return pd.to_numeric(rows[column], errors="coerce").astype(float).map(repr)
    return set(zip(*(cells(column) for column in identity if column in rows)))


def check_replaceable(out: Path, sources: list[Path]) -> None:
    """ValueError where writing the merge of the logs ``sources`` to ``out`` would lose rows: a sweep is writing
    ``out``, or ``out`` holds a row (a config measured at one time) that none of ``sources`` holds, so it is no
    earlier merge of them but another run's log (or not a log at all)."""
    check_not_being_written(out)
    if not out.is_file() or holds_nothing(out):
        return
    try:
        held = every_row(out)
    except ValueError as error:
        raise ValueError(f"{out} exists and is not a row log ({error}); writing the merge would replace it: choose "
                         f"another --out") from None
    combined = "round" in held and not held.empty and not is_per_round(held)  # a report's CSV of rounds
    identity = COMBINED_ROW_IDENTITY if combined else ROW_IDENTITY
    merged = set().union(*(_row_ids(every_row(path), identity) for path in sources
                           if path.is_file() and not holds_nothing(path)))
    lost = _row_ids(held, identity) - merged
    if lost:
        example = sorted(lost)[0]
        raise ValueError(f"{out} holds {len(lost)} row(s) that none of the logs merged into it holds (e.g. "
                         f"{example[0]} measured {example[1]}): it is another run's log, not an earlier merge of "
                         f"these; writing the merge would lose them: choose another --out")
