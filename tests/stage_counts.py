"""A check the operators' count tests share: each stage's count against the formulas and a hand-derived form."""
from __future__ import annotations

import torch

from upbench import Upsampler
from upbench.counting import Count, count


def assert_stages_count_as_derived(op: Upsampler, derived: dict[str, tuple[int, int]], N: int, H: int, W: int,
                                   generator: torch.Generator, where: str) -> Count:
    """The paper-policy count of every stage equals the operator's exact formula and ``derived`` (stage -> MACs,
    params, worked out by hand in the test), its paper formula is the exact one, and no MAC is left outside a
    stage, and each stage module holds the parameters ``derived`` gives it (counted here directly, not by fvcore).
    Returns the count."""
    counted = count(op, op.example_inputs(N, H, W, generator=generator), "paper")
    dims = op.dims(N, H, W)
    assert tuple(derived) == op.stages
    for stage in op.stages:
        exact = op.formulas.exact_cost(stage, dims)
        assert counted.stage(stage) == (exact.macs, exact.params) == derived[stage], f"{where} [{stage}]"
        assert op.formulas.paper_cost(stage, dims) == exact, f"{where} [{stage}]"  # no paper formula: paper = exact
        held = sum(p.numel() for p in getattr(op, stage).parameters())
        assert held == derived[stage][1], f"{where} [{stage}]: the stage module holds {held} parameters"
    assert counted.unattributed_macs == 0
    return counted
