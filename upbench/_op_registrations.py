"""Fake (meta) and autograd registrations for torch.ops.upbench.*, applied once after the library loads.

The C++ library defines the schemas and device kernels; shape propagation (meta device, FakeTensor,
torch.compile) and the autograd formulas live here. The gradients call the compiled ``*_backward`` ops,
so a backward pass is one kernel call per op, not a Python loop. Double backward is not supported.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .kernels import FUSED_MAX_K

_registered = False


def _check(cond: Any, msg: str) -> None:
    # torch._check also works on symbolic sizes under torch.compile's dynamic shapes.
    torch._check(cond, lambda: msg)


def _check_k(op: str, K: int) -> None:
    _check(K >= 1 and K % 2 == 1, f"{op}: K must be an odd integer >= 1, got K={K}")


def _check_hi_lo(op: str, hi: torch.Tensor, lo: torch.Tensor, hi_name: str, lo_name: str) -> None:
    _check(hi.dim() == 4 and lo.dim() == 4,
           f"{op}: {hi_name} and {lo_name} must be rank-4 NCHW, got {tuple(hi.shape)} and {tuple(lo.shape)}")
    _check(hi.dtype == lo.dtype, f"{op}: {hi_name} has dtype {hi.dtype} but {lo_name} has {lo.dtype}")
    _check(hi.shape[0] == lo.shape[0], f"{op}: batch sizes differ: {tuple(hi.shape)} vs {tuple(lo.shape)}")
    _check(hi.shape[2] == 2 * lo.shape[2] and hi.shape[3] == 2 * lo.shape[3],
           f"{op}: {hi_name} must be 2H x 2W of {lo_name}, got {tuple(hi.shape)} and {tuple(lo.shape)}")


def _similarity_shape(op: str, query: torch.Tensor, key: torch.Tensor, K: int) -> tuple:
    _check_k(op, K)
    _check_hi_lo(op, query, key, "query", "key")
    _check(query.shape[1] == key.shape[1], f"{op}: query and key channel counts differ")
    return (query.shape[0], K * K, query.shape[2], query.shape[3])


def _assembly_shape(op: str, weights: torch.Tensor, x: torch.Tensor, K: int) -> tuple:
    _check_k(op, K)
    _check_hi_lo(op, weights, x, "weights", "x")
    _check(weights.shape[1] == K * K, f"{op}: weights must have K*K={K * K} channels, got {weights.shape[1]}")
    return (x.shape[0], x.shape[1], weights.shape[2], weights.shape[3])


def _sapa_shape(op: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, K: int) -> tuple:
    _similarity_shape(op, query, key, K)
    _check(K <= FUSED_MAX_K, f"{op}: K={K} exceeds the fused kernel's cap of {FUSED_MAX_K}")
    _check(value.dim() == 4 and value.shape[0] == key.shape[0] and value.shape[2:] == key.shape[2:],
           f"{op}: value must be (N, C, H, W) matching key, got {tuple(value.shape)} and {tuple(key.shape)}")
    return (value.shape[0], value.shape[1], query.shape[2], query.shape[3])


def _fake_local_similarity(query: torch.Tensor, key: torch.Tensor, K: int) -> torch.Tensor:
    return query.new_empty(_similarity_shape("upbench::local_similarity", query, key, K))


def _fake_local_similarity_backward(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                                    K: int) -> tuple[torch.Tensor, torch.Tensor]:
    _similarity_shape("upbench::local_similarity_backward", query, key, K)
    return torch.empty_like(query, memory_format=torch.contiguous_format), \
        torch.empty_like(key, memory_format=torch.contiguous_format)


def _fake_dynamic_assembly(weights: torch.Tensor, x: torch.Tensor, K: int) -> torch.Tensor:
    return x.new_empty(_assembly_shape("upbench::dynamic_assembly", weights, x, K))


def _fake_dynamic_assembly_backward(grad: torch.Tensor, weights: torch.Tensor, x: torch.Tensor,
                                    K: int) -> tuple[torch.Tensor, torch.Tensor]:
    _assembly_shape("upbench::dynamic_assembly_backward", weights, x, K)
    return torch.empty_like(weights, memory_format=torch.contiguous_format), \
        torch.empty_like(x, memory_format=torch.contiguous_format)


def _fake_sapa_fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, K: int) -> torch.Tensor:
    return value.new_empty(_sapa_shape("upbench::sapa_fused", query, key, value, K))


def _fake_sapa_fused_backward(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _sapa_shape("upbench::sapa_fused_backward", query, key, value, K)
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (query, key, value))


def _save_inputs(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    # Only the inputs are kept: the backward ops recompute what they need (sapa_fused its logits and
    # softmax kernel), so nothing of the size of the (N, K*K, 2H, 2W) kernel is held between passes.
    *tensors, K = inputs
    ctx.save_for_backward(*tensors)
    ctx.K = K


def _backward_through(name: str) -> Callable[[Any, torch.Tensor], tuple]:
    """The autograd formula of op ``name``: its ``name_backward`` op on the saved inputs; K gets no grad."""
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        grads = getattr(torch.ops.upbench, f"{name}_backward")(grad, *ctx.saved_tensors, ctx.K)
        return *grads, None

    return backward


def register() -> None:
    """Attach the fake and autograd implementations (idempotent; needs the library loaded)."""
    global _registered
    if _registered:
        return
    lib = torch.library
    lib.register_fake("upbench::local_similarity")(_fake_local_similarity)
    lib.register_fake("upbench::local_similarity_backward")(_fake_local_similarity_backward)
    lib.register_fake("upbench::dynamic_assembly")(_fake_dynamic_assembly)
    lib.register_fake("upbench::dynamic_assembly_backward")(_fake_dynamic_assembly_backward)
    lib.register_fake("upbench::sapa_fused")(_fake_sapa_fused)
    lib.register_fake("upbench::sapa_fused_backward")(_fake_sapa_fused_backward)
    for name in ("local_similarity", "dynamic_assembly", "sapa_fused"):
        lib.register_autograd(f"upbench::{name}", _backward_through(name), setup_context=_save_inputs)
    _registered = True
