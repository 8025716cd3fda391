"""bilinear-dw: bilinear x2, then a learned depthwise k x k convolution. Registered by subclassing
upbench.Upsampler (the route the built-in operators take); installing this package makes it known to
upbench through the entry point in pyproject.toml."""
import torch
import torch.nn.functional as F
from torch import nn

from upbench.base import Knob, Upsampler
from upbench.formulas import TOTAL, Cost, Formulas
from upbench.registry import register


def _refine_cost(s) -> Cost:
    # the depthwise conv runs at 2H x 2W: 4 HW pixels, ke^2 MACs per channel each; weights plus bias
    return Cost(macs=4 * s.pixels * s.ke * s.ke * s.C, params=s.C * s.ke * s.ke + s.C)


class Refine(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


@register
class BilinearDepthwise(Upsampler):
    name = "bilinear-dw"
    knobs = {"kernel": Knob(3, "odd", dims_field="ke", max=31)}
    stages = ("refine",)
    formulas = Formulas(paper={"refine": _refine_cost, TOTAL: _refine_cost}, exact={"refine": _refine_cost})

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        self.refine = Refine(channels, self.hparams["kernel"])

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.refine(x)
