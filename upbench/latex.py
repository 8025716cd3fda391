"""Paper-ready LaTeX tables (booktabs), one operator per row as in the SAPA paper's Tables 2 and 3.

Only formatting lives here: a DataFrame and the kind of each column in, LaTeX out. Kinds:

* ``macs`` / ``params``: counts, scaled to one unit per kind (G = 1e9, M = 1e6, K = 1e3, whichever keeps
  the kind's largest value at or above 1) and rounded to :data:`DECIMALS` decimals; the unit goes in
  the header and the rounding in the note under the table.
* ``G`` / ``M``: counts already in that unit (rounded the same way).
* ``ms``: latency in milliseconds; ``mib``: memory in MiB; ``int``; ``text`` (escaped).

Columns may be a two-level MultiIndex (group, column): groups become ``\\multicolumn`` headers with
``\\cmidrule`` underneath. Missing values print as ``--``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

DECIMALS = 2
MS_DECIMALS = 2
MIB_DECIMALS = 1
UNITS = (("G", 1e9), ("M", 1e6), ("K", 1e3))
COUNT_KINDS = ("macs", "params")
KINDS = (*COUNT_KINDS, "G", "M", "ms", "mib", "int", "text")
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: object) -> str:
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def count_unit(values: Sequence[object]) -> tuple[str, float]:
    """The unit that keeps the largest magnitude at or above 1: ('G', 1e9), ('M', 1e6), ('K', 1e3) or ('', 1)."""
    largest = max((abs(float(v)) for v in values if not _missing(v)), default=0.0)
    return next(((letter, scale) for letter, scale in UNITS if largest >= scale), ("", 1.0))


def _cell(value: object, kind: str, scale: float) -> str:
    if _missing(value):
        return "--"
    if kind == "text":
        return escape(value)
    if kind == "int":
        return f"{int(value):,}".replace(",", "{,}")
    decimals = {"ms": MS_DECIMALS, "mib": MIB_DECIMALS}.get(kind, DECIMALS)
    return f"{float(value) / scale:.{decimals}f}"


def _header(name: str, kind: str, unit: str) -> str:
    suffix = {"ms": " (ms)", "mib": " (MiB)", "G": " (G)", "M": " (M)"}.get(kind, f" ({unit})" if unit else "")
    return escape(name) + suffix


def rounding_note(kinds: Mapping[str, str]) -> str:
    """What the numbers' units and rounding are, for the kinds used."""
    used = set(kinds.values())
    parts = []
    if used & {*COUNT_KINDS, "G", "M"}:
        parts.append(f"MACs and parameters in G ($10^9$), M ($10^6$) or K ($10^3$) as headed, rounded to {DECIMALS} decimals")
    if "ms" in used:
        parts.append(f"latency in ms (median), {MS_DECIMALS} decimals")
    if "mib" in used:
        parts.append(f"peak memory in MiB, {MIB_DECIMALS} decimal")
    return "; ".join(parts) + "." if parts else ""


def booktabs(table: pd.DataFrame, kinds: Mapping[str, str], caption: str = "", notes: Sequence[str] = ()) -> str:
    """``table`` as a booktabs ``table`` environment. ``kinds`` maps each (last-level) column name to its kind;
    ``notes`` go under the table after the rounding note."""
    names = [c[-1] if isinstance(c, tuple) else c for c in table.columns]
    unknown = sorted({kinds.get(n, "?") for n in names} - set(KINDS))
    if unknown:
        missing = [n for n in names if kinds.get(n) not in KINDS]
        raise ValueError(f"latex table: columns {missing} have no known kind (kinds: {', '.join(KINDS)})")
    units = {kind: count_unit([v for n, col in zip(names, table.columns) if kinds[n] == kind for v in table[col]])
             for kind in COUNT_KINDS}
    scale_of = {kind: units[kind][1] for kind in COUNT_KINDS}
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
            cells.append(rf"\multicolumn{{{width}}}{{c}}{{{escape(group)}}}" if group else "")
            if group:
                rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    headers = [_header(n, kinds[n], units.get(kinds[n], ("", 1))[0]) for n in names]
    lines += [" & ".join(headers) + r" \\", r"\midrule"]
    for record in table.itertuples(index=False):
        cells = [_cell(v, kinds[n], scale_of.get(kinds[n], 1.0)) for n, v in zip(names, record)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    footer = [rounding_note({n: kinds[n] for n in names}), *(escape(n) for n in notes)]
    footer = [line for line in footer if line]
    if footer:
        lines.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(footer) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
