"""upbench::norm_linear (SAPA's LayerNorm + Linear on NCHW, the LayerNorm folded into the projection)
against nn.LayerNorm then nn.Linear on channels-last, its gradients of every order, its fake, its checks."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from upbench import kernels
from upbench.references import reference_norm_linear

pytestmark = pytest.mark.skipif(not kernels.compiled_available(), reason="compiled ops unavailable")

EPS = 1e-5


def make_args(N=2, C=7, d=5, H=3, W=9, dtype=torch.float64, offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=g, dtype=dtype) + offset
    gamma, beta = torch.randn(C, generator=g, dtype=dtype), torch.randn(C, generator=g, dtype=dtype)
    weight, bias = torch.randn(d, C, generator=g, dtype=dtype), torch.randn(d, generator=g, dtype=dtype)
    return x, gamma, beta, weight, bias


def reference(x, gamma, beta, weight, bias, eps=EPS):
    return reference_norm_linear(x, gamma, beta, weight, bias, eps)


# W = 9 and 37: a partial vector at the end of every pixel tile; 300 x 1: more than one tile of 256 pixels
@pytest.mark.parametrize("shape", [(2, 7, 5, 3, 9), (1, 16, 3, 1, 37), (1, 3, 2, 300, 1)], ids=str)
def test_float64_equals_layer_norm_then_linear(shape):
    N, C, d, H, W = shape
    args = make_args(N, C, d, H, W)
    torch.testing.assert_close(kernels.norm_linear(*args, EPS), reference(*args), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("offset", [0.0, 10.0])
def test_float32_within_float32_rounding(offset):
    """The fold subtracts the mean after the projection: an offset of 10 standard deviations still
    rounds within float32's reach of the float64 result."""
    args64 = make_args(1, 64, 16, 8, 8, offset=offset)
    expected = reference(*args64)
    args32 = [t.float() for t in args64]
    scale = expected.abs().max().item()
    for actual in (kernels.norm_linear(*args32, EPS), reference(*args32)):
        assert (actual.double() - expected).abs().max().item() <= 1e-4 * scale * (1 + offset)


def test_gradients_of_every_order():
    args = [t.requires_grad_() for t in make_args(2, 5, 3, 3, 4)]
    op = lambda *a: kernels.norm_linear(*a, EPS)  # noqa: E731
    assert gradcheck(op, args)
    assert gradgradcheck(op, args)


def test_backward_equals_autograd_of_the_reference():
    args = make_args(2, 6, 4, 5, 3)
    grad = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    ours = torch.autograd.grad(kernels.norm_linear(*[t.requires_grad_() for t in args], EPS), args, grad)
    theirs = torch.autograd.grad(reference(*args), args, grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes_computed_in_float32(dtype):
    args = make_args(1, 32, 8, 4, 4)
    out = kernels.norm_linear(*[t.to(dtype) for t in args], EPS)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference(*args), rtol=3e-2, atol=3e-2 * reference(*args).abs().max().item())


def test_fake_gives_the_shape_without_computing():
    args = [t.to("meta") for t in make_args(2, 7, 5, 3, 9, dtype=torch.float32)]
    out = kernels.norm_linear(*args, EPS)
    assert out.device.type == "meta" and out.shape == (2, 5, 3, 9)


@pytest.mark.parametrize("change, message", [
    (lambda a: (a[0], a[1][:-1], *a[2:]), "gamma and beta must be"),
    (lambda a: (*a[:3], a[3][:, :-1], a[4]), "weight must be"),
    (lambda a: (*a[:4], a[4][:-1]), "bias must be"),
    (lambda a: (a[0][0], *a[1:]), "rank-4"),
    (lambda a: (a[0], a[1].float(), *a[2:]), "dtype"),
])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_rejects_mismatched_arguments(change, message, device):
    args = change([t.to(device) for t in make_args()])
    with pytest.raises(RuntimeError, match=message):
        kernels.norm_linear(*args, EPS)
