"""Fixed-rule interpolation: nearest and bilinear x2. No parameters, no guide."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from upbench.base import Upsampler
from upbench.formulas import TOTAL, ZERO, Formulas
from upbench.registry import register

# Table 1 has no rows for them; under the paper policy fixed-weight resampling is data movement.
INTERPOLATION = Formulas(
    paper={"feature_assembly": lambda s: ZERO, TOTAL: lambda s: ZERO},
    exact={"feature_assembly": lambda s: ZERO},
)


class Interpolation(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2, mode=self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class _Interpolate(Upsampler):
    stages = ("feature_assembly",)
    formulas = INTERPOLATION

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        self.feature_assembly = Interpolation(self.name)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.feature_assembly(x)


@register
class Nearest(_Interpolate):
    name = "nearest"


@register
class Bilinear(_Interpolate):
    name = "bilinear"
