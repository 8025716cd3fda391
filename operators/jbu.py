"""JBU (Fu et al., FeatUp, ICLR 2024): one x2 stage of the learned joint bilateral upsampler, as in
mhamilton723/FeatUp's ``JBULearnedRange``.

Every output pixel of the 2H x 2W guide gets a K x K kernel (K = 2r + 1, the diameter):

* range: a learned projection of the guide to d channels (1x1 conv, GELU, Dropout2d, 1x1 conv); the inner
  products of a pixel's projection with those of its K x K neighbours, times exp(log_temperature) (clamped
  to [1e-4, 1e4]), softmax over the K^2 taps;
* bilateral: that times a spatial Gaussian of the window offsets, renormalised to sum 1, plus 0.1 x a learned
  correction (1x1 conv of the kernel and the guide, GELU, Dropout2d, 1x1 conv). The offsets are spread over
  [-1, 1] across the window whatever K, as released, so sigma_spatial is in units of the radius.

x is upsampled bicubically to 2H x 2W and each output pixel is the kernel-weighted sum of its K x K window
there. Both windows are reflect-padded at the border, as released, so 2H and 2W must exceed r.

``impl="compiled"`` runs the two window stages as the compiled reflect ops (``upbench.kernels``:
``reflect_similarity`` for the range kernel's inner products, ``reflect_assembly`` for the adaptive
convolution, FeatUp's own CUDA/C++ AdaptiveConv being the released counterpart of the latter); the
reference takes the K^2 taps as shifted views, one at a time.

FeatUp stacks four of these for x16, each fed the RGB image pooled to its output size (C_g = 3); here the
guide is the (N, C_g, 2H, 2W) feature every guided operator gets, of any width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from upbench import kernels
from upbench.base import MAX_D, MAX_K, Knob, Upsampler
from upbench.formulas import ZERO, Cost, Dims, paper_is_exact
from upbench.registry import register

from .assembly import shifted_windows, window_sum

# The released constants.
DROPOUT = 0.1
TEMPERATURE_RANGE = (1e-4, 1e4)
MIN_KERNEL_SUM = 1e-7
FIXUP_SCALE = 0.1


def _conv1x1(s: Dims, fan_in: int, fan_out: int) -> Cost:
    """A 1x1 conv with bias at every output pixel (4 per low-res pixel)."""
    return Cost(macs=4 * s.pixels * fan_in * fan_out, params=fan_in * fan_out + fan_out)


def _range_kernel_cost(s: Dims) -> Cost:
    # the projection, then <key at the pixel, key at each tap>: d products per tap; plus log_temperature
    inner_products = Cost(macs=4 * s.pixels * s.K**2 * s.d, params=1)
    return _conv1x1(s, s.Cg, s.d) + _conv1x1(s, s.d, s.d) + inner_products


def _bilateral_kernel_cost(s: Dims) -> Cost:
    # range x spatial (K^2 products per output pixel), the fixup MLP on [kernel, guide]; plus sigma_spatial.
    # A one-tap window's spatial kernel is a single number, and the paper policy counts multiplying by a
    # single number as free.
    taps = s.K**2
    product = Cost(macs=4 * s.pixels * taps if taps > 1 else 0, params=1)
    return product + _conv1x1(s, taps + s.Cg, taps) + _conv1x1(s, taps, taps)


# JBU is not in Table 1 and no per-stage formula is transcribed from FeatUp: paper = exact. Bicubic
# interpolation counts zero under the paper policy, as every interpolation does.
FORMULAS = paper_is_exact({
    "range_kernel": _range_kernel_cost,
    "bilateral_kernel": _bilateral_kernel_cost,
    "bicubic_upsampling": lambda s: ZERO,
    # every output element (N, C, 2H, 2W) a K^2-term weighted sum
    "adaptive_convolution": lambda s: Cost(macs=4 * s.pixels * s.K**2 * s.C, params=0),
})


def _mlp(in_channels: int, out_channels: int) -> nn.Sequential:
    """FeatUp's two-layer 1x1 MLP; the layer order (and so the state-dict keys) is the released one."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1),
        nn.GELU(),
        nn.Dropout2d(DROPOUT),
        nn.Conv2d(out_channels, out_channels, 1),
    )


class RangeKernel(nn.Module):
    """Stage: guide (N, C_g, 2H, 2W) -> softmax over the K^2 taps of the scaled key similarities (N, K^2, 2H, 2W)."""

    def __init__(self, guide_channels: int, key_channels: int, diameter: int, impl: str):
        super().__init__()
        self.diameter = diameter
        self.impl = impl
        self.log_temperature = nn.Parameter(torch.tensor(0.0))  # FeatUp's range_temp
        self.projection = _mlp(guide_channels, key_channels)

    def similarities(self, keys: torch.Tensor) -> torch.Tensor:
        """<key at a pixel, key at each tap of its reflect-padded window>, (N, K^2, 2H, 2W)."""
        if self.impl == "compiled":
            return kernels.reflect_similarity(keys, keys, self.diameter)
        return torch.stack([(window * keys).sum(dim=1) for window in shifted_windows(keys, self.diameter, "reflect")],
                           dim=1)

    def forward(self, guide: torch.Tensor) -> torch.Tensor:
        temperature = self.log_temperature.exp().clamp(*TEMPERATURE_RANGE)
        return F.softmax(temperature * self.similarities(self.projection(guide)), dim=1)

    def extra_repr(self) -> str:
        return f"diameter={self.diameter}, impl={self.impl}"


class BilateralKernel(nn.Module):
    """Stage: range kernel x spatial Gaussian, renormalised, plus 0.1 x the learned fixup of [kernel, guide]."""

    def __init__(self, guide_channels: int, diameter: int):
        super().__init__()
        self.diameter = diameter
        self.sigma_spatial = nn.Parameter(torch.tensor(1.0))
        self.fixup = _mlp(diameter**2 + guide_channels, diameter**2)

    def spatial_kernel(self) -> torch.Tensor:
        """exp(-(u^2 + v^2) / (2 sigma^2)) over the window, (1, K^2, 1, 1), offsets u, v spread over [-1, 1]."""
        sigma = self.sigma_spatial
        offsets = torch.linspace(-1, 1, self.diameter, dtype=sigma.dtype, device=sigma.device).square()
        squared_distances = (offsets[:, None] + offsets[None, :]).reshape(1, -1, 1, 1)
        return torch.exp(-squared_distances / (2 * sigma**2))

    def forward(self, range_kernel: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        kernel = range_kernel * self.spatial_kernel()
        kernel = kernel / kernel.sum(dim=1, keepdim=True).clamp(min=MIN_KERNEL_SUM)
        return kernel + FIXUP_SCALE * self.fixup(torch.cat([kernel, guide], dim=1))

    def extra_repr(self) -> str:
        return f"diameter={self.diameter}"


class BicubicUpsampling(nn.Module):
    """Stage: x to the guide's size, bicubic (align_corners=False)."""

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


class AdaptiveConvolution(nn.Module):
    """Stage: kernels (N, K^2, 2H, 2W) and map (N, C, 2H, 2W) -> (N, C, 2H, 2W), each output pixel the sum over
    its reflect-padded K x K window of the map times that pixel's kernel (FeatUp's AdaptiveConv)."""

    def __init__(self, diameter: int, impl: str):
        super().__init__()
        self.diameter = diameter
        self.impl = impl

    def forward(self, kernel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        if self.impl == "compiled":
            return kernels.reflect_assembly(kernel, source, self.diameter)
        # the taps summed in FeatUp's order, from zero, one C x 2H x 2W product at a time
        return window_sum(kernel, source, self.diameter, "reflect")

    def extra_repr(self) -> str:
        return f"diameter={self.diameter}, impl={self.impl}"


@register
class JBU(Upsampler):
    name = "jbu"
    needs_guide = True
    knobs = {"K": Knob(7, "odd", max=MAX_K), "d": Knob(32, max=MAX_D)}
    stages = ("range_kernel", "bilateral_kernel", "bicubic_upsampling", "adaptive_convolution")
    formulas = FORMULAS
    compiled_ops = True

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        K = self.hparams["K"]
        self.range_kernel = RangeKernel(self.guide_channels, self.hparams["d"], K, self.impl)
        self.bilateral_kernel = BilateralKernel(self.guide_channels, K)
        self.bicubic_upsampling = BicubicUpsampling()
        self.adaptive_convolution = AdaptiveConvolution(K, self.impl)

    def check_inputs(self, x: torch.Tensor, guide: torch.Tensor | None) -> None:
        super().check_inputs(x, guide)
        K = self.hparams["K"]
        radius = K // 2
        h, w = x.shape[-2:]
        if min(2 * h, 2 * w) <= radius:  # reflect padding mirrors the map inside itself: it needs more than r pixels
            smallest = (radius + 2) // 2
            raise ValueError(
                f"{self.name}: K={K} reflect-pads the 2H x 2W guide and upsampled x by its radius {radius}, which needs "
                f"2H and 2W of at least {radius + 1} (x of at least {smallest} x {smallest}); got x of {h} x {w}"
            )

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        kernel = self.bilateral_kernel(self.range_kernel(guide), guide)
        return self.adaptive_convolution(kernel, self.bicubic_upsampling(x, tuple(guide.shape[-2:])))
