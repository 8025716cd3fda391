"""The Table 1 validation: paper formula vs exact formula vs fvcore count, per operator and stage."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator, Sequence

import pandas as pd
import torch

from .counting import count
from .formulas import TOTAL, Cost
from .registry import available, get, make

COLUMNS = [
    "operator", "stage", "C", "K", "d", "H", "W",
    "paper_macs", "exact_macs", "fvcore_macs", "paper_params", "exact_params", "fvcore_params",
    "status", "note",
]
MATCH, EXPLAINED, MISMATCH = "match", "explained", "mismatch"


@dataclass(frozen=True)
class Grid:
    """Which shapes to validate at. Empty K or d means each operator's default."""

    C: Sequence[int] = (256,)
    K: Sequence[int] = ()
    d: Sequence[int] = ()
    sizes: Sequence[tuple[int, int]] = ((16, 16),)

    def points(self, operator: str) -> Iterator[dict[str, int]]:
        """Hyperparameter settings for one operator: knobs it lacks are not swept."""
        knobs = get(operator).knobs
        axes = {name: values for name, values in (("K", self.K), ("d", self.d)) if name in knobs and values}
        for combo in itertools.product(*axes.values()):
            yield dict(zip(axes, combo))


def _signed(n: int) -> str:
    return f"{n:+,}"


def status_and_note(paper: Cost, exact: Cost, counted: Cost, why: str) -> tuple[str, str]:
    if counted != exact:
        delta = counted - exact
        return MISMATCH, f"fvcore - exact: MACs {_signed(delta.macs)}, params {_signed(delta.params)}"
    if paper == exact:
        return MATCH, ""
    delta = exact - paper
    return EXPLAINED, f"exact - paper: MACs {_signed(delta.macs)}, params {_signed(delta.params)}; {why or 'NO REASON RECORDED'}"


def validate_operator(operator: str, C: int, H: int, W: int, hparams: dict[str, int]) -> list[dict]:
    """One row per stage plus ``total``, for a batch of one at H x W."""
    op = make(operator, C, impl="reference", **hparams)
    counted = count(op, op.example_inputs(1, H, W, generator=torch.Generator().manual_seed(0)), "paper")
    dims = op.dims(1, H, W)
    formulas = op.formulas
    rows = []
    for stage in op.stages + (TOTAL,):
        paper = formulas.paper_cost(stage, dims)
        exact = formulas.exact_cost(stage, dims)
        fv = Cost(*counted.stage(stage))
        why = formulas.total_reason(op.stages) if stage == TOTAL else formulas.why.get(stage, "")
        status, note = status_and_note(paper, exact, fv, why)
        rows.append({
            "operator": operator, "stage": stage, "C": C,
            "K": hparams.get("K", op.hparams.get("K")), "d": dims.d or None, "H": H, "W": W,
            "paper_macs": paper.macs, "exact_macs": exact.macs, "fvcore_macs": fv.macs,
            "paper_params": paper.params, "exact_params": exact.params, "fvcore_params": fv.params,
            "status": status, "note": note,
        })
    if counted.unattributed_macs:
        raise ValueError(f"{operator}: {counted.unattributed_macs} MACs ran outside its stages {op.stages}; "
                         "every op of an operator's forward must run inside one of its stage modules")
    return rows


def validation_table(operators: Sequence[str] | None = None, grid: Grid = Grid()) -> pd.DataFrame:
    """Every operator x grid point x stage, as a DataFrame with :data:`COLUMNS`."""
    operators = list(operators or available())
    for name in operators:
        get(name)  # unknown names fail before any counting
    rows = []
    for name in operators:
        for C, (H, W) in itertools.product(grid.C, grid.sizes):
            for hparams in grid.points(name):
                rows.extend(validate_operator(name, C, H, W, hparams))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"K": "Int64", "d": "Int64"})
