"""ReSFU (zmhhmz/ReSFU, x2): the assembly against a per-pixel transcription of the released FNS kernel, the mask
against the released unfold construction, the guided filter and PCDC blocks by their defining properties,
counts per stage against closed forms derived here, gradients, initialisation and the errors.

The comparison with the released module itself (its demo/resfu.py, the FNS CUDA kernel transcribed to plain
torch, run beside this operator) is not in the repository (its code may not be copied here); the README
records what was compared and the largest difference.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from upbench import get, make
from implementations import assert_compiled_matches_reference, counts_of_both_paths, perturb
from stage_counts import assert_stages_count_as_derived

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


def build(C: int = 8, Cg: int | None = None, **hparams: int):
    return make("resfu", C, guide_channels=Cg, impl="reference", **hparams).double().eval()


# -- the assembly against the released kernel's arithmetic, pixel by pixel -----------------------------------
def naive_fns(attention: torch.Tensor, x: torch.Tensor, K: int) -> torch.Tensor:
    """The released FNSAttnForward, one output element at a time: output pixel (py, px) of tap (i, j) samples x
    bilinearly at low-resolution row floor(py / 2) + i - r + s (s = -1/4 for even py, +1/4 for odd), clamped to
    [0, h - 1], the upper neighbour clamped too; likewise for columns."""
    n_, c_, h, w = x.shape
    r = K // 2

    def position(p: int, tap: int, size: int) -> tuple[int, int, float]:
        shift = -0.25 if p % 2 == 0 else 0.25
        at = min(max(p // 2 + tap - r + shift, 0.0), size - 1.0)
        low = int(math.floor(at))
        return low, min(low + 1, size - 1), at - low

    out = torch.zeros(n_, c_, 2 * h, 2 * w, dtype=x.dtype)
    for py in range(2 * h):
        for px in range(2 * w):
            for i in range(K):
                y0, y1, fy = position(py, i, h)
                for j in range(K):
                    x0, x1, fx = position(px, j, w)
                    sample = ((1 - fy) * (1 - fx) * x[:, :, y0, x0] + fy * (1 - fx) * x[:, :, y1, x0]
                              + (1 - fy) * fx * x[:, :, y0, x1] + fy * fx * x[:, :, y1, x1])
                    out[:, :, py, px] += attention[:, i * K + j, py, px, None] * sample
    return out


@pytest.mark.parametrize("K,h,w", [(3, 3, 4), (5, 2, 3), (7, 1, 2), (1, 2, 2)])
def test_assembly_is_the_released_bilinear_window_sum(K, h, w, generator):
    """Also where the window reaches past the map (K = 5, 7 on 1-3 rows): the released kernel clamps there."""
    stage = get("resfu")(4, K=K, impl="reference").feature_assembly
    x = torch.randn(2, 3, h, w, dtype=F64, generator=generator)
    scores = torch.randn(2, K * K, 2 * h, 2 * w, dtype=F64, generator=generator)
    ours = stage(scores, torch.zeros_like(scores), x)
    attention = F.softmax(scores + released_mask(K, 2 * h, 2 * w), dim=1)
    torch.testing.assert_close(ours, naive_fns(attention, x, K), rtol=0, atol=1e-13)


def released_mask(K: int, height: int, width: int) -> torch.Tensor:
    """The released construction: a zero map padded by 2r with -1e7, unfolded K x K at dilation 2."""
    span = 2 * (K // 2)
    padded = F.pad(torch.zeros(1, 1, height, width, dtype=F64), [span] * 4, value=-1e7)
    return F.unfold(padded, kernel_size=K, dilation=2).view(1, K * K, height, width)


@pytest.mark.parametrize("K,height,width", [(3, 4, 6), (5, 2, 8), (9, 6, 2), (1, 2, 2)])
def test_taps_outside_the_map_are_masked_as_released(K, height, width):
    from operators.resfu import outside_taps

    assert torch.equal(outside_taps(K, height, width, F64, torch.device("cpu")), released_mask(K, height, width))


# -- the refinement and the score blocks, by what they are -----------------------------------------------------
def test_guided_filter_of_a_constant_source_is_that_constant(generator):
    """He et al.: a = cov(I, p) / (var(I) + eps) = 0 for a constant p, so the output is b = mean(p) = p."""
    refinement = get("resfu")(8, impl="reference").double().query_refinement
    guide = torch.randn(2, 32, 6, 10, dtype=F64, generator=generator)
    source = torch.full_like(guide, 1.75)
    torch.testing.assert_close(refinement.guided_filter(guide, source), source, rtol=0, atol=1e-12)


def test_guided_filter_follows_a_source_that_is_linear_in_the_guide(generator):
    """p = 3 I + 1 exactly: with the variance of I far above eps, the filter returns p (up to eps / var)."""
    refinement = get("resfu")(8, impl="reference").double().query_refinement
    low = 10 * torch.randn(1, 32, 4, 5, dtype=F64, generator=generator)
    guide = low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # exact under the nearest x1/2 and bilinear x2
    filtered = refinement.guided_filter(guide, 3 * guide + 1)
    torch.testing.assert_close(filtered, 3 * guide + 1, rtol=1e-3, atol=1e-3)


def test_smoothing_is_the_normalised_gaussian_of_sigma_one():
    from operators.resfu import gaussian_kernel

    kernel = gaussian_kernel().double()
    assert kernel.sum().item() == pytest.approx(1.0)
    assert kernel[0, 1].item() / kernel[1, 1].item() == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert kernel[0, 0].item() / kernel[1, 1].item() == pytest.approx(math.exp(-1.0), rel=1e-6)


def test_central_difference_is_blind_to_flat_maps(generator):
    """Windowed and centre maps equal and flat over space: the window's conv equals the centre-sum conv, so the
    block's scores depend on its bias alone, whatever the flat values."""
    op = build(8)
    perturb(op, generator)
    block = op.semantic_scores
    outputs = []
    for _ in range(2):
        flat = torch.randn(1, 32, 1, 1, dtype=F64, generator=generator).expand(1, 32, 6, 4).contiguous()
        outputs.append(block(flat, flat))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-12)
    textured = torch.randn(1, 32, 6, 4, dtype=F64, generator=generator)
    assert (block(textured, textured) - outputs[0]).abs().max() > 1e-3


# -- counts ------------------------------------------------------------------------------------------------------
def closed_forms(C: int, Cg: int, N: int, H: int, W: int, K: int, d: int) -> dict[str, tuple[int, int]]:
    """Stage -> (MACs, params) layer by layer: low = N H W low-resolution pixels, high = 4 low."""
    low, high, taps, mid = N * H * W, 4 * N * H * W, K * K, 128
    embedding = (high * Cg * d + low * C * d, 2 * C + 2 * Cg + (Cg + 1) * d + (C + 1) * d)
    # 3x3 depthwise Gaussian at high; 7 box filters of two 9-tap passes and 5 products at low; mean_a * q at high
    refinement = (high * d * 9 + low * d * (7 * 18 + 5) + high * d, 0)
    pcdc = (high * (mid * (d // 4) * taps + mid * (d // 4) + mid * (mid // 4) + mid * taps),
            2 * d + mid * (d // 4) * taps + mid + mid * (mid // 4) + mid + 2 * mid + mid * taps + taps)
    return {"embedding": embedding, "query_refinement": refinement, "semantic_scores": pcdc, "detail_scores": pcdc,
            "feature_assembly": (high * C * taps, 0)}


@pytest.mark.parametrize("C,Cg,hparams", [(8, None, {}), (64, 3, {"K": 5, "d": 16}), (32, 96, {"K": 1, "d": 8})])
def test_counts_are_the_closed_forms(C, Cg, hparams, generator):
    op = make("resfu", C, guide_channels=Cg, impl="reference", **hparams)
    K, d = op.hparams["K"], op.hparams["d"]
    for N, H, W in ((1, 4, 4), (2, 3, 5)):
        derived = closed_forms(C, op.guide_channels, N, H, W, K, d)
        where = f"resfu C={C} Cg={op.guide_channels} {hparams} N={N} {H}x{W}"
        assert_stages_count_as_derived(op, derived, N, H, W, generator, where)


# -- gradients, initialisation, errors ---------------------------------------------------------------------------
def test_gradcheck(generator):
    op = build(4, 3, K=3, d=8)
    perturb(op, generator)
    x = torch.randn(1, 4, 2, 3, dtype=F64, generator=generator, requires_grad=True)
    guide = torch.randn(1, 3, 4, 6, dtype=F64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: op(a, b), (x, guide))


# -- the compiled path: the reflect op over the four pixel phases ------------------------------------------------
def test_phases_split_and_interleave_the_pixels_by_parity():
    from operators.resfu import from_phases, to_phases

    t = torch.arange(2 * 3 * 4 * 6, dtype=F64).reshape(2, 3, 4, 6)
    phases = to_phases(t)
    assert phases.shape == (8, 3, 2, 3)
    for p in range(2):
        for q in range(2):
            torch.testing.assert_close(phases[(2 * p + q) * 2:(2 * p + q + 1) * 2], t[:, :, p::2, q::2], rtol=0, atol=0)
    torch.testing.assert_close(from_phases(phases), t, rtol=0, atol=0)


# (K, H, W): maps the mirror just pads (H or W = K // 2 + 1), larger ones, and ones it cannot pad (the reference taps)
@pytest.mark.parametrize("K,d,C,Cg,size", [(3, 8, 8, None, (2, 3)), (5, 16, 64, 3, (3, 4)), (7, 8, 6, 5, (4, 5)),
                                           (1, 8, 4, 4, (1, 2)), (3, 8, 8, 3, (1, 4)), (5, 8, 8, 8, (2, 6))])
def test_the_compiled_path_matches_the_reference_forward_and_every_gradient(compiled_ops, K, d, C, Cg, size,
                                                                              generator):
    """Same weights, float64: the output, x, the guide and every parameter's gradient. The mirrored border and
    the replicated one differ, but only at taps the mask weighs 0, and the softmax passes them no gradient."""
    reference, compiled = assert_compiled_matches_reference("resfu", C, Cg, {"K": K, "d": d}, size, generator)
    assert (compiled.feature_assembly.impl, reference.feature_assembly.impl) == ("compiled", "reference")


def test_the_compiled_assembly_runs_the_reflect_op_where_the_mirror_pads(compiled_ops, monkeypatch, generator):
    """Not the reference taps under another name: the compiled stage calls reflect_assembly once, on the four
    phases stacked along the batch, and not at all on a map the mirror cannot pad."""
    from upbench import kernels

    calls = []
    reflect_assembly = kernels.reflect_assembly

    def recorded(weights, x, K):
        calls.append((tuple(weights.shape), tuple(x.shape), K))
        return reflect_assembly(weights, x, K)

    monkeypatch.setattr(kernels, "reflect_assembly", recorded)
    op = make("resfu", 8, impl="compiled", K=5).eval()
    for size in ((3, 4), (2, 4)):
        op(*op.example_inputs(2, *size, generator=generator))
    assert calls == [((8, 25, 3, 4), (8, 8, 3, 4), 5)]


@pytest.mark.parametrize("policy", ["paper", "fvcore", "torch"])
def test_counts_do_not_depend_on_the_implementation(compiled_ops, policy):
    _, compiled = counts_of_both_paths("resfu", 16, 3, {"K": 5, "d": 8}, (3, 4), policy)
    if policy == "paper":  # the window's products at least: the reflect op is counted, not skipped
        assert compiled.stage_macs["feature_assembly"] >= 5 * 5 * 16 * (2 * 3) * (2 * 4)


def test_initialisation_is_the_released_one(generator):
    torch.manual_seed(0)
    op = make("resfu", 256, impl="reference")
    conv = op.embedding.query.weight
    assert conv.std().item() == pytest.approx(0.02, rel=0.1) and op.embedding.query.bias.abs().max() == 0
    pcdc = op.semantic_scores.weight  # Kaiming normal, fan_out = 128 * 3 * 3, gain sqrt(2)
    assert pcdc.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.1)
    assert op.semantic_scores.bias.abs().max() == 0
    assert op.embedding.norm_x.num_groups == 32 and make("resfu", 16, impl="reference").embedding.norm_x.num_groups == 16


@pytest.mark.parametrize("kwargs,fragments", [
    ({"channels": 48}, ["resfu", "channels=48", "multiple of 32"]),
    ({"channels": 64, "guide_channels": 40}, ["resfu", "guide_channels=40", "multiple of 32"]),
    ({"channels": 8, "d": 12}, ["resfu", "d=12", "multiple of 8"]),
])
def test_widths_the_released_norms_cannot_take_are_refused(kwargs, fragments):
    channels = kwargs.pop("channels")
    with pytest.raises(ValueError) as info:
        make("resfu", channels, impl="reference", **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_a_lone_pixel_is_refused_where_groupnorm_would_be_and_taken_in_a_batch(generator):
    op = build(8)
    with pytest.raises(ValueError, match=r"resfu: x of shape \(1, 8, 1, 1\)"):
        op(*op.example_inputs(1, 1, 1, dtype=F64, generator=generator))
    assert op(*op.example_inputs(2, 1, 1, dtype=F64, generator=generator)).shape == (2, 8, 2, 2)
    assert build(64)(*build(64).example_inputs(1, 1, 1, dtype=F64, generator=generator)).shape == (1, 64, 2, 2)
