"""Seeded differential fuzz: the compiled window ops (the reflect ops too) against the pure-PyTorch reference
functions.

One case per (odd K in 1..17, dtype): random N, d, a prime channel count C > 1024, and an H x W that is
often a single row or column; every input arrives in one of four layouts (contiguous, strided slices,
channels-last, batch-broadcast through stride-0 expand). Forward outputs and the gradients of every
input are compared; float32 results are compared with a float64 reference of the same values. The
seed is fixed, so a failure names a case that reproduces.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

from test_kernels import DEVICES, assert_close
from upbench import kernels
from upbench.references import (reference_assembly, reference_reflect_assembly, reference_reflect_similarity,
                                reference_sapa, reference_similarity)

SEED = 9
PRIMES_OVER_1024 = (1031, 1033, 1039, 1049, 1051, 1061)
LAYOUTS = ("contiguous", "sliced", "channels_last", "expanded")
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


@dataclass(frozen=True)
class Case:
    K: int
    dtype: torch.dtype
    N: int
    d: int
    C: int
    H: int
    W: int
    layout: str

    def __str__(self) -> str:
        kind = str(self.dtype).removeprefix("torch.")
        return f"K{self.K}-{kind}-N{self.N}d{self.d}C{self.C}H{self.H}W{self.W}-{self.layout}"


def draw_case(index: int, K: int, dtype: torch.dtype) -> Case:
    rng = random.Random(SEED * 1000 + index)
    side = rng.randint(1, 9)
    H, W = rng.choice([(1, side), (side, 1), (rng.randint(1, 3), rng.randint(1, 3))])
    return Case(K, dtype, N=rng.randint(1, 3), d=rng.randint(1, 24), C=rng.choice(PRIMES_OVER_1024), H=H, W=W,
                layout=LAYOUTS[index % len(LAYOUTS)])


CASES = [draw_case(i, K, dtype) for i, (K, dtype) in
         enumerate((K, dtype) for K in range(1, 18, 2) for dtype in (torch.float32, torch.float64))]


def make_input(shape: tuple[int, ...], layout: str, gen: torch.Generator,
               dtype: torch.dtype) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """A leaf tensor and the view of it the op receives, of the given shape and layout."""
    n, c, h, w = shape
    if layout == "sliced":  # every other channel, a cropped width: no unit stride anywhere
        leaf = torch.randn(n, 2 * c, h, w + 1, generator=gen, dtype=torch.float64)
        view = lambda t: t[:, ::2, :, 1:]  # noqa: E731
    elif layout == "channels_last":
        leaf = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
        view = lambda t: t  # noqa: E731
    elif layout == "expanded":  # one image broadcast over the batch: batch stride 0
        leaf = torch.randn(1, c, h, w, generator=gen, dtype=torch.float64)
        view = lambda t: t.expand(n, c, h, w)  # noqa: E731
    else:
        leaf = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
        view = lambda t: t  # noqa: E731
    return leaf.to(dtype), view


def compare(op: Callable, reference: Callable, shapes: list[tuple[int, ...]], case: Case, gen: torch.Generator,
            out_shape: tuple[int, ...], device: str) -> None:
    """op on the case's dtype and the device against reference in float64 on the CPU: output, then every
    input's gradient."""
    made = [make_input(s, case.layout, gen, case.dtype) for s in shapes]
    grad, grad_view = make_input(out_shape, case.layout, gen, case.dtype)
    compiled_leaves = [leaf.to(device, copy=True).requires_grad_() for leaf, _ in made]
    reference_leaves = [leaf.double().requires_grad_() for leaf, _ in made]
    out = op(*[view(t) for t, (_, view) in zip(compiled_leaves, made)], case.K)
    expected = reference(*[view(t) for t, (_, view) in zip(reference_leaves, made)], case.K)
    assert out.dtype == case.dtype and out.shape == expected.shape == out_shape
    assert_close(out.double().cpu(), expected, TOL[case.dtype])
    out.backward(grad_view(grad.to(device)))
    expected.backward(grad_view(grad.double()))
    for got, want in zip(compiled_leaves, reference_leaves):
        assert got.grad.dtype == case.dtype
        assert_close(got.grad.double().cpu(), want.grad, TOL[case.dtype])


@pytest.fixture(scope="module")
def ops():
    if not kernels.compiled_available():
        pytest.skip(f"compiled ops unavailable: {kernels.build_info()['error']}")
    return torch.ops.upbench


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_matches_reference(ops, case, device):
    gen = torch.Generator().manual_seed(SEED + case.K)
    N, d, C, H, W, K = case.N, case.d, case.C, case.H, case.W, case.K
    hi, lo = (N, d, 2 * H, 2 * W), (N, d, H, W)
    # local_similarity at both widths: the embedding width d and the wide C
    compare(ops.local_similarity, reference_similarity, [hi, lo], case, gen, (N, K * K, 2 * H, 2 * W), device)
    compare(ops.local_similarity, reference_similarity, [(N, C, 2 * H, 2 * W), (N, C, H, W)], case, gen,
            (N, K * K, 2 * H, 2 * W), device)
    compare(ops.dynamic_assembly, reference_assembly, [(N, K * K, 2 * H, 2 * W), (N, C, H, W)], case, gen,
            (N, C, 2 * H, 2 * W), device)
    if K <= kernels.FUSED_MAX_K:
        compare(ops.sapa_fused, reference_sapa, [hi, lo, (N, C, H, W)], case, gen, (N, C, 2 * H, 2 * W), device)
    # the reflect ops on the 2H x 2W map, grown where the window's radius needs a larger one to mirror
    h, w = max(2 * H, K // 2 + 1), max(2 * W, K // 2 + 1)
    compare(ops.reflect_similarity, reference_reflect_similarity, [(N, d, h, w)] * 2, case, gen, (N, K * K, h, w),
            device)
    compare(ops.reflect_assembly, reference_reflect_assembly, [(N, K * K, h, w), (N, C, h, w)], case, gen,
            (N, C, h, w), device)


def test_cases_cover_the_brief():
    """The drawn cases keep covering what the fuzz promises, whatever the seed."""
    assert {c.K for c in CASES} == set(range(1, 18, 2))
    assert {c.dtype for c in CASES} == {torch.float32, torch.float64}
    assert {c.layout for c in CASES} == set(LAYOUTS)
    assert all(c.C > 1024 and c.C % 2 == 1 for c in CASES)
    assert any(c.H == 1 and c.W > 1 for c in CASES) and any(c.W == 1 and c.H > 1 for c in CASES)
