"""Paper-ready LaTeX tables (booktabs), one operator per row as in the SAPA paper's Tables 2 and 3.

Only formatting lives here: a DataFrame and the kind of each column in, LaTeX out. Kinds:

* ``macs`` / ``params``: counts, scaled to one unit per kind (G = 1e9, M = 1e6, k = 1e3: the largest that keeps
  the kind's largest value at or above 1 and its smallest non-zero one at two significant digits within
  :data:`MAX_DECIMALS`); the unit goes in the header. An exact zero prints 0.
* ``G`` / ``M``: counts already in that unit.
* ``ms``: latency in milliseconds; ``mib``: memory in MiB; ``int``; ``text`` (escaped).

Each numeric kind is rounded to one number of decimals throughout the table: at least its least
(:data:`LEAST_DECIMALS`), more where its smallest non-zero value would otherwise keep fewer than
:data:`SIGNIFICANT` significant digits (17,472 and 8,224 params print 0.017 and 0.0082 M, not 0.02 and
0.01), at most :data:`MAX_DECIMALS`; the note under the table says which. A kind of counts
(:data:`WHOLE_KINDS`) whose values are all whole numbers in their unit prints none: 72 params, not 72.00.

Columns may be a two-level MultiIndex (group, column): groups become ``\\multicolumn`` headers with
``\\cmidrule`` underneath. Missing values print as ``--``; ``marked`` cells carry a dagger, which the
caller's notes explain.
"""
from __future__ import annotations

import math
import re
from typing import Any, Collection, Mapping, Sequence

import pandas as pd

LEAST_DECIMALS = {"macs": 2, "params": 2, "G": 2, "M": 2, "ms": 2, "mib": 1}
SIGNIFICANT = 2
MAX_DECIMALS = 4
MARK = r"$^\dagger$"
MISSING = "--"  # a missing cell: an en dash in print
UNITS = (("G", 1e9), ("M", 1e6), ("k", 1e3))  # SI k: a "K" header would read as the kernel size K
COUNT_KINDS = ("macs", "params")
WHOLE_KINDS = (*COUNT_KINDS, "G", "M")  # counts, whole numbers by nature; latency and memory are measured
KINDS = (*WHOLE_KINDS, "ms", "mib", "int", "text")
# LaTeX's special characters, and < > | that its default (OT1) font encoding prints as other glyphs (C -> d as C -¿ d)
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "|": r"\textbar{}"}
_ESCAPED_EXPONENT = re.compile(re.escape(_SPECIAL["^"]) + r"(-?\d+)")
_QUOTED = re.compile(r'"([^"]*)"')
_NEXT_HYPHEN = re.compile(r"-(?=-)")


def escape(text: object) -> str:
    """``text`` as LaTeX prints it: special characters escaped, an integer exponent (the notes' 4K^2, 2^-11) set as a
    superscript, where an escaped caret would print the caret itself in a paper; "quoted" words in LaTeX's
    quotes (a straight pair prints two closing ones) and a flag's -- as two hyphens (LaTeX joins them to a dash)."""
    escaped = "".join(_SPECIAL.get(ch, ch) for ch in str(text))
    escaped = _NEXT_HYPHEN.sub("-{}", _QUOTED.sub(r"``\1''", escaped))
    return _ESCAPED_EXPONENT.sub(r"$^{\1}$", escaped)


def _note(note: str) -> str:
    """A note under a table, escaped; a leading :data:`MISSING` and the :data:`MARK` kept, as the cells print them."""
    lead = MISSING if note.startswith(MISSING) else ""
    return lead + escape(note[len(lead):]).replace(escape(MARK), MARK)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def count_unit(values: Sequence[object]) -> tuple[str, float]:
    """The largest unit that keeps the largest magnitude at or above 1 and the smallest non-zero one at
    :data:`SIGNIFICANT` digits within :data:`MAX_DECIMALS`: ('G', 1e9), ('M', 1e6), ('k', 1e3) or ('', 1). (A
    table of 1.14 G and 131,072 MACs is in M: in G the second printed 0.0001, one digit and 24% low.)"""
    magnitudes = [abs(float(v)) for v in values if not _missing(v)]
    largest = max(magnitudes, default=0.0)
    smallest = min((m for m in magnitudes if m), default=None)
    return next(((letter, scale) for letter, scale in UNITS if largest >= scale
                 and (smallest is None or decimals_for([smallest / scale], 0, most=None) <= MAX_DECIMALS)),
                ("", 1.0))


def decimals_for(scaled: Sequence[object], least: int, most: int | None = MAX_DECIMALS) -> int:
    """Decimals that keep :data:`SIGNIFICANT` digits of the smallest non-zero magnitude in ``scaled`` (values
    in their printed unit): at least ``least``, at most ``most`` (None: as many as that takes)."""
    smallest = min((abs(float(v)) for v in scaled if not _missing(v) and float(v) != 0), default=None)
    if smallest is None or not math.isfinite(smallest):
        return least
    needed = max(least, SIGNIFICANT - 1 - math.floor(math.log10(smallest)))
    return needed if most is None else min(needed, most)


def _cell(value: object, kind: str, scale: float, decimals: int) -> str:
    if _missing(value):
        return MISSING
    if kind == "text":
        return escape(value)
    if kind == "int":
        return f"{int(value):,}".replace(",", "{,}")
    if kind in WHOLE_KINDS and float(value) == 0:  # none at all, not a count rounded to nothing
        return "0"
    return f"{float(value) / scale:.{decimals}f}"


def _header(name: str, kind: str, unit: str) -> str:
    suffix = {"ms": " (ms)", "mib": " (MiB)", "G": " (G)", "M": " (M)"}.get(kind, f" ({unit})" if unit else "")
    return escape(name) + suffix


def _plural(decimals: int) -> str:
    return f"{decimals} decimal" + ("" if decimals == 1 else "s")


def _rounded_to(decimals: int) -> str:
    # a count prints no decimals only where all its values are whole numbers in their unit: nothing was rounded
    return "exact" if decimals == 0 else f"to {_plural(decimals)}"


def rounding_note(decimals: Mapping[str, int]) -> str:
    """What the numbers' units and rounding are, for the kinds used: ``decimals`` maps each to its decimals."""
    parts = []
    counts = {kind: places for kind, places in decimals.items() if kind in WHOLE_KINDS}
    if counts:
        places = sorted(set(counts.values()))
        if len(places) == 1:
            rounding = "exact (whole numbers)" if places == [0] else f"rounded to {_plural(places[0])}"
        else:  # one clause per kind: "rounded to MACs to 3 decimals" is what a caption pasted before
            rounding = "rounded, " + ", ".join(
                f"{'MACs' if kind == 'macs' else 'parameters' if kind == 'params' else kind} {_rounded_to(d)}"
                for kind, d in counts.items())
        parts.append(f"MACs and parameters in G ($10^9$), M ($10^6$) or k ($10^3$) as headed, {rounding}")
    if "ms" in decimals:
        parts.append(f"latency in ms (median), {_plural(decimals['ms'])}")
    if "mib" in decimals:
        parts.append(f"peak memory in MiB, {_plural(decimals['mib'])}")
    return "; ".join(parts) + "." if parts else ""


def booktabs(table: pd.DataFrame, kinds: Mapping[str, str], caption: str = "", notes: Sequence[str] = (),
             marked: Collection[tuple[int, Any]] = ()) -> str:
    """``table`` as a booktabs ``table`` environment. ``kinds`` maps each (last-level) column name to its kind;
    ``notes`` go under the table after the rounding note; ``marked``: (row position, column) cells that carry
    :data:`MARK` (the notes say what it means)."""
    names = [c[-1] if isinstance(c, tuple) else c for c in table.columns]
    unknown = sorted({kinds.get(n, "?") for n in names} - set(KINDS))
    if unknown:
        missing = [n for n in names if kinds.get(n) not in KINDS]
        raise ValueError(f"latex table: columns {missing} have no known kind (kinds: {', '.join(KINDS)})")
    units = {kind: count_unit([v for n, col in zip(names, table.columns) if kinds[n] == kind for v in table[col]])
             for kind in COUNT_KINDS}
    scale_of = {kind: units[kind][1] for kind in COUNT_KINDS}
    scaled = {kind: [float(v) / scale_of.get(kind, 1.0) for n, col in zip(names, table.columns) if kinds[n] == kind
                     for v in table[col] if not _missing(v)] for kind in LEAST_DECIMALS}
    decimals = {kind: 0 if kind in WHOLE_KINDS and scaled[kind] and all(v.is_integer() for v in scaled[kind])
                else decimals_for(scaled[kind], least)
                for kind, least in LEAST_DECIMALS.items() if kind in {kinds[n] for n in names}}
    lines = [r"% needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{escape(caption)}}}")
    align = "".join("l" if kinds[n] == "text" else "r" for n in names)
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    if isinstance(table.columns, pd.MultiIndex):
        groups: list[tuple[str, int]] = []
        for column in table.columns:
            group = column[0]
            if groups and groups[-1][0] == group:
                groups[-1] = (group, groups[-1][1] + 1)
            else:
                groups.append((group, 1))
        cells, rules, start = [], [], 1
        for group, width in groups:
            if group:
                cells.append(rf"\multicolumn{{{width}}}{{c}}{{{escape(group)}}}")
                rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            else:  # one empty cell per ungrouped column, so the spanners sit over their own columns
                cells += [""] * width
            start += width
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    headers = [_header(n, kinds[n], units.get(kinds[n], ("", 1))[0]) for n in names]
    lines += [" & ".join(headers) + r" \\", r"\midrule"]
    marked = set(marked)
    for position, record in enumerate(table.itertuples(index=False)):
        cells = [_cell(v, kinds[n], scale_of.get(kinds[n], 1.0), decimals.get(kinds[n], 0))
                 + (MARK if (position, column) in marked else "")
                 for n, column, v in zip(names, table.columns, record)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    footer = [rounding_note(decimals), *map(_note, notes)]
    footer = [line for line in footer if line]
    if footer:
        lines.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(footer) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
