"""Issue section 7: every misuse is a ValueError naming the operator, what was given and what was expected."""
from __future__ import annotations

import re

import pytest
import torch

from upbench import available, get, make

OPERATORS = [
    "nearest", "bilinear", "carafe", "indexnet-hin", "indexnet-m2o", "a2u", "sapa-i", "sapa-b", "sapa-g",
    "dysample-lp", "dysample-pl", "fade", "pixel-shuffle", "deconv", "jbu", "resfu",
]
GUIDED = [n for n in OPERATORS if n in ("indexnet-hin", "indexnet-m2o", "a2u", "sapa-i", "sapa-b", "sapa-g", "fade", "jbu", "resfu")]
UNGUIDED = [n for n in OPERATORS if n not in GUIDED]
WITH_K = ["carafe", "a2u", "sapa-i", "sapa-b", "sapa-g", "fade", "jbu", "resfu"]
WITH_D = ["carafe", "sapa-b", "sapa-g", "fade", "jbu", "resfu"]
MATCHING_GUIDE = ["indexnet-hin", "indexnet-m2o", "sapa-i", "fade"]
C = 8


def build(name: str, **kwargs):
    return make(name, C, impl="reference", **kwargs).eval()


def raises(*fragments: str):
    """pytest.raises(ValueError) whose message contains every fragment (checked after the block)."""
    return _Raises(fragments)


class _Raises:
    def __init__(self, fragments):
        self.fragments = fragments
        self._ctx = pytest.raises(ValueError)

    def __enter__(self):
        self.info = self._ctx.__enter__()
        return self.info

    def __exit__(self, *exc):
        suppressed = self._ctx.__exit__(*exc)
        if not suppressed:  # some other exception: let it through unchanged
            return False
        message = str(self.info.value)
        missing = [f for f in self.fragments if f not in message]
        assert not missing, f"message {message!r} lacks {missing}"
        return suppressed


def shape(*dims: int) -> str:
    return str(tuple(dims))


# -- forward: x ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("bad", [(C, 4, 4), (1, 1, C, 4, 4), (C,)], ids=["3d", "5d", "1d"])
def test_wrong_rank_of_x(name, bad):
    op = build(name)
    x = torch.randn(*bad)
    _, guide = op.example_inputs(1, 4, 4)
    with raises(name, "4-D", shape(*bad)):
        op(x, guide)


@pytest.mark.parametrize("name", OPERATORS)
def test_x_not_a_tensor(name):
    op = build(name)
    _, guide = op.example_inputs(1, 4, 4)
    with raises(name, "4-D", "list"):
        op([[1.0]], guide)


@pytest.mark.parametrize("name", OPERATORS)
def test_x_channels_differ_from_built(name):
    op = build(name)
    x = torch.randn(2, C + 3, 4, 4)
    _, guide = op.example_inputs(2, 4, 4)
    with raises(name, f"{C} channels", shape(2, C + 3, 4, 4)):
        op(x, guide)


@pytest.mark.parametrize("name", OPERATORS)
def test_x_empty(name):
    op = build(name)
    x = torch.randn(1, C, 0, 4)
    with raises(name, ">= 1", shape(1, C, 0, 4)):
        op(x, None if not op.needs_guide else torch.randn(1, C, 0, 8))


# -- forward: guide ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GUIDED)
def test_guide_missing(name):
    op = build(name)
    x = torch.randn(2, C, 3, 5)
    with raises(name, "None", shape(2, C, 6, 10)):
        op(x)
    with raises(name, "None", shape(2, C, 6, 10)):
        op(x, None)


@pytest.mark.parametrize("name", UNGUIDED)
def test_guide_given_to_unguided(name):
    op = build(name)
    x = torch.randn(2, C, 3, 5)
    with raises(name, "no guide", shape(2, C, 6, 10)):
        op(x, torch.randn(2, C, 6, 10))


@pytest.mark.parametrize("name", UNGUIDED)
def test_non_tensor_guide_given_to_unguided(name):
    """Still a ValueError (not an AttributeError from reading .shape off a non-tensor)."""
    op = build(name)
    with raises(name, "no guide"):
        op(torch.randn(1, C, 2, 2), [[0.0]])


@pytest.mark.parametrize("name", GUIDED)
@pytest.mark.parametrize("gh,gw", [(6, 8), (3, 5), (8, 10), (7, 11)])
def test_guide_not_twice_the_size(name, gh, gw):
    op = build(name)
    x = torch.randn(2, C, 3, 5)
    with raises(name, "6 x 10", f"{gh} x {gw}"):
        op(x, torch.randn(2, C, gh, gw))


@pytest.mark.parametrize("name", GUIDED)
def test_guide_wrong_rank(name):
    op = build(name)
    x = torch.randn(2, C, 3, 5)
    with raises(name, "4-D", shape(C, 6, 10)):
        op(x, torch.randn(C, 6, 10))


@pytest.mark.parametrize("name", GUIDED)
def test_batch_mismatch(name):
    op = build(name)
    x = torch.randn(2, C, 3, 5)
    with raises(name, "N=2", "N=3"):
        op(x, torch.randn(3, C, 6, 10))


@pytest.mark.parametrize("name", GUIDED)
def test_guide_channels_differ_from_built(name):
    op = build(name)
    x = torch.randn(2, C, 3, 5)
    with raises(name, f"{C} guide channels", shape(2, C + 1, 6, 10)):
        op(x, torch.randn(2, C + 1, 6, 10))


@pytest.mark.parametrize("name", ["a2u", "sapa-b", "sapa-g", "jbu", "resfu"])
def test_guide_channels_differ_from_built_free_guide(name):
    op = make(name, C, guide_channels=12, impl="reference").eval()
    x = torch.randn(1, C, 2, 2)
    with raises(name, "12 guide channels", shape(1, C, 4, 4)):
        op(x, torch.randn(1, C, 4, 4))


# -- construction ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MATCHING_GUIDE)
@pytest.mark.parametrize("guide_channels", [4, 16])
def test_guide_channels_must_equal_channels(name, guide_channels):
    with raises(name, f"guide_channels={guide_channels}", f"channels={C}"):
        make(name, C, guide_channels=guide_channels, impl="reference")


@pytest.mark.parametrize("name", UNGUIDED)
def test_guide_channels_for_unguided(name):
    with raises(name, "guide_channels=8", "no guide"):
        make(name, C, guide_channels=8, impl="reference")


@pytest.mark.parametrize("name", GUIDED)
@pytest.mark.parametrize("bad", [0, -3])
def test_non_positive_guide_channels(name, bad):
    with raises(name, f"guide_channels={bad}", "positive"):
        make(name, C, guide_channels=bad, impl="reference")


@pytest.mark.parametrize("name", WITH_K)
@pytest.mark.parametrize("K", [2, 4, 6])
def test_even_K(name, K):
    with raises(name, f"K={K}", "odd"):
        make(name, C, K=K, impl="reference")


@pytest.mark.parametrize("name", WITH_K)
@pytest.mark.parametrize("K", [0, -1, -3])
def test_non_positive_K(name, K):
    with raises(name, f"K={K}", "positive"):
        make(name, C, K=K, impl="reference")


@pytest.mark.parametrize("name", WITH_K)
@pytest.mark.parametrize("K", [3.0, "3", True])
def test_non_integer_K(name, K):
    with raises(name, f"K={K!r}", "integer"):
        make(name, C, K=K, impl="reference")


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("channels", [0, -8])
def test_non_positive_channels(name, channels):
    with raises(name, f"channels={channels}", "positive"):
        make(name, channels, impl="reference")


@pytest.mark.parametrize("name", OPERATORS)
def test_non_integer_channels(name):
    with raises(name, "channels=8.0", "positive integer"):
        make(name, 8.0, impl="reference")


@pytest.mark.parametrize("name", WITH_D)
@pytest.mark.parametrize("d", [0, -16])
def test_non_positive_d(name, d):
    with raises(name, f"d={d}", "positive"):
        make(name, C, d=d, impl="reference")


@pytest.mark.parametrize("ke", [2, 4])
def test_carafe_even_encoder_kernel(ke):
    with raises("carafe", f"encoder_kernel={ke}", "odd"):
        make("carafe", C, encoder_kernel=ke, impl="reference")


@pytest.mark.parametrize("ke", [3, 5])
def test_a2u_odd_encoder_kernel(ke):
    with raises("a2u", f"encoder_kernel={ke}", "even"):
        make("a2u", C, encoder_kernel=ke, impl="reference")


KNOBS = [(name, knob) for name in OPERATORS for knob in get(name).knobs]


@pytest.mark.parametrize("name, knob", KNOBS, ids=[f"{n}-{k}" for n, k in KNOBS])
def test_knob_above_its_max(name, knob):
    """Every knob has an upper bound that the message states; the largest valid value passes."""
    spec = get(name).knobs[knob]
    largest = spec.max - (spec.rule == "odd" and spec.max % 2 == 0) - (spec.rule == "even" and spec.max % 2 == 1)
    assert spec.check(name, knob, largest) == largest
    step = 2 if spec.rule in ("odd", "even") else 1
    bound = "0 or 1" if spec.rule == "flag" else f"<= {spec.max}"
    for bad in (largest + step, 2**63 - 1 - (spec.rule == "even")):
        with raises(name, f"{knob}={bad}", bound):
            make(name, C, impl="reference", **{knob: bad})


def test_huge_K_never_reaches_the_kernels():
    """K*K of 2**63 - 1 overflows int64: the knob stops it before an operator is built."""
    with raises("sapa-b", f"K={2**63 - 1}", "<= 63"):
        make("sapa-b", 4, K=2**63 - 1, d=4, impl="compiled")


def test_unknown_operator_lists_known():
    with pytest.raises(ValueError) as info:
        make("sapa-x", C)
    message = str(info.value)
    assert "'sapa-x'" in message
    for name in OPERATORS:
        assert name in message
    with pytest.raises(ValueError, match=re.escape(", ".join(available()))):
        get("bicubic")


@pytest.mark.parametrize("name", OPERATORS)
def test_unknown_hyperparameter_lists_accepted(name):
    accepted = list(get(name).knobs)
    with raises(name, "kernel_size", *(accepted or ["none"])):
        make(name, C, kernel_size=3, impl="reference")


def test_unknown_hyperparameter_d_for_sapa_i():
    """SAPA-I has no projection: d is not a knob (it is C)."""
    with raises("sapa-i", "d", "K"):
        make("sapa-i", C, d=16, impl="reference")


@pytest.mark.parametrize("name", OPERATORS)
def test_unknown_impl(name):
    with raises(name, "impl='fast'", "reference"):
        make(name, C, impl="fast")


@pytest.mark.parametrize("name", ["nearest", "bilinear", "indexnet-hin", "indexnet-m2o"])
def test_compiled_impl_for_operator_without_one(name):
    assert not get(name).compiled_ops
    with raises(name, "compiled", "reference"):
        make(name, C, impl="compiled")
