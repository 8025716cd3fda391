"""JBU (FeatUp's JBULearnedRange, one x2 stage): shapes, the small-size error, counts per stage against closed
forms derived here, gradients, and the window ops against naive per-pixel loops.

The comparison with the released code (mhamilton723/FeatUp, its C++ AdaptiveConv built and run beside this
operator) is not in the repository (its code may not be copied here); the README records what was compared
and the largest difference.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from upbench import get, make
from upbench.counting import count
from upbench.formulas import TOTAL
from implementations import assert_compiled_matches_reference, counts_of_both_paths, perturb
from stage_counts import assert_stages_count_as_derived

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


def build(C: int = 4, Cg: int | None = None, **hparams: int):
    return make("jbu", C, guide_channels=Cg, impl="reference", **hparams).double().eval()


def reflect(index: int, size: int) -> int:
    """Reflect padding's source index (the edge pixel is not repeated): -1 -> 1, size -> size - 2."""
    if index < 0:
        return -index
    if index >= size:
        return 2 * (size - 1) - index
    return index


# -- naive per-pixel definitions -------------------------------------------------------------------
def naive_adaptive_convolution(kernel: torch.Tensor, source: torch.Tensor, K: int) -> torch.Tensor:
    """out[n, c, y, x] = sum over the K x K window (tap i * K + j at offset (i - r, j - r), reflected at the
    border) of kernel[n, tap, y, x] * source[n, c, y + i - r, x + j - r]."""
    n_, c_, h, w = source.shape
    r = K // 2
    out = torch.zeros_like(source)
    for n in range(n_):
        for y in range(h):
            for x in range(w):
                for i in range(K):
                    for j in range(K):
                        weight = kernel[n, i * K + j, y, x]
                        out[n, :, y, x] += weight * source[n, :, reflect(y + i - r, h), reflect(x + j - r, w)]
    return out


def naive_range_kernel(keys: torch.Tensor, K: int, log_temperature: float) -> torch.Tensor:
    """softmax over the window of exp(log_temperature) * <key at the pixel, key at the (reflected) tap>."""
    n_, _, h, w = keys.shape
    r = K // 2
    logits = torch.zeros(n_, K * K, h, w, dtype=keys.dtype)
    for n in range(n_):
        for y in range(h):
            for x in range(w):
                for i in range(K):
                    for j in range(K):
                        neighbour = keys[n, :, reflect(y + i - r, h), reflect(x + j - r, w)]
                        logits[n, i * K + j, y, x] = (keys[n, :, y, x] * neighbour).sum()
    return torch.softmax(math.exp(log_temperature) * logits, dim=1)


@pytest.mark.parametrize("K", [1, 3, 5, 7])
def test_adaptive_convolution_matches_a_naive_loop(K, generator):
    op = build(K=K)
    h, w = 4, 6  # 2H x 2W of x 2 x 3: the K = 7 window reaches past the whole map, reflected
    kernel = torch.randn(2, K * K, h, w, dtype=F64, generator=generator)
    source = torch.randn(2, 3, h, w, dtype=F64, generator=generator)
    expected = naive_adaptive_convolution(kernel, source, K)
    torch.testing.assert_close(op.adaptive_convolution(kernel, source), expected, rtol=0, atol=1e-12)


def test_a_one_tap_kernel_shifts_the_map(generator):
    """All weight on tap (i, j) reads the pixel at offset (i - r, j - r): pins the row-major tap order."""
    K, r, i, j = 5, 2, 0, 3
    op = build(K=K)
    source = torch.randn(1, 2, 9, 11, dtype=F64, generator=generator)
    kernel = torch.zeros(1, K * K, 9, 11, dtype=F64)
    kernel[:, i * K + j] = 1
    out = op.adaptive_convolution(kernel, source)
    # interior rows y with y + i - r inside the map, columns likewise
    torch.testing.assert_close(out[..., r:, : 11 - (j - r)], source[..., : 9 - r, j - r:], rtol=0, atol=0)


@pytest.mark.parametrize("K,d,Cg", [(3, 4, 3), (5, 8, 6)])
def test_forward_matches_the_naive_definition(K, d, Cg, generator):
    """The whole forward from naive parts: range kernel by a loop, spatial Gaussian written out, bilateral
    normalisation and fixup, bicubic upsampling, adaptive convolution by a loop."""
    op = build(6, Cg, K=K, d=d)
    perturb(op, generator)
    with torch.no_grad():
        op.range_kernel.log_temperature.fill_(0.7)
        op.bilateral_kernel.sigma_spatial.fill_(0.8)
    x = torch.randn(2, 6, 3, 2, dtype=F64, generator=generator)
    guide = torch.randn(2, Cg, 6, 4, dtype=F64, generator=generator)
    with torch.no_grad():
        range_kernel = naive_range_kernel(op.range_kernel.projection(guide), K, 0.7)
        offsets = [-1 + 2 * t / (K - 1) for t in range(K)]  # spread over [-1, 1] across the window
        spatial = torch.tensor([math.exp(-(u * u + v * v) / (2 * 0.8**2)) for u in offsets for v in offsets], dtype=F64)
        kernel = range_kernel * spatial.view(1, -1, 1, 1)
        kernel = kernel / kernel.sum(1, keepdim=True)
        kernel = kernel + 0.1 * op.bilateral_kernel.fixup(torch.cat([kernel, guide], 1))
        upsampled = torch.nn.functional.interpolate(x, size=(6, 4), mode="bicubic", align_corners=False)
        expected = naive_adaptive_convolution(kernel, upsampled, K)
        torch.testing.assert_close(op(x, guide), expected, rtol=0, atol=1e-12)


def test_spatial_kernel_at_the_released_defaults():
    """sigma 1, K = 3: offsets -1, 0, 1, so the centre is 1, edges exp(-1/2), corners exp(-1)."""
    spatial = build(K=3).bilateral_kernel.spatial_kernel().view(3, 3)
    e, c = math.exp(-0.5), math.exp(-1.0)
    expected = torch.tensor([[c, e, c], [e, 1, e], [c, e, c]], dtype=F64)
    torch.testing.assert_close(spatial, expected, rtol=0, atol=1e-15)


def test_normalised_kernels_keep_a_constant_map(generator):
    """With the fixup's output zeroed, every kernel is non-negative and sums to one, and reflect padding
    keeps a constant map constant: a constant x comes back unchanged everywhere, borders included."""
    op = build(5, 3, K=5)
    perturb(op, generator)
    with torch.no_grad():
        op.bilateral_kernel.fixup[-1].weight.zero_()
        op.bilateral_kernel.fixup[-1].bias.zero_()
        x = torch.randn(2, 5, 1, 1, dtype=F64, generator=generator).expand(2, 5, 3, 4).contiguous()
        guide = torch.randn(2, 3, 6, 8, dtype=F64, generator=generator)
        kernel = op.bilateral_kernel(op.range_kernel(guide), guide)
        out = op(x, guide)
    assert (kernel >= 0).all()
    torch.testing.assert_close(kernel.sum(1), torch.ones(2, 6, 8, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(out, x[..., :1, :1].expand_as(out), rtol=0, atol=1e-12)


def test_the_fixup_moves_the_kernel(generator):
    """The test above is not a tautology: at initialisation the fixup makes the kernels miss sum one."""
    op = build(5, 3, K=5)
    guide = torch.randn(1, 3, 6, 8, dtype=F64, generator=generator)
    with torch.no_grad():
        kernel = op.bilateral_kernel(op.range_kernel(guide), guide)
    assert (kernel.sum(1) - 1).abs().max() > 1e-3


# -- shapes, guide width, defaults, dropout ---------------------------------------------------------
@pytest.mark.parametrize("K,d,Cg", [(1, 4, None), (3, 16, 3), (5, 8, None), (7, 32, 3), (9, 4, 20)])
def test_output_shape_and_finite(K, d, Cg, generator):
    op = build(8, Cg, K=K, d=d)
    smallest = max(1, (K // 2 + 2) // 2)
    for N, H, W in ((1, smallest, smallest), (2, 3, 5), (3, 6, 4)):
        if min(H, W) < smallest:
            continue
        x, guide = op.example_inputs(N, H, W, dtype=F64, generator=generator)
        with torch.no_grad():
            out = op(x, guide)
        assert out.shape == (N, 8, 2 * H, 2 * W)
        assert torch.isfinite(out).all()


def test_reads_a_guide_of_any_width():
    assert get("jbu").reads_any_guide()
    assert build(8, 3).guide_channels == 3  # FeatUp's RGB guide
    assert build(8).guide_channels == 8


def test_released_initialisation_and_layers():
    op = build(16, 3)
    assert op.hparams == {"K": 7, "d": 32}
    assert op.range_kernel.log_temperature.item() == 0.0
    assert op.bilateral_kernel.sigma_spatial.item() == 1.0
    projection, fixup = op.range_kernel.projection, op.bilateral_kernel.fixup
    assert [type(m).__name__ for m in projection] == ["Conv2d", "GELU", "Dropout2d", "Conv2d"]
    assert [type(m).__name__ for m in fixup] == ["Conv2d", "GELU", "Dropout2d", "Conv2d"]
    assert (projection[0].in_channels, projection[0].out_channels, projection[3].out_channels) == (3, 32, 32)
    assert (fixup[0].in_channels, fixup[0].out_channels, fixup[3].out_channels) == (49 + 3, 49, 49)
    assert projection[2].p == fixup[2].p == 0.1


def test_dropout_acts_in_training_only(generator):
    op = build(8, 3)
    x, guide = op.example_inputs(1, 4, 5, dtype=F64, generator=generator)
    with torch.no_grad():
        torch.manual_seed(0)
        first = op(x, guide)
        torch.manual_seed(1)
        torch.testing.assert_close(op(x, guide), first, rtol=0, atol=0)
        op.train()
        torch.manual_seed(0)
        trained = op(x, guide)
        torch.manual_seed(1)
        assert not torch.allclose(op(x, guide), trained)


# -- the size reflect padding needs -----------------------------------------------------------------
@pytest.mark.parametrize("K", [3, 5, 7, 9, 15])
def test_too_small_a_map_is_a_clear_error(K, generator):
    """Reflect padding by r needs 2H and 2W > r: the largest x that is too small is refused with the
    operator, K and the size in the message, and the smallest that is not works."""
    op = build(4, 3, K=K)
    radius = K // 2
    smallest = (radius + 2) // 2
    assert 2 * smallest > radius >= 2 * (smallest - 1)
    for H, W in ((smallest - 1, smallest), (smallest, smallest - 1)):
        if min(H, W) < 1:
            continue
        x, guide = op.example_inputs(1, H, W, dtype=F64, generator=generator)
        with pytest.raises(ValueError) as info:
            op(x, guide)
        message = str(info.value)
        for fragment in ("jbu:", f"K={K}", f"radius {radius}", f"at least {radius + 1}",
                         f"x of at least {smallest} x {smallest}", f"got x of {H} x {W}"):
            assert fragment in message, (fragment, message)
    x, guide = op.example_inputs(1, smallest, smallest, dtype=F64, generator=generator)
    with torch.no_grad():
        assert op(x, guide).shape == (1, 4, 2 * smallest, 2 * smallest)


def test_default_K_refuses_a_single_pixel(generator):
    op = build(4)
    x, guide = op.example_inputs(2, 1, 3, dtype=F64, generator=generator)
    with pytest.raises(ValueError, match=r"jbu: K=7 .* got x of 1 x 3"):
        op(x, guide)


# -- gradients ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("K", [3, 5])
def test_gradcheck_inputs_and_every_parameter(K, generator):
    """x, the guide and every weight (the temperature and sigma included), through the reflected borders."""
    op = build(3, 2, K=K, d=4)
    perturb(op, generator)
    names = [name for name, _ in op.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in op.parameters())
    x = torch.randn(1, 3, 2, 3, dtype=F64, generator=generator, requires_grad=True)
    guide = torch.randn(1, 2, 4, 6, dtype=F64, generator=generator, requires_grad=True)

    def forward(x, guide, *weights):
        return functional_call(op, dict(zip(names, weights)), (x, guide))

    assert torch.autograd.gradcheck(forward, (x, guide, *params))


# -- counts: per stage, against closed forms derived here ---------------------------------------------
def closed_forms(C: int, Cg: int, N: int, H: int, W: int, K: int, d: int) -> dict[str, tuple[int, int]]:
    """(MACs, params) per stage, from the architecture: everything runs at the 4NHW output pixels."""
    pixels, taps = 4 * N * H * W, K * K
    # projection Cg -> d -> d (1x1 convs with bias), then d products per tap; params + the temperature
    range_kernel = (pixels * (Cg * d + d * d + taps * d), Cg * d + d + d * d + d + 1)
    # range x spatial product (at K = 1 a product with one number: a scaling, free), fixup (taps + Cg) -> taps ->
    # taps; params + sigma
    product = taps if K > 1 else 0
    bilateral = (pixels * (product + (taps + Cg) * taps + taps * taps), (taps + Cg) * taps + taps + taps * taps + taps + 1)
    return {
        "range_kernel": range_kernel,
        "bilateral_kernel": bilateral,
        "bicubic_upsampling": (0, 0),
        "adaptive_convolution": (pixels * taps * C, 0),
    }


@pytest.mark.parametrize("C,Cg,hparams", [
    (16, None, {}), (16, 3, {}), (12, 3, {"K": 3, "d": 16}), (8, 20, {"K": 5, "d": 8}), (6, None, {"K": 1, "d": 4}),
])
def test_counts_equal_exact_formulas_and_closed_forms_per_stage(C, Cg, hparams, generator):
    op = make("jbu", C, guide_channels=Cg, impl="reference", **hparams)
    K, d = op.hparams["K"], op.hparams["d"]
    for N, H, W in ((1, 8, 8), (2, 5, 7)):
        derived = closed_forms(C, op.guide_channels, N, H, W, K, d)
        where = f"jbu C={C} Cg={op.guide_channels} {hparams} N={N} {H}x{W}"
        counted = assert_stages_count_as_derived(op, derived, N, H, W, generator, where)
        assert counted.stage(TOTAL) == tuple(map(sum, zip(*derived.values())))


def test_fvcore_policy_leaves_the_products_out():
    """The window products are elementwise: the paper policy counts them, fvcore's own handles do not
    (only the 1x1 convs remain)."""
    op = make("jbu", 8, guide_channels=3, impl="reference", K=3, d=4)
    pixels = 4 * 2 * 3 * 5
    fvcore = count(op, op.example_inputs(2, 3, 5), "fvcore")
    assert fvcore.stage_macs["adaptive_convolution"] == 0
    assert fvcore.stage_macs["range_kernel"] == pixels * (3 * 4 + 4 * 4)
    assert fvcore.stage_macs["bilateral_kernel"] == pixels * ((9 + 3) * 9 + 9 * 9)


# -- the compiled path: the reflect ops in place of the shifted views ------------------------------------
@pytest.mark.parametrize("K,d,Cg,size", [(7, 4, 3, (2, 2)), (3, 8, None, (3, 5)), (5, 4, 6, (4, 3)), (9, 2, 3, (3, 3))])
def test_the_compiled_path_matches_the_reference_forward_and_every_gradient(compiled_ops, K, d, Cg, size, generator):
    """Same weights on both paths, float64, the smallest maps each K allows among them: the output, x, the guide
    and every parameter's gradient."""
    assert_compiled_matches_reference("jbu", 5, Cg, {"K": K, "d": d}, size, generator)


@pytest.mark.parametrize("policy", ["paper", "fvcore", "torch"])
def test_counts_do_not_depend_on_the_implementation(compiled_ops, policy):
    """The compiled ops count what the reference's products count under each policy: the paper policy counts
    both stages' window products, fvcore and FlopCounterMode count elementwise products as zero."""
    _, compiled = counts_of_both_paths("jbu", 8, 3, {"K": 5, "d": 4}, (3, 4), policy)
    assert (compiled.stage_macs["adaptive_convolution"] > 0) == (policy == "paper")
