"""Network-level cost: what swapping the upsampler costs in a real decoder.

For a preset (:mod:`upbench.presets`) and an operator, every x2 stage gets its own operator
instance at that stage's shape; the stages are counted with :func:`upbench.counting.count_operator`
under both policies and summed. "Added" is the operator's sum minus the model's own (baseline)
upsampler's sum over the same stages, which is how the SAPA paper's Tables 2 and 3 report cost: its
"FLOPs" column counts MACs, in G (1e9); "Params" in M (1e6).

Beside the traced counts, each row carries what the operator's Table 1 formula (``formulas.paper``)
gives summed over the same stages. Where the two differ at the report's rounding, the row's note
says so, quoting the operator's own ``formulas.why``: the explanation lives with the operator, and
nothing here depends on which operator a row is.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import pandas as pd
import torch

from .base import IMPL_CHOICES, Upsampler
from .checks import comma_items, is_seconds, is_whole
from .counting import POLICIES, Count, count_operator
from .environment import check_device
from .formulas import TOTAL, ZERO, Cost
from .memory import is_out_of_memory, peak_memory_bytes, release_cached_memory
from .presets import Preset, StageShape
from .registry import available, get, make
from .spec import check_knob
from .measure import checked_first, float32_math
from .timing import WARMUP_CALLS, Timing, suspect_cell, time_call
from .vocabulary import GIGA, MEGA, MIB, first_line

# Tables 2 and 3 print G and M with two decimals; counts that agree at this rounding agree as printed.
REPORT_DECIMALS = 2

OK, OOM, ERROR = "ok", "oom", "error"

COLUMNS = [
    "operator", "knobs", "preset", "size", "batch", "stages",
    "added_gmacs_paper", "added_gmacs_fvcore", "added_params_m",
    "table1_added_gmacs", "table1_added_params_m",
    "baseline", "baseline_gmacs_paper", "baseline_gmacs_fvcore",
    "zero_ops_paper", "status", "note",
]
MEASURE_COLUMNS = ["device", "latency_ms", "latency_p20_ms", "latency_p80_ms", "runs", "threads", "timing_suspect",
                   "peak_mib"]


@dataclass(frozen=True)
class NetworkCost:
    """One operator in every upsampling stage of a preset, summed over the stages."""

    operator: str
    baseline: str
    macs: Mapping[str, int]  # policy -> MACs of the operator's stages
    params: int
    baseline_macs: Mapping[str, int]  # policy -> MACs of the baseline's stages
    baseline_params: int
    table1: Cost | None  # Table 1's formulas, operator minus baseline; None where either has no Table 1 row
    zero_ops: tuple[str, ...]  # ops of the operator counted as zero under the paper policy
    note: str

    def added_macs(self, policy: str) -> int:
        return self.macs[policy] - self.baseline_macs[policy]

    @property
    def added_params(self) -> int:
        return self.params - self.baseline_params


def guide_channels_for(operator: str, shape: StageShape) -> int | None:
    """The guide width a stage hands ``operator``: the stage's guide if it reads one, else None."""
    return shape.guide_channels if get(operator).needs_guide else None


Knobs = tuple[tuple[str, int], ...]  # an operator's knob values, as (name, value) pairs: its defaults for the rest


def _formula_view(operator: str, shape: StageShape, hparams: Knobs = ()) -> Upsampler:
    """An instance to read formulas and dims from, built on the meta device: no weights are allocated."""
    with torch.device("meta"):
        return make(operator, shape.channels, guide_channels=guide_channels_for(operator, shape), impl="reference",
                    **dict(hparams))


def table1_cost(operator: str, shapes: Sequence[StageShape], batch: int = 1, hparams: Knobs = ()) -> Cost | None:
    """Table 1's total formula summed over the stages; None where the operator has no Table 1 row."""
    total = ZERO
    for shape in shapes:
        op = _formula_view(operator, shape, hparams)
        if not op.formulas.paper:
            return None
        total = total + op.formulas.paper_cost(TOTAL, op.dims(batch, shape.H, shape.W))
    return total


def as_printed(value: int, unit: float) -> str:
    """How the paper prints a count: in G or M with :data:`REPORT_DECIMALS` decimals."""
    return f"{value / unit:.{REPORT_DECIMALS}f}"


def table1_note(operator: str, counted: Cost, table1: Cost | None) -> str:
    """Why the operator's traced cost and its Table 1 formula disagree as printed; '' where they agree."""
    if table1 is None:
        return "no Table 1 formula to compare with"
    if (as_printed(counted.macs, GIGA), as_printed(counted.params, MEGA)) == (
        as_printed(table1.macs, GIGA), as_printed(table1.params, MEGA)
    ):
        return ""
    op_class = get(operator)
    reasons = op_class.formulas.total_reason(op_class.stages)
    return (
        f"Table 1's formula gives +{as_printed(table1.macs, GIGA)} G MACs, +{as_printed(table1.params, MEGA)} M params "
        f"over these stages: {reasons or 'no reason recorded with the operator'}"
    )


def _stage_counts(operator: str, shapes: Sequence[StageShape], batch: int, policy: str,
                  hparams: Knobs = ()) -> list[Count]:
    """``operator``'s Count in every stage under ``policy``: stages of equal shape are separate instances,
    each counted (the cache makes the repeats free)."""
    return [
        count_operator(operator, s.channels, batch, s.H, s.W, policy, guide_channels_for(operator, s), hparams)
        for s in shapes
    ]


def network_cost(
    preset: Preset, operator: str, size: tuple[int, int] | None = None, channels: int | None = None, batch: int = 1,
    hparams: Knobs = (),
) -> NetworkCost:
    """What ``operator`` (with the knob values ``hparams``, its defaults for the rest) in every upsampling stage of
    ``preset`` costs, and adds over the preset's baseline (at its defaults)."""
    shapes = preset.shapes(size, channels)
    macs, baseline_macs = {}, {}
    params = baseline_params = 0
    zero_ops: set[str] = set()
    for policy in POLICIES:
        counts = _stage_counts(operator, shapes, batch, policy, hparams)
        baseline_counts = _stage_counts(preset.baseline, shapes, batch, policy)
        macs[policy] = sum(c.macs for c in counts)
        baseline_macs[policy] = sum(c.macs for c in baseline_counts)
        # params do not depend on the policy: the last policy's sums are as good as any
        params = sum(c.params for c in counts)
        baseline_params = sum(c.params for c in baseline_counts)
        if policy == "paper":
            zero_ops.update(op for c in counts for op in c.zero_ops)
    operator_table1 = table1_cost(operator, shapes, batch, hparams)
    baseline_table1 = table1_cost(preset.baseline, shapes, batch)
    table1 = None if operator_table1 is None or baseline_table1 is None else operator_table1 - baseline_table1
    added = Cost(macs["paper"] - baseline_macs["paper"], params - baseline_params)
    return NetworkCost(
        operator=operator,
        baseline=preset.baseline,
        macs=macs,
        params=params,
        baseline_macs=baseline_macs,
        baseline_params=baseline_params,
        table1=table1,
        zero_ops=tuple(sorted(zero_ops)),
        note=table1_note(operator, added, table1),
    )


# -- measurement ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """Latency and peak memory of all of a preset's upsampling stages, run back to back."""

    status: str  # OK, OOM or ERROR
    timing: Timing | None = None
    peak_bytes: int | None = None
    error: str = ""
    timing_suspect: str = ""


def measure_network(
    preset: Preset, operator: str, size: tuple[int, int] | None = None, channels: int | None = None,
    batch: int = 1, device: str | torch.device = "cpu", impl: str = "auto", min_run_time: float = 0.2,
    hparams: Knobs = (),
) -> Measurement:
    """Run ``operator`` in every stage of ``preset`` (own instance, own inputs per stage); never raises."""
    device = torch.device(device)
    stages: list = []
    try:
        generator = torch.Generator(device=device).manual_seed(0)
        for shape in preset.shapes(size, channels):
            op = make(operator, shape.channels, guide_channels=guide_channels_for(operator, shape), impl=impl,
                      **dict(hparams))
            op = op.to(device).eval()
            stages.append((op, op.example_inputs(batch, shape.H, shape.W, device=device, generator=generator)))

        # upbench's checks of each stage's inputs and output at the first call only, as in the sweep's rows
        calls = [checked_first(op, functools.partial(op, x, guide)) for op, (x, guide) in stages]

        def run_stages() -> None:
            with torch.no_grad():  # as the sweep's fwd rows: eval mode, no_grad
                for call in calls:
                    call()

        with float32_math(False):  # float32 is float32 for every operator, as in the sweep
            timing = time_call(run_stages, device, warmup=WARMUP_CALLS, min_run_time=min_run_time)
            peak = peak_memory_bytes(run_stages, device=device)
        return Measurement(OK, timing=timing, peak_bytes=peak,
                           timing_suspect=suspect_cell(timing, torch.get_num_threads()))
    except Exception as error:  # a report row must survive any one operator failing
        failed = Measurement(OOM if is_out_of_memory(error) else ERROR, error=first_line(error))
    stages.clear()
    release_cached_memory(device)
    return failed


# -- report -----------------------------------------------------------------------------------
def _cost_row(preset: Preset, operator: str, size: tuple[int, int] | None, channels: int | None, batch: int,
              hparams: Knobs) -> dict:
    H, W = preset.size if size is None else size
    row: dict = {"operator": operator, "knobs": ", ".join(f"{name}={value}" for name, value in hparams),
                 "preset": preset.name, "size": f"{H}x{W}", "batch": batch, "stages": len(preset.stages),
                 "baseline": preset.baseline}
    try:
        cost = network_cost(preset, operator, size, channels, batch, hparams)
    except Exception as error:  # one operator that cannot be built or counted leaves its row, not the report
        return {**row, "status": ERROR, "note": f"could not be built or counted: {type(error).__name__}: {error}"}
    return {
        **row,
        "added_gmacs_paper": cost.added_macs("paper") / GIGA,
        "added_gmacs_fvcore": cost.added_macs("fvcore") / GIGA,
        "added_params_m": cost.added_params / MEGA,
        "table1_added_gmacs": None if cost.table1 is None else cost.table1.macs / GIGA,
        "table1_added_params_m": None if cost.table1 is None else cost.table1.params / MEGA,
        "baseline_gmacs_paper": cost.baseline_macs["paper"] / GIGA,
        "baseline_gmacs_fvcore": cost.baseline_macs["fvcore"] / GIGA,
        "zero_ops_paper": " ".join(cost.zero_ops),
        "status": OK,
        "note": cost.note,
    }


def network_report(
    preset: Preset, operators: Sequence[str] | None = None, size: tuple[int, int] | None = None,
    channels: int | None = None, batch: int = 1, measure: bool = False, device: str = "cpu",
    impl: str = "auto", min_run_time: float = 0.2, progress: Callable[[str], None] | None = None,
    knobs: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per operator (the baseline included, at +0): :data:`COLUMNS`, plus :data:`MEASURE_COLUMNS`
    with ``measure``. Unknown operator names raise ValueError before any work; a failure of one
    operator after that marks its row's status instead of losing the row. ``progress`` hears one line
    as each operator is measured (a measured report takes minutes)."""
    operators = list(available() if operators is None else comma_items(operators))  # "nearest" is one name
    for name in operators:
        get(name)
    preset.shapes(size, channels)  # a bad size or width fails before any work, naming what was given
    if measure:
        check_device(str(device))
        if impl not in IMPL_CHOICES:
            raise ValueError(f"impl={impl!r}; expected one of {', '.join(IMPL_CHOICES)}")
        if not is_seconds(min_run_time):  # NaN timed a million calls
            raise ValueError(f"min_run_time={min_run_time!r}; expected a positive number of seconds")
    if not is_whole(batch, 1):
        raise ValueError(f"batch={batch!r}; expected a positive integer")
    knobs = dict(knobs or {})
    for knob, value in knobs.items():  # each operator's own rule checks the value as it is built
        check_knob(knob, [value], operators)
    rows = []
    for position, name in enumerate(operators, 1):
        hparams = tuple((knob, value) for knob, value in knobs.items() if knob in get(name).knobs)
        row = _cost_row(preset, name, size, channels, batch, hparams)
        if measure:
            if progress is not None:
                progress(f"measuring {name} ({position}/{len(operators)}) in {len(preset.stages)} stages on {device} ...")
            started = time.perf_counter()
            measured = measure_network(preset, name, size, channels, batch, device, impl, min_run_time, hparams)
            if progress is not None:
                progress(f"{name}: {measured.status} in {time.perf_counter() - started:.1f} s")
            row["device"] = str(device)
            timing = measured.timing
            row.update(latency_ms=None if timing is None else timing.median_s * 1e3,
                       latency_p20_ms=None if timing is None else timing.p20_s * 1e3,
                       latency_p80_ms=None if timing is None else timing.p80_s * 1e3,
                       runs=None if timing is None else timing.runs, threads=torch.get_num_threads(),
                       timing_suspect=measured.timing_suspect)
            row["peak_mib"] = None if measured.peak_bytes is None else measured.peak_bytes / MIB
            if measured.status != OK:
                row["status"] = measured.status
                row["note"] = "; ".join(filter(None, [row.get("note", ""), f"measurement: {measured.error}"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS + (MEASURE_COLUMNS if measure else []))
