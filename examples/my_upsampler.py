"""A new upsampler in your own folder, benchmarked by upbench without touching it.

    python bench.py --plugin examples/my_upsampler.py sweep --ops subpixel,sapa-b,carafe --C 64 --size 16,32 \
        --out results/mine.csv --formats markdown,latex

Sub-pixel convolution (Shi et al., CVPR 2016): a k x k convolution makes 4 C channels, pixel_shuffle
rearranges them to 2H x 2W. Any module with forward(x) -> (N, C, 2H, 2W) works the same way; pass
needs_guide=True for forward(x, guide).
"""
import torch.nn.functional as F
from torch import nn

import upbench
from upbench.formulas import TOTAL, Cost


class SubPixel(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4 * channels, kernel, padding=kernel // 2)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2)


def subpixel_cost(s: upbench.Dims) -> Cost:
    """What the module computes: the convolution, biases included (pixel_shuffle only moves data)."""
    ke2 = s.ke * s.ke
    return Cost(macs=s.pixels * ke2 * s.C * 4 * s.C, params=ke2 * s.C * 4 * s.C + 4 * s.C)


# Formulas are optional; with them table1 checks the traced counts against them. The wrapped module is
# the stage "body"; "paper" is the formula a paper would print, "exact" what the code computes.
upbench.wrap(
    SubPixel, name="subpixel",
    knobs={"kernel": upbench.Knob(3, "odd", dims_field="ke", max=31)},
    formulas=upbench.Formulas(paper={"body": subpixel_cost, TOTAL: subpixel_cost}, exact={"body": subpixel_cost}),
)
