"""Argument parsing shared by the subcommands: comma lists, sizes, output formats."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from .files import check_writable, names_a_stream, write_whole
from .rowlog import check_replaceable, is_row_log
from .checks import beyond_64_bits, comma_items, is_whole, parse_size

# What a command's --format prints a table as: render_table writes the first three; latex is each
# report's own (upbench.latex), so only the commands that render one offer it.
PLAIN_FORMATS = ("markdown", "csv", "json")
TABLE_FORMATS = (*PLAIN_FORMATS, "latex")
# The format an --out file's name asks for (report --out table.tex writes LaTeX without --format latex).
SUFFIX_FORMATS = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".json": "json", ".tex": "latex"}


def add_format_argument(parser: argparse.ArgumentParser, formats: Sequence[str], help: str = "") -> None:
    """--format, one of ``formats``; without it, the one --out's suffix names, else markdown
    (:func:`output_format`, which :func:`upbench.commands.main` applies before the command runs)."""
    parser.add_argument("--format", choices=formats, default=None,
                        help=f"{help + '; ' if help else ''}default: as --out's suffix names it (.md, .csv, .json"
                             f"{', .tex' if 'latex' in formats else ''}), else markdown")
    parser.set_defaults(format_choices=tuple(formats))


def output_format(given: str | None, out: str | None, formats: Sequence[str]) -> str:
    """The format a command writes: ``given``, else the one ``out``'s suffix names, else markdown. ValueError where
    ``out``'s suffix names another format than ``given``, or one the command cannot write: LaTeX in a .json file,
    or Markdown in a .csv one, is read by nothing that opens it."""
    named = SUFFIX_FORMATS.get(Path(out).suffix.lower()) if out else None
    if named is not None and named not in formats:
        raise ValueError(f"--out {out} names a {named} file; this command writes {', '.join(formats)}: choose "
                         f"another --out")
    if given is not None and named is not None and given != named:
        raise ValueError(f"--out {out} names a {named} file, and --format is {given}: give --format {named}, or an "
                         f"--out named for {given}")
    return given or named or "markdown"


def file_name(text: str) -> str:
    """A flag that names a file: an empty one (an unset shell variable) is refused, where it was taken as no flag
    (stdout, or a default path) or as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; expected a file name")
    return text


def spec_path(text: str) -> Path:
    return Path(file_name(text))


class Once(argparse.Action):
    """A flag that may be given once: a second one (two sweep files) would otherwise silently replace the first."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            raise argparse.ArgumentError(self, f"given twice ({getattr(namespace, self.dest)} and {values}); "
                                               f"expected one")
        setattr(namespace, self.dest, values)


def str_list(text: str) -> list[str]:
    """'a,b,a' -> ['a', 'b']: each once; '' -> [] (e.g. no formats); an empty item ('a,,b', 'a,') is an error,
    not dropped."""
    if not text.strip():
        return []
    try:  # each once: an operator, format or device named twice was measured, written or checked twice
        return list(dict.fromkeys(comma_items(text)))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def name_list(text: str) -> list[str]:
    """Like :func:`str_list`, but at least one name: an empty --ops would otherwise mean every operator."""
    names = str_list(text)
    if not names:
        raise argparse.ArgumentTypeError("expected at least one name (leave the flag out for all)")
    return names


def int_list(text: str) -> list[int]:
    """'3,5,-1' -> [3, 5, -1]: integers, whose range the knob they set checks (K, d)."""
    return [_integer_at_least(part, None) for part in str_list(text)]


def size_list(text: str) -> list[tuple[int, int]]:
    """'16,32x48' -> [(16, 16), (32, 48)]: square sizes or explicit HxW ('32x' is an error)."""
    sizes = []
    for part in str_list(text):
        try:
            sizes.append(parse_size(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected sizes like 16 or 32x48 (positive), got {part!r}") from None
    return sizes


def image_size(text: str) -> tuple[int, int]:
    """One size for a flag that takes one: '512' -> (512, 512); '800,1333' or '800x1333' -> (800, 1333), H then W
    (a comma may part them, as there is no list to part)."""
    try:
        return parse_size(text.replace(",", "x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 512, 800,1333 or 800x1333 (H then W), got {text!r}") from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _integer_at_least(text: str, lowest: int | None) -> int:
    try:
        value = int(text) if text.strip().isascii() else None
    except ValueError:
        value = None
    if not is_whole(value, lowest):
        expected = "an integer" if lowest is None else f"an integer >= {lowest}"
        wide = " (more than torch's 64 bits hold)" if beyond_64_bits(value, lowest) else ""
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}{wide}")
    return value  # type: ignore[return-value]


def positive_int(text: str) -> int:
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _integer_at_least(text, 0)


def integer(text: str) -> int:
    """Any integer torch takes (a seed): 64 bits."""
    return _integer_at_least(text, None)


def positive_int_list(text: str) -> list[int]:
    """'16,64,256' -> [16, 64, 256], each at least 1 (channels, batch sizes)."""
    return [_integer_at_least(part, 1) for part in str_list(text)]


def render_table(table: pd.DataFrame, fmt: str, **markdown_options: Any) -> str:
    """A report table as csv, json (records) or Markdown, missing values blank."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=1, double_precision=15)  # as the sweep's own JSON
    return table.astype(object).where(table.notna(), "").to_markdown(index=False, **markdown_options)


def check_out(out: str | os.PathLike | None, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """A command's --out, checked before it computes anything (see :func:`upbench.files.check_writable`): never
    one of the files the command reads (:func:`check_not_an_input`)."""
    if not out:
        return
    check_not_an_input(out, inputs)
    if is_row_log(out) and not _rows_of(out, inputs):  # a report, a table or a diff over a log would lose its rows
        raise ValueError(f"--out {out} is a sweep's row log; writing there would replace its rows: choose another "
                         f"--out")
    check_writable(out)


def _rows_of(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> bool:
    """Whether every row of the log ``out`` is a row of the logs among ``inputs``: a report's CSV of them, written
    before, which a second run may replace."""
    logs = [Path(path) for path in inputs if is_row_log(path)]
    try:
        check_replaceable(Path(out), logs)
    except ValueError:
        return False
    return bool(logs)


def check_not_an_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """ValueError where ``out`` is one of ``inputs``: writing it would overwrite the rows the command reads (a
    report over its own rows)."""
    if Path(out).resolve() in {Path(path).resolve() for path in inputs}:
        raise ValueError(f"--out {out} is one of the inputs: writing it would overwrite the rows it reads")


def emit(text: str, out: str | None) -> None:
    """Write ``text`` to the file ``out`` (its folder created), or to stdout without one."""
    if out:
        check_writable(out)
        try:
            if names_a_stream(out):  # /dev/stdout under a shell's >>: appended to, not truncated
                with open(out, "a") as handle:
                    handle.write(text + "\n")
            else:
                write_whole(out, lambda temporary: temporary.write_text(text + "\n"))
        except OSError as error:  # a full disk (or /dev/full) fails on the write, not the open
            raise ValueError(f"--out {out}: cannot write {out}: {error.strerror or error}") from None
        except ValueError as error:
            raise ValueError(f"--out {out}: {error}") from None
    else:
        print(text)


def knob_pair(text: str) -> tuple[str, list[int]]:
    """'encoder_kernel=3,5' -> ('encoder_kernel', [3, 5])."""
    name, equals, values = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2, got {text!r}")
    return name.strip(), int_list(values)
