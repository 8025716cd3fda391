"""Sub-pixel convolution (Shi et al., CVPR 2016): a k x k conv C -> 4C, then PixelShuffle(2). No guide.

Default k = 3: the sub-pixel upsampling layer of ESPCN's last layer and of EDSR/RCAN-style upsamplers
(Conv2d(C, 4C, 3, padding=1) + PixelShuffle(2)), and the configuration feature-upsampling papers list
as "pixel shuffle". k = 1 makes it a learned per-sub-position 1x1 map, the same function as a 2x2
stride-2 transposed conv (``deconv`` with deconv_kernel=2). Weights: PyTorch's default Conv2d init.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from upbench.base import MAX_ENCODER_KERNEL, Knob, Upsampler
from upbench.formulas import Cost, paper_is_exact
from upbench.registry import register

# A static learned baseline with no cost formula in its paper: paper = exact. The shuffle is data movement.
FORMULAS = paper_is_exact({
    "sub_pixel_convolution": lambda s: Cost(
        macs=s.pixels * s.ke**2 * s.C * 4 * s.C, params=s.ke**2 * s.C * 4 * s.C + 4 * s.C
    ),
})


class SubPixelConvolution(nn.Module):
    """Stage: (N, C, H, W) -> conv -> (N, 4C, H, W) -> pixel shuffle -> (N, C, 2H, 2W)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4 * channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


@register
class PixelShuffle(Upsampler):
    name = "pixel-shuffle"
    knobs = {"conv_kernel": Knob(3, "odd", dims_field="ke", max=MAX_ENCODER_KERNEL)}
    stages = ("sub_pixel_convolution",)
    formulas = FORMULAS

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        self.sub_pixel_convolution = SubPixelConvolution(channels, self.hparams["conv_kernel"])

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.sub_pixel_convolution(x)
