"""The window ops the dynamic upsamplers share, in pure PyTorch, and the stage modules around them.

Conventions (shared with the compiled ops in csrc/): for high-resolution position (i, j) the window
is centred on the low-resolution parent (i // 2, j // 2); window index k = ky * K + kx has offset
(ky - K // 2, kx - K // 2); a neighbour outside the map is a zero that is multiplied in (zero key ->
logit <q, 0>, zero value -> w * 0). Under IEEE arithmetic that zero still meets NaN and Inf: a NaN or
Inf query, weight or gradient at a border pixel gives NaN there (0 * Inf = NaN), on both paths, in the
forward and the backward. The reference path materialises the unfolded window, which is what costs
memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from upbench import kernels


def unfold_window(x: torch.Tensor, K: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, K*K, H, W): each pixel's K x K neighbourhood, zero outside the map."""
    n, c, h, w = x.shape
    return F.unfold(x, K, padding=K // 2).view(n, c, K * K, h, w)


def reference_similarity(query: torch.Tensor, key: torch.Tensor, K: int) -> torch.Tensor:
    """query (N, d, 2H, 2W), key (N, d, H, W) -> logits (N, K*K, 2H, 2W)."""
    n, d, h, w = key.shape
    windows = unfold_window(key, K)
    query = query.reshape(n, d, h, 2, w, 2)
    return torch.einsum("ndkhw,ndhawb->nkhawb", windows, query).reshape(n, K * K, 2 * h, 2 * w)


def reference_assembly(weights: torch.Tensor, x: torch.Tensor, K: int) -> torch.Tensor:
    """weights (N, K*K, 2H, 2W), x (N, C, H, W) -> (N, C, 2H, 2W): out = sum_k w_k * x[window k]."""
    n, c, h, w = x.shape
    windows = unfold_window(x, K)
    weights = weights.reshape(n, K * K, h, 2, w, 2)
    return torch.einsum("nckhw,nkhawb->nchawb", windows, weights).reshape(n, c, 2 * h, 2 * w)


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
