"""DySample (Liu et al., ICCV 2023), as in tiny-smart/dysample's dysample.py: decoder-only point sampling.

A 1x1 conv predicts, for every output pixel and every channel group, an (x, y) offset in low-resolution
pixel units; x is sampled there bilinearly (``grid_sample``, border padding). The offsets are scaled by
the static scope factor 0.25, or, with ``dyscope=1``, by the dynamic one 0.5 * sigmoid(a second 1x1
conv), and added to the bilinear x2 sampling positions, so zero offsets give exactly bilinear
upsampling.

* ``dysample-lp`` ("linear + pixel shuffle"): the conv reads x at H x W and emits 2 * groups * 4 offsets,
  pixel-shuffled to 2H x 2W.
* ``dysample-pl`` ("pixel shuffle + linear"): x is pixel-shuffled to C/4 channels at 2H x 2W first and
  the conv emits 2 * groups offsets there: a quarter of the MACs and parameters.

Channel order of the offsets (the released one, which pretrained weights depend on): coordinate
(x, then y) major, then group; for lp each of those spans the 2 x 2 sub-positions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from upbench.base import MAX_D, Knob, Upsampler
from upbench.formulas import ZERO, Cost, Dims, paper_is_exact
from upbench.registry import register

STATIC_SCOPE = 0.25
DYNAMIC_SCOPE = 0.5  # times sigmoid(scope conv)
OFFSET_INIT_STD = 0.001


def _offset_conv_cost(s: Dims, in_channels: int, out_channels: int, pixels: int) -> Cost:
    """The offset conv (bias) and, with the dynamic scope, the scope conv (no bias) and their product."""
    convs = 1 + s.dyscope
    return Cost(
        macs=pixels * (convs * in_channels * out_channels + s.dyscope * out_channels),
        params=convs * in_channels * out_channels + out_channels,
    )


# The DySample paper prints no per-stage cost formula: paper = exact. Bilinear sampling counts zero
# under the paper policy, as interpolation does for every operator (the fvcore policy counts it).
LP_FORMULAS = paper_is_exact({
    "offset_generation": lambda s: _offset_conv_cost(s, s.C, 8 * s.groups, s.pixels),
    "grid_sampling": lambda s: ZERO,
})
PL_FORMULAS = paper_is_exact({
    "offset_generation": lambda s: _offset_conv_cost(s, s.C // 4, 2 * s.groups, 4 * s.pixels),
    "grid_sampling": lambda s: ZERO,
})


class OffsetGeneration(nn.Module):
    """Stage: x (N, C, H, W) -> offsets (N, 2 * groups, 2H, 2W) in low-resolution pixel units."""

    def __init__(self, channels: int, groups: int, dyscope: bool, pixel_shuffle_first: bool):
        super().__init__()
        self.pixel_shuffle_first = pixel_shuffle_first
        in_channels, out_channels = (channels // 4, 2 * groups) if pixel_shuffle_first else (channels, 8 * groups)
        self.offset = nn.Conv2d(in_channels, out_channels, 1)
        nn.init.normal_(self.offset.weight, std=OFFSET_INIT_STD)
        nn.init.zeros_(self.offset.bias)
        self.scope = None
        if dyscope:
            self.scope = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            nn.init.zeros_(self.scope.weight)  # starts at sigmoid(0) * 0.5 = the static 0.25

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pixel_shuffle_first:
            x = F.pixel_shuffle(x, 2)
        raw = self.offset(x)
        scaled = raw * STATIC_SCOPE if self.scope is None else raw * self.scope(x).sigmoid() * DYNAMIC_SCOPE
        return scaled if self.pixel_shuffle_first else F.pixel_shuffle(scaled, 2)


class PointSampling(nn.Module):
    """Stage: sample each channel group of x bilinearly at the bilinear x2 positions moved by its offsets."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.groups
        offsets = offsets.view(n, 2, g, 2 * h, 2 * w)
        # grid_sample's align_corners=False coordinates: -1 and 1 are the outer edges of the map, so an
        # output pixel u of 2W sits at (u + 0.5) / 2 low-res pixels = (u + 0.5) / W - 1 normalised
        # (bilinear x2's own positions); one low-res pixel is 2 / W.
        cols = (torch.arange(2 * w, dtype=x.dtype, device=x.device) + 0.5) / w - 1
        rows = (torch.arange(2 * h, dtype=x.dtype, device=x.device) + 0.5) / h - 1
        grid_x = cols.view(1, 1, 1, 2 * w) + offsets[:, 0] * (2.0 / w)
        grid_y = rows.view(1, 1, 2 * h, 1) + offsets[:, 1] * (2.0 / h)
        grid = torch.stack((grid_x, grid_y), dim=-1).view(n * g, 2 * h, 2 * w, 2)
        sampled = F.grid_sample(
            x.reshape(n * g, c // g, h, w), grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        return sampled.view(n, c, 2 * h, 2 * w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class _DySample(Upsampler):
    knobs = {"groups": Knob(4, max=MAX_D), "dyscope": Knob(0, "flag", max=1)}
    stages = ("offset_generation", "grid_sampling")
    pixel_shuffle_first: bool = False

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        groups = self.hparams["groups"]
        if channels % groups:
            raise ValueError(f"{self.name}: channels={channels} with groups={groups}; "
                             "expected channels divisible by groups (each group samples its own channels)")
        if self.pixel_shuffle_first and channels % 4:
            raise ValueError(f"{self.name}: channels={channels}; expected a multiple of 4 "
                             "(the offsets are generated after a x2 pixel shuffle, C -> C/4)")
        self.offset_generation = OffsetGeneration(channels, groups, bool(self.hparams["dyscope"]),
                                                  self.pixel_shuffle_first)
        self.grid_sampling = PointSampling(groups)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.grid_sampling(x, self.offset_generation(x))


@register
class DySampleLP(_DySample):
    name = "dysample-lp"
    formulas = LP_FORMULAS


@register
class DySamplePL(_DySample):
    name = "dysample-pl"
    formulas = PL_FORMULAS
    pixel_shuffle_first = True
