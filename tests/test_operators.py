"""Every operator behind the Upsampler interface: shapes, dtypes, gradients, Eq. 4, construction rules."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import upbench
from upbench import get, make

pytestmark = pytest.mark.usefixtures("single_thread")

OPERATORS = [
    "nearest", "bilinear", "carafe", "indexnet-hin", "indexnet-m2o", "a2u", "sapa-i", "sapa-b", "sapa-g",
    "dysample-lp", "dysample-pl", "fade", "pixel-shuffle", "deconv", "jbu", "resfu",
]
GUIDED = ["indexnet-hin", "indexnet-m2o", "a2u", "sapa-i", "sapa-b", "sapa-g", "fade", "jbu", "resfu"]
SMOOTH_WINDOW = ["carafe", "a2u", "sapa-i", "sapa-b", "sapa-g"]
# The smallest H and W an operator takes at its defaults where 1 is too small: jbu reflect-pads the 2H x 2W
# maps by its radius 3, which needs 2H, 2W > 3 (tests/test_jbu.py checks the error below that); resfu's
# GroupNorm of 8 channels, one per group, refuses a lone 1 x 1 map (tests/test_resfu.py).
SMALLEST_SIDE = {"jbu": 2, "resfu": 2}


def test_registry_order():
    assert upbench.available() == OPERATORS


@pytest.mark.parametrize("name", OPERATORS)
def test_needs_guide_flags(name):
    assert get(name).needs_guide == (name in GUIDED)


# -- shapes and dtypes -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", OPERATORS)
def test_output_shape_and_dtype(name, dtype, generator):
    C = 8
    op = make(name, C, impl="reference").to(dtype).eval()  # eval: BatchNorm at N = 1, 1 x 1 is undefined in train
    for N in (1, 3):
        for H, W in ((1, 1), (5, 5), (3, 7)):
            if min(H, W) < SMALLEST_SIDE.get(name, 1):
                continue
            x, guide = op.example_inputs(N, H, W, dtype=dtype, generator=generator)
            with torch.no_grad():
                out = op(x, guide)
            assert out.shape == (N, C, 2 * H, 2 * W), (N, H, W)
            assert out.dtype == dtype
            assert torch.isfinite(out).all(), (N, H, W)


@pytest.mark.parametrize("name", ["a2u", "sapa-b", "sapa-g", "jbu", "resfu"])
def test_guide_channels_may_differ_where_allowed(name, generator):
    op = make(name, 8, guide_channels=20, impl="reference").eval()
    x, guide = op.example_inputs(2, 3, 5, generator=generator)
    assert guide.shape == (2, 20, 6, 10)
    with torch.no_grad():
        assert op(x, guide).shape == (2, 8, 6, 10)


@pytest.mark.parametrize("name", OPERATORS)
def test_batch_elements_are_independent(name, generator):
    """Upsampling a batch equals upsampling each image alone (A2U's per-image filters use groups = N)."""
    op = make(name, 8, impl="reference").double().eval()
    x, guide = op.example_inputs(3, 4, 5, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        batched = op(x, guide)
        for i in range(3):
            single = op(x[i:i + 1], None if guide is None else guide[i:i + 1])
            torch.testing.assert_close(batched[i:i + 1], single, rtol=1e-10, atol=1e-10)


# -- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPERATORS)
def test_gradients_reach_every_parameter(name, generator):
    C = 8
    with torch.random.fork_rng():
        torch.manual_seed(0)
        op = make(name, C, impl="reference").double().train()  # N = 2, 4 x 4: BatchNorm is defined in train mode
    x, guide = op.example_inputs(2, 4, 4, dtype=torch.float64, generator=generator)
    x.requires_grad_(True)
    if guide is not None:
        guide.requires_grad_(True)
    out = op(x, guide)
    weights = torch.randn(out.shape, dtype=out.dtype, generator=generator)
    (out * weights).sum().backward()

    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if guide is not None:
        assert guide.grad is not None and torch.isfinite(guide.grad).all()
        assert guide.grad.abs().sum() > 0, f"{name}: the guide does not influence the output"
    params = dict(op.named_parameters())
    for pname, p in params.items():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
    zero = [pname for pname, p in params.items() if p.grad.abs().sum() == 0]
    # with a random loss every learned weight should move; allow none to be dead
    assert not zero, f"{name}: zero gradient for {zero}"


# -- paper Eq. 4: smooth windows come back unchanged -------------------------------------------
def _perturb_parameters(op: nn.Module, generator: torch.Generator) -> None:
    """Whatever the weights: move every parameter off its initialisation."""
    with torch.no_grad():
        for p in op.parameters():
            p.add_(torch.randn(p.shape, dtype=p.dtype, generator=generator) * 0.5)


@pytest.mark.parametrize("K", [None, 3, 5])
@pytest.mark.parametrize("name", SMOOTH_WINDOW)
def test_smooth_window_property(name, K, generator):
    hp = {} if K is None else {"K": K}
    with torch.random.fork_rng():
        torch.manual_seed(K or 0)
        op = make(name, 6, impl="reference", **hp).double().eval()
    K = op.hparams["K"]
    r = K // 2
    N, H, W = 2, 2 * r + 3, 2 * r + 4
    rows = [i for i in range(2 * H) if r <= i // 2 <= H - 1 - r]
    cols = [j for j in range(2 * W) if r <= j // 2 <= W - 1 - r]
    assert rows and cols
    for perturbed in (False, True):
        if perturbed:
            _perturb_parameters(op, generator)
        b = torch.randn(N, 6, 1, 1, dtype=torch.float64, generator=generator) * 3
        x = b.expand(N, 6, H, W).contiguous()
        _, guide = op.example_inputs(N, H, W, dtype=torch.float64, generator=generator)
        with torch.no_grad():
            out = op(x, None if guide is None else 5 * guide)
        interior = out[:, :, rows][:, :, :, cols]
        expected = b.expand_as(interior)
        assert (interior - expected).abs().max().item() <= 1e-10, (name, perturbed)
        if not perturbed:
            # at initialisation the kernels are spread out, so the border (window partly outside the map,
            # zero-padded) is not b: the interior selection matters
            assert (out[:, :, 0, 0] - b[:, :, 0, 0]).abs().max().item() > 1e-6
        if guide is not None:
            # whatever the guide: another one changes nothing in the interior either
            with torch.no_grad():
                other = op(x, -guide)[:, :, rows][:, :, :, cols]
            assert (other - expected).abs().max().item() <= 1e-10, (name, perturbed)


def test_smooth_window_not_a_tautology(generator):
    """IndexNet's sigmoid weights do not sum to one: a constant x does not come back unchanged, so the
    check above has teeth."""
    op = make("indexnet-hin", 6, impl="reference").double().eval()
    N, H, W = 1, 5, 5
    b = torch.randn(N, 6, 1, 1, dtype=torch.float64, generator=generator) + 3
    x = b.expand(N, 6, H, W).contiguous()
    _, guide = op.example_inputs(N, H, W, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        out = op(x, guide)
    assert (out[:, :, 4:6, 4:6] - b).abs().max().item() > 1e-3


# -- construction rules ------------------------------------------------------------------------
@pytest.mark.parametrize("C", [1, 3, 48, 64, 100])
def test_a2u_group_norm_groups(C, generator):
    op = make("a2u", C, impl="reference").eval()
    norms = [m for m in op.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 2
    for norm in norms:
        assert norm.num_channels == C
        assert C % norm.num_groups == 0
        assert 1 <= norm.num_groups <= 32
        if C % 32 == 0:
            assert norm.num_groups == 32
    x, guide = op.example_inputs(2, 3, 4, generator=generator)
    with torch.no_grad():
        assert op(x, guide).shape == (2, C, 6, 8)


@pytest.mark.parametrize("name", ["indexnet-hin", "indexnet-m2o", "sapa-i", "fade"])
def test_guide_channels_must_equal_channels(name):
    assert make(name, 8, impl="reference").guide_channels == 8
    assert make(name, 8, guide_channels=8, impl="reference").guide_channels == 8
    with pytest.raises(ValueError):
        make(name, 8, guide_channels=4, impl="reference")


@pytest.mark.parametrize("name", OPERATORS)
def test_reference_impl_always_works(name, generator):
    op = make(name, 4, impl="reference").eval()
    assert op.impl == "reference"
    x, guide = op.example_inputs(2, 3, 3, generator=generator)
    with torch.no_grad():
        assert op(x, guide).shape == (2, 4, 6, 6)


@pytest.mark.parametrize("name", OPERATORS)
def test_hyperparameter_defaults_are_the_papers(name):
    paper = {
        "carafe": {"K": 5, "d": 64, "encoder_kernel": 3},
        "a2u": {"K": 3, "encoder_kernel": 6},
        "sapa-i": {"K": 5},
        "sapa-b": {"K": 5, "d": 32},
        "sapa-g": {"K": 5, "d": 32},
        "dysample-lp": {"groups": 4, "dyscope": 0},
        "dysample-pl": {"groups": 4, "dyscope": 0},
        "fade": {"K": 5, "d": 64, "encoder_kernel": 3},
        "pixel-shuffle": {"conv_kernel": 3},
        "deconv": {"deconv_kernel": 4},
        "jbu": {"K": 7, "d": 32},
        "resfu": {"K": 3, "d": 32},
    }.get(name, {})
    assert make(name, 8, impl="reference").hparams == paper


def test_nearest_and_bilinear_values():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    near = make("nearest", 1, impl="reference")(x)
    assert torch.equal(near[0, 0], torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))
    bil = make("bilinear", 1, impl="reference")(x)
    # align_corners=False: output index i samples input (i + 0.5) / 2 - 0.5 (clamped at 0); the map is 2y + x
    assert bil[0, 0, 0, 1].item() == pytest.approx(0.25)
    assert bil[0, 0, 1, 1].item() == pytest.approx(0.75)
    assert bil[0, 0, 2, 2].item() == pytest.approx(2 * 0.75 + 0.75)
