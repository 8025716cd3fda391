"""Argument parsing shared by the subcommands: comma lists, sizes, output formats."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .files import check_writable
from .checks import comma_items, parse_size

# What a command's --format prints a table as: render_table writes the first three; latex is each
# report's own (upbench.latex), so only the commands that render one offer it.
PLAIN_FORMATS = ("markdown", "csv", "json")
FORMATS = (*PLAIN_FORMATS, "latex")


def str_list(text: str) -> list[str]:
    """'a,b' -> ['a', 'b']; '' -> [] (e.g. no formats); an empty item ('a,,b', 'a,') is an error, not dropped."""
    if not text.strip():
        return []
    try:
        return list(comma_items(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def name_list(text: str) -> list[str]:
    """Like :func:`str_list`, but at least one name: an empty --ops would otherwise mean every operator."""
    names = str_list(text)
    if not names:
        raise argparse.ArgumentTypeError("expected at least one name (leave the flag out for all)")
    return names


def int_list(text: str) -> list[int]:
    """'16,64,256' -> [16, 64, 256]."""
    try:
        return [int(part) for part in str_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None


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


def _integer_at_least(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = lowest - 1
    if value < lowest:
        raise argparse.ArgumentTypeError(f"expected an integer >= {lowest}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _integer_at_least(text, 0)


def render_table(table: pd.DataFrame, fmt: str, **markdown_options: Any) -> str:
    """A report table as csv, json (records) or Markdown, missing values blank."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=1)
    return table.astype(object).where(table.notna(), "").to_markdown(index=False, **markdown_options)


def check_out(out: str | os.PathLike | None, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """A command's --out, checked before it computes anything (see :func:`upbench.files.check_writable`): never
    one of the files the command reads (:func:`check_not_an_input`)."""
    if not out:
        return
    check_not_an_input(out, inputs)
    check_writable(out)


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
            with open(out, "w") as handle:
                handle.write(text + "\n")
        except OSError as error:  # a full disk (or /dev/full) fails on the write, not the open
            raise ValueError(f"--out {out}: cannot write {out}: {error.strerror or error}") from None
    else:
        print(text)


def knob_pair(text: str) -> tuple[str, list[int]]:
    """'encoder_kernel=3,5' -> ('encoder_kernel', [3, 5])."""
    name, equals, values = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2, got {text!r}")
    return name.strip(), int_list(values)
