"""Complexity formulas as data.

Every operator file carries two tables of formulas next to its module:

* ``paper``: the SAPA paper's Table 1, verbatim, per stage plus its own ``total`` row (the
  paper's totals are not always the sum of its stages, so they are kept as printed; without a ``total``
  row the total is the sum of the paper's rows).
  Operators outside Table 1 whose own paper prints no per-stage formula use their exact rows
  here (:func:`paper_is_exact`).
  Table 1 counts MACs per low-resolution pixel; :func:`per_pixel` scales them by N x H x W.
* ``exact``: what the implemented modules really cost under the "paper" counting policy
  (biases and normalization parameters included in params, per-image terms included in MACs).
  The exact total is the sum of the stages.

Each formula is a small pure function of :class:`Dims` returning a :class:`Cost`.
"""
from __future__ import annotations

import numbers

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping, Sequence

TOTAL = "total"


@dataclass(frozen=True)
class Dims:
    """The sizes a formula may depend on. Knobs an operator lacks are 0; an operator's own knob that fills
    none of the fields (a plugin's ``hidden``) is in ``extra`` and reads as an attribute all the same
    (``s.hidden``)."""

    N: int
    C: int
    H: int
    W: int
    K: int = 0
    d: int = 0
    Cg: int = 0  # guide channels (0 for decoder-only operators)
    # a learned conv's kernel size, one name for the knobs that declare dims_field="ke" whatever each
    # operator calls its own (encoder_kernel, conv_kernel): formulas read s.ke alike
    ke: int = 0
    extra: tuple[tuple[str, int], ...] = ()

    def __getattr__(self, name: str) -> Any:  # only reached when no field has the name
        extra = dict(self.__dict__.get("extra", ()))
        if name in extra:
            return extra[name]
        knobs = f" and the knobs {', '.join(extra)}" if extra else ""
        raise AttributeError(f"Dims has no {name!r}: its fields are {', '.join(DIMS_FIELDS)}{knobs}")

    @property
    def pixels(self) -> int:
        """Low-resolution pixels over the batch: the paper's "x HW", times N."""
        return self.N * self.H * self.W


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.macs + other.macs, self.params + other.params)

    def __sub__(self, other: "Cost") -> "Cost":
        return Cost(self.macs - other.macs, self.params - other.params)


ZERO = Cost(0, 0)
Formula = Callable[[Dims], Cost]
# The fields a knob may fill (``Knob.dims_field``); the shape fields come from the inputs, never a knob.
DIMS_FIELDS = tuple(f.name for f in fields(Dims) if f.name != "extra")
SHAPE_FIELDS = ("N", "C", "H", "W", "Cg")


def evaluate(formula: Formula, dims: Dims, table: str, stage: str, operator: str = "") -> Cost:
    """``formula(dims)``, or a ValueError naming the operator and the formula that failed, and how (a plugin's
    formula may raise, or return something other than a Cost)."""
    whose = f"{operator}: its" if operator else "the"
    try:
        cost = formula(dims)
    except Exception as error:  # noqa: BLE001  any failure of user code becomes one clear error
        raise ValueError(f"{whose} {table} formula for stage {stage!r} raised {type(error).__name__}: {error}") from error
    if not isinstance(cost, Cost):
        raise ValueError(f"{whose} {table} formula for stage {stage!r} returned {type(cost).__name__}; "
                         f"expected an upbench.Cost(macs, params)")
    counts = []
    for count_name, value in (("macs", cost.macs), ("params", cost.params)):
        if isinstance(value, float) and value.is_integer():  # a formula dividing by 2 where the count is even
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{whose} {table} formula for stage {stage!r} returned {count_name}={value!r}; expected a "
                             f"non-negative whole number (a count)")
        counts.append(int(value))
    return Cost(*counts)


def per_pixel(macs_per_pixel: Callable[[Dims], int], params: Callable[[Dims], int]) -> Formula:
    """A Table 1 row: MACs given per low-resolution pixel ("x HW"), params absolute."""
    return lambda s: Cost(s.pixels * macs_per_pixel(s), params(s))


@dataclass(frozen=True)
class StageSum:
    """A total that is the sum of stage formulas. :class:`Formulas` evaluates each stage under its own name,
    so a failing stage formula is reported as that stage, not as the total."""

    stages: Mapping[str, Formula]

    def costs(self, dims: Dims, table: str, operator: str = "") -> Cost:
        total = ZERO
        for stage, formula in self.stages.items():
            total = total + evaluate(formula, dims, table, stage, operator)
        return total

    def __call__(self, dims: Dims) -> Cost:  # called as a plain formula, an error is the caller's to name
        total = ZERO
        for formula in self.stages.values():
            total = total + formula(dims)
        return total


@dataclass(frozen=True)
class Formulas:
    """Paper and exact formulas of one operator, keyed by stage name.

    ``why`` explains, per stage, where the paper's row and the implementation part ways;
    the validation report prints it beside the numeric difference. ``operator`` is the name every error
    of a formula carries; an Upsampler subclass binds its own (:meth:`named`).
    """

    paper: Mapping[str, Formula]
    exact: Mapping[str, Formula]
    why: Mapping[str, str] = field(default_factory=dict)
    operator: str = ""

    def named(self, operator: str) -> "Formulas":
        """These formulas, their errors naming ``operator``."""
        return self if operator == self.operator else replace(self, operator=operator)

    @property
    def declared(self) -> bool:
        """Whether the operator states any formula (a wrapped module may state none)."""
        return bool(self.paper or self.exact)

    def total_reason(self, stages: Sequence[str]) -> str:
        """Why the paper's total differs from the exact one: each stage's reason, in stage order, then the
        total's own (where the paper's total disagrees with its stage rows)."""
        return "; ".join(f"[{stage}] {self.why[stage]}" for stage in (*stages, TOTAL) if stage in self.why)

    def paper_cost(self, stage: str, dims: Dims) -> Cost:
        """A stage's paper cost; for ``total``, the paper's own total row, or the sum of its rows where it prints
        none."""
        formula = self.paper.get(stage)
        if formula is None and stage == TOTAL and self.paper:
            formula = StageSum(self.paper)
        return self._cost("paper", formula, stage, dims)

    def exact_cost(self, stage: str, dims: Dims) -> Cost:
        """A stage's exact cost; for ``total``, the sum of the stages."""
        return self._cost("exact", StageSum(self.exact) if stage == TOTAL else self.exact.get(stage), stage, dims)

    def _cost(self, table: str, formula: Formula | None, stage: str, dims: Dims) -> Cost:
        if formula is None:
            return ZERO
        if isinstance(formula, StageSum):
            return formula.costs(dims, table, self.operator)
        return evaluate(formula, dims, table, stage, self.operator)

    def check_stages(self, operator: str, stages: Sequence[str]) -> None:
        """ValueError naming any formula keyed by a stage the operator does not have (a typo would count 0)."""
        for table, keyed in (("paper", self.paper), ("exact", self.exact), ("why", self.why)):
            allowed = (*stages, TOTAL) if table != "exact" else tuple(stages)
            unknown = [name for name in keyed if name not in allowed]
            if unknown:
                raise ValueError(f"{operator}: its {table} formulas name stage(s) {', '.join(map(repr, unknown))} it "
                                 f"does not have; its stages: {', '.join(stages) or 'none'}"
                                 f"{' (and total)' if table != 'exact' else ''}")


# An operator without formulas: its counts are reported, never matched against a formula.
NO_FORMULAS = Formulas(paper={}, exact={})


def paper_is_exact(exact: Mapping[str, Formula]) -> Formulas:
    """Formulas of an operator whose own paper prints no per-stage cost formula: its ``paper`` rows are its
    exact ones (the validation then shows ``match`` and checks the exact rows against fvcore)."""
    return Formulas(paper={**exact, TOTAL: StageSum(exact)}, exact=exact)


def compulsory_elements(s: Dims, params: int) -> int:
    """Elements any implementation must move: read x, the guide and the weights once, write the output once.

    A lower bound on memory traffic (intermediates such as the kernel tensor come on top), so the
    achieved bandwidth computed from it is a lower bound too.
    """
    low_res = s.H * s.W
    return s.N * (s.C * low_res + s.Cg * 4 * low_res + s.C * 4 * low_res) + params
