"""Fake (meta), autograd and autocast registrations for torch.ops.upbench.*, applied once after the library loads.

The C++ library defines the schemas and device kernels; shape propagation (meta device, FakeTensor,
torch.compile) and the autograd formulas live here.

The fakes accept exactly what the kernels accept (csrc/upbench_checks.h): a call that mixes a meta
tensor with a CPU one dispatches to the fake, so a fake that checked less would hand back
uninitialised memory where the kernel raises.

Every op has an autograd formula, the ``*_backward`` ops included, so gradients of any order are
exact. A first backward is one kernel call per op (the ``*_backward`` op). local_similarity,
dynamic_assembly and the two reflect ops are bilinear, so the derivatives of their backward ops are the
forward and backward ops again (:func:`_bilinear_backward_backward`); sapa_fused_backward is differentiated through its
expression in those two ops (:func:`_sapa_backward_composite`). norm_linear_backward likewise through
its expression in differentiable torch ops (:func:`_norm_linear_backward_composite`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

# The fused SAPA kernel keeps one pixel's K*K logits on the stack; csrc/upbench_checks.h (kMaxFusedK)
# enforces the same cap. Above it, SAPA runs the two separate compiled ops.
FUSED_MAX_K = 15
# The compiled ops that do an upsampler's whole window work in one pass, reading each input and writing the output
# once: `bench.py roofline` times each alone, as an operator's forward calls it, against that memory floor.
ONE_PASS_OPS = ("upbench::sapa_fused",)

_registered = False

# The dtypes the device kernels take; every tensor argument of one call shares one dtype and one device.
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_INT64_MAX = 2**63 - 1


def _check(cond: Any, msg: str) -> None:
    # torch._check also works on symbolic sizes under torch.compile's dynamic shapes.
    torch._check(cond, lambda: msg)


def _check_tensors(op: str, **tensors: torch.Tensor) -> None:
    """Rank 4, one device, one dtype among DTYPES: what the kernels check before any shape."""
    (first_name, first), *rest = tensors.items()
    for name, t in tensors.items():
        _check(t.dim() == 4, f"{op}: {name} must be a rank-4 NCHW tensor, got shape {tuple(t.shape)}")
    for name, t in rest:
        _check(t.device == first.device, f"{op}: {name} is on {t.device} but {first_name} is on {first.device}; "
               "all inputs must be on one device")
        _check(t.dtype == first.dtype, f"{op}: {name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}; "
               "all inputs must share one dtype")
    _check(first.dtype in DTYPES, f"{op}: dtype {first.dtype} is not supported; the kernels take "
           + ", ".join(str(d).removeprefix("torch.") for d in DTYPES))


def _check_hi_lo(op: str, hi: torch.Tensor, lo: torch.Tensor, hi_name: str, lo_name: str) -> None:
    _check(hi.shape[0] == lo.shape[0], f"{op}: batch sizes differ: {hi_name} {tuple(hi.shape)} vs "
           f"{lo_name} {tuple(lo.shape)}")
    _check(hi.shape[2] == 2 * lo.shape[2] and hi.shape[3] == 2 * lo.shape[3],
           f"{op}: {hi_name} must be 2H x 2W of {lo_name}, got {tuple(hi.shape)} and {tuple(lo.shape)}")


def _check_work(op: str, lo: torch.Tensor, K: int, channels: Any) -> None:
    """As check_work in csrc/upbench_checks.h: N * K*K * 2H * 2W * channels must fit int64."""
    n, _, h, w = lo.shape
    _check(K * K <= _INT64_MAX and n * K * K * 4 * h * w * torch.sym_max(channels, 1) <= _INT64_MAX,
           f"{op}: the window work N * K*K * 2H * 2W * channels (N={n}, K={K}, H={h}, W={w}, "
           f"channels={channels}) exceeds {_INT64_MAX}, the largest size the kernels can index")


def _check_k(op: str, K: int) -> None:
    _check(K >= 1 and K % 2 == 1, f"{op}: K must be an odd integer >= 1, got K={K}")


def _check_grad(op: str, grad: torch.Tensor, expected: tuple) -> None:
    _check(tuple(grad.shape) == tuple(expected),
           f"{op}: grad must have the forward output's shape {tuple(expected)}, got {tuple(grad.shape)}")


def _similarity_shape(op: str, query: torch.Tensor, key: torch.Tensor, K: int, **more: torch.Tensor) -> tuple:
    _check_k(op, K)
    _check_tensors(op, query=query, key=key, **more)
    _check_hi_lo(op, query, key, "query", "key")
    _check(query.shape[1] == key.shape[1], f"{op}: query and key must have the same number of channels, got "
           f"{tuple(query.shape)} and {tuple(key.shape)}")
    _check_work(op, key, K, key.shape[1])
    return (query.shape[0], K * K, query.shape[2], query.shape[3])


def _assembly_shape(op: str, weights: torch.Tensor, x: torch.Tensor, K: int, **more: torch.Tensor) -> tuple:
    _check_k(op, K)
    _check_tensors(op, weights=weights, x=x, **more)
    _check_hi_lo(op, weights, x, "weights", "x")
    _check_work(op, x, K, x.shape[1])
    _check(weights.shape[1] == K * K, f"{op}: weights must have K*K = {K * K} channels for K={K}, got "
           f"{tuple(weights.shape)}")
    return (x.shape[0], x.shape[1], weights.shape[2], weights.shape[3])


def _sapa_shape(op: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, K: int,
                **more: torch.Tensor) -> tuple:
    _check_k(op, K)
    _check(K <= FUSED_MAX_K, f"{op}: K={K} exceeds the fused kernel's cap of K <= {FUSED_MAX_K}")
    _check_tensors(op, query=query, key=key, value=value, **more)
    _check_hi_lo(op, query, key, "query", "key")
    _check(query.shape[1] == key.shape[1], f"{op}: query and key must have the same number of channels")
    _check(value.shape[0] == key.shape[0] and value.shape[2:] == key.shape[2:],
           f"{op}: value (N, C, H, W) must match key's N, H, W, got {tuple(value.shape)} and {tuple(key.shape)}")
    _check_work(op, key, K, key.shape[1] + value.shape[1])
    return (value.shape[0], value.shape[1], query.shape[2], query.shape[3])


def _reflect_shape(op: str, a: torch.Tensor, b: torch.Tensor, K: int, a_name: str, b_name: str,
                   **more: torch.Tensor) -> None:
    """As check_reflect_pair in csrc/upbench_checks.h: maps of one N, h, w that reflect padding can mirror."""
    _check_k(op, K)
    _check_tensors(op, **{a_name: a, b_name: b}, **more)
    _check(a.shape[0] == b.shape[0] and a.shape[2:] == b.shape[2:],
           f"{op}: {a_name} and {b_name} must share N, h and w, got {tuple(a.shape)} and {tuple(b.shape)}")
    radius = K // 2
    _check(b.shape[2] > radius and b.shape[3] > radius, f"{op}: reflect padding by K/2 = {radius} needs h and w "
           f"of at least {radius + 1} (K={K}), got {b_name} {tuple(b.shape)}")
    n, _, h, w = b.shape
    channels = torch.sym_max(torch.sym_max(a.shape[1], b.shape[1]), 1)
    _check(K * K <= _INT64_MAX and n * K * K * h * w * channels <= _INT64_MAX,
           f"{op}: the window work N * K*K * h * w * channels exceeds {_INT64_MAX}, the largest size the kernels "
           "can index")


def _reflect_similarity_shape(op: str, query: torch.Tensor, key: torch.Tensor, K: int, **more: torch.Tensor) -> tuple:
    _reflect_shape(op, query, key, K, "query", "key", **more)
    _check(query.shape[1] == key.shape[1], f"{op}: query and key must have the same number of channels, got "
           f"{tuple(query.shape)} and {tuple(key.shape)}")
    return (key.shape[0], K * K, key.shape[2], key.shape[3])


def _reflect_assembly_shape(op: str, weights: torch.Tensor, x: torch.Tensor, K: int, **more: torch.Tensor) -> tuple:
    _reflect_shape(op, weights, x, K, "weights", "x", **more)
    _check(weights.shape[1] == K * K, f"{op}: weights must have K*K = {K * K} channels for K={K}, got "
           f"{tuple(weights.shape)}")
    return tuple(x.shape)


def _empty_like(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in tensors)


def _fake_sapa_fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, K: int) -> torch.Tensor:
    return value.new_empty(_sapa_shape("upbench::sapa_fused", query, key, value, K))


def _fake_sapa_fused_backward(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              K: int) -> tuple[torch.Tensor, ...]:
    op = "upbench::sapa_fused_backward"
    _check_grad(op, grad, _sapa_shape(op, query, key, value, K, grad=grad))
    return _empty_like(query, key, value)


def _bilinear_fakes(name: str,
                    shape: Callable[..., tuple]) -> tuple[Callable[..., torch.Tensor], Callable[..., tuple]]:
    """The fake (meta) forward and backward of a bilinear window op ``name(a, b, K)`` whose checks and output
    shape ``shape`` gives; the backward returns the gradients of a and b."""
    op = f"upbench::{name}"

    def fake(a: torch.Tensor, b: torch.Tensor, K: int) -> torch.Tensor:
        return b.new_empty(shape(op, a, b, K))

    def fake_backward(grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor, K: int) -> tuple[torch.Tensor, ...]:
        _check_grad(f"{op}_backward", grad, shape(f"{op}_backward", a, b, K, grad=grad))
        return _empty_like(a, b)

    return fake, fake_backward


_BILINEAR_SHAPES: dict[str, Callable[..., tuple]] = {
    "local_similarity": _similarity_shape,
    "dynamic_assembly": _assembly_shape,
    "reflect_similarity": _reflect_similarity_shape,
    "reflect_assembly": _reflect_assembly_shape,
}


def _fake_norm_linear(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor, eps: float) -> torch.Tensor:
    op = "upbench::norm_linear"
    _check(x.dim() == 4, f"{op}: x must be a rank-4 NCHW tensor, got shape {tuple(x.shape)}")
    channels = x.shape[1]
    _check(tuple(gamma.shape) == (channels,) and tuple(beta.shape) == (channels,),
           f"{op}: gamma and beta must be (C,) for x {tuple(x.shape)}, got {tuple(gamma.shape)} and {tuple(beta.shape)}")
    _check(weight.dim() == 2 and weight.shape[1] == channels,
           f"{op}: weight must be (d, C) for x {tuple(x.shape)}, got {tuple(weight.shape)}")
    _check(tuple(bias.shape) == (weight.shape[0],), f"{op}: bias must be (d,) for weight {tuple(weight.shape)}, "
           f"got {tuple(bias.shape)}")
    _check(eps >= 0, f"{op}: eps must be >= 0, got {eps}")
    for name, t in (("gamma", gamma), ("beta", beta), ("weight", weight), ("bias", bias)):
        _check(t.device == x.device and t.dtype == x.dtype, f"{op}: {name} is {t.dtype} on {t.device} but x is "
               f"{x.dtype} on {x.device}; all inputs must share one dtype and device")
    _check(x.dtype in DTYPES, f"{op}: dtype {x.dtype} is not supported")
    return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))


def _fake_norm_linear_backward(grad: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                               weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, ...]:
    op = "upbench::norm_linear_backward"
    expected = _fake_norm_linear(x, gamma, beta, weight, weight.new_empty(weight.shape[:1]), eps).shape
    _check(tuple(grad.shape) == tuple(expected),
           f"{op}: grad must have the forward output's shape {tuple(expected)}, got {tuple(grad.shape)}")
    _check(grad.device == x.device and grad.dtype == x.dtype, f"{op}: grad is {grad.dtype} on {grad.device} "
           f"but x is {x.dtype} on {x.device}")
    return (*_empty_like(x, gamma, beta, weight), weight.new_empty(weight.shape[:1]))


# ---- autograd ----------------------------------------------------------------------------------------

def _save_inputs(ctx: Any, inputs: tuple, output: Any) -> None:
    # Only the inputs are kept: the backward ops recompute what they need (sapa_fused its logits and
    # softmax kernel), so nothing of the size of the (N, K*K, 2H, 2W) kernel is held between passes.
    # Every op's last argument is its one non-tensor: K for the window ops, eps for norm_linear.
    *tensors, ctx.scalar = inputs
    ctx.save_for_backward(*tensors)


def _backward_through(name: str) -> Callable[..., tuple]:
    """The autograd formula of op ``name``: its ``name_backward`` op on the saved inputs; K gets no grad."""
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        grads = getattr(torch.ops.upbench, f"{name}_backward")(grad, *ctx.saved_tensors, ctx.scalar)
        return *grads, None

    return backward


def _bilinear_backward_backward(name: str) -> Callable[..., tuple]:
    """The autograd formula of ``name_backward`` for a bilinear op y = B(a, b) (``_BILINEAR_SHAPES``), whose
    backward op gives (grad_a, grad_b) = Bw(g, a, b) with <g, B(a, b)> = <grad_a, a> = <grad_b, b>. With
    cotangents (u, v) of (grad_a, grad_b): d/dg = B(u, b) + B(a, v), d/da = Bw(g, a, v)[0],
    d/db = Bw(g, u, b)[1]. All of them are the two ops again, so every order of derivative goes through the
    compiled kernels."""
    forward = getattr(torch.ops.upbench, name)
    backward_op = getattr(torch.ops.upbench, f"{name}_backward")

    def backward(ctx: Any, u: torch.Tensor, v: torch.Tensor) -> tuple:
        # u and v are never None: autograd materialises a missing cotangent as zeros.
        g, a, b = ctx.saved_tensors
        K = ctx.scalar
        need_g, need_a, need_b = ctx.needs_input_grad[:3]
        grad_g = forward(u, b, K) + forward(a, v, K) if need_g else None
        grad_a = backward_op(g, a, v, K)[0] if need_a else None
        grad_b = backward_op(g, u, b, K)[1] if need_b else None
        return grad_g, grad_a, grad_b, None

    return backward


def _sapa_backward_composite(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What sapa_fused_backward computes, in differentiable ops: P = softmax(local_similarity(q, k)),
    out = dynamic_assembly(P, value)."""
    ops = torch.ops.upbench
    kernel = torch.softmax(ops.local_similarity(query, key, K), dim=1)
    grad_kernel, grad_value = ops.dynamic_assembly_backward(grad, kernel, value, K)
    grad_logits = kernel * (grad_kernel - (kernel * grad_kernel).sum(dim=1, keepdim=True))
    grad_query, grad_key = ops.local_similarity_backward(grad_logits, query, key, K)
    return grad_query, grad_key, grad_value


def _vjp_of(composite: Callable[..., tuple]) -> Callable[..., tuple]:
    """The autograd formula of a ``*_backward`` op whose expression in differentiable ops is ``composite``:
    the vector-Jacobian product of that expression (sapa_fused_backward, norm_linear_backward).

    Saved inputs that carry a graph are differentiated in place (not detached), so with
    create_graph the result stays differentiable to every order."""
    def backward(ctx: Any, *cotangents: torch.Tensor) -> tuple:
        create_graph = torch.is_grad_enabled()
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in ctx.saved_tensors]
        with torch.enable_grad():
            outputs = composite(*inputs, ctx.scalar)
        grads = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True, create_graph=create_graph)
        return *grads, None

    return backward


def _norm_linear_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    x, gamma, beta, weight, _bias = ctx.saved_tensors  # the gradients do not depend on the bias
    return *torch.ops.upbench.norm_linear_backward(grad, x, gamma, beta, weight, ctx.scalar), None


def _norm_linear_backward_composite(grad: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                                    weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, ...]:
    """What norm_linear_backward computes, in differentiable torch ops on the NCHW map:
    (grad_x, grad_gamma, grad_beta, grad_weight, grad_bias) of Linear(LayerNorm(x))."""
    n, channels, h, w = x.shape
    flat = x.reshape(n, channels, h * w)
    centred = flat - flat.mean(1, keepdim=True)
    rstd = (centred.square().mean(1, keepdim=True) + eps).rsqrt()
    normed = centred * rstd  # (N, C, P): the LayerNorm before its affine
    grad_out = grad.reshape(n, -1, h * w)  # (N, d, P)
    grad_bias = grad_out.sum((0, 2))
    grad_normed = torch.matmul(weight.t(), grad_out)  # d/d(gamma * normed + beta), (N, C, P)
    g = grad_normed * gamma[:, None]
    grad_x = rstd * (g - g.mean(1, keepdim=True) - normed * (g * normed).mean(1, keepdim=True))
    grad_weight = torch.matmul(grad_out, normed.transpose(1, 2)).sum(0) * gamma + torch.outer(grad_bias, beta)
    return (grad_x.reshape(x.shape), (grad_normed * normed).sum((0, 2)), grad_normed.sum((0, 2)), grad_weight,
            grad_bias)


# Every op of the library, by name: the autocast rule below is registered for each.
_OPS = (*(op for name in _BILINEAR_SHAPES for op in (name, f"{name}_backward")), "sapa_fused", "sapa_fused_backward",
        "norm_linear", "norm_linear_backward")
# What autocast casts to its dtype: the floating dtypes but float64, as for torch's own ops.
_AUTOCAST_CASTS = (torch.float32, torch.float16, torch.bfloat16)
# Outlives register(): the library fragment's registrations last as long as it does.
_autocast_library: torch.library.Library | None = None


def _autocast_kernel(name: str, device_type: str) -> Callable[..., Any]:
    """The autocast kernel of ``upbench::<name>`` on ``device_type``: its float32, float16 and bfloat16 tensors in
    autocast's dtype, then the op with autocast off. Under autocast an operator's convolutions hand the window ops
    weights in half precision beside float32 features, which the kernels refuse; like torch's convolutions and
    matmuls (autocast's lower-precision list) the window ops then run in autocast's dtype, accumulating in
    float32 as they do, so the compiled path returns what the reference path does. float64 is left as it is, as
    autocast leaves it."""
    op = getattr(torch.ops.upbench, name).default

    def kernel(*args: Any) -> Any:
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return op(*(a.to(dtype) if isinstance(a, torch.Tensor) and a.dtype in _AUTOCAST_CASTS else a
                        for a in args))
    return kernel


def _register_autocast() -> None:
    global _autocast_library
    _autocast_library = torch.library.Library("upbench", "IMPL")
    for device_type, key in (("cpu", "AutocastCPU"), ("cuda", "AutocastCUDA")):
        for name in _OPS:
            _autocast_library.impl(name, _autocast_kernel(name, device_type), key)


def register() -> None:
    """Attach the fake, autograd and autocast implementations (idempotent; needs the library loaded)."""
    global _registered
    if _registered:
        return
    lib = torch.library
    for name, shape in _BILINEAR_SHAPES.items():
        fake, fake_backward = _bilinear_fakes(name, shape)
        lib.register_fake(f"upbench::{name}")(fake)
        lib.register_fake(f"upbench::{name}_backward")(fake_backward)
    lib.register_fake("upbench::sapa_fused")(_fake_sapa_fused)
    lib.register_fake("upbench::sapa_fused_backward")(_fake_sapa_fused_backward)
    lib.register_fake("upbench::norm_linear")(_fake_norm_linear)
    lib.register_fake("upbench::norm_linear_backward")(_fake_norm_linear_backward)
    lib.register_autograd("upbench::norm_linear", _norm_linear_backward, setup_context=_save_inputs)
    lib.register_autograd("upbench::norm_linear_backward", _vjp_of(_norm_linear_backward_composite),
                          setup_context=_save_inputs)
    for name in (*_BILINEAR_SHAPES, "sapa_fused"):
        lib.register_autograd(f"upbench::{name}", _backward_through(name), setup_context=_save_inputs)
    for name in _BILINEAR_SHAPES:
        lib.register_autograd(f"upbench::{name}_backward", _bilinear_backward_backward(name),
                              setup_context=_save_inputs)
    lib.register_autograd("upbench::sapa_fused_backward", _vjp_of(_sapa_backward_composite),
                          setup_context=_save_inputs)
    _register_autocast()
    _registered = True
