"""What each compiled op computes, in plain PyTorch: the definitions csrc/ is checked against.

Window conventions (shared with csrc/): for high-resolution position (i, j) the window is centred on
the low-resolution parent (i // 2, j // 2); window index k = ky * K + kx has offset
(ky - K // 2, kx - K // 2); a neighbour outside the map is a zero that is multiplied in (zero key ->
logit <q, 0>, zero value -> w * 0). Under IEEE arithmetic that zero still meets NaN and Inf: a NaN or
Inf query, weight or gradient at a border pixel gives NaN there (0 * Inf = NaN), on both paths, in the
forward and the backward. These definitions materialise the unfolded window, which is what costs
memory; they are also the operators' ``impl="reference"`` path. The reflect ops (FeatUp's JBU) read a
window of the same-size map centred on the pixel itself, mirrored at the border (reflect padding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


def reference_sapa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, K: int) -> torch.Tensor:
    """sapa_fused: the assembly of value with the softmax over the window of the query-key logits."""
    return reference_assembly(torch.softmax(reference_similarity(query, key, K), dim=1), value, K)


def reflect_window(x: torch.Tensor, K: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, K*K, h, w): each pixel's K x K neighbourhood centred on itself, reflect-padded."""
    n, c, h, w = x.shape
    padded = F.pad(x, [K // 2] * 4, mode="reflect") if K > 1 else x
    return F.unfold(padded, K).view(n, c, K * K, h, w)


def reference_reflect_similarity(query: torch.Tensor, key: torch.Tensor, K: int) -> torch.Tensor:
    """query, key (N, d, h, w) -> logits (N, K*K, h, w) over each pixel's reflected window of key."""
    return torch.einsum("ndkhw,ndhw->nkhw", reflect_window(key, K), query)


def reference_reflect_assembly(weights: torch.Tensor, x: torch.Tensor, K: int) -> torch.Tensor:
    """weights (N, K*K, h, w), x (N, C, h, w) -> (N, C, h, w): out = sum_k w_k * x[reflected window k]."""
    return torch.einsum("nckhw,nkhw->nchw", reflect_window(x, K), weights)


def reference_norm_linear(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor, eps: float) -> torch.Tensor:
    """norm_linear: LayerNorm over the channels of each pixel, then Linear, (N, C, H, W) -> (N, d, H, W)."""
    normed = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), gamma, beta, eps)
    return F.linear(normed, weight, bias).permute(0, 3, 1, 2)
