"""A module wrapped without needs_guide whose forward takes a guide gets None for it: its failure says so."""
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
    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x, scale=2):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")


def test_a_forward_that_reads_a_guide_it_is_not_given_names_needs_guide(isolated_registry):
    upbench.wrap(ReadsGuide, name="reads-guide")
    op = upbench.make("reads-guide", 4)
    with pytest.raises(ValueError, match=r"reads-guide: the wrapped module's forward failed on a None \(AttributeError: "
                                         r"'NoneType' object has no attribute 'shape'\); it takes 'guide' after x, "
                                         r"which upbench passes only to an operator wrapped with needs_guide=True"):
        op(torch.zeros(1, 4, 4, 4))
    upbench.wrap(lambda channels, guide_channels: ReadsGuide(channels), name="given-guide", needs_guide=True)
    x, guide = upbench.make("given-guide", 4).example_inputs(N=1, H=4, W=4)
    assert upbench.make("given-guide", 4)(x, guide).shape == (1, 4, 8, 8)


def test_other_errors_of_a_wrapped_forward_pass_through_as_they_are(isolated_registry):
    upbench.wrap(FailsOnItsOwn, name="fails-itself")
    with pytest.raises(TypeError, match=r"^unsupported operand type\(s\) for \+: 'int' and 'str'$"):
        upbench.make("fails-itself", 4)(torch.zeros(1, 4, 4, 4))
