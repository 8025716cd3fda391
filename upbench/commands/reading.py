"""Reading the rows a command re-renders or compares: a sweep's CSV log or its JSON."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from ..rowlog import holds_nothing, read_log_noting
from ..rows import read_json_rows
from ..views import check_viewable


def read_any(path: Path, command: str = "report", combine: bool = True) -> pd.DataFrame:
    """The rows of a sweep's CSV log or JSON, one per config (its rounds combined, unless not ``combine``), checked
    to hold what the report renders; a warning that names ``command`` if a kill cut the log's last line."""
    if not path.is_file():
        raise ValueError(f"{path}: {'a folder, not a file of rows' if path.is_dir() else 'no such file'}")
    if path.suffix.lower() == ".json":
        try:
            rows = read_json_rows(path)
        except ValueError as error:
            raise ValueError(f"{path}: not a JSON list of rows ({error})") from None
    elif holds_nothing(path):  # as merge says it: a log killed before its first row is no foreign file
        raise ValueError(f"{path}: holds no rows (a sweep killed before its first row?)")
    else:
        rows, note = read_log_noting(path)
        if note:
            print(f"{command}: warning: {note}", file=sys.stderr)
    if rows.empty:
        raise ValueError(f"{path}: holds no rows")
    return check_viewable(rows, str(path), combine)
