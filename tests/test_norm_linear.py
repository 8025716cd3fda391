"""upbench::norm_linear (SAPA's LayerNorm + Linear on NCHW, the LayerNorm folded into the projection)
against nn.LayerNorm then nn.Linear on channels-last, its gradients of every order, its fake, its checks."""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from test_kernels import DEVICES
from upbench import kernels
from upbench.memory import cpu_peak_bytes
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


@contextlib.contextmanager
def intra_op_threads(n):
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# N, C, d, H, W. The kernels cut each image into tiles of whole register blocks (48 float32 or 24
# float64 pixels), as wide as a slab of about 256 KB of x allows and no fewer than the threads: 7 x 9
# and 1 x 37 end in a partial vector, 300 x 1 is one tile on one thread and two on two; C = 256 with
# 20 x 31 makes six float64 tiles per image, the last of 20 pixels; C = 1 and d = 1 are the smallest
# LayerNorm and projection.
SHAPES = [(2, 7, 5, 7, 9), (1, 16, 3, 1, 37), (1, 3, 2, 300, 1), (2, 256, 5, 20, 31), (3, 1, 4, 5, 7),
          (2, 9, 1, 6, 11)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float64_equals_layer_norm_then_linear(shape, threads):
    N, C, d, H, W = shape
    args = make_args(N, C, d, H, W)
    with intra_op_threads(threads):
        actual = kernels.norm_linear(*args, EPS)
    torch.testing.assert_close(actual, reference(*args), rtol=1e-10, atol=1e-10)


def test_no_channels_give_the_bias():
    """LayerNorm over no channels leaves the Linear nothing but its bias."""
    x, gamma, beta, weight, bias = make_args(2, 0, 3, 4, 5)
    expected = bias.view(1, 3, 1, 1).expand(2, 3, 4, 5)
    torch.testing.assert_close(kernels.norm_linear(x, gamma, beta, weight, bias, EPS), expected, rtol=0, atol=0)


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


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_of_every_order(device):
    args = [t.to(device).requires_grad_() for t in make_args(2, 5, 3, 3, 4)]
    op = lambda *a: kernels.norm_linear(*a, EPS)  # noqa: E731
    assert gradcheck(op, args)
    assert gradgradcheck(op, args)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [shape for shape in [(2, 6, 4, 5, 3), *SHAPES[1:]] if shape[1] > 1], ids=str)
def test_backward_equals_autograd_of_the_reference(shape, threads):
    """Every gradient, the parameters' summed over tiles, images and threads; C = 1 is left out: its
    normalised input is zero, and the gradients of gamma and x that should be zero are rounding noise."""
    N, C, d, H, W = shape
    args = make_args(N, C, d, H, W)
    grad = torch.randn(N, d, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with intra_op_threads(threads):
        ours = torch.autograd.grad(kernels.norm_linear(*[t.requires_grad_() for t in args], EPS), args, grad)
    theirs = torch.autograd.grad(reference(*args), args, grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_backward_with_and_without_aligned_rows(channels_last):
    """grad_x goes to memory with streaming stores where a row of it starts on a vector boundary (16 x 16
    pixels) and with plain stores elsewhere (15 x 15); a non-contiguous x and grad take the copy first."""
    for H, W in [(16, 16), (15, 15)]:
        args64 = make_args(2, 64, 24, H, W, seed=2)
        grad64 = torch.randn(2, 24, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        args32, grad32 = [t.float() for t in args64], grad64.float()
        if channels_last:
            args32[0] = args32[0].to(memory_format=torch.channels_last)
            grad32 = grad32.to(memory_format=torch.channels_last)
        ours = torch.ops.upbench.norm_linear_backward(grad32, *args32[:4], EPS)
        theirs = torch.autograd.grad(reference(*[t.requires_grad_() for t in args64]), args64, grad64)
        for a, b in zip(ours, theirs):
            assert (a.double() - b).abs().max().item() <= 1e-5 * b.abs().max().item()


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_per_thread_scratch_is_in_the_peak(backward):
    """The kernels' per-thread scratch (at least the tile's packed copy of x, C x 48 float32) comes from
    the calling thread's allocations, where the memory probe sees it: a second thread adds a share. At
    C = 256 the map is three tiles on one thread as on two, so the shares are alike."""
    N, C, d, H, W = 1, 256, 8, 16, 32
    x, gamma, beta, weight, bias = [t.float() for t in make_args(N, C, d, H, W)]
    grad = torch.randn(N, d, H, W)
    if backward:
        call = lambda: torch.ops.upbench.norm_linear_backward(grad, x, gamma, beta, weight, EPS)  # noqa: E731
    else:
        call = lambda: torch.ops.upbench.norm_linear(x, gamma, beta, weight, bias, EPS)  # noqa: E731
    peaks = {}
    for threads in (1, 2):
        with intra_op_threads(threads):
            peaks[threads] = cpu_peak_bytes(call)
    assert peaks[2] - peaks[1] >= C * 48 * 4, peaks


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes_computed_in_float32(dtype):
    args = make_args(1, 32, 8, 4, 4)
    out = kernels.norm_linear(*[t.to(dtype) for t in args], EPS)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference(*args), rtol=3e-2, atol=3e-2 * reference(*args).abs().max().item())


def assert_same_bits(actual, expected):
    """Equal element for element (NaN where the other is NaN), as 16-bit patterns."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    nan = torch.isnan(expected)
    assert torch.equal(torch.isnan(actual), nan)
    same = actual[~nan].view(torch.int16) == expected[~nan].view(torch.int16)
    assert same.all(), f"{(~same).sum().item()} of {same.numel()} elements differ"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 7, 5, 7, 9), (1, 1030, 6, 3, 5), (3, 33, 4, 1, 1), (1, 17, 3, 2, 53)],
                         ids=str)
def test_half_dtypes_are_float32_rounded_once(shape, dtype, layout, threads):
    """x and y, grad and grad_x are read and written in fp16 / bf16 and computed in float32: bit for bit
    the float32 kernel's results on the same values, rounded once; and close to the float64 reference.
    Shapes: C off every vector width and C > 1024, 1 x 1 maps, a tile with a partial last vector."""
    N, C, d, H, W = shape
    args = [t.to(dtype) for t in make_args(N, C, d, H, W, offset=1.0)]
    grad = torch.randn(N, d, H, W, generator=torch.Generator().manual_seed(1)).to(dtype)
    if layout == "channels_last":
        args[0] = args[0].to(memory_format=torch.channels_last)
        grad = grad.to(memory_format=torch.channels_last)
    wide = [t.float() for t in args]
    with intra_op_threads(threads):
        out = kernels.norm_linear(*args, EPS)
        assert_same_bits(out, kernels.norm_linear(*wide, EPS).to(dtype))
        grads = torch.ops.upbench.norm_linear_backward(grad, *args[:4], EPS)
        expected = torch.ops.upbench.norm_linear_backward(grad.float(), *wide[:4], EPS)
    for a, b in zip(grads, expected):
        assert a.dtype == dtype
        assert_same_bits(a, b.to(dtype))
    tol = {torch.float16: 3e-3, torch.bfloat16: 2e-2}[dtype]
    wide64 = [t.double().requires_grad_() for t in args]
    exact = reference(*wide64)
    exact_grads = torch.autograd.grad(exact, wide64, grad.double())
    for a, b in zip((out, *grads), (exact, *exact_grads)):
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol * b.abs().max().item())


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
