"""The files a sweep's rows go to beside their row log: Markdown, JSON, PNG and LaTeX (:data:`FORMAT_SUFFIXES`),
their formats and paths checked before anything is measured."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .files import check_writable, write_whole
from .plot import plot
from .reports import to_latex, to_markdown
from .rows import FORMAT_SUFFIXES, REPORT_FORMATS, write_json
from .views import check_viewable


def check_formats(formats: Iterable[str]) -> list[str]:
    """``formats`` if every one is known (checked before a sweep, not after it)."""
    formats = list(formats)
    unknown = [f for f in formats if f not in REPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}: expected some of {', '.join(REPORT_FORMATS)}")
    return formats


def check_output_paths(csv_path: Path, formats: Iterable[str], given: str | None, appends: bool = False) -> None:
    """The row log and the reports :func:`write_outputs` puts beside it, checked writable before anything is
    measured: a report that cannot be written lost a long sweep's summary at its end. ``given``: the --out
    as typed (None for the default path). ``appends``: the command appends rows to the log (sweep, compare),
    so where the log is absent or empty (a fresh run, or a --resume of no log) a report already beside it
    belongs to no rows of it (a file of the user's, or of a log deleted since): refused, not overwritten at
    the end."""
    named = f"{csv_path} (the default)" if given is None else given
    reports = [csv_path.with_suffix(FORMAT_SUFFIXES[fmt]) for fmt in check_formats(formats)]
    starts_afresh = appends and not (csv_path.exists() and csv_path.stat().st_size > 0)
    for report in reports if starts_afresh else []:
        if report.is_file():  # a folder in its place is named by check_writable
            raise FileExistsError(f"{report} exists beside the new row log {csv_path}, whose report would overwrite "
                                  f"it: move it, choose another --out, or leave its format out of --formats")
    for path in [csv_path, *reports]:
        check_writable(path, "--out", named)


def write_outputs(
    rows: pd.DataFrame, csv_path: str | Path, formats: Iterable[str] = REPORT_FORMATS,
    sections: Sequence[tuple[str, pd.DataFrame]] = (),
) -> list[Path]:
    """Markdown, JSON, PNG and LaTeX beside ``csv_path`` (same stem, :data:`FORMAT_SUFFIXES`), as ``formats`` asks."""
    csv_path = Path(csv_path)
    rows = check_viewable(rows, str(csv_path))
    written = []
    writers = {"markdown": lambda temporary: temporary.write_text(to_markdown(rows, sections)),
               "json": lambda temporary: write_json(rows, temporary),
               "latex": lambda temporary: temporary.write_text(to_latex(rows)),
               "png": lambda temporary: plot(rows, temporary)}
    for fmt in check_formats(formats):
        written.append(write_whole(csv_path.with_suffix(FORMAT_SUFFIXES[fmt]), writers[fmt]))
    return written
