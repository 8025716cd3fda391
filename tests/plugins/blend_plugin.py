"""A test plugin with a custom op fvcore cannot count: ``upbench_test::blend`` (a x2 nearest upsample of x
scaled by a learned per-channel weight). Loaded with upbench.load_plugin by tests/test_plugins.py."""
import math

import torch
import torch.nn.functional as F
from torch import nn

import upbench


@torch.library.custom_op("upbench_test::blend", mutates_args=())
def blend(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest") * weight.view(1, -1, 1, 1)


@blend.register_fake
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.new_empty(n, c, 2 * h, 2 * w)


class Blend(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blend(x, self.weight)


upbench.wrap(Blend, name="test-blend")


def with_rule() -> None:
    """Register the op's counting rule: one multiply per output element."""
    upbench.counting_rule("upbench_test::blend", lambda x, weight, out_shape: math.prod(out_shape))
