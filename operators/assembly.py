"""The stage modules around the window ops the dynamic upsamplers share. The ops' pure-PyTorch
definitions and their conventions live in upbench.references; each stage picks the compiled op or that
definition by its ``impl``.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from upbench import kernels
from upbench.formulas import per_pixel
from upbench.references import reference_assembly

# The cost of FeatureAssembly, Table 1's row and the exact one alike: every output pixel (4 per low-res
# pixel) of every channel a K x K weighted sum; the weights come from the stage before, so no params.
FEATURE_ASSEMBLY = per_pixel(lambda s: 4 * s.K**2 * s.C, lambda s: 0)


def shifted_windows(source: torch.Tensor, K: int, mode: str, dilation: int = 1) -> Iterator[torch.Tensor]:
    """The K^2 taps of each pixel's own K x K window of ``dilation``, row-major (FeatUp's order), the map padded
    by ``F.pad`` in ``mode``: tap i * K + j is a view whose pixel (y, x) is the map's (y + dilation (i - r),
    x + dilation (j - r)). Taking one view at a time keeps the C x K^2 x h x w unfolded windows from ever being
    built."""
    height, width = source.shape[-2:]
    padded = F.pad(source, [dilation * (K // 2)] * 4, mode=mode)
    for i in range(K):
        for j in range(K):
            yield padded[:, :, dilation * i:dilation * i + height, dilation * j:dilation * j + width]


def window_sum(weights: torch.Tensor, source: torch.Tensor, K: int, mode: str, dilation: int = 1) -> torch.Tensor:
    """weights (N, K^2, h, w), source (N, C, h, w) -> (N, C, h, w): each pixel the weighted sum of its
    :func:`shifted_windows` taps, summed in tap order from zero, one C x h x w product at a time."""
    out = torch.zeros_like(source)
    for tap, window in enumerate(shifted_windows(source, K, mode, dilation)):
        out.add_(weights[:, tap:tap + 1] * window)
    return out


class FeatureAssembly(nn.Module):
    """Stage: reassemble x with per-output K x K kernels (CARAFE, A2U and SAPA all end this way)."""

    def __init__(self, K: int, impl: str):
        super().__init__()
        self.K = K
        self.impl = impl

    def forward(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "compiled":
            return kernels.dynamic_assembly(weights, x, self.K)
        return reference_assembly(weights, x, self.K)

    def extra_repr(self) -> str:
        return f"K={self.K}, impl={self.impl}"
