"""How values a user gives are read and checked: counts (channels, shards, a knob's value...), comma lists and
input sizes. A leaf: the sweep spec and the command line's argument parsing read them alike."""
from __future__ import annotations

from typing import Any, Iterable, Mapping


# Every count and seed ends in torch, whose sizes and seeds are 64-bit: a larger one failed deep inside a row.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def is_whole(value: object, least: int | None = None) -> bool:
    """Whether ``value`` is an int that fits 64 bits, and at least ``least`` where given. A bool is none: True is
    1 to Python, but ``--shards true`` or ``channels=True`` is a mistake, not a count."""
    return (isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
            and (least is None or value >= least))


def is_seconds(value: object) -> bool:
    """Whether ``value`` is a positive, finite number of seconds (NaN and inf time forever; a bool is none)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def beyond_64_bits(value: object, least: int | None = None) -> bool:
    """Whether ``value`` is an int that :func:`is_whole` refuses only for its width: what a message says besides."""
    return (isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX
            and is_whole(max(min(value, INT64_MAX), INT64_MIN), least))


def digits_as_int(value: object) -> object:
    """A string of ASCII digits (a sweep file's "16") as its int, anything else as it is: '²' and '４' are no
    digits to a user, though str.isdigit says so."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return value


def comma_items(value: Any) -> tuple:
    """A sweep file's or flag's list: "a, b" -> ("a", "b") (an empty item is an error, not dropped), a list as a
    tuple, one value as a tuple of it."""
    if isinstance(value, str):
        parts = tuple(part.strip() for part in value.split(","))
        if not all(parts):
            raise ValueError(f"empty item in the comma list {value!r}")
        return parts
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return tuple(value)
    return (value,)


def positive_ints(axis: str, values: Iterable[Any]) -> tuple[int, ...]:
    """``values`` as ints, each at least 1 ("16" reads as 16); ValueError naming ``axis`` for any other."""
    result = []
    for value in map(digits_as_int, values):
        if not is_whole(value, 1):
            raise ValueError(f"{axis}: {value!r} is not a positive integer"
                             + (" (more than torch's 64 bits hold)" if beyond_64_bits(value, 1) else ""))
        result.append(value)
    return tuple(result)


def parse_size(value: Any) -> tuple[int, int]:
    """One input size, H then W, as sweep files and flags write it: 16 -> (16, 16); "32x48" or [32, 48] ->
    (32, 48). ValueError for anything else."""
    if isinstance(value, str):
        h, x, w = value.lower().partition("x")
        pair: tuple = (h, w if x else h)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = tuple(value)
    else:
        pair = (value, value)
    return positive_ints("size", pair)  # type: ignore[return-value]
