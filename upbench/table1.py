"""The Table 1 validation: paper formula vs exact formula vs fvcore count, per operator and stage, with
FlopCounterMode's count (the ``torch`` policy) beside them as an independent cross-check.

An operator without formulas (a wrapped module, say) gets status ``no formula``: its counts are shown,
never matched. Custom ops no counting rule covers are named in the note ("counted as zero: mylib::op").
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping, Sequence

import pandas as pd
import torch

from .checks import comma_items, parse_size, positive_ints
from .counting import PAPER_HANDLES, Count, count
from .formulas import TOTAL, ZERO, Cost
from .registry import available, get, make
from .rules import CountingRuleError, counted_as_zero_note, is_custom_op, short_op_name
from .spec import check_guide_channels, check_knob, guides_for

COLUMNS = [
    "operator", "stage", "C", "K", "d", "H", "W",
    "paper_macs", "exact_macs", "fvcore_macs", "torch_macs", "paper_params", "exact_params", "fvcore_params",
    "status", "note",
]
MATCH, EXPLAINED, UNEXPLAINED, MISMATCH, NO_FORMULA, ERROR = (
    "match", "explained", "unexplained", "mismatch", "no formula", "error")
# What `table1 --check` fails on: a count that is not the exact formula's, a paper row that differs without a reason.
CHECKED = (MISMATCH, UNEXPLAINED)
VALIDATED = (MATCH, EXPLAINED, *CHECKED)  # rows whose formulas ran and were compared with the counts
# The ops the paper policy gives MACs to: where FlopCounterMode differs, these are the ones to name.
PAPER_COUNTED_OPS = frozenset(short_op_name(op) for op in PAPER_HANDLES)


@dataclass(frozen=True)
class Grid:
    """Which shapes to validate at. Empty K or d means each operator's default; ``knobs`` sweeps any other
    knob (a plugin's own, carafe's encoder_kernel), each with a column of its own in the table; ``Cg`` the
    guide's channels of the operators that read a guide of any width (a Cg column; empty: a guide of C)."""

    C: Sequence[int] = (256,)
    Cg: Sequence[int] = ()
    N: Sequence[int] = (1,)
    K: Sequence[int] = ()
    d: Sequence[int] = ()
    sizes: Sequence[tuple[int, int]] = ((16, 16),)
    knobs: Mapping[str, Sequence[int]] = field(default_factory=dict)

    def swept(self) -> dict[str, Sequence[int]]:
        return {name: values for name, values in (("K", self.K), ("d", self.d), *self.knobs.items()) if values}

    def __post_init__(self) -> None:
        # each value once: a value given twice would validate every point twice; "16" is one C, not C=1 and C=6
        for name in ("C", "Cg", "N"):
            object.__setattr__(self, name, tuple(dict.fromkeys(positive_ints(name, comma_items(getattr(self, name))))))
        for name in ("K", "d"):  # the knobs' own rules check the values
            object.__setattr__(self, name, tuple(dict.fromkeys(comma_items(getattr(self, name)))))
        object.__setattr__(self, "sizes", tuple(dict.fromkeys(parse_size(size) for size in comma_items(self.sizes))))
        object.__setattr__(self, "knobs", {name: tuple(dict.fromkeys(values)) for name, values in self.knobs.items()})
        for name, flag in (("C", "--C"), ("N", "--N"), ("sizes", "--size")):  # an empty grid would validate nothing
            if not getattr(self, name):
                raise ValueError(f"{flag} is empty: expected at least one value to validate at")

    def check(self, operators: Sequence[str]) -> None:
        """ValueError for a knob no operator of ``operators`` has, or a value an operator's knob refuses."""
        if taken := sorted({"K", "d"}.intersection(self.knobs)):
            raise ValueError(f"knob {taken[0]}: give it as --{taken[0]}, not as --knob")
        if taken := sorted(set(COLUMNS).intersection(self.knobs)):
            raise ValueError(f"knob {taken[0]!r} has the name of a table1 column; a knob can be validated here only "
                             f"under a name that is none of {', '.join(COLUMNS)}")
        check_guide_channels(self.Cg, operators)
        for name, values in {**self.swept(), **self.knobs}.items():  # K and d given empty mean their defaults
            check_knob(name, values, operators)

    def points(self, operator: str) -> Iterator[dict[str, int]]:
        """Hyperparameter settings for one operator: knobs it lacks are not swept."""
        knobs = get(operator).knobs
        axes = {name: values for name, values in self.swept().items() if name in knobs}
        for combo in itertools.product(*axes.values()):
            yield dict(zip(axes, combo))


def _signed(n: int) -> str:
    return f"{n:+,}"


def status_and_note(paper: Cost, exact: Cost, counted: Cost, why: str,
                    unexplained: Sequence[str] = ()) -> tuple[str, str]:
    """A row's status and note. ``why``: the operator's reason for a paper row that differs from the exact one;
    ``unexplained``: for the total, what of it has none (stages, or the paper total's own difference from its
    rows): a difference without a reason is a formula the paper prints wrong as far as anyone can tell."""
    if counted != exact:
        delta = counted - exact
        return MISMATCH, f"fvcore - exact: MACs {_signed(delta.macs)}, params {_signed(delta.params)}"
    if paper == exact:
        return MATCH, ""
    delta = exact - paper
    said = f"exact - paper: MACs {_signed(delta.macs)}, params {_signed(delta.params)}"
    if unexplained or not why:
        whose = f" of {', '.join(unexplained)}" if unexplained else ""
        return UNEXPLAINED, f"{said}; no reason recorded for the difference{whose} (the operator's Formulas(why=...))"
    return EXPLAINED, f"{said}; {why}"


def torch_note(torch_macs: int, exact_macs: int, torch_count: Count) -> str:
    """Where FlopCounterMode's count differs from exact: by how much, and which ops it counted as zero that
    the paper policy counts (all its zero ops when none of those is among them)."""
    if torch_macs == exact_macs:
        return ""
    uncounted = [op for op in torch_count.zero_ops if op in PAPER_COUNTED_OPS or is_custom_op(op)]
    return (f"torch - exact: MACs {_signed(torch_macs - exact_macs)}; FlopCounterMode counts no MACs for "
            f"{', '.join(uncounted or torch_count.zero_ops) or 'no op it saw'}")


def validate_operator(operator: str, C: int, H: int, W: int, hparams: dict[str, int],
                      knob_columns: Sequence[str] = (), Cg: int | None = None, N: int = 1) -> list[dict]:
    """One row per stage plus ``total``, for a batch of ``N`` at H x W; ``knob_columns``: the knobs beside K
    and d that the table has columns for (blank where the operator lacks the knob); ``Cg``: the guide's
    channels (None: the operator's own choice)."""
    try:
        op = make(operator, C, guide_channels=Cg, impl="reference", **hparams)
    except Exception as error:  # noqa: BLE001  a plugin's constructor refusing this point, whatever it raised
        raise PointFailed(NOT_BUILT, error) from error
    inputs = op.example_inputs(N, H, W, generator=torch.Generator().manual_seed(0))
    try:
        counted = count(op, inputs, "paper")
        torch_counted = count(op, inputs, "torch")
    except CountingRuleError as error:
        raise PointFailed(RULE_FAILED, error) from error
    except Exception as error:  # noqa: BLE001  the operator's own code failing at this point, whatever it raised
        raise PointFailed(FORWARD_FAILED, error) from error
    zero_note = counted_as_zero_note(counted.zero_ops)
    dims = op.dims(N, H, W)
    formulas = op.formulas
    rows = []
    unexplained: list[str] = []  # the stages whose paper row differs without a reason: the total's too
    paper_rows = ZERO
    if counted.unattributed_macs:
        raise PointFailed(OUTSIDE_STAGES, ValueError(
            f"{counted.unattributed_macs} MACs outside {', '.join(op.stages)}; every op of an operator's forward must "
            f"run inside one of its stage modules"), said=True)
    for stage in op.stages + (TOTAL,):
        try:  # a formula that fails (raises, or returns no count) at this point: a plugin's formula for squares only
            paper, exact = formulas.paper_cost(stage, dims), formulas.exact_cost(stage, dims)
        except ValueError as error:
            raise PointFailed(FORMULA_FAILED, error, said=True) from error
        fv = Cost(*counted.stage(stage))
        torch_macs = torch_counted.stage(stage)[0]
        if formulas.declared:
            if stage == TOTAL:
                why = formulas.total_reason(op.stages)
                if paper != paper_rows and TOTAL not in formulas.why:
                    unexplained.append("the paper total with its own rows")
            else:
                why = formulas.why.get(stage, "")
                paper_rows = paper_rows + paper
                if paper != exact and not why:
                    unexplained.append(stage)
            status, note = status_and_note(paper, exact, fv, why, unexplained if stage == TOTAL else ())
            if stage != TOTAL and fv.macs == torch_macs == 0 < exact.macs:  # not an op either count leaves out
                said = "neither count saw a MAC in this stage: did its module run in the forward?"
            else:
                said = torch_note(torch_macs, exact.macs, torch_counted)
            note = "; ".join(filter(None, [note, said]))
        else:
            status, note = NO_FORMULA, "no formulas stated with the operator: fvcore and torch counts shown"
        note = "; ".join(filter(None, [note, zero_note]))
        stated = formulas.declared  # without formulas the formula columns stay blank, never zero
        rows.append({
            "operator": operator, "stage": stage, "N": N, "C": C, "Cg": op.guide_channels or None,
            "K": dims.K or None, "d": dims.d or None,  # the knobs filling Table 1's K and d, whatever their names
            **{name: op.hparams.get(name) for name in knob_columns}, "H": H, "W": W,
            "paper_macs": paper.macs if stated else None, "exact_macs": exact.macs if stated else None,
            "fvcore_macs": fv.macs, "torch_macs": torch_macs,
            "paper_params": paper.params if stated else None, "exact_params": exact.params if stated else None,
            "fvcore_params": fv.params,
            "status": status, "note": note,
        })
    return rows


# What can fail at a point. The first two are the operator's own limits (square maps only, a guide width it
# refuses): at --check's probe point they leave the point unvalidated. The others are faults of its counting or
# its formulas, which the probe point exists to find.
NOT_BUILT, FORWARD_FAILED = "it could not be built", "the forward failed"
RULE_FAILED, FORMULA_FAILED, OUTSIDE_STAGES = ("its counting rule failed", "a formula failed",
                                               "its forward ran ops outside its stages")
OPERATOR_LIMITS = (NOT_BUILT, FORWARD_FAILED)


class PointFailed(Exception):
    """An operator failed at one point (:data:`NOT_BUILT`, :data:`FORWARD_FAILED`, ...; the error is its
    ``__cause__``): that point is an ``error`` row saying ``what`` failed, and the table goes on."""

    def __init__(self, what: str, error: BaseException, said: bool = False) -> None:
        # a counting rule's or a formula's error says what it is; another (``said`` False) is named by its type
        cause = str(error) if said or isinstance(error, CountingRuleError) else f"{type(error).__name__}: {error}"
        super().__init__(f"{what}: {cause}")
        self.what = what


def error_row(operator: str, C: int, H: int, W: int, hparams: dict[str, int], failed: PointFailed,
              Cg: int | None = None, N: int = 1) -> dict:
    """The one row of a point that failed: status ``error``, what failed and why in the note."""
    return {"operator": operator, "stage": TOTAL, "N": N, "C": C, "Cg": Cg, **hparams, "H": H, "W": W,
            "status": ERROR, "note": str(failed)}


def knobs_not_shown(operators: Sequence[str] | None, grid: Grid) -> list[str]:
    """'carafe encoder_kernel=3' for each operator whose knobs the table has no column for (a knob neither swept
    with --knob nor filling Table 1's K or d): they were counted at their defaults, which the rows do not show."""
    said = []
    for name in _operator_names(operators):
        hidden = [f"{knob}={declared.default}" for knob, declared in get(name).knobs.items()
                  if knob not in grid.knobs and (declared.dims_field or knob) not in ("K", "d")]
        if hidden:
            said.append(f"{name} {', '.join(hidden)}")
    return said


def table_columns(grid: Grid) -> list[str]:
    """:data:`COLUMNS` with N before C where the grid has a batch other than one, Cg after C where it sweeps
    it, and a column for each other knob after d."""
    at_c, after_c, at_d = COLUMNS.index("C"), COLUMNS.index("C") + 1, COLUMNS.index("d") + 1
    return [*COLUMNS[:at_c], *(["N"] if tuple(grid.N) != (1,) else []), *COLUMNS[at_c:after_c],
            *(["Cg"] if grid.Cg else []), *COLUMNS[after_c:at_d], *grid.knobs, *COLUMNS[at_d:]]


def validation_table(operators: Sequence[str] | None = None, grid: Grid = Grid()) -> pd.DataFrame:
    """Every operator x grid point x stage, as a DataFrame with :data:`COLUMNS`. A point whose constructor,
    forward, counting rule or formulas fail (:class:`PointFailed`) is one ``error`` row and the table goes on."""
    operators = _operator_names(operators)
    for name in operators:
        get(name)  # unknown names fail before any counting
    grid.check(operators)
    rows = []
    for name in operators:
        for N, C, Cg, (H, W) in itertools.product(grid.N, grid.C, guides_for(get(name), grid.Cg), grid.sizes):
            for hparams in grid.points(name):
                try:
                    rows.extend(validate_operator(name, C, H, W, hparams, tuple(grid.knobs), Cg, N))
                except PointFailed as failed:  # a plugin failing at this shape: say so, go on
                    rows.append(error_row(name, C, H, W, hparams, failed, Cg, N))
    columns = table_columns(grid)
    table = pd.DataFrame(rows, columns=columns)
    counts = {c: "Int64" for c in columns if c.endswith(("_macs", "_params"))}
    return table.astype({column: "Int64" for column in ("Cg", "K", "d", *grid.knobs) if column in columns} | counts)


def _operator_names(operators: Sequence[str] | None) -> list[str]:
    return list(comma_items(operators) if operators else available())  # "nearest" is one name, not seven


def probe_grid(grid: Grid, operators: Sequence[str] | None = None) -> Grid:
    """Where ``table1 --check`` validates ``operators`` beside ``grid``: a batch of two, a map one pixel wider than
    tall and, for the operators that read a guide of any width, a guide of another width than C (half of it). A
    formula that forgets the batch, swaps H and W, or reads C for C_g agrees with the counts at a default point
    and fails here."""
    C, H = grid.C[0], grid.sizes[0][0]
    any_guide = any(get(name).reads_any_guide() for name in _operator_names(operators))
    return replace(grid, C=(C,), Cg=(C // 2 if C > 1 else 2,) if any_guide else (), N=(2,), sizes=((H, H + 1),))


@dataclass(frozen=True)
class Probed:
    """A table with the rows of :func:`probe_grid`'s point that do not hold (a mismatch, an unexplained
    difference, a formula or counting rule that fails there) added, their notes saying where they come from; how
    many those are; per operator, why its probe point could not be validated (an operator that needs square maps,
    a guide width it refuses); and that point."""

    table: pd.DataFrame
    failed: int
    skipped: tuple[str, ...]
    probe: Grid


def with_failed_probes(table: pd.DataFrame, operators: Sequence[str] | None, grid: Grid) -> Probed:
    """``table`` (``grid``'s) with what :func:`probe_grid`'s point finds of ``operators`` (see :class:`Probed`)."""
    probe = probe_grid(grid, operators)
    failed, skipped = [], []
    for name in _operator_names(operators):
        own = replace(probe, Cg=probe.Cg if get(name).reads_any_guide() else ())
        probed = validation_table([name], own)
        # point by point: a knob value the operator refuses there leaves the others' formulas to check
        limit = (probed["status"] == ERROR) & probed["note"].astype(str).str.startswith(OPERATOR_LIMITS)
        if limit.any():
            skipped.append(f"{name}: {probed.loc[limit, 'note'].iloc[0]}")
        failed.append(probed[probed["status"].isin(CHECKED) | ((probed["status"] == ERROR) & ~limit)])
    failed_rows = pd.concat(failed, ignore_index=True) if failed else pd.DataFrame()
    if failed_rows.empty:
        return Probed(table, 0, tuple(skipped), probe)
    failed_rows = failed_rows.assign(note="probe point of --check: " + failed_rows["note"].astype(str))
    both = replace(grid, N=(*grid.N, *probe.N), Cg=(*grid.Cg, *probe.Cg))
    table = table if "N" in table else table.assign(N=grid.N[0])  # a grid without an N column has N = 1
    merged = pd.concat([table, failed_rows], ignore_index=True).reindex(columns=table_columns(both))
    merged = merged.astype({column: "Int64" for column in ("N", "Cg") if column in merged})
    return Probed(merged, len(failed_rows), tuple(skipped), probe)
