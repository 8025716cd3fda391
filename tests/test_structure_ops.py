"""Operators declare, the harness reads: roofline goals and knobs, Dims fields, op_stages, formula errors."""
from __future__ import annotations

from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from upbench import kernels
from upbench.base import Knob, Upsampler
from upbench.commands import main
from upbench.commands import roofline
from upbench.counting import counting_forward
from upbench.formulas import DIMS_FIELDS, TOTAL, Cost, Formulas, paper_is_exact
from upbench.registry import get, make, register

needs_compiled = pytest.mark.skipif(not kernels.compiled_available(), reason="compiled ops unavailable")


class _ShuffleConv(Upsampler):
    """A minimal operator: 1x1 conv to 4C, pixel shuffle."""

    name = ""
    stages = ("body",)
    formulas = paper_is_exact({"body": lambda s: Cost(s.pixels * 4 * s.C * s.C, 4 * s.C * s.C + 4 * s.C)})
    calls: ClassVar[list[tuple[bool, bool]]] = []  # (training, grad enabled) of every forward

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        self.body = nn.Conv2d(channels, 4 * channels, 1)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        type(self).calls.append((self.training, torch.is_grad_enabled()))
        return F.pixel_shuffle(self.body(x), 2)


def _quiet_machine() -> roofline.Machine:
    return roofline.Machine(matmul=lambda: None, copy=lambda: None, copy_bytes=1)


FAST = roofline.TimingPlan(threads=1, min_run_time=1e-4, rounds=1)


# -- 1. roofline ---------------------------------------------------------------------------------
def test_forward_share_goals_are_declared_by_the_operators():
    assert Upsampler.forward_share_goal is None
    assert get("sapa-b").forward_share_goal == 0.25
    assert get("carafe").forward_share_goal == 0.35
    assert get("bilinear").forward_share_goal is None


def test_roofline_defaults_to_every_operator_declaring_a_goal(isolated_registry):
    @register
    class Goaled(_ShuffleConv):
        name = "goaled"
        compiled_ops = True
        forward_share_goal = 0.5

    assert roofline.roofline_ops(None) == ["carafe", "sapa-b", "goaled"]


def test_a_goal_that_is_no_share_is_refused_naming_the_operator(isolated_registry):
    class Bad(_ShuffleConv):
        name = "bad-goal"
        forward_share_goal = "fast"

    with pytest.raises(ValueError, match="bad-goal: forward_share_goal='fast'"):
        register(Bad)

    class NoCompiled(_ShuffleConv):  # a goal for a compiled forward it does not have
        name = "no-compiled-goal"
        forward_share_goal = 0.3

    with pytest.raises(ValueError, match="no-compiled-goal: forward_share_goal=0.3 but compiled_ops is False"):
        register(NoCompiled)


def test_roofline_help_says_what_the_goals_mean():
    assert "issue" not in roofline.HELP.lower()
    assert "forward_share_goal" in roofline.GOALS and str(roofline.FUSED_FLOOR_GOAL) in roofline.GOALS


@pytest.mark.parametrize("argv,named", [
    (["--rounds", "0"], "--rounds"), (["--C", "0"], "--C"), (["--threads", "-1"], "--threads"),
    (["--min-run-time", "0"], "--min-run-time"), (["--size", "4,4,4"], "--size"), (["--size", "0"], "--size"),
    (["--ops", ""], "--ops"),
])
def test_roofline_names_the_argument_that_is_wrong(argv, named, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["roofline", *argv])
    assert exited.value.code == 2
    assert f"argument {named}:" in capsys.readouterr().err


@pytest.mark.parametrize("ops,message", [
    ("sapa-b,bilinear", "bilinear has no compiled ops"),
    ("nope", "unknown operator 'nope'"),
])
def test_roofline_checks_the_operators_before_timing_anything(ops, message, monkeypatch, capsys):
    def timed():
        raise AssertionError("timing started before --ops was checked")

    monkeypatch.setattr(roofline.Machine, "build", timed)
    monkeypatch.setattr(roofline, "paired_seconds", timed)
    assert main(["roofline", "--ops", ops]) == 2
    assert message in capsys.readouterr().err


@needs_compiled
def test_roofline_times_the_forward_in_eval_mode_and_reads_the_goal_off_the_class(isolated_registry):
    @register
    class Timed(_ShuffleConv):
        name = "timed"
        compiled_ops = True
        forward_share_goal = 0.125
        calls = []

    rows = {row["quantity"]: row for row in roofline.operator_rows("timed", 4, 3, 3, _quiet_machine(), FAST)}
    assert rows["timed forward / matmul GFLOP/s"]["goal"] == ">= 0.125"
    # measure.build_call's two calls: inference in eval mode under no_grad, training in train mode
    assert set(Timed.calls) == {(False, False), (True, True)}
    assert not any(name.startswith("timed sapa_fused") for name in rows)  # it never calls the fused kernel


@needs_compiled
def test_the_fused_kernel_is_timed_with_the_knobs_of_the_operator_that_calls_it(isolated_registry):
    @register
    class NarrowSAPA(get("sapa-b")):
        name = "sapa-narrow"
        knobs = {"K": Knob(3, "odd"), "d": Knob(8)}

    rows = [row["quantity"] for row in roofline.operator_rows("sapa-narrow", 4, 3, 3, _quiet_machine(), FAST)]
    assert "sapa-narrow sapa_fused alone (query C=8, key C=8, value C=4, K=3)" in rows
    assert "sapa-narrow sapa_fused time / memory floor" in rows


# -- 2. Dims has no operator's own fields -------------------------------------------------------
def test_dysample_knobs_are_extras_of_dims():
    assert "groups" not in DIMS_FIELDS and "dyscope" not in DIMS_FIELDS
    dims = make("dysample-lp", 8, impl="reference", groups=2, dyscope=1).dims(1, 4, 4)
    assert dict(dims.extra) == {"groups": 2, "dyscope": 1}
    assert (dims.groups, dims.dyscope) == (2, 1)


# -- 3. op_stages ------------------------------------------------------------------------------
def test_op_stages_is_declared_on_every_upsampler():
    assert Upsampler.op_stages == {}
    assert get("sapa-b").op_stages["local_similarity"] == "inner_product"


@pytest.mark.parametrize("op_stages,fragments", [
    ({"local_similarity": "nowhere"}, ["staged: op_stages", "'nowhere'", "expected one of body"]),
    ({"similarity": "body"}, ["staged: op_stages", "'similarity'", "local_similarity"]),
    (["local_similarity"], ["staged: op_stages is list"]),
])
def test_a_bad_op_stages_is_refused_at_registration(op_stages, fragments, isolated_registry):
    class Staged(_ShuffleConv):
        name = "staged"

    Staged.op_stages = op_stages
    with pytest.raises(ValueError) as raised:
        register(Staged)
    assert all(fragment in str(raised.value) for fragment in fragments), str(raised.value)


def test_a_failing_formula_names_the_operator_and_its_stage(isolated_registry):
    @register
    class Broken(_ShuffleConv):
        name = "broken"
        formulas = paper_is_exact({"body": lambda s: Cost(s.pixels // (s.H - 2), 0)})  # fails at H = 2 only

    dims = make("broken", 4, impl="reference").dims(1, 2, 2)
    for cost in (Broken.formulas.paper_cost, Broken.formulas.exact_cost):
        with pytest.raises(ValueError, match=r"^broken: its (paper|exact) formula for stage 'body' raised "
                                             r"ZeroDivisionError"):
            cost(TOTAL, dims)

    class Renamed(Broken):  # inherits the formulas; its errors carry its own name
        name = "renamed"

    with pytest.raises(ValueError, match="^renamed: its exact formula for stage 'body'"):
        Renamed.formulas.exact_cost("body", dims)


def test_formulas_not_bound_to_an_operator_still_say_which_stage():
    formulas = Formulas(paper={}, exact={"body": lambda s: 0})
    with pytest.raises(ValueError, match="^the exact formula for stage 'body' returned int"):
        formulas.exact_cost(TOTAL, make("bilinear", 4).dims(1, 2, 2))


# -- 5. shared pieces -----------------------------------------------------------------------------
def test_counting_forward_restores_every_training_flag_even_when_the_forward_fails():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model[1].eval()
    with pytest.raises(RuntimeError):
        with counting_forward(model):
            assert not model[0].training and not torch.is_grad_enabled()
            raise RuntimeError("forward failed")
    assert (model.training, model[0].training, model[1].training) == (True, True, False)


def test_roofline_says_which_of_its_timings_cannot_be_trusted(monkeypatch):
    """Its verdicts rested on timings nobody checked: the sweep's doubts (descheduled, shared, unsteady) were
    never read, so a 'met' or 'NO' measured beside other work looked as sure as one on a quiet machine."""
    from upbench.timing import Timing

    quiet, descheduled = Timing(1.0, 1.0, 1.0, 1, "warm", 1.0, 0.0), Timing(1.0, 1.0, 1.0, 1, "warm", 0.3, 0.0)
    rounds = iter([quiet, quiet, descheduled, quiet])  # matmul, copy; matmul, copy
    monkeypatch.setattr(roofline, "_timing", lambda fn, threads, min_run_time: next(rounds))
    rows = roofline.machine_rows(_quiet_machine(), roofline.TimingPlan(threads=1, min_run_time=1e-4, rounds=2))
    assert [row["timing suspect"] for row in rows] == ["matmul: descheduled 1/2 rounds", ""]
