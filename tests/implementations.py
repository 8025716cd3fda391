"""Checks the guided operators' tests share: the compiled path against the reference path, on the same weights."""
from __future__ import annotations

import torch

from upbench import Upsampler, make
from upbench.counting import Count, count

F64 = torch.float64


def perturb(op: Upsampler, generator: torch.Generator, scale: float = 0.3) -> None:
    """Move every weight off its initialisation, so kernels are far from uniform and every term matters."""
    with torch.no_grad():
        for p in op.parameters():
            p.add_(scale * torch.randn(p.shape, dtype=p.dtype, generator=generator))


def assert_compiled_matches_reference(name: str, C: int, Cg: int | None, hparams: dict[str, int],
                                      size: tuple[int, int], generator: torch.Generator,
                                      rtol: float = 1e-12, atol: float = 1e-11) -> tuple[Upsampler, Upsampler]:
    """Float64, perturbed weights shared by both paths, a batch of 2: the output, x, the guide and every
    parameter's gradient agree within ``atol`` plus ``rtol`` of the value (JBU's x gradient reaches 79, and
    differed once by 1.5e-11 in a run that was otherwise identical). Returns the (reference, compiled)
    operators."""
    reference = make(name, C, guide_channels=Cg, impl="reference", **hparams).double().eval()
    perturb(reference, generator)
    compiled = make(name, C, guide_channels=Cg, impl="compiled", **hparams).double().eval()
    compiled.load_state_dict(reference.state_dict())
    assert (compiled.impl, reference.impl) == ("compiled", "reference")
    x = torch.randn(2, C, *size, dtype=F64, generator=generator)
    guide = torch.randn(2, reference.guide_channels, 2 * size[0], 2 * size[1], dtype=F64, generator=generator)
    grad = torch.randn(2, C, 2 * size[0], 2 * size[1], dtype=F64, generator=generator)
    results = []
    for op in (reference, compiled):
        leaves = [x.clone().requires_grad_(), guide.clone().requires_grad_(), *op.parameters()]
        out = op(*leaves[:2])
        results.append([out.detach(), *torch.autograd.grad(out, leaves, grad)])
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    return reference, compiled


def counts_of_both_paths(name: str, C: int, Cg: int | None, hparams: dict[str, int], size: tuple[int, int],
                         policy: str) -> tuple[Count, Count]:
    """The (reference, compiled) counts of one operator at one shape under ``policy``, asserted equal stage by
    stage and in total."""
    reference_op, compiled_op = (make(name, C, guide_channels=Cg, impl=impl, **hparams)
                                 for impl in ("reference", "compiled"))
    inputs = reference_op.example_inputs(1, *size)
    reference, compiled = count(reference_op, inputs, policy), count(compiled_op, inputs, policy)
    assert compiled.stage_macs == reference.stage_macs
    assert compiled.macs == reference.macs
    return reference, compiled
