"""The CSV row log a sweep appends to: one flushed and fsynced line per finished row, so a sweep killed
at any point keeps every finished row; resuming reads back which configs it holds."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping

from .export import read_rows
from .spec import SweepSpec


class RowLog:
    """The CSV a sweep appends its rows to, one flushed and fsynced line per finished row."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns
        fresh = not path.exists() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns)
        if fresh:
            self.writer.writeheader()
            self._sync()

    def _sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def write(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow(row)
        self._sync()

    def close(self) -> None:
        self.file.close()


def drop_torn_line(path: Path) -> None:
    """Cut a last line a kill left half-written (every complete line ends with a newline)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def logged_keys(path: Path, spec: SweepSpec, columns: list[str]) -> set[str]:
    """Keys of the rows already in ``path``, after checking they belong to ``spec``."""
    drop_torn_line(path)
    if path.stat().st_size == 0:
        return set()
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), [])
    if header != columns:
        raise ValueError(f"{path}: its columns differ from this sweep's (another spec or upbench version); "
                         f"refusing to resume into it")
    logged = read_rows(path)
    others = sorted(set(logged["spec_id"]) - {spec.spec_id})
    if others:
        raise ValueError(f"{path}: holds rows of spec {', '.join(others)}, not of this spec {spec.spec_id}; "
                         f"refusing to resume into it")
    return set(logged["key"])
