"""upbench.counting: the counting rules, the two policies, zero-op reporting, caching, attribution."""
from __future__ import annotations

import math

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from upbench import get, make
from upbench.counting import ALL_POLICIES, POLICIES, Count, count, count_operator
from upbench.rules import counted_as_zero_note

pytestmark = pytest.mark.usefixtures("single_thread")

OPERATORS = [
    "nearest", "bilinear", "carafe", "indexnet-hin", "indexnet-m2o", "a2u", "sapa-i", "sapa-b", "sapa-g",
    "dysample-lp", "dysample-pl", "fade", "pixel-shuffle", "deconv", "jbu", "resfu",
]


class Einsum(nn.Module):
    def __init__(self, equation: str):
        super().__init__()
        self.equation = equation

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.equation, a, b)


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def fvcore_default_total(module: nn.Module, inputs: tuple) -> int:
    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return int(analysis.total())


# -- einsum ------------------------------------------------------------------------------------
ASSEMBLY = "nckhw,nkhawb->nchawb"
# (n, c, k, h, w) for the assembly equation; a = b = 2
ODD_SHAPES = [(1, 3, 9, 7, 11), (2, 5, 25, 3, 7), (1, 7, 9, 13, 5)]


@pytest.mark.parametrize("n,c,k,h,w", ODD_SHAPES + [(1, 16, 25, 8, 8)])
def test_einsum_is_exact_product_of_index_sizes(n, c, k, h, w):
    a = torch.randn(n, c, k, h, w)
    b = torch.randn(n, k, h, 2, w, 2)
    counted = count(Einsum(ASSEMBLY), (a, b), "paper", stages=())
    assert counted.macs == n * c * k * h * w * 2 * 2
    assert count(Einsum(ASSEMBLY), (a, b), "fvcore", stages=()).macs == n * c * k * h * w * 4


def test_fvcore_default_einsum_is_off_by_rounding():
    """fvcore's generic handle parses numpy's '%.3e' FLOP printout: wrong in the low digits."""
    differs = []
    for n, c, k, h, w in ODD_SHAPES:
        a = torch.randn(n, c, k, h, w)
        b = torch.randn(n, k, h, 2, w, 2)
        exact = n * c * k * h * w * 4
        fv = fvcore_default_total(Einsum(ASSEMBLY), (a, b))
        ours = count(Einsum(ASSEMBLY), (a, b), "paper", stages=()).macs
        assert ours == exact
        if fv != exact:
            differs.append((n, c, k, h, w, exact, fv))
    # 3 * 9 * 7 * 11 * 4 = 8316 MACs; numpy prints 1.663e+04 FLOPs -> fvcore says 8315
    assert differs, "expected fvcore's generic einsum handle to be off for at least one odd shape"
    assert (1, 3, 9, 7, 11, 8316, 8315) in differs


def test_einsum_similarity_equation():
    n, d, k, h, w = 2, 6, 9, 5, 3
    keys = torch.randn(n, d, k, h, w)
    query = torch.randn(n, d, h, 2, w, 2)
    counted = count(Einsum("ndkhw,ndhawb->nkhawb"), (keys, query), "paper", stages=())
    assert counted.macs == n * d * k * h * w * 4


# -- elementwise products ----------------------------------------------------------------------
def test_tensor_times_tensor_counts_output_numel():
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    assert count(Lambda(lambda x, y: x * y), (a, b), "paper", stages=()).macs == 2 * 3 * 4 * 5


def test_broadcast_product_counts_output_numel():
    # an (N, 1, 2H, 2W) index map times an (N, C, 2H, 2W) feature: one multiply per output element
    a, b = torch.randn(2, 1, 6, 8), torch.randn(2, 7, 6, 8)
    assert count(Lambda(lambda x, y: x * y), (a, b), "paper", stages=()).macs == 2 * 7 * 6 * 8


@pytest.mark.parametrize(
    "fn",
    [lambda x, y: x * 2.0, lambda x, y: 3 * x, lambda x, y: x * y.sum(), lambda x, y: x * y.reshape(-1)[:1]],
    ids=["tensor*float", "int*tensor", "tensor*0-d", "tensor*1-element"],
)
def test_scalar_times_tensor_is_free(fn):
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    counted = count(Lambda(fn), (a, b), "paper", stages=())
    assert counted.macs == 0
    assert "mul" in counted.zero_ops


def test_fvcore_policy_does_not_count_elementwise_products():
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    counted = count(Lambda(lambda x, y: x * y), (a, b), "fvcore", stages=())
    assert counted.macs == 0
    assert "mul" in counted.zero_ops


# -- policies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("N,C,H,W", [(1, 16, 4, 4), (2, 3, 5, 7)])
def test_interpolation_policies(N, C, H, W):
    out_numel = N * C * 4 * H * W
    for name, fvcore_macs in (("bilinear", 4 * out_numel), ("nearest", out_numel)):
        op = make(name, C, impl="reference")
        inputs = op.example_inputs(N, H, W)
        assert count(op, inputs, "paper").macs == 0
        assert count(op, inputs, "fvcore").macs == fvcore_macs


def test_fvcore_policy_counts_layer_norm():
    """SAPA-B: LayerNorm(C) on x (H x W) and on the guide (2H x 2W), affine: 5 per element under fvcore."""
    N, C, H, W = 2, 16, 4, 6
    op = make("sapa-b", C, impl="reference", K=3, d=8)
    inputs = op.example_inputs(N, H, W)
    paper, fv = count(op, inputs, "paper"), count(op, inputs, "fvcore")
    assert fv.macs - paper.macs == 5 * N * C * H * W + 5 * N * C * 4 * H * W
    assert fv.stage_macs["feature_embedding"] - paper.stage_macs["feature_embedding"] == 25 * N * C * H * W
    assert "layer_norm" in paper.zero_ops
    assert "layer_norm" not in fv.zero_ops


def test_fvcore_policy_counts_batch_norm():
    """IndexNet-HIN: eval BatchNorm(2C) at H x W = 2 per element; nearest upsample of x = 1 per output
    element; the index-map product is not counted by fvcore."""
    N, C, H, W = 2, 8, 4, 4
    op = make("indexnet-hin", C, impl="reference")
    inputs = op.example_inputs(N, H, W)
    paper, fv = count(op, inputs, "paper"), count(op, inputs, "fvcore")
    bn = 2 * N * 2 * C * H * W
    nearest = N * C * 4 * H * W
    product = N * C * 4 * H * W
    assert fv.macs - paper.macs == bn + nearest - product
    assert fv.stage_macs["kernel_generation"] - paper.stage_macs["kernel_generation"] == bn
    assert "batch_norm" in paper.zero_ops
    assert "batch_norm" not in fv.zero_ops
    assert "mul" in fv.zero_ops


def test_fvcore_policy_counts_group_norm_and_pooling():
    """A2U: two GroupNorm(C) at H x W (5 per element), two adaptive pools (the filters' and the
    projection's) reading the 2H x 2W guide (1 per input element), minus the uncounted product."""
    N, C, H, W = 2, 8, 4, 4
    op = make("a2u", C, impl="reference")
    inputs = op.example_inputs(N, H, W)
    paper, fv = count(op, inputs, "paper"), count(op, inputs, "fvcore")
    group_norms = 2 * 5 * N * C * H * W
    pools = 2 * N * C * 4 * H * W
    product = N * C * H * W
    assert fv.macs - paper.macs == group_norms + pools - product
    assert {"group_norm", "adaptive_avg_pool2d"} <= set(paper.zero_ops)


def test_unknown_policy_raises():
    op = make("nearest", 4, impl="reference")
    with pytest.raises(ValueError, match="bogus") as info:
        count(op, op.example_inputs(1, 2, 2), "bogus")
    for policy in POLICIES:
        assert policy in str(info.value)
    with pytest.raises(ValueError, match="bogus"):
        count_operator("nearest", 4, 1, 2, 2, policy="bogus")


# -- no silent zero ----------------------------------------------------------------------------
EXPECTED_PAPER_ZERO_OPS = {
    "nearest": {"upsample_nearest2d"},
    "bilinear": {"upsample_bilinear2d"},
    "carafe": {"softmax", "im2col", "pixel_shuffle"},
    "indexnet-hin": {"batch_norm", "hardtanh_", "pixel_shuffle", "sigmoid", "upsample_nearest2d"},
    "indexnet-m2o": {"batch_norm", "hardtanh_", "pixel_shuffle", "sigmoid", "upsample_nearest2d", "stack"},
    "a2u": {"adaptive_avg_pool2d", "group_norm", "leaky_relu", "im2col", "pixel_shuffle", "sigmoid", "softmax",
            "sum", "div"},
    "sapa-i": {"layer_norm", "softmax", "im2col", "permute"},
    "sapa-b": {"layer_norm", "softmax", "im2col", "permute"},
    "sapa-g": {"layer_norm", "softmax", "im2col", "permute", "sigmoid", "rsub", "add", "upsample_nearest2d"},
    "dysample-lp": {"pixel_shuffle", "grid_sampler", "add", "stack"},
    "dysample-pl": {"pixel_shuffle", "grid_sampler", "add", "stack"},
    "fade": {"softmax", "im2col", "sigmoid", "rsub", "add", "upsample_nearest2d"},
    "pixel-shuffle": {"pixel_shuffle"},
    "deconv": set(),
    "jbu": {"gelu", "feature_dropout", "pad", "sum", "stack", "softmax", "cat", "div", "upsample_bicubic2d", "add_"},
    "resfu": {"group_norm", "relu", "pad", "sum", "sub", "div", "softmax", "upsample_bilinear2d", "upsample_nearest2d",
              "add", "add_"},
}


@pytest.mark.parametrize("name", OPERATORS)
def test_zero_ops_listed_under_paper_policy(name):
    counted = count_operator(name, 8, 1, 3, 3, policy="paper")
    assert EXPECTED_PAPER_ZERO_OPS[name] <= set(counted.zero_ops), counted.zero_ops
    assert list(counted.zero_ops) == sorted(counted.zero_ops)
    # counted ops never appear as zero
    assert not {"_convolution", "linear", "einsum", "addmm", "matmul"} & set(counted.zero_ops)


def test_zero_ops_listed_under_fvcore_policy():
    counted = count_operator("carafe", 8, 1, 3, 3, policy="fvcore")
    assert {"softmax", "im2col", "pixel_shuffle"} <= set(counted.zero_ops)
    nearest = count_operator("nearest", 8, 1, 3, 3, policy="fvcore")
    assert "upsample_nearest2d" not in nearest.zero_ops


def test_zero_ops_of_a_module_with_unknown_ops():
    """An op no handle knows (here cumsum) is reported, not silently dropped."""
    x = torch.randn(2, 3, 4)
    counted = count(Lambda(lambda t: torch.cumsum(t, dim=1)), (x,), "paper", stages=())
    assert counted.macs == 0
    assert "cumsum" in counted.zero_ops


# -- caching and attribution -------------------------------------------------------------------
def test_count_operator_is_cached():
    first = count_operator("carafe", 16, 1, 4, 4)
    second = count_operator("carafe", 16, 1, 4, 4)
    assert second is first
    other = count_operator("carafe", 16, 1, 4, 5)
    assert other is not first
    assert isinstance(first, Count) and first.policy == "paper"


def test_count_operator_keys_on_hparams_and_policy():
    a = count_operator("carafe", 16, 1, 4, 4, hparams=(("K", 3),))
    b = count_operator("carafe", 16, 1, 4, 4, hparams=(("K", 5),))
    c = count_operator("carafe", 16, 1, 4, 4, policy="fvcore", hparams=(("K", 3),))
    assert a is not b and a.macs != b.macs
    assert c.policy == "fvcore"
    assert count_operator("carafe", 16, 1, 4, 4, hparams=(("K", 3),)) is a


@pytest.mark.parametrize("policy", ["paper", "fvcore"])
@pytest.mark.parametrize("name", OPERATORS)
def test_stage_counts_sum_to_total(name, policy):
    for N, H, W in ((1, 4, 4), (2, 3, 5)):
        counted = count_operator(name, 12, N, H, W, policy=policy)
        assert set(counted.stage_macs) == set(get(name).stages)
        assert counted.unattributed_macs == 0
        assert sum(counted.stage_macs.values()) == counted.macs
        assert sum(counted.stage_params.values()) == counted.params
        assert counted.flops == 2 * counted.macs
        # the stage helper agrees with the dicts
        for stage in get(name).stages:
            assert counted.stage(stage) == (counted.stage_macs[stage], counted.stage_params[stage])
        assert counted.stage("total") == (counted.macs, counted.params)


def test_unattributed_macs_are_detected():
    """A module whose work runs outside its declared stages shows it as unattributed."""

    class Leaky(nn.Module):
        stages = ("inner",)

        def __init__(self):
            super().__init__()
            self.inner = nn.Conv2d(3, 4, 1, bias=False)
            self.outer = nn.Parameter(torch.randn(5, 4))

        def forward(self, x):
            y = self.inner(x)  # 1 * 3 * 4 * 2 * 2 = 48 MACs
            return y.flatten(2).transpose(1, 2) @ self.outer.T  # (1, 4, 4) @ (4, 5): 80 MACs

    counted = count(Leaky(), (torch.randn(1, 3, 2, 2),), "paper")
    assert counted.stage_macs == {"inner": 48}
    assert counted.macs == 48 + 80
    assert counted.unattributed_macs == 80
    assert math.isclose(counted.flops, 2 * 128)


def test_count_restores_training_mode():
    op = make("indexnet-hin", 8, impl="reference")
    op.train()
    count(op, op.example_inputs(2, 3, 3), "paper")
    assert op.training
    op.eval()
    count(op, op.example_inputs(2, 3, 3), "paper")
    assert not op.training


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_count_restores_every_module_training_flag(policy):
    """A frozen eval BatchNorm inside a training model comes back in eval, and the reverse."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.Dropout(), nn.ReLU()))
    model.train()
    model[1].eval()
    model[2][0].eval()
    before = {name: m.training for name, m in model.named_modules()}
    count(model, (torch.randn(1, 3, 4, 4),), policy)
    assert {name: m.training for name, m in model.named_modules()} == before
    model.eval()
    model[2].train()
    before = {name: m.training for name, m in model.named_modules()}
    count(model, (torch.randn(1, 3, 4, 4),), policy)
    assert {name: m.training for name, m in model.named_modules()} == before


@pytest.mark.parametrize("name", ["sapa-i", "sapa-b", "sapa-g"])
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_stage_counts_do_not_depend_on_the_implementation(name, policy):
    from upbench import kernels

    if not kernels.compiled_available():
        pytest.skip(f"compiled ops unavailable: {kernels.build_info()['error']}")
    reference = make(name, 8, K=3, impl="reference")
    compiled = make(name, 8, K=3, impl="compiled")
    assert compiled.fused  # the case where one op does two stages' work
    inputs = reference.example_inputs(1, 4, 5)
    expected, counted = count(reference, inputs, policy), count(compiled, inputs, policy)
    assert counted.stage_macs == expected.stage_macs
    assert counted.stage_macs["inner_product"] > 0
    assert counted.macs == expected.macs


@pytest.mark.parametrize("policy", ["paper", "fvcore", "torch"])
def test_op_stages_must_name_a_stage(policy):
    """Under every policy: the torch policy used to fail with a bare KeyError, or not at all."""
    class Declared(nn.Module):
        stages = ("inner",)
        op_stages = {"local_similarity": "nowhere"}

        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(2, 2)

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(ValueError, match="Declared: op_stages gives 'local_similarity' to stage 'nowhere'"):
        count(Declared(), (torch.randn(1, 2),), policy)


# -- matrix products beyond mm / bmm / matmul / linear ------------------------------------------
class _Tokens(nn.Module):
    """A (1, c, h, w) map as (1, h*w, c) tokens through ``mix``."""

    def __init__(self, mix) -> None:
        super().__init__()
        self.mix = mix

    def forward(self, x: torch.Tensor, guide: object = None) -> torch.Tensor:
        return self.mix(x.flatten(2).transpose(1, 2))


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.attention(t, t, t)[0]


# (module, MACs by hand) on tokens of length L = 16, width E = 8
PRODUCTS = {
    "scaled_dot_product_attention": (lambda t: torch.nn.functional.scaled_dot_product_attention(t, t, t),
                                     16 * 16 * (8 + 8)),
    "_native_multi_head_attention": (_SelfAttention(),  # its fused path: counting runs eval, no_grad
                                     2 * 16 * 8 * 8 + 2 * 16 * 8 * 8 + 2 * 16 * 16 * 8),
    "tensordot": (lambda t: torch.tensordot(t, t, dims=([2], [2])), (16 * 8) * (16 * 8) // 8),
    "baddbmm": (lambda t: torch.baddbmm(torch.zeros(1, 16, 16), t, t.transpose(1, 2)), 16 * 8 * 16),
    "mv": (lambda t: torch.mv(t[0], t[0, 0]), 16 * 8),
    "dot": (lambda t: torch.dot(t[0, 0], t[0, 1]) * t, 8),  # a single number scaling t: that product is free
    "mul_": (lambda t: t.clone().mul_(t), 16 * 8),
}


@pytest.mark.parametrize("op", list(PRODUCTS))
def test_matrix_products_count_under_the_paper_policy_and_are_named_where_a_policy_leaves_them(op):
    mix, by_hand = PRODUCTS[op]
    module, inputs = _Tokens(mix), (torch.randn(1, 8, 4, 4), None)
    paper = count(module, inputs, policy="paper")
    assert paper.macs == by_hand and op not in paper.zero_ops
    if op != "mul_":  # FlopCounterMode counts no elementwise product
        assert count(module, inputs, policy="torch").macs == by_hand
    fvcore = count(module, inputs, policy="fvcore")
    if fvcore.macs == 0 and op != "mul_":  # fvcore has no handle: the reports must say so
        assert op in counted_as_zero_note(fvcore.zero_ops)


# (a's shape, b's shape, MACs by hand): broadcast batches either way, vectors on either side, a 0-dim result
MATMULS = [
    ((1, 16, 8), (4, 8, 32), 4 * 16 * 8 * 32),
    ((4, 16, 8), (1, 8, 32), 4 * 16 * 8 * 32),
    ((3, 1, 5, 6), (2, 6, 7), 3 * 2 * 5 * 6 * 7),
    ((16, 8), (8,), 16 * 8),
    ((8,), (8, 32), 8 * 32),
    ((8,), (2, 8, 32), 2 * 8 * 32),
    ((8,), (8,), 8),
]


@pytest.mark.parametrize("a_shape,b_shape,by_hand", MATMULS)
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_matmul_is_counted_exactly_for_broadcast_batches_and_vectors(a_shape, b_shape, by_hand, policy):
    """fvcore's matmul handle took the batch from the first operand alone and raised IndexError on a vector."""
    inputs = (torch.randn(a_shape), torch.randn(b_shape))
    assert count(Lambda(torch.matmul), inputs, policy, stages=()).macs == by_hand


@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize("equation,a_shape,b_shape,by_hand", [
    ("nchw,nchw->", (2, 8, 4, 4), (2, 8, 4, 4), 2 * 8 * 4 * 4),  # a full contraction: a 0-dim result of data
    ("nchw,nchw->nhw", (4, 8, 4, 4), (1, 8, 4, 4), 4 * 8 * 4 * 4),  # b broadcast over n
    ("nchw,nchw->nhw", (1, 8, 4, 4), (4, 8, 4, 4), 4 * 8 * 4 * 4),
    ("oc,nc...->no...", (6, 4), (2, 4, 8, 8), 6 * 4 * 2 * 8 * 8),  # a 1x1 conv written with an ellipsis
    ("...ij,...jk->...ik", (3, 1, 5, 6), (2, 6, 7), 3 * 2 * 5 * 6 * 7),  # ellipses of different lengths broadcast
])
def test_einsum_counts_full_contractions_and_broadcast_operands(policy, equation, a_shape, b_shape, by_hand):
    inputs = (torch.randn(a_shape), torch.randn(b_shape))
    assert count(Einsum(equation), inputs, policy, stages=()).macs == by_hand


@pytest.mark.parametrize("policy", POLICIES)
def test_shape_arithmetic_is_neither_counted_nor_listed(policy):
    """2 * h in a traced forward is a 0-dim mul of sizes: no data, so not a product to count or name."""
    counted = count(Lambda(lambda x: x.new_zeros(x.shape[0], x.shape[1] * 2)), (torch.randn(3, 4),), policy, stages=())
    assert counted.macs == 0 and "mul" not in counted.zero_ops


PRODUCT_SPELLINGS = {
    "a * b then sum": lambda a, b: (a * b).sum(1),
    "linalg.vecdot": lambda a, b: torch.linalg.vecdot(a, b, dim=1),
    "a * b + a": lambda a, b: a * b + a,
    "addcmul": lambda a, b: torch.addcmul(a, a, b, value=2.0),
    "addcmul_": lambda a, b: a.clone().addcmul_(a, b),
    "addcmul into a larger sum": lambda a, b: torch.addcmul(torch.zeros(3, *a.shape), a, b),  # a * b, not 3 x
    "outer": lambda a, b: torch.outer(a.flatten()[:64], b[0, 0, 0]),  # 64 x 4 products, as many as a has elements
}


@pytest.mark.parametrize("spelling", list(PRODUCT_SPELLINGS))
def test_the_paper_policy_counts_an_elementwise_product_however_it_is_spelled(spelling):
    """A plugin's MACs must not depend on whether it wrote (a * b).sum(1) or vecdot, a * b + c or addcmul."""
    a, b = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    assert count(Lambda(PRODUCT_SPELLINGS[spelling]), (a, b), "paper", stages=()).macs == a.numel()
