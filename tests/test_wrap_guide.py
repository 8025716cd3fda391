"""Messages of a forward that fails: a wrapped module not given the guide it reads, and sizes while counting traces."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import upbench


class ReadsGuide(nn.Module):
    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x, guide=None):
        return F.interpolate(x, size=guide.shape[-2:], mode="nearest")


class FailsOnItsOwn(nn.Module):
    """Its second parameter is no guide: a None met in its forward is its own bug."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = None

    def forward(self, x, scale=2):
        return self.proj(x)


def test_a_forward_that_reads_a_guide_it_is_not_given_names_needs_guide(isolated_registry):
    upbench.wrap(ReadsGuide, name="reads-guide")
    op = upbench.make("reads-guide", 4)
    with pytest.raises(ValueError, match=r"reads-guide: the wrapped module's forward failed on a None "
                                         r"\(AttributeError: 'NoneType' object has no attribute 'shape'\); if that "
                                         r"was 'guide', which it takes after x and which defaults to None: upbench "
                                         r"passes it only to an operator wrapped with needs_guide=True"):
        op(torch.zeros(1, 4, 4, 4))
    upbench.wrap(lambda channels, guide_channels: ReadsGuide(channels), name="given-guide", needs_guide=True)
    x, guide = upbench.make("given-guide", 4).example_inputs(N=1, H=4, W=4)
    assert upbench.make("given-guide", 4)(x, guide).shape == (1, 4, 8, 8)


def test_other_errors_of_a_wrapped_forward_pass_through_as_they_are(isolated_registry):
    upbench.wrap(FailsOnItsOwn, name="fails-itself")
    with pytest.raises(TypeError, match=r"^'NoneType' object is not callable$"):
        upbench.make("fails-itself", 4)(torch.zeros(1, 4, 4, 4))


def test_input_errors_met_while_counting_traces_the_module_show_sizes_as_numbers():
    """fvcore traces the forward, where x.shape holds tensors: a message formatted from it read 'tensor(16)'."""
    from upbench.counting import count

    op = upbench.make("sapa-b", 16)
    x, guide = op.example_inputs(N=1, H=8, W=8)
    with pytest.raises(ValueError, match=r"^sapa-b: guide must be 2H x 2W = 16 x 16 for x of 8 x 8; got 10 x 16$"):
        count(op, (x, guide[:, :, :10]), policy="fvcore")
    resfu = upbench.make("resfu", 16)
    with pytest.raises(ValueError, match=r"^resfu: x of shape \(1, 16, 1, 1\) leaves GroupNorm one value per group"):
        count(resfu, resfu.example_inputs(N=1, H=1, W=1), policy="fvcore")
