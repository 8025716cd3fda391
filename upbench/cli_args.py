"""Argument parsing shared by the subcommands: comma lists, sizes, output formats."""
from __future__ import annotations

import argparse

FORMATS = ("markdown", "csv", "json")


def int_list(text: str) -> list[int]:
    """'16,64,256' -> [16, 64, 256]."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None


def str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def size_list(text: str) -> list[tuple[int, int]]:
    """'16,32x48' -> [(16, 16), (32, 48)]: square sizes or explicit HxW."""
    sizes = []
    for part in str_list(text):
        try:
            h, _, w = part.lower().partition("x")
            sizes.append((int(h), int(w or h)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected sizes like 16 or 32x48, got {part!r}") from None
    if any(h < 1 or w < 1 for h, w in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return sizes
