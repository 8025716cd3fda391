"""DySample, FADE, pixel shuffle and transposed convolution: the properties their papers state, counts per
stage against closed forms derived here, gradients, and bad input.

The comparison with the released code (tiny-smart/dysample, poppinace/fade) is not in the repository
(its code may not be copied here); the README records what was compared and the largest difference.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from upbench import Knob, make
from upbench.counting import count
from upbench.formulas import TOTAL
from upbench.kernels import compiled_available
from upbench.network import GIGA, MEGA, as_printed, network_cost
from upbench.presets import get_preset
from stage_counts import assert_stages_count_as_derived

pytestmark = pytest.mark.usefixtures("single_thread")

DYSAMPLE = ["dysample-lp", "dysample-pl"]
NEW = [*DYSAMPLE, "fade", "pixel-shuffle", "deconv"]
F64 = torch.float64


def bilinear(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def inputs(op, N=2, H=5, W=7, generator=None):
    return op.example_inputs(N, H, W, dtype=F64, generator=generator)


# -- shapes over the knobs -----------------------------------------------------------------------
@pytest.mark.parametrize("name,hparams", [
    ("dysample-lp", {"groups": 2, "dyscope": 1}), ("dysample-pl", {"groups": 8, "dyscope": 1}),
    ("dysample-lp", {"groups": 1}), ("fade", {"K": 3, "d": 8, "encoder_kernel": 5}),
    ("pixel-shuffle", {"conv_kernel": 1}), ("pixel-shuffle", {"conv_kernel": 5}),
    ("deconv", {"deconv_kernel": 2}), ("deconv", {"deconv_kernel": 6}),
])
def test_shapes_over_knobs(name, hparams, generator):
    op = make(name, 16, impl="reference", **hparams).double()
    for H, W in ((1, 1), (3, 8)):
        x, guide = inputs(op, 2, H, W, generator)
        with torch.no_grad():
            assert op(x, guide).shape == (2, 16, 2 * H, 2 * W)


# -- DySample: zero offsets are bilinear upsampling; offsets move the samples ---------------------
def _set_offsets(op, x_shift: float = 0.0, y_shift: float = 0.0, group: int | None = None) -> None:
    """Zero offset weights; biases that move every sample (or one group's) by a constant in low-res pixels."""
    gen = op.offset_generation
    groups = op.hparams["groups"]
    per_coordinate = gen.offset.out_channels // 2  # [x: groups (x 4 sub-positions for lp)][y: same]
    per_group = per_coordinate // groups
    with torch.no_grad():
        gen.offset.weight.zero_()
        gen.offset.bias.zero_()
        for coordinate, shift in ((0, x_shift), (1, y_shift)):
            for g in range(groups) if group is None else (group,):
                start = coordinate * per_coordinate + g * per_group
                gen.offset.bias[start:start + per_group] = shift / 0.25  # the static scope factor


@pytest.mark.parametrize("name", DYSAMPLE)
@pytest.mark.parametrize("groups", [1, 4])
def test_dysample_zero_offsets_are_bilinear(name, groups, generator):
    op = make(name, 8, impl="reference", groups=groups).double()
    _set_offsets(op)
    x, _ = inputs(op, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(op(x), bilinear(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", DYSAMPLE)
def test_dysample_offsets_shift_samples_along_their_axis(name, generator):
    """A one-pixel x offset samples where bilinear samples two output columns further right (y: rows);
    only the group whose offsets moved changes: pins the released channel order (coordinate, group)."""
    op = make(name, 8, impl="reference", groups=4).double()
    x, _ = inputs(op, 1, 6, 7, generator)
    reference = bilinear(x)
    with torch.no_grad():
        _set_offsets(op, x_shift=1.0)
        torch.testing.assert_close(op(x)[..., :-2], reference[..., 2:], rtol=0, atol=1e-12)
        _set_offsets(op, y_shift=-1.0)
        torch.testing.assert_close(op(x)[..., 2:, :], reference[..., :-2, :], rtol=0, atol=1e-12)
        _set_offsets(op, x_shift=0.5, group=2)  # channels 4, 5 of 8
        moved = op(x)
    assert not torch.allclose(moved[:, 4:6], reference[:, 4:6])
    torch.testing.assert_close(moved[:, :4], reference[:, :4], rtol=0, atol=1e-12)
    torch.testing.assert_close(moved[:, 6:], reference[:, 6:], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", DYSAMPLE)
def test_dysample_dynamic_scope_starts_as_the_static_one(name, generator):
    """The scope conv starts at zero weights: 0.5 * sigmoid(0) = 0.25, the static factor."""
    static = make(name, 8, impl="reference").double()
    dynamic = make(name, 8, impl="reference", dyscope=1).double()
    assert torch.count_nonzero(dynamic.offset_generation.scope.weight) == 0
    with torch.no_grad():
        dynamic.offset_generation.offset.load_state_dict(static.offset_generation.offset.state_dict())
        static.offset_generation.offset.weight.mul_(1e3)  # offsets of pixels, not thousandths
        dynamic.offset_generation.offset.weight.mul_(1e3)
        x, _ = inputs(static, generator=generator)
        torch.testing.assert_close(dynamic(x), static(x), rtol=0, atol=1e-12)
        dynamic.offset_generation.scope.weight.fill_(1.0)
        assert not torch.allclose(dynamic(x), static(x))


def test_dysample_initial_offsets_are_small(generator):
    """Released init: offset weights ~ N(0, 0.001), zero bias, so a fresh DySample is nearly bilinear."""
    op = make("dysample-lp", 64, impl="reference").double()
    assert op.offset_generation.offset.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert torch.count_nonzero(op.offset_generation.offset.bias) == 0
    x, _ = inputs(op, generator=generator)
    with torch.no_grad():
        assert (op(x) - bilinear(x)).abs().max() < 0.05


def test_dysample_pl_generates_offsets_after_the_pixel_shuffle():
    lp = make("dysample-lp", 16, impl="reference", groups=2)
    pl = make("dysample-pl", 16, impl="reference", groups=2)
    assert (lp.offset_generation.offset.in_channels, lp.offset_generation.offset.out_channels) == (16, 16)
    assert (pl.offset_generation.offset.in_channels, pl.offset_generation.offset.out_channels) == (4, 4)


# -- FADE: normalised kernels, the gate between encoder and decoder --------------------------------
def test_fade_kernels_are_normalised(generator):
    op = make("fade", 8, impl="reference", K=3).double()
    x, guide = inputs(op, generator=generator)
    with torch.no_grad():
        kernels = op.kernel_generation(x, guide)
    assert kernels.shape == (2, 9, 10, 14)
    assert (kernels >= 0).all()
    torch.testing.assert_close(kernels.sum(1), torch.ones(2, 10, 14, dtype=F64), rtol=0, atol=1e-12)


def _open_gate(op, bias: float) -> None:
    with torch.no_grad():
        op.gated_addition.gate.weight.zero_()
        op.gated_addition.gate.bias.fill_(bias)


def test_fade_gate_chooses_between_guide_and_reassembly(generator):
    """Gate fully open: the guide itself; closed: the reassembly, where a constant decoder window
    (kernels sum to one) comes back unchanged whatever the guide."""
    op = make("fade", 4, impl="reference", K=3).double()
    x, guide = inputs(op, 1, 6, 6, generator)
    with torch.no_grad():
        _open_gate(op, 100.0)
        torch.testing.assert_close(op(x, guide), guide, rtol=0, atol=1e-12)
        _open_gate(op, -100.0)
        constant = torch.randn(1, 4, 1, 1, dtype=F64, generator=generator).expand(1, 4, 6, 6).contiguous()
        out = op(constant, guide)
    interior = out[..., 2:-2, 2:-2]  # windows that lie inside the map (zero padding outside)
    torch.testing.assert_close(interior, constant[..., :1, :1].expand_as(interior), rtol=0, atol=1e-12)


def test_fade_guide_reaches_the_kernels(generator):
    """The semi-shift kernels read the guide: changing it changes the output with the gate closed."""
    op = make("fade", 4, impl="reference").double()
    _open_gate(op, -100.0)
    x, guide = inputs(op, generator=generator)
    with torch.no_grad():
        assert not torch.allclose(op(x, guide), op(x, guide + torch.randn_like(guide)))


def test_fade_compiled_matches_reference(generator):
    if not compiled_available():
        pytest.skip("compiled kernels not built here")
    reference = make("fade", 8, impl="reference").double()
    compiled = make("fade", 8, impl="compiled").double()
    compiled.load_state_dict(reference.state_dict())
    x, guide = inputs(reference, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, guide), reference(x, guide), rtol=0, atol=1e-12)


# -- pixel shuffle and deconv: the fixed interpolations are special weights ------------------------
def test_pixel_shuffle_with_copy_weights_is_nearest(generator):
    op = make("pixel-shuffle", 3, impl="reference", conv_kernel=1).double()
    with torch.no_grad():
        op.sub_pixel_convolution.conv.weight.zero_()
        op.sub_pixel_convolution.conv.bias.zero_()
        for c in range(3):
            op.sub_pixel_convolution.conv.weight[4 * c:4 * c + 4, c] = 1.0
        x, _ = inputs(op, generator=generator)
        torch.testing.assert_close(op(x), F.interpolate(x, scale_factor=2, mode="nearest"), rtol=0, atol=0)


def test_deconv_2_is_pixel_shuffle_1(generator):
    """A 2x2 stride-2 transposed conv and a 1x1 sub-pixel conv are the same function and cost the same MACs;
    the deconv's bias is shared by the four sub-positions (C), the sub-pixel conv's is not (4C)."""
    deconv = make("deconv", 6, impl="reference", deconv_kernel=2).double()
    shuffle = make("pixel-shuffle", 6, impl="reference", conv_kernel=1).double()
    weight = deconv.transposed_convolution.weight  # (C_in, C_out, 2, 2)
    with torch.no_grad():
        shuffle.sub_pixel_convolution.conv.weight.copy_(weight.permute(1, 2, 3, 0).reshape(24, 6, 1, 1))
        shuffle.sub_pixel_convolution.conv.bias.copy_(deconv.transposed_convolution.bias.repeat_interleave(4))
        x, _ = inputs(deconv, generator=generator)
        torch.testing.assert_close(shuffle(x), deconv(x), rtol=0, atol=1e-12)
    deconv_macs, deconv_params = count(deconv, (x, None)).stage(TOTAL)
    shuffle_macs, shuffle_params = count(shuffle, (x, None)).stage(TOTAL)
    assert (shuffle_macs, shuffle_params - deconv_params) == (deconv_macs, 3 * 6)


def test_deconv_4_with_fcn_bilinear_weights_is_bilinear_inside(generator):
    op = make("deconv", 2, impl="reference").double()
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=F64)
    with torch.no_grad():
        op.transposed_convolution.weight.zero_()
        op.transposed_convolution.bias.zero_()
        for c in range(2):
            op.transposed_convolution.weight[c, c] = taps[:, None] * taps[None, :]
        x, _ = inputs(op, generator=generator)
        out = op(x)
    # bilinear clamps at the border, the deconv pads with zero: they agree one output pixel in
    torch.testing.assert_close(out[..., 1:-1, 1:-1], bilinear(x)[..., 1:-1, 1:-1], rtol=0, atol=1e-12)


# -- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,hparams", [("dysample-lp", {"dyscope": 1}), ("dysample-pl", {"dyscope": 1})])
def test_dynamic_scope_gradients(name, hparams, generator):
    op = make(name, 8, impl="reference", **hparams).double()
    x, _ = inputs(op, generator=generator)
    x.requires_grad_(True)
    (op(x) * torch.randn(2, 8, 10, 14, dtype=F64, generator=generator)).sum().backward()
    for pname, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    assert x.grad.abs().sum() > 0


def test_dysample_gradcheck(generator):
    op = make("dysample-lp", 4, impl="reference", groups=2, dyscope=1).double()
    with torch.no_grad():
        op.offset_generation.offset.weight.normal_(0, 0.3, generator=generator)  # samples off the pixel grid
    x = torch.randn(1, 4, 3, 4, dtype=F64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))


# -- counts: per stage, against closed forms derived here ---------------------------------------
def _closed_forms(name: str, C: int, N: int, H: int, W: int, hp: dict) -> dict[str, tuple[int, int]]:
    """(MACs, params) per stage, derived from each architecture independently of the library's formulas."""
    P = N * H * W
    if name in DYSAMPLE:
        G, dyn = hp.get("groups", 4), hp.get("dyscope", 0)
        # offset conv (+ scope conv and the offset * scope product); lp at H x W, pl on C/4 at 2H x 2W
        cin, cout, pixels = (C, 8 * G, P) if name == "dysample-lp" else (C // 4, 2 * G, 4 * P)
        offsets = (pixels * cout * (cin * (1 + dyn) + dyn), cin * cout * (1 + dyn) + cout)
        return {"offset_generation": offsets, "grid_sampling": (0, 0)}
    if name == "fade":
        K, d, ke = hp.get("K", 5), hp.get("d", 64), hp.get("encoder_kernel", 3)
        guide_side = (4 * P * C * d + 4 * P * ke * ke * d * K * K, C * d + d)
        decoder_side = (P * C * d + P * ke * ke * d * K * K, C * d)
        encoder = (0, ke * ke * d * K * K + K * K)
        return {
            "kernel_generation": tuple(map(sum, zip(guide_side, decoder_side, encoder))),
            "feature_assembly": (4 * P * C * K * K, 0),
            "gated_addition": (P * C + 2 * (4 * P * C), C + 1),
        }
    if name == "pixel-shuffle":
        k = hp.get("conv_kernel", 3)
        return {"sub_pixel_convolution": (P * 4 * C * C * k * k, 4 * C * C * k * k + 4 * C)}
    k = hp.get("deconv_kernel", 4)
    return {"transposed_convolution": (P * C * C * k * k, C * C * k * k + C)}


COUNT_CASES = [
    ("dysample-lp", {}), ("dysample-lp", {"groups": 2, "dyscope": 1}), ("dysample-pl", {}),
    ("dysample-pl", {"groups": 8, "dyscope": 1}), ("fade", {}), ("fade", {"K": 3, "d": 16, "encoder_kernel": 1}),
    ("pixel-shuffle", {}), ("pixel-shuffle", {"conv_kernel": 1}), ("deconv", {}), ("deconv", {"deconv_kernel": 2}),
]


@pytest.mark.parametrize("name,hparams", COUNT_CASES)
def test_counts_equal_exact_formulas_and_closed_forms_per_stage(name, hparams, generator):
    for C in (16, 48):
        op = make(name, C, impl="reference", **hparams)
        for N, H, W in ((1, 8, 8), (2, 5, 7)):
            assert_stages_count_as_derived(op, _closed_forms(name, C, N, H, W, hparams), N, H, W, generator,
                                           f"{name} {hparams} C={C} N={N} {H}x{W}")


@pytest.mark.parametrize("name", DYSAMPLE)
def test_fvcore_policy_counts_the_bilinear_sampling(name):
    """Under the fvcore policy grid_sample is 4 MACs per output element; the paper policy counts it zero."""
    op = make(name, 8, impl="reference")
    fv = count(op, op.example_inputs(2, 3, 5), "fvcore")
    assert fv.stage_macs["grid_sampling"] == 4 * 2 * 8 * 6 * 10


def test_fade_segformer_b1_reproduces_its_published_cost():
    """FADE's README / paper, SegFormer-B1 on ADE20K: +2.65 GFLOPs (MACs), +0.29 M params over bilinear."""
    cost = network_cost(get_preset("segformer-b1"), "fade")
    assert as_printed(cost.added_macs("paper"), GIGA) == "2.65"
    assert as_printed(cost.added_params, MEGA) == "0.29"
    assert cost.note == ""


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,channels,hparams,fragments", [
    ("dysample-lp", 6, {}, ["channels=6", "groups=4", "divisible"]),
    ("dysample-pl", 6, {"groups": 2}, ["channels=6", "multiple of 4"]),
    ("dysample-lp", 8, {"groups": 0}, ["groups=0", "positive"]),
    ("dysample-lp", 8, {"dyscope": 2}, ["dyscope=2", "0 or 1"]),
    ("dysample-pl", 8, {"dyscope": True}, ["dyscope=True", "integer"]),
    ("pixel-shuffle", 8, {"conv_kernel": 2}, ["conv_kernel=2", "odd"]),
    ("deconv", 8, {"deconv_kernel": 3}, ["deconv_kernel=3", "even"]),
    ("fade", 8, {"encoder_kernel": 2}, ["encoder_kernel=2", "odd"]),
])
def test_bad_construction_names_operator_and_value(name, channels, hparams, fragments):
    with pytest.raises(ValueError) as info:
        make(name, channels, impl="reference", **hparams)
    for fragment in [name, *fragments]:
        assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["dysample-lp", "pixel-shuffle", "deconv"])
def test_no_compiled_path_is_refused(name):
    with pytest.raises(ValueError, match=f"{name}: has no compiled implementation"):
        make(name, 8, impl="compiled")


def test_flag_knob_rule():
    flag = Knob(0, "flag", max=1)
    assert [flag.check("op", "f", v) for v in (0, 1)] == [0, 1]
    for bad in (2, -1):
        with pytest.raises(ValueError, match="expected a 0 or 1 integer"):
            flag.check("op", "f", bad)
