"""Transposed convolution: ConvTranspose2d(C -> C, k x k, stride 2). No guide.

Even k with padding (k - 2) / 2 gives exactly 2H x 2W. Default k = 4 (padding 1): the overlapping
kernel of DCGAN-style generators, SimpleBaseline pose heads and FCN's bilinear-initialisable
upsampling; k = 2 is the non-overlapping one (Mask R-CNN's mask head), each output pixel then reading
a single input pixel. Weights: PyTorch's default ConvTranspose2d init.
"""
from __future__ import annotations

import torch
from torch import nn

from upbench.base import MAX_ENCODER_KERNEL, Knob, Upsampler
from upbench.formulas import Cost, paper_is_exact
from upbench.registry import register

# A static learned baseline with no cost formula in its paper: paper = exact. Every input pixel
# scatters a k x k x C kernel per input channel: C * C * k^2 MACs per low-res pixel.
FORMULAS = paper_is_exact({
    "transposed_convolution": lambda s: Cost(macs=s.pixels * s.ke**2 * s.C * s.C, params=s.ke**2 * s.C * s.C + s.C),
})


@register
class Deconv(Upsampler):
    name = "deconv"
    knobs = {"deconv_kernel": Knob(4, "even", dims_field="ke", max=MAX_ENCODER_KERNEL)}
    stages = ("transposed_convolution",)
    formulas = FORMULAS

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        kernel = self.hparams["deconv_kernel"]
        self.transposed_convolution = nn.ConvTranspose2d(channels, channels, kernel, stride=2, padding=(kernel - 2) // 2)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.transposed_convolution(x)
