"""A2U (Dai, Lu, Shen, CVPR 2021): rank-1 affinity kernels from the encoder feature, CARAFE-style assembly.

Kernel generation reads only the guide y, so its channel count C_g is free: every term that Table 1
writes with C but that runs on y is C_g in the exact formulas. Only the assembly sees x's C.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from upbench.base import MAX_ENCODER_KERNEL, MAX_K, Knob, Upsampler
from upbench.formulas import TOTAL, Cost, Formulas, per_pixel
from upbench.registry import register

from .assembly import FEATURE_ASSEMBLY, FeatureAssembly

FORMULAS = Formulas(
    paper={
        "kernel_generation": per_pixel(lambda s: 73 * s.C + 4 * s.K**2, lambda s: 4 * s.K**2 * s.C + 2 * s.C),
        "feature_assembly": FEATURE_ASSEMBLY,
        TOTAL: per_pixel(lambda s: 73 * s.C + 4 * s.K**2 + 4 * s.K**2 * s.C, lambda s: 4 * s.K**2 * s.C + 2 * s.C),
    },
    exact={
        # per low-res pixel: two ke x ke depthwise convs of y, the product map_U * map_V, the 1 -> 4K^2
        # per-image 1x1 conv; per image: the pooled 1x1 convs C_g -> 1 (twice, on ke x ke) and C_g -> 4K^2 (on 1 x 1)
        "kernel_generation": lambda s: Cost(
            macs=s.pixels * (2 * s.ke**2 * s.Cg + s.Cg + 4 * s.K**2) + s.N * (2 * s.ke**2 * s.Cg + 4 * s.K**2 * s.Cg),
            params=2 * (s.Cg + 1) + 2 * (2 * s.Cg) + (4 * s.K**2 * s.Cg + 4 * s.K**2),
        ),
        "feature_assembly": FEATURE_ASSEMBLY,
    },
    why={
        "kernel_generation": "Table 1 assumes C_g = C and ke = 6 (73C = 2 * 36C + C); it leaves out the pooled 1x1 "
        "convs that make the per-image filters (N(2ke^2 + 4K^2)C_g MACs, not scaling with HW), the three conv "
        "biases (2 + 4K^2 params) and the two GroupNorm affines (4C_g params)",
    },
)


def group_norm_groups(channels: int, most: int = 32) -> int:
    """The released code's 32 groups (it requires 32 | C), generalised: the largest divisor of C that is
    <= 32 and leaves at least two channels per group (C >= 2). One channel per group would be an
    instance norm, and torch's group_norm refuses a group holding a single value (N = 1, 1 x 1 map)."""
    return max(g for g in range(1, min(most, max(channels // 2, 1)) + 1) if channels % g == 0)


class AffinityKernels(nn.Module):
    """Stage: per-image filters from the pooled guide, rank-1 affinity, projection to 4K^2, softmax(sigmoid)."""

    def __init__(self, guide_channels: int, K: int, encoder_kernel: int):
        super().__init__()
        self.encoder_kernel = encoder_kernel
        self.filter_pool = nn.AdaptiveAvgPool2d(encoder_kernel)
        self.filter_u = nn.Conv2d(guide_channels, 1, 1)
        self.filter_v = nn.Conv2d(guide_channels, 1, 1)
        self.norm_u = nn.GroupNorm(group_norm_groups(guide_channels), guide_channels)
        self.norm_v = nn.GroupNorm(group_norm_groups(guide_channels), guide_channels)
        self.projection_pool = nn.AdaptiveAvgPool2d(1)
        self.projection = nn.Conv2d(guide_channels, 4 * K * K, 1)

    def forward(self, guide: torch.Tensor) -> torch.Tensor:
        n, c = guide.shape[:2]
        pooled = self.filter_pool(guide)
        map_u = F.leaky_relu(self.norm_u(self._per_image_depthwise(guide, self.filter_u(pooled))), 0.01)
        map_v = F.leaky_relu(self.norm_v(self._per_image_depthwise(guide, self.filter_v(pooled))), 0.01)
        affinity = (map_u * map_v).sum(dim=1, keepdim=True) / math.sqrt(c)
        # a 1 -> 4K^2 1x1 conv whose weights differ per image: one grouped conv over the batch (groups = N)
        weights = self.projection(self.projection_pool(guide)).reshape(-1, 1, 1, 1)
        h, w = affinity.shape[-2:]
        logits = F.conv2d(affinity.reshape(1, n, h, w), weights, groups=n).reshape(n, -1, h, w)
        return F.softmax(torch.sigmoid(F.pixel_shuffle(logits, 2)), dim=1)

    def _per_image_depthwise(self, guide: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        """Each image's (ke x ke) filter applied to every channel of that image, stride 2: 2H x 2W -> H x W.

        One grouped conv with groups = N * C_g stands in for the original per-image loop."""
        n, c, h2, w2 = guide.shape
        ke = self.encoder_kernel
        weight = filters.expand(n, c, ke, ke).reshape(n * c, 1, ke, ke)
        # padding ke/2 - 1 makes the even ke x ke stride-2 window output exactly H x W
        out = F.conv2d(guide.reshape(1, n * c, h2, w2), weight, stride=2, padding=ke // 2 - 1, groups=n * c)
        return out.reshape(n, c, h2 // 2, w2 // 2)


@register
class A2U(Upsampler):
    name = "a2u"
    needs_guide = True
    knobs = {"K": Knob(3, "odd", max=MAX_K), "encoder_kernel": Knob(6, "even", dims_field="ke", max=MAX_ENCODER_KERNEL)}
    stages = ("kernel_generation", "feature_assembly")
    formulas = FORMULAS
    compiled_ops = True

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        hp = self.hparams
        self.kernel_generation = AffinityKernels(self.guide_channels, hp["K"], hp["encoder_kernel"])
        self.feature_assembly = FeatureAssembly(hp["K"], self.impl)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.feature_assembly(self.kernel_generation(guide), x)
