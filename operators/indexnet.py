"""IndexNet (Lu et al., ICCV 2019 / TPAMI 2022): index maps predicted from the encoder feature.

Both variants are the "nonlinear, with context" index blocks of the released code: a 4x4 stride-2
conv reads the 2H x 2W encoder feature, a 1x1 conv predicts one index per 2x2 sub-position, and the
decoder feature is unpooled as ``sigmoid(index) * nearest_upsample(x)`` (weights do not sum to 1).
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from upbench.base import Upsampler
from upbench.formulas import TOTAL, Cost, Formulas, per_pixel
from upbench.registry import register

HIN_FORMULAS = Formulas(
    paper={
        "kernel_generation": per_pixel(lambda s: 32 * s.C**2 + 8 * s.C, lambda s: 32 * s.C**2 + 8 * s.C),
        "feature_assembly": per_pixel(lambda s: 4 * s.C, lambda s: 0),
        TOTAL: per_pixel(lambda s: 32 * s.C**2 + 12 * s.C, lambda s: 32 * s.C**2 + 8 * s.C),
    },
    exact={
        # 4x4 conv C -> 2C at H x W, BatchNorm(2C), 1x1 conv 2C -> 4; no biases
        "kernel_generation": lambda s: Cost(
            macs=s.pixels * (16 * s.C * 2 * s.C + 2 * s.C * 4),
            params=16 * s.C * 2 * s.C + 2 * (2 * s.C) + 2 * s.C * 4,
        ),
        # (N, 1, 2H, 2W) index map times the (N, C, 2H, 2W) upsampled feature
        "feature_assembly": lambda s: Cost(macs=s.pixels * 4 * s.C, params=0),
    },
    why={"kernel_generation": "Table 1 leaves out the BatchNorm(2C) affine weight and bias (4C params)"},
)

M2O_FORMULAS = Formulas(
    paper={
        "kernel_generation": per_pixel(lambda s: 68 * s.C**2, lambda s: 68 * s.C**2),
        "feature_assembly": per_pixel(lambda s: 4 * s.C, lambda s: 0),
        TOTAL: per_pixel(lambda s: 68 * s.C**2 + 4 * s.C, lambda s: 68 * s.C**2),
    },
    exact={
        # four branches, each: 4x4 conv C -> C at H x W, BatchNorm(C), 1x1 conv C -> C; no biases
        "kernel_generation": lambda s: Cost(
            macs=s.pixels * 4 * (16 * s.C**2 + s.C**2),
            params=4 * (16 * s.C**2 + 2 * s.C + s.C**2),
        ),
        "feature_assembly": lambda s: Cost(macs=s.pixels * 4 * s.C, params=0),
    },
    why={"kernel_generation": "Table 1 leaves out the four BatchNorm(C) affine weights and biases (8C params)"},
)


def index_encoder(channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """4x4 stride-2 conv of the 2H x 2W guide down to H x W, BN, ReLU6, 1x1 conv to the index logits."""
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU6(inplace=True),
        nn.Conv2d(hidden, out_channels, 1, bias=False),
    )


class HolisticIndexBlock(nn.Module):
    """Stage (HIN): one index map (N, 1, 2H, 2W), shared by all channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.encoder = index_encoder(channels, 2 * channels, 4)

    def forward(self, guide: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(torch.sigmoid(self.encoder(guide)), 2)


class DepthwiseIndexBlock(nn.Module):
    """Stage (M2O): one index map per channel (N, C, 2H, 2W), branch b predicting sub-position b."""

    def __init__(self, channels: int):
        super().__init__()
        self.branches = nn.ModuleList(index_encoder(channels, channels, channels) for _ in range(4))

    def forward(self, guide: torch.Tensor) -> torch.Tensor:
        # pixel_shuffle reads sub-position b of channel c from input channel 4c + b: interleave branches per channel
        logits = torch.stack([branch(guide) for branch in self.branches], dim=2).flatten(1, 2)
        return F.pixel_shuffle(torch.sigmoid(logits), 2)


class IndexedUnpooling(nn.Module):
    """Stage: out = index_map * nearest_upsample(x)."""

    def forward(self, index_map: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return index_map * F.interpolate(x, scale_factor=2, mode="nearest")


class _IndexNet(Upsampler):
    needs_guide = True
    guide_must_match = True
    stages = ("kernel_generation", "feature_assembly")
    index_block: ClassVar[type[nn.Module]]

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        self.kernel_generation = self.index_block(channels)
        self.feature_assembly = IndexedUnpooling()

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.feature_assembly(self.kernel_generation(guide), x)


@register
class IndexNetHIN(_IndexNet):
    name = "indexnet-hin"
    formulas = HIN_FORMULAS
    index_block = HolisticIndexBlock


@register
class IndexNetM2O(_IndexNet):
    name = "indexnet-m2o"
    formulas = M2O_FORMULAS
    index_block = DepthwiseIndexBlock
