"""CARAFE (Wang et al., ICCV 2019), as in mmcv's CARAFEPack: decoder-only content-aware kernels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from upbench.base import MAX_D, MAX_ENCODER_KERNEL, MAX_K, Knob, Upsampler
from upbench.formulas import TOTAL, Cost, Formulas, per_pixel
from upbench.registry import register

from .assembly import FEATURE_ASSEMBLY, FeatureAssembly

FORMULAS = Formulas(
    paper={
        "kernel_generation": per_pixel(lambda s: s.C * s.d + 36 * s.K**2 * s.d, lambda s: s.C * s.d + 36 * s.K**2 * s.d),
        "feature_assembly": FEATURE_ASSEMBLY,
        TOTAL: per_pixel(
            lambda s: s.C * s.d + 36 * s.K**2 * s.d + 4 * s.K**2 * s.C, lambda s: s.C * s.d + 36 * s.K**2 * s.d
        ),
    },
    exact={
        # compressor: 1x1 conv C -> d; content encoder: ke x ke conv d -> 4K^2; both with bias
        "kernel_generation": lambda s: Cost(
            macs=s.pixels * (s.C * s.d + s.ke**2 * s.d * 4 * s.K**2),
            params=(s.C * s.d + s.d) + (s.ke**2 * s.d * 4 * s.K**2 + 4 * s.K**2),
        ),
        "feature_assembly": FEATURE_ASSEMBLY,
    },
    why={
        "kernel_generation": "Table 1 leaves out the compressor bias (d) and the content-encoder bias (4K^2); "
        "its 36K^2d assumes the 3x3 content encoder (ke^2 * 4K^2 * d in general)",
    },
)


class CarafeKernels(nn.Module):
    """Stage: compress channels, encode content into 4K^2 maps, shuffle to 2H x 2W, softmax over K^2."""

    def __init__(self, channels: int, K: int, d: int, encoder_kernel: int):
        super().__init__()
        self.compressor = nn.Conv2d(channels, d, 1)
        self.content_encoder = nn.Conv2d(d, 4 * K * K, encoder_kernel, padding=encoder_kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.pixel_shuffle(self.content_encoder(self.compressor(x)), 2)
        return F.softmax(logits, dim=1)


@register
class CARAFE(Upsampler):
    name = "carafe"
    knobs = {
        "K": Knob(5, "odd", max=MAX_K),
        "d": Knob(64, max=MAX_D),
        "encoder_kernel": Knob(3, "odd", dims_field="ke", max=MAX_ENCODER_KERNEL),
    }
    stages = ("kernel_generation", "feature_assembly")
    formulas = FORMULAS
    compiled_ops = True
    forward_share_goal = 0.35

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        hp = self.hparams
        self.kernel_generation = CarafeKernels(channels, hp["K"], hp["d"], hp["encoder_kernel"])
        self.feature_assembly = FeatureAssembly(hp["K"], self.impl)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.feature_assembly(self.kernel_generation(x), x)
