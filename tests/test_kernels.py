"""The compiled window ops (csrc/, upbench/kernels.py) against the pure-PyTorch reference.

The first test to need the library builds it (ninja, into the persistent build directory; ~30 s the
first time on 2 cores, a relink-free load afterwards). If the build fails those tests skip with the
compiler's error, and test_build_failure_falls_back shows what users get instead.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import torch

import upbench
from upbench import kernels
from upbench.memory import cpu_peak_bytes
from upbench.references import reference_assembly, reference_norm_linear, reference_sapa, reference_similarity

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not CUDA, reason="CUDA not available")
# The checks that hold on every device the kernels run on; the CUDA ones run where a GPU is present.
DEVICES = ["cpu", pytest.param("cuda", marks=cuda_only)]


@pytest.fixture(scope="session")
def ops():
    if not kernels.compiled_available():
        pytest.skip(f"compiled ops unavailable: {kernels.build_info()['error']}")
    return torch.ops.upbench


def make_inputs(N, d, C, H, W, K, dtype=torch.float64, device="cpu", layout="contiguous", seed=0):
    """query (N,d,2H,2W), key (N,d,H,W), value (N,C,H,W), weights (N,K*K,2H,2W) in the given layout."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        # The layout is made on the device in the final dtype: .to() of a sliced view copies it into a
        # contiguous tensor.
        def full(*full_shape):
            return torch.randn(*full_shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)

        n, c, h, w = shape
        if layout == "channels_last":  # permuted view: channel stride 1
            return full(n, h, w, c).permute(0, 3, 1, 2)
        if layout == "sliced":  # every other channel and a cropped width: no unit strides
            return full(n, 2 * c, h, w + 1)[:, ::2, :, 1:]
        return full(*shape)

    q = rand(N, d, 2 * H, 2 * W)
    k = rand(N, d, H, W)
    v = rand(N, C, H, W)
    w = rand(N, K * K, 2 * H, 2 * W)
    if layout != "contiguous":
        assert not all(t.is_contiguous() for t in (q, k, v, w))
    return q, k, v, w


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    # Relative to the output's magnitude: sums over C * K*K terms of unit-variance products grow like
    # sqrt(C) K, and float32 rounding grows with them.
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale)


# (N, d, C, H, W, K): N in {1, 3}; C in {1, 3, 33, 1030}; H x W in {1x1, 2x2, 5x5, 7x3}; K in {1, 3, 5, 7},
# including K > H and K > W.
SHAPES = [
    (1, 4, 1, 1, 1, 1),
    (1, 4, 3, 1, 1, 3),
    (3, 5, 33, 2, 2, 5),
    (1, 8, 1030, 2, 2, 7),
    (3, 3, 3, 5, 5, 3),
    (1, 16, 33, 5, 5, 5),
    (1, 2, 1030, 5, 5, 1),
    (3, 8, 33, 7, 3, 7),
    (1, 33, 3, 7, 3, 5),
    (3, 1, 1, 7, 3, 3),
]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}d{}C{}H{}W{}K{}".format(*s))
def test_forward_matches_reference(ops, shape, dtype):
    N, d, C, H, W, K = shape
    q, k, v, w = make_inputs(*shape, dtype=dtype)
    # local_similarity gets the wide channel counts too: use value as query-like data of C channels.
    q_wide = torch.randn(N, C, 2 * H, 2 * W, dtype=dtype)
    assert_close(ops.local_similarity(q, k, K), reference_similarity(q, k, K), TOL[dtype])
    assert_close(ops.local_similarity(q_wide, v, K), reference_similarity(q_wide, v, K), TOL[dtype])
    assert_close(ops.dynamic_assembly(w, v, K), reference_assembly(w, v, K), TOL[dtype])
    assert_close(ops.sapa_fused(q, k, v, K), reference_sapa(q, k, v, K), TOL[dtype])


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_non_contiguous_inputs(ops, layout):
    shape = (3, 5, 33, 7, 3, 5)
    K = shape[-1]
    q, k, v, w = make_inputs(*shape, layout=layout)
    assert_close(ops.local_similarity(q, k, K), reference_similarity(q, k, K), 1e-10)
    assert_close(ops.dynamic_assembly(w, v, K), reference_assembly(w, v, K), 1e-10)
    assert_close(ops.sapa_fused(q, k, v, K), reference_sapa(q, k, v, K), 1e-10)
    # Gradients arrive non-contiguous too (sum().backward() gives an expanded grad).
    for op, ref, args in [
        (ops.dynamic_assembly, reference_assembly, (w, v)),
        (ops.sapa_fused, reference_sapa, (q, k, v)),
    ]:
        a = [t.detach().requires_grad_() for t in args]
        b = [t.detach().requires_grad_() for t in args]
        op(*a, K).sum().backward()
        ref(*b, K).sum().backward()
        for x, y in zip(a, b):
            assert_close(x.grad, y.grad, 1e-10)


@pytest.mark.parametrize("shape", [(2, 3, 33, 5, 5, 3), (1, 4, 3, 2, 2, 5), (3, 2, 5, 7, 3, 7)],
                         ids=lambda s: "N{}d{}C{}H{}W{}K{}".format(*s))
def test_backward_matches_reference(ops, shape):
    K = shape[-1]
    q, k, v, w = make_inputs(*shape)
    cases = [
        (ops.local_similarity, reference_similarity, (q, k)),
        (ops.dynamic_assembly, reference_assembly, (w, v)),
        (ops.sapa_fused, reference_sapa, (q, k, v)),
    ]
    for op, ref, args in cases:
        a = [t.detach().requires_grad_() for t in args]
        b = [t.detach().requires_grad_() for t in args]
        out = op(*a, K)
        grad = torch.randn_like(out)
        out.backward(grad)
        ref(*b, K).backward(grad)
        for x, y in zip(a, b):
            assert_close(x.grad, y.grad, 1e-10)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(2, 5, 9, 37, 35, 5), (1, 3, 6, 19, 17, 7)],
                         ids=lambda s: "N{}d{}C{}H{}W{}K{}".format(*s))
def test_large_maps_forward_and_backward(ops, shape, dtype, threads):
    """Maps wider than a vector (one and several, with a partial last one) and taller than a band of
    the adjoint's rows, channel counts off its channel block: every row, vector and block edge."""
    K = shape[-1]
    q, k, v, w = make_inputs(*shape, dtype=dtype, seed=3)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for op, ref, args in [
            (ops.local_similarity, reference_similarity, (q, k)),
            (ops.dynamic_assembly, reference_assembly, (w, v)),
            (ops.sapa_fused, reference_sapa, (q, k, v)),
        ]:
            a = [t.detach().requires_grad_() for t in args]
            b = [t.detach().double().requires_grad_() for t in args]
            out = op(*a, K)
            grad = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            expected = ref(*b, K)
            assert_close(out.double(), expected, TOL[dtype])
            out.backward(grad.to(dtype))
            expected.backward(grad)
            for x, y in zip(a, b):
                assert_close(x.grad.double(), y.grad, TOL[dtype])
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("check", [torch.autograd.gradcheck, torch.autograd.gradgradcheck], ids=["grad", "gradgrad"])
@pytest.mark.parametrize("shape", [(1, 3, 4, 3, 2, 3), (1, 2, 3, 2, 1, 5)], ids=["K3", "K5>H"])
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(ops, shape, check, device):
    """First and second derivatives (double backward used to return wrong numbers silently)."""
    K = shape[-1]
    q, k, v, w = (t.requires_grad_() for t in make_inputs(*shape, device=device))
    assert check(lambda a, b: ops.local_similarity(a, b, K), (q, k))
    assert check(lambda a, b: ops.dynamic_assembly(a, b, K), (w, v))
    assert check(lambda a, b, c: ops.sapa_fused(a, b, c, K), (q, k, v))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(ops, device):
    K = 3
    q, k, v, w = make_inputs(2, 3, 4, 3, 2, K, device=device)
    req = lambda *ts: [t.clone().requires_grad_() for t in ts]  # noqa: E731
    torch.library.opcheck(ops.local_similarity.default, (*req(q, k), K))
    torch.library.opcheck(ops.dynamic_assembly.default, (*req(w, v), K))
    torch.library.opcheck(ops.sapa_fused.default, (*req(q, k, v), K))
    g_sim = torch.randn(2, K * K, 6, 4, dtype=torch.float64, device=device)
    g_out = torch.randn(2, 4, 6, 4, dtype=torch.float64, device=device)
    torch.library.opcheck(ops.local_similarity_backward.default, (g_sim, q, k, K))
    torch.library.opcheck(ops.dynamic_assembly_backward.default, (g_out, w, v, K))
    torch.library.opcheck(ops.sapa_fused_backward.default, (g_out, q, k, v, K))


def test_meta_shapes(ops):
    N, d, C, H, W, K = 2, 8, 33, 5, 7, 5
    q, k, v, w = (t.to("meta") for t in make_inputs(N, d, C, H, W, K, dtype=torch.float32))
    assert ops.local_similarity(q, k, K).shape == (N, K * K, 2 * H, 2 * W)
    assert ops.dynamic_assembly(w, v, K).shape == (N, C, 2 * H, 2 * W)
    out = ops.sapa_fused(q, k, v, K)
    assert out.shape == (N, C, 2 * H, 2 * W) and out.dtype == torch.float32 and out.device.type == "meta"
    gq, gk, gv = ops.sapa_fused_backward(out, q, k, v, K)
    assert (gq.shape, gk.shape, gv.shape) == (q.shape, k.shape, v.shape)


# On the CPU, aot_eager: the graph capture and the fakes are what is under test, and inductor's C++
# code generation would add a minute of compiling on two cores. On the GPU, inductor, as users run it.
@pytest.mark.parametrize("device, backend", [("cpu", "aot_eager"),
                                             pytest.param("cuda", "inductor", marks=cuda_only)])
def test_torch_compile_fullgraph(ops, device, backend):
    q, k, v, w = make_inputs(1, 4, 6, 3, 4, 3, dtype=torch.float32, device=device)

    def fn(q, k, v, w):
        return ops.sapa_fused(q, k, v, 3) + ops.dynamic_assembly(w, v, 3)

    compiled = torch.compile(fn, backend=backend, fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v, w), fn(q, k, v, w))


def test_kernels_api_dispatches_to_compiled(ops):
    q, k, v, w = make_inputs(1, 4, 6, 3, 4, 3)
    torch.testing.assert_close(kernels.sapa_fused(q, k, v, 3), ops.sapa_fused(q, k, v, 3), rtol=0, atol=0)
    torch.testing.assert_close(kernels.dynamic_assembly(w, v, 3), ops.dynamic_assembly(w, v, 3), rtol=0, atol=0)
    torch.testing.assert_close(kernels.local_similarity(q, k, 3), ops.local_similarity(q, k, 3), rtol=0, atol=0)
    kernels.require_compiled("SAPA-B")  # no error
    info = kernels.build_info()
    assert info["available"] and info["error"] is None and Path(info["build_dir"]).is_dir()
    assert any(s.endswith("upbench_ops.cpp") for s in info["sources"])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda o, q, k, v, w: o.sapa_fused(q, k, v, 4), r"sapa_fused: K must be an odd integer >= 1.*K=4"),
        (lambda o, q, k, v, w: o.sapa_fused(q, k, v, 17), r"sapa_fused: K=17 exceeds the fused kernel's cap"),
        (lambda o, q, k, v, w: o.local_similarity(q, k, 0), r"local_similarity: K must be an odd"),
        (lambda o, q, k, v, w: o.local_similarity(q[0], k, 3), r"local_similarity: query .* must be a rank-4"),
        (lambda o, q, k, v, w: o.local_similarity(q[:, :, :-1], k, 3), r"must be 2H x 2W of key.*expected 10 x 6"),
        (lambda o, q, k, v, w: o.local_similarity(q[:, :2], k, 3), r"same number of channels"),
        (lambda o, q, k, v, w: o.dynamic_assembly(w[:1], v, 3), r"dynamic_assembly: batch sizes differ"),
        (lambda o, q, k, v, w: o.dynamic_assembly(w, v, 5), r"weights must have K\*K = 25 channels for K=5"),
        (lambda o, q, k, v, w: o.dynamic_assembly(w.float(), v, 3), r"dynamic_assembly: weights .* has dtype Float"),
        (lambda o, q, k, v, w: o.sapa_fused(q, k, v[..., :2], 3), r"sapa_fused: value \(N, C, H, W\) must match"),
        (lambda o, q, k, v, w: o.dynamic_assembly(w.int(), v.int(), 3), r"dynamic_assembly \(CPU\): dtype Int"),
        (lambda o, q, k, v, w: o.dynamic_assembly_backward(v, w, v, 3), r"grad must have the forward output's"),
    ],
)
def test_input_validation(ops, call, match):
    q, k, v, w = make_inputs(2, 3, 4, 5, 3, 3)
    with pytest.raises(RuntimeError, match=match):
        call(ops, q, k, v, w)


# ---- sizes the kernels cannot index ---------------------------------------------------------------

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("K", [INT64_MAX, 3037000499, 10**9 + 1], ids=["2^63-1", "KK-just-fits", "1e9+1"])
def test_window_too_large_to_index(ops, device, K):
    """K*K (or the work it multiplies) overflows int64: rejected by the kernels' own checks (cpu) and by
    the fakes (meta), before any loop or allocation. K = 2**63 - 1 used to segfault / hang."""
    q, k, v, w = (t.to(device) for t in make_inputs(1, 2, 3, 2, 1, 1))
    calls = [
        lambda: ops.local_similarity(q, k, K),
        lambda: ops.dynamic_assembly(w, v, K),
        lambda: ops.local_similarity_backward(w, q, k, K),
        lambda: ops.dynamic_assembly_backward(torch.zeros_like(q[:, :1]).expand(1, 3, 4, 2), w, v, K),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=f"exceeds {INT64_MAX}"):
            call()


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_tensor_sizes_too_large_to_index(ops, device):
    """Stride-0 (expanded) inputs can claim any size without memory: N * K*K * 2H * 2W * C past int64
    must be an error, not a wrapped index."""
    one = torch.zeros(1, 1, 1, 1, device=device)
    big = 2**30  # N = C = 2^30: every tensor's numel fits int64, the 9 taps of each output pixel do not
    x = one.expand(big, big, 1, 1)
    with pytest.raises(RuntimeError, match=f"window work .* exceeds {INT64_MAX}"):
        ops.dynamic_assembly(one.expand(big, 9, 2, 2), x, 3)
    with pytest.raises(RuntimeError, match=f"window work .* exceeds {INT64_MAX}"):
        ops.local_similarity(one.expand(big, big, 2, 2), x, 3)


# ---- the fakes check what the kernels check ------------------------------------------------------

def _rejected_calls(q, k, v, w):
    """Calls every kernel rejects; q, k, v, w are float32 (N=2, d=3, C=4, H x W = 5 x 3, K=3)."""
    g_sim = torch.zeros(2, 9, 10, 6, device=q.device)
    g_out = torch.zeros(2, 4, 10, 6, device=q.device)
    return {
        "sapa-f64-value": lambda o: o.sapa_fused(q, k, v.double(), 3),
        "assembly-f64-weights": lambda o: o.dynamic_assembly(w.double(), v, 3),
        "similarity-int": lambda o: o.local_similarity(q.int(), k.int(), 3),
        "similarity-channels": lambda o: o.local_similarity(q[:, :2], k, 3),
        "similarity-even-K": lambda o: o.local_similarity(q, k, 4),
        "sapa-K-cap": lambda o: o.sapa_fused(q, k, v, kernels.FUSED_MAX_K + 2),
        "similarity-grad-shape": lambda o: o.local_similarity_backward(g_sim[:, :5], q, k, 3),
        "similarity-grad-f64": lambda o: o.local_similarity_backward(g_sim.double(), q, k, 3),
        "similarity-grad-rank": lambda o: o.local_similarity_backward(g_sim[0], q, k, 3),
        "assembly-grad-shape": lambda o: o.dynamic_assembly_backward(g_out[:, :2], w, v, 3),
        "sapa-grad-shape": lambda o: o.sapa_fused_backward(g_out[..., :-1], q, k, v, 3),
        "sapa-grad-f64": lambda o: o.sapa_fused_backward(g_out.double(), q, k, v, 3),
    }


REJECTED = list(_rejected_calls(*make_inputs(2, 3, 4, 5, 3, 3, dtype=torch.float32)))


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("case", REJECTED)
def test_fake_rejects_what_the_kernel_rejects(ops, device, case):
    q, k, v, w = (t.to(device) for t in make_inputs(2, 3, 4, 5, 3, 3, dtype=torch.float32))
    with pytest.raises(RuntimeError, match="upbench::"):
        _rejected_calls(q, k, v, w)[case](ops)


def _all_op_calls(q, k, v, w):
    g_sim = torch.zeros(2, 9, 10, 6, dtype=q.dtype)
    g_out = torch.zeros(2, 4, 10, 6, dtype=q.dtype)
    return {
        "local_similarity": (q, k),
        "local_similarity_backward": (g_sim, q, k),
        "dynamic_assembly": (w, v),
        "dynamic_assembly_backward": (g_out, w, v),
        "sapa_fused": (q, k, v),
        "sapa_fused_backward": (g_out, q, k, v),
    }


MIXED = [(name, i) for name, args in _all_op_calls(*make_inputs(2, 3, 4, 5, 3, 3)).items() for i in range(len(args))]


@pytest.mark.parametrize("name, meta_arg", MIXED, ids=[f"{n}-arg{i}" for n, i in MIXED])
def test_cpu_mixed_with_meta_is_an_error(ops, name, meta_arg):
    """The dispatcher sends a call with any meta tensor to the fake, which used to return uninitialised
    CPU memory (or a meta tensor) for a CPU caller."""
    args = list(_all_op_calls(*make_inputs(2, 3, 4, 5, 3, 3))[name])
    args[meta_arg] = args[meta_arg].to("meta")
    with pytest.raises(RuntimeError, match="all inputs must be on one device"):
        getattr(ops, name)(*args, 3)


# ---- double backward -----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_backward_ops_gradcheck(ops, device):
    """The backward ops themselves, to second order (second and third order of the forward ops)."""
    K = 3
    q, k, v, w = (t.requires_grad_() for t in make_inputs(1, 2, 2, 2, 1, K, device=device))
    g_sim = torch.randn(1, K * K, 4, 2, dtype=torch.float64, device=device, requires_grad=True)
    g_out = torch.randn(1, 2, 4, 2, dtype=torch.float64, device=device, requires_grad=True)
    for op, args in [
        (ops.local_similarity_backward, (g_sim, q, k)),
        (ops.dynamic_assembly_backward, (g_out, w, v)),
        (ops.sapa_fused_backward, (g_out, q, k, v)),
    ]:
        assert torch.autograd.gradcheck(lambda *a, op=op: op(*a, K), args)
        assert torch.autograd.gradgradcheck(lambda *a, op=op: op(*a, K), args)


def test_carafe_gradient_penalty_matches_reference(ops):
    """A gradient penalty (the gradient of a loss of the input gradient) needs double backward through
    dynamic_assembly: the compiled path used to give 6.34 where the reference gives 19.07."""
    torch.manual_seed(0)
    reference = upbench.make("carafe", 4, K=3, d=4, impl="reference").double()
    compiled = upbench.make("carafe", 4, K=3, d=4, impl="compiled").double()
    compiled.load_state_dict(reference.state_dict())
    x0 = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    results = []
    for op in (reference, compiled):
        x = x0.clone().requires_grad_()
        (grad_x,) = torch.autograd.grad(op(x).pow(2).sum(), x, create_graph=True)
        penalty = grad_x.pow(2).sum()
        results.append([penalty, *torch.autograd.grad(penalty, [x, *op.parameters()])])
    for expected, actual in zip(*results):
        assert_close(actual, expected, 1e-10)


def test_sapa_fused_peak_memory(ops):
    """SAPA-B at C=256, 64x64 -> 128x128, K=5, d=32: the fused op must not build the unfolded windows."""
    N, d, C, H, W, K = 1, 32, 256, 64, 64, 5
    q, k, v, _ = make_inputs(N, d, C, H, W, 1, dtype=torch.float32)
    threads = torch.get_num_threads()
    # One thread: the peak does not depend on it, and the reference's many small parallel regions
    # crawl when the cores are shared with other processes.
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            compiled = cpu_peak_bytes(ops.sapa_fused, q, k, v, K)
            reference = cpu_peak_bytes(reference_sapa, q, k, v, K)
    finally:
        torch.set_num_threads(threads)
    output_bytes = N * C * 4 * H * W * 4
    assert compiled >= output_bytes  # the probe sees the op's allocations at all
    assert compiled * 5 <= reference, f"compiled peak {compiled / 2**20:.1f} MiB vs reference {reference / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", ["sapa-i", "sapa-b", "sapa-g"])
@pytest.mark.parametrize("K", [5, kernels.FUSED_MAX_K + 2])
def test_sapa_compiled_matches_reference_above_the_fused_cap(ops, name, K):
    """Past the fused kernel's K cap the compiled path must still run (the separate ops), same numbers
    and counts as the reference."""
    from upbench.counting import count

    torch.manual_seed(0)
    reference = upbench.make(name, 6, K=K, impl="reference").double()
    compiled = upbench.make(name, 6, K=K, impl="compiled").double()
    compiled.load_state_dict(reference.state_dict())
    assert compiled.fused == (K <= kernels.FUSED_MAX_K)
    x, guide = reference.example_inputs(2, 5, 3, dtype=torch.float64)
    assert_close(compiled(x, guide), reference(x, guide), 1e-10)
    assert count(compiled, (x, guide)).macs == count(reference, (x, guide)).macs


def test_sapa_b_operator_peak_memory(ops):
    """The issue's target, for the whole operator (embedding included): compiled SAPA-B forward at C=256,
    64x64 -> 128x128, K=5, d=32 peaks at no more than 1/5 of the reference path."""
    peaks = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for impl in ("reference", "compiled"):
            torch.manual_seed(0)
            op = upbench.make("sapa-b", 256, K=5, d=32, impl=impl).eval()
            x, guide = op.example_inputs(1, 64, 64)
            with torch.no_grad():
                peaks[impl] = cpu_peak_bytes(op, x, guide)
    finally:
        torch.set_num_threads(threads)
    assert peaks["compiled"] >= 256 * 128 * 128 * 4  # at least the output: the probe sees the allocations
    assert peaks["compiled"] * 5 <= peaks["reference"], {k: f"{v / 2**20:.1f} MiB" for k, v in peaks.items()}


@pytest.mark.parametrize("op_name", ["local_similarity", "dynamic_assembly", "sapa_fused"])
def test_per_thread_scratch_is_in_the_peak(ops, op_name):
    """The kernels' per-thread scratch is allocated where the memory probe sees it: one share above the
    output on one thread, two on two (it used to be plain C++ memory the probe never saw, so a
    many-core CPU under-reported the compiled ops' peak)."""
    N, d, C, H, W, K = 1, 8, 32, 16, 16, 5
    q, k, v, w = make_inputs(N, d, C, H, W, K, dtype=torch.float32)
    call, output_channels = {"local_similarity": ((q, k, K), K * K), "dynamic_assembly": ((w, v, K), C),
                             "sapa_fused": ((q, k, v, K), C)}[op_name]
    output_bytes = N * output_channels * 4 * H * W * 4
    threads = torch.get_num_threads()
    peaks = {}
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            peaks[t] = cpu_peak_bytes(getattr(ops, op_name), *call)
    finally:
        torch.set_num_threads(threads)
    share = peaks[1] - output_bytes
    assert share > 0, peaks
    assert peaks[2] - output_bytes == 2 * share, peaks


def test_stale_lock_is_removed(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    assert kernels._remove_stale_lock(tmp_path) is None and lock.exists()  # fresh: a build may be running
    old = time.time() - 2 * kernels._STALE_LOCK_S
    os.utime(lock, (old, old))
    assert "stale" in kernels._remove_stale_lock(tmp_path) and not lock.exists()


_FALLBACK_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    sys.path.insert(0, {repo!r})
    import torch
    import upbench
    from upbench import kernels
    from upbench.references import reference_assembly
    if {broken!r}:
        kernels._sources = lambda with_cuda: [{broken!r}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = [kernels.compiled_available(), kernels.compiled_available()]
        op = upbench.make("carafe", 3, K=3)  # impl="auto" must settle on the reference path
        x = torch.randn(1, 3, 3, 2)
        weights = op.kernel_generation(x)
        same = op.impl == "reference" and torch.equal(op(x), reference_assembly(weights, x, 3))
    try:
        kernels.require_compiled("CARAFE")
        raised = ""
    except RuntimeError as exc:
        raised = str(exc)
    print(json.dumps({{
        "available": available, "same": same, "raised": raised,
        "warnings": [(c.category.__name__, str(c.message)) for c in caught],
        "error": kernels.build_info()["error"],
    }}))
    """
)


@pytest.mark.parametrize("mode", ["no_compile_env", "compile_error"])
def test_build_failure_falls_back(tmp_path, mode):
    env = {**os.environ, "UPBENCH_BUILD_DIR": str(tmp_path / "build")}
    broken = ""
    if mode == "no_compile_env":
        env["UPBENCH_NO_COMPILE"] = "1"
    else:
        env.pop("UPBENCH_NO_COMPILE", None)
        broken = str(tmp_path / "broken.cpp")
        Path(broken).write_text("#error upbench test: this source is broken on purpose\n")
    script = _FALLBACK_SCRIPT.format(repo=str(REPO), broken=broken)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["available"] == [False, False]
    assert result["same"]
    upbench_warnings = [w for w in result["warnings"] if "upbench" in w[1]]
    assert len(upbench_warnings) == 1 and upbench_warnings[0][0] == "RuntimeWarning", result["warnings"]
    assert "CARAFE" in result["raised"]
    expected = "UPBENCH_NO_COMPILE" if mode == "no_compile_env" else "broken on purpose"
    assert expected in result["error"] and expected in upbench_warnings[0][1] and expected in result["raised"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
@pytest.mark.parametrize("source", sorted((REPO / "csrc" / "cuda").glob("*.cu")), ids=lambda p: p.name)
def test_cuda_sources_compile_without_torch(tmp_path, source):
    """The kernels must stay torch-free: plain nvcc, no torch include paths."""
    proc = subprocess.run(["nvcc", "-c", "-o", str(tmp_path / "out.o"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ---- CUDA (skipped without a GPU) ---------------------------------------------------------------------


@cuda_only
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}d{}C{}H{}W{}K{}".format(*s))
def test_cuda_forward_and_backward_match_cpu(ops, shape):
    K = shape[-1]
    q, k, v, w = make_inputs(*shape)
    cases = [
        (ops.local_similarity, (q, k)),
        (ops.dynamic_assembly, (w, v)),
        (ops.sapa_fused, (q, k, v)),
    ]
    for op, args in cases:
        a = [t.detach().requires_grad_() for t in args]
        b = [t.detach().cuda().requires_grad_() for t in args]
        out_cpu, out_gpu = op(*a, K), op(*b, K)
        assert_close(out_gpu.cpu(), out_cpu, 1e-10)
        grad = torch.randn_like(out_cpu)
        out_cpu.backward(grad)
        out_gpu.backward(grad.cuda())
        for x, y in zip(a, b):
            assert_close(y.grad.cpu(), x.grad, 1e-10)
        # float32 on the GPU against the float64 reference
        c = [t.detach().float().cuda() for t in args]
        assert_close(op(*c, K).double().cpu(), out_cpu.detach(), 1e-5)


@cuda_only
@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-2), (torch.bfloat16, 1e-1)], ids=["f16", "bf16"])
def test_cuda_half_precision(ops, dtype, tol):
    shape = (2, 8, 1030, 5, 7, 5)
    K = shape[-1]
    q, k, v, w = make_inputs(*shape, dtype=torch.float32)
    q, k = q / 3, k / 3  # keep the softmax out of saturation so the comparison means something
    for op, ref, args in [
        (ops.local_similarity, reference_similarity, (q, k)),
        (ops.dynamic_assembly, reference_assembly, (w, v)),
        (ops.sapa_fused, reference_sapa, (q, k, v)),
    ]:
        low = [t.to(dtype).cuda().requires_grad_() for t in args]
        out = op(*low, K)
        assert out.dtype == dtype
        expected = ref(*[t.to(dtype).float() for t in args], K)  # same rounded inputs, fp32 math
        assert_close(out.float().cpu(), expected, tol)
        out.float().sum().backward()
        assert all(t.grad is not None and t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in low)


@cuda_only
def test_cuda_noncontiguous(ops):
    q, k, v, w = make_inputs(3, 5, 33, 7, 3, 5, layout="sliced", device="cuda")
    assert_close(ops.sapa_fused(q, k, v, 5).cpu(), reference_sapa(q.cpu(), k.cpu(), v.cpu(), 5), 1e-10)
    assert_close(ops.dynamic_assembly(w, v, 5).cpu(), reference_assembly(w.cpu(), v.cpu(), 5), 1e-10)


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-2), (torch.bfloat16, 1e-1)], ids=["f16", "bf16"])
def test_cpu_half_precision(ops, dtype, tol):
    """fp16 / bf16 on CPU: float accumulation, results in the input dtype, gradients too."""
    shape = (2, 8, 33, 5, 7, 5)
    K = shape[-1]
    q, k, v, w = make_inputs(*shape, dtype=torch.float32, layout="channels_last")
    q, k = q / 3, k / 3  # keep the softmax out of saturation so the comparison means something
    for op, ref, args in [
        (ops.local_similarity, reference_similarity, (q, k)),
        (ops.dynamic_assembly, reference_assembly, (w, v)),
        (ops.sapa_fused, reference_sapa, (q, k, v)),
    ]:
        low = [t.to(dtype).requires_grad_() for t in args]
        out = op(*low, K)
        assert out.dtype == dtype
        rounded = [t.to(dtype).float().requires_grad_() for t in args]
        expected = ref(*rounded, K)  # same rounded inputs, fp32 math
        assert_close(out.float(), expected, tol)
        grad = torch.randn_like(expected)
        out.backward(grad.to(dtype))
        expected.backward(grad.to(dtype).float())
        for a, b in zip(low, rounded):
            assert a.grad.dtype == dtype
            assert_close(a.grad.float(), b.grad, tol)


def assert_same_bits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal element for element, NaN where the other is NaN (payloads aside), Inf and -0.0 included."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    nan = torch.isnan(expected)
    assert torch.equal(torch.isnan(actual), nan)
    same = actual[~nan].view(torch.int16) == expected[~nan].view(torch.int16)
    assert same.all(), f"{(~same).sum().item()} of {same.numel()} elements differ, the first at " \
                       f"{actual[~nan][~same][:4].tolist()} vs {expected[~nan][~same][:4].tolist()}"


# (N, d, C, H, W, K): a 1 x 1 map under a 3 x 3 window; K > H and K > W; C > 1024; C and W off every
# vector width (4, 8 and 16 floats; 8, 16 and 32 16-bit values), W past two vectors with a tail.
HALF_SHAPES = [(1, 4, 3, 1, 1, 3), (2, 5, 33, 2, 3, 5), (1, 8, 1030, 3, 2, 3), (1, 3, 17, 5, 37, 5),
               (3, 2, 7, 7, 19, 7)]
# Where the values sit: ordinary; float16 subnormals and overflow to Inf; bfloat16 (float) subnormals.
HALF_SCALES = {torch.float16: [1.0, 1e-6, 3e3], torch.bfloat16: [1.0, 1e-39]}


def half_cases(ops, q, k, v, w, K, generator):
    """(name, op, inputs, reference, output grad) for each op and its backward op, grads in q's dtype."""
    def grad(shape):
        return torch.randn(shape, dtype=torch.float64, generator=generator).to(q.dtype)

    N, C, H, W = v.shape
    return [
        ("local_similarity", ops.local_similarity, (q, k), reference_similarity, grad((N, K * K, 2 * H, 2 * W))),
        ("dynamic_assembly", ops.dynamic_assembly, (w, v), reference_assembly, grad((N, C, 2 * H, 2 * W))),
        ("sapa_fused", ops.sapa_fused, (q, k, v), reference_sapa, grad((N, C, 2 * H, 2 * W))),
    ]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["contiguous", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("shape", HALF_SHAPES, ids=lambda s: "N{}d{}C{}H{}W{}K{}".format(*s))
def test_cpu_half_is_float32_rounded_once(ops, shape, dtype, layout, threads):
    """fp16 / bf16 are read and written in place and computed in float32: every output of the forward
    and backward ops is, bit for bit, the float32 kernel's on the same values rounded once to the dtype
    (round to nearest even, subnormals, overflow to Inf), and close to the float64 reference."""
    K = shape[-1]
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for scale in HALF_SCALES[dtype]:
            q, k, v, w = make_inputs(*shape, dtype=dtype, layout=layout, seed=4)
            # q and k / 3: the softmax away from saturation, so the comparison means something. In place,
            # so a sliced layout stays sliced.
            for t, factor in ((q, 1 / 3), (k, scale / 3), (v, scale)):
                t.copy_(t.double() * factor)
            generator = torch.Generator().manual_seed(5)
            for name, op, args, ref, grad in half_cases(ops, q, k, v, w, K, generator):
                out = op(*args, K)
                assert out.dtype == dtype
                assert_same_bits(out, op(*[t.float() for t in args], K).to(dtype))
                backward = getattr(ops, f"{name}_backward")
                grads = backward(grad, *args, K)
                expected = backward(grad.float(), *[t.float() for t in args], K)
                for a, b in zip(grads, expected):
                    assert_same_bits(a, b.to(dtype))
                if scale == 1.0:  # the reference, on the same rounded inputs in float64
                    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
                    wide = [t.double().requires_grad_() for t in args]
                    expected = ref(*wide, K)
                    assert_close(out.double(), expected, tol)
                    expected.backward(grad.double())
                    for a, b in zip(grads, wide):
                        assert_close(a.double(), b.grad, tol)
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_cpu_half_nan_and_inf(ops, dtype):
    """NaN and Inf inputs in fp16 / bf16 give NaN and Inf where the float32 kernel's do."""
    shape = (2, 2, 5, 2, 3, 5)
    K = shape[-1]
    for _, q, k, v, w in nan_inf_cases(shape, K, "cpu"):
        q, k, v, w = (t.to(dtype) for t in (q, k, v, w))
        for name, op, args, ref, grad in half_cases(ops, q, k, v, w, K, torch.Generator().manual_seed(6)):
            out = op(*args, K)
            assert not torch.isfinite(out).all()
            assert_same_bits(out, op(*[t.float() for t in args], K).to(dtype))
            grads = getattr(ops, f"{name}_backward")(grad, *args, K)
            expected = getattr(ops, f"{name}_backward")(grad.float(), *[t.float() for t in args], K)
            for a, b in zip(grads, expected):
                assert_same_bits(a, b.to(dtype))


_ISA_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {repo!r})
    from upbench import kernels
    assert kernels.compiled_available(), kernels.build_info()["error"]
    ops = torch.ops.upbench
    g = torch.Generator().manual_seed(0)
    N, d, C, H, W, K = 2, 5, 33, 3, 19, 5
    base = dict(q=(N, d, 2 * H, 2 * W), k=(N, d, H, W), v=(N, C, H, W), w=(N, K * K, 2 * H, 2 * W),
                gs=(N, K * K, 2 * H, 2 * W), ga=(N, C, 2 * H, 2 * W), gamma=(C,), beta=(C,), weight=(d, C),
                bias=(d,), gn=(N, d, H, W))
    inputs = {{name: torch.randn(shape, generator=g, dtype=torch.float64) for name, shape in base.items()}}
    inputs["q"] /= 3
    inputs["k"] /= 3

    def run(t):
        return dict(
            local_similarity=ops.local_similarity(t["q"], t["k"], K),
            local_similarity_backward=ops.local_similarity_backward(t["gs"], t["q"], t["k"], K),
            dynamic_assembly=ops.dynamic_assembly(t["w"], t["v"], K),
            dynamic_assembly_backward=ops.dynamic_assembly_backward(t["ga"], t["w"], t["v"], K),
            sapa_fused=ops.sapa_fused(t["q"], t["k"], t["v"], K),
            sapa_fused_backward=ops.sapa_fused_backward(t["ga"], t["q"], t["k"], t["v"], K),
            norm_linear=ops.norm_linear(t["v"], t["gamma"], t["beta"], t["weight"], t["bias"], 1e-5),
            norm_linear_backward=ops.norm_linear_backward(t["gn"], t["v"], t["gamma"], t["beta"], t["weight"], 1e-5),
        )

    results = dict(float32=run({{name: x.float() for name, x in inputs.items()}}))
    for dtype in (torch.float16, torch.bfloat16):
        rounded = {{name: x.to(dtype) for name, x in inputs.items()}}
        results[str(dtype)] = run(rounded)
        results[str(dtype) + " widened"] = run({{name: x.float() for name, x in rounded.items()}})
    torch.save(dict(inputs=inputs, results=results), {out!r})
    """
)


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_every_instruction_set_rounds_half_once(ops, tmp_path, isa):
    """The kernel bodies this CPU would not pick (UPBENCH_CPU_ISA caps the choice; csrc/cpu/simd.h), which
    convert float16 with F16C (AVX2) or lane by lane (baseline): fp16 / bf16 results are the float32
    kernel's rounded once, bit for bit, and the float32 ones, gradients too, match the float64 reference.
    W = 19 leaves a partial vector at every width, and one past W in the adjoint's split lines."""
    out = tmp_path / "results.pt"
    env = {**os.environ, "UPBENCH_CPU_ISA": isa}
    proc = subprocess.run([sys.executable, "-c", _ISA_SCRIPT.format(repo=str(REPO), out=str(out))], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = torch.load(out)
    inputs, results = saved["inputs"], saved["results"]
    K = 5
    wide = {name: x.float() for name, x in inputs.items()}
    expected = dict(
        local_similarity=reference_similarity(wide["q"], wide["k"], K),
        dynamic_assembly=reference_assembly(wide["w"], wide["v"], K),
        sapa_fused=reference_sapa(wide["q"], wide["k"], wide["v"], K),
    )
    for name, value in expected.items():
        assert_close(results["float32"][name], value, 1e-5)
    for name, ref, args, grad in [("local_similarity", reference_similarity, ("q", "k"), "gs"),
                                  ("dynamic_assembly", reference_assembly, ("w", "v"), "ga"),
                                  ("sapa_fused", reference_sapa, ("q", "k", "v"), "ga")]:
        leaves = [inputs[a].clone().requires_grad_() for a in args]
        expected_grads = torch.autograd.grad(ref(*leaves, K), leaves, inputs[grad])
        for a, b in zip(results["float32"][f"{name}_backward"], expected_grads):
            assert_close(a.double(), b, 1e-5)
    assert_close(results["float32"]["norm_linear"], reference_norm_linear(
        wide["v"], wide["gamma"], wide["beta"], wide["weight"], wide["bias"], 1e-5), 1e-5)
    for dtype in (torch.float16, torch.bfloat16):
        for name, value in results[str(dtype)].items():
            low = value if isinstance(value, tuple) else (value,)
            high = results[str(dtype) + " widened"][name]
            high = high if isinstance(high, tuple) else (high,)
            for a, b in zip(low, high):
                assert_same_bits(a, b.to(dtype))


@pytest.mark.parametrize("name", ["sapa-b", "carafe"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_auto_impl_runs_every_dtype_on_cpu(ops, name, dtype):
    auto = upbench.make(name, 8, impl="auto")
    reference = upbench.make(name, 8, impl="reference")
    reference.load_state_dict(auto.state_dict())
    auto, reference = auto.to(dtype), reference.to(dtype)
    x, guide = auto.example_inputs(1, 5, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))
    out = auto(x, guide)
    assert out.dtype == dtype
    assert_close(out.float(), reference(x, guide).float(), 5e-2)


def nan_inf_cases(shape, K, device):
    """Inputs holding a NaN or an Inf at a border pixel, whose window reaches outside the map."""
    cases = []
    for bad in (float("nan"), float("inf")):
        q, k, v, w = make_inputs(*shape, device=device)
        q[0, 1, 0, 0] = bad  # a query at the corner: some of its taps are out of the map
        w[0, 0, -1, -1] = bad  # tap 0 of the last pixel lies outside the map
        cases.append((bad, q, k, v, w))
    return cases


@pytest.mark.parametrize("shape", [(1, 3, 4, 3, 4, 3), (2, 2, 5, 2, 3, 5)], ids=["K3", "K5>H"])
@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf_propagate_like_zero_padding(ops, shape, device):
    """One semantic on both paths: an out-of-map tap is a zero that is multiplied in, so 0 * NaN and
    0 * Inf give NaN there, as the reference's zero padding does."""
    K = shape[-1]
    for bad, q, k, v, w in nan_inf_cases(shape, K, device):
        cases = [
            (ops.local_similarity, reference_similarity, (q, k)),
            (ops.dynamic_assembly, reference_assembly, (w, v)),
            (ops.sapa_fused, reference_sapa, (q, k, v)),
        ]
        for op, ref, args in cases:
            expected = ref(*args, K)
            assert not torch.isfinite(expected).all()
            torch.testing.assert_close(op(*args, K), expected, rtol=1e-10, atol=1e-10, equal_nan=True)
        # Gradients: a non-finite grad at a border pixel meets the padding too.
        for op, ref, args in cases:
            a = [t.detach().requires_grad_() for t in args]
            b = [t.detach().requires_grad_() for t in args]
            grad = torch.randn_like(ref(*args, K))
            grad[0, 0, 0, 0] = bad
            op(*a, K).backward(grad)
            ref(*b, K).backward(grad)
            for x, y in zip(a, b):
                torch.testing.assert_close(x.grad, y.grad, rtol=1e-10, atol=1e-10, equal_nan=True)


def test_roofline_command_reports_every_ratio(ops, capsys):
    from upbench.commands import main

    assert main(["roofline", "--C", "8", "--size", "4", "--min-run-time", "0.01", "--rounds", "2", "--format", "csv"]) == 0
    table = capsys.readouterr().out
    for quantity in ("matmul 2048^3", "copy", "sapa_fused time / memory floor", "sapa-b forward / matmul",
                     "carafe forward+backward / forward", "forward speedup 1 -> 2 threads"):
        assert quantity in table
    rows = pd.read_csv(io.StringIO(table), keep_default_na=False)
    f64_rows = rows[rows["quantity"].str.contains("float64")]
    assert len(f64_rows) == 2 and (f64_rows["met"] == "yes").all()
    for argv in (["--size", "4,4,4"], ["--rounds", "0"]):
        with pytest.raises(SystemExit) as exited:
            main(["roofline", *argv])
        assert exited.value.code == 2


def test_roofline_ratios_pair_timings_within_rounds():
    """Both sides of a ratio are timed in every round, one after the other, and the ratio is the median
    of the per-round ratios: not a ratio of medians taken minutes apart under another load."""
    from upbench.commands.roofline import TimingPlan, median_ratio, paired_seconds

    calls = []
    seconds = paired_seconds({"a": (lambda: calls.append("a"), 1), "b": (lambda: calls.append("b"), 1)},
                             TimingPlan(threads=1, min_run_time=1e-3, rounds=3)).seconds
    assert [len(v) for v in seconds.values()] == [3, 3]
    runs = [name for i, name in enumerate(calls) if i == 0 or calls[i - 1] != name]
    assert runs == ["a", "b"] + ["a", "b"] * 3  # one untimed call of each first, then the rounds
    # per-round ratios 1, 2, 0.5 -> median 1; the ratio of the medians would be 3 / 5
    assert median_ratio([1.0, 10.0, 3.0], [1.0, 5.0, 6.0]) == 1.0


def test_an_installed_wheel_carries_the_kernel_sources(tmp_path):
    """A non-editable install (pip install . or a wheel) builds the kernels from upbench/csrc: every
    source and header of csrc/ must be in the wheel, and every module of the checkout too."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    # Offline where the installed setuptools meets pyproject's build requirement (a GPU machine has no
    # index to fetch it from); otherwise pip fetches it into an isolated build environment.
    try:
        offline = int(metadata.version("setuptools").split(".")[0]) >= 68
    except metadata.PackageNotFoundError:
        offline = False
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                            *(["--no-build-isolation"] if offline else []), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                              str(site), *map(str, wheels.glob("upbench-*.whl"))], capture_output=True, text=True,
                             timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = ("import json; from upbench import kernels; "
             "print(json.dumps([str(kernels._CSRC), kernels._sources(with_cuda=True)]))")
    # The wheel first; what the caller's PYTHONPATH holds (fvcore, say) is still found after it.
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr[-3000:]
    csrc, sources = json.loads(done.stdout)
    assert Path(csrc) == site / "upbench" / "csrc"
    shipped = {p.relative_to(site / "upbench" / "csrc") for p in Path(csrc).rglob("*") if p.is_file()}
    assert shipped == {p.relative_to(REPO / "csrc") for p in (REPO / "csrc").rglob("*") if p.is_file()}
    assert all(Path(s).is_file() and Path(s).is_relative_to(csrc) for s in sources)
    for package in ("upbench", "operators"):
        modules = {p.relative_to(REPO) for p in (REPO / package).rglob("*.py")}
        assert modules <= {p.relative_to(site) for p in (site / package).rglob("*.py")}, package


def test_a_gpu_without_a_cuda_toolkit_falls_back_with_the_reason(monkeypatch):
    """Built without its CUDA kernels the library would load, and the GPU rows of every compiled
    operator would fail: on such a machine the compiled ops are unavailable, and the reason says why."""
    monkeypatch.setattr(kernels, "_cuda_toolkit", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    info = kernels._build()
    assert not info["available"] and not info["with_cuda"]
    assert "no CUDA toolkit was found" in info["error"] and "CUDA_HOME" in info["error"]
