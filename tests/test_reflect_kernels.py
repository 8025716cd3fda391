"""The compiled reflect ops (FeatUp's JBU windows: same-size maps, each pixel's window centred on itself, the border
mirrored) against the float64 definitions in upbench.references, which are themselves checked here against
per-pixel loops: forward, every gradient, second derivatives, dtypes, threads, layouts and the errors.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from test_kernels import DEVICES, assert_close
from upbench import kernels
from upbench.references import reference_reflect_assembly, reference_reflect_similarity

F64 = torch.float64
# (N, C, h, w, K): the smallest map the radius allows, K = 1, rows that are not a whole number of vectors and
# rows that are (the in-place fast path), channel counts around the kernels' block of 4, K past the
# specialised window widths (1, 3, 5, 7), and a long channel reduction.
SHAPES = [
    (1, 3, 2, 2, 3),
    (2, 5, 4, 4, 7),
    (1, 1, 1, 1, 1),
    (1, 6, 9, 17, 5),
    (2, 4, 16, 16, 3),
    (1, 7, 11, 6, 9),
    (1, 2, 6, 20, 11),
    (1, 1030, 3, 5, 5),
]


@pytest.fixture(scope="module")
def ops():
    if not kernels.compiled_available():
        pytest.skip(f"compiled ops unavailable: {kernels.build_info()['error']}")
    return torch.ops.upbench


def rand(generator: torch.Generator, *shape: int, dtype: torch.dtype = F64, device: str = "cpu") -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=F64).to(dtype=dtype, device=device)


def mirror(i: int, n: int) -> int:
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


def window_taps(h: int, w: int, K: int):
    """(y, x, tap, source y, source x) over every pixel and tap, the tap's source mirrored into the map."""
    r = K // 2
    for y, x, i, j in itertools.product(range(h), range(w), range(K), range(K)):
        yield y, x, i * K + j, mirror(y + i - r, h), mirror(x + j - r, w)


def test_the_definitions_match_per_pixel_loops(generator):
    N, C, h, w, K = 2, 3, 4, 5, 5
    q, k, x = (rand(generator, N, C, h, w) for _ in range(3))
    weights = rand(generator, N, K * K, h, w)
    similarity = torch.zeros(N, K * K, h, w, dtype=F64)
    assembly = torch.zeros(N, C, h, w, dtype=F64)
    for y, xx, tap, sy, sx in window_taps(h, w, K):
        similarity[:, tap, y, xx] = (q[:, :, y, xx] * k[:, :, sy, sx]).sum(1)
        assembly[:, :, y, xx] += weights[:, tap, y, xx, None] * x[:, :, sy, sx]
    assert_close(reference_reflect_similarity(q, k, K), similarity, 1e-12)
    assert_close(reference_reflect_assembly(weights, x, K), assembly, 1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N, C, h, w, K", SHAPES)
def test_forward_and_gradients_match_the_definitions(ops, N, C, h, w, K, device, generator):
    q, k, x = (rand(generator, N, C, h, w, device=device).requires_grad_() for _ in range(3))
    weights = rand(generator, N, K * K, h, w, device=device).requires_grad_()
    for op, reference, inputs in [(ops.reflect_similarity, reference_reflect_similarity, (q, k)),
                                  (ops.reflect_assembly, reference_reflect_assembly, (weights, x))]:
        got = op(*inputs, K)
        want = reference(*(t.detach().cpu() for t in inputs), K)
        assert got.shape == want.shape
        assert_close(got.cpu(), want, 1e-10)
        grad = rand(generator, *want.shape)
        got_grads = torch.autograd.grad(got, inputs, grad.to(device))
        leaves = [t.detach().cpu().requires_grad_() for t in inputs]
        want_grads = torch.autograd.grad(reference(*leaves, K), leaves, grad)
        for a, b in zip(got_grads, want_grads):
            assert_close(a.cpu(), b, 1e-10)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 2e-5), (torch.float16, 5e-3), (torch.bfloat16, 2e-2)])
def test_lower_precision_is_the_definition_of_the_rounded_inputs(ops, dtype, tolerance, generator):
    """Computed in float, rounded once: against float64 of the same rounded inputs, relative to the output's scale."""
    N, C, h, w, K = 2, 13, 7, 19, 5
    x = rand(generator, N, C, h, w, dtype=dtype)
    weights = rand(generator, N, K * K, h, w, dtype=dtype)
    wide_x, wide_weights = x.double(), weights.double()  # the rounded values, exactly
    for got, want in [(ops.reflect_similarity(x, x, K), reference_reflect_similarity(wide_x, wide_x, K)),
                      (ops.reflect_assembly(weights, x, K), reference_reflect_assembly(wide_weights, wide_x, K))]:
        assert got.dtype == dtype
        scale = want.abs().max().item()
        assert (got.double() - want).abs().max().item() <= tolerance * scale


def test_results_do_not_depend_on_the_thread_count(ops, generator):
    """Each thread owns whole rows or channel blocks: the same sums in the same order on 1, 2 or 3 threads."""
    N, C, h, w, K = 2, 9, 13, 21, 7
    x, grad = rand(generator, N, C, h, w, dtype=torch.float32), rand(generator, N, C, h, w, dtype=torch.float32)
    weights = rand(generator, N, K * K, h, w, dtype=torch.float32)
    grad_logits = rand(generator, N, K * K, h, w, dtype=torch.float32)
    before = torch.get_num_threads()

    def run() -> list[torch.Tensor]:
        return [ops.reflect_similarity(x, x, K), ops.reflect_assembly(weights, x, K),
                *ops.reflect_assembly_backward(grad, weights, x, K),
                *ops.reflect_similarity_backward(grad_logits, grad, x, K)]

    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(run())
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_any_layout_reads_as_its_values(ops, layout, generator):
    N, C, h, w, K = 1, 5, 6, 7, 3
    full = rand(generator, N, 2 * C, h, w + 1)
    x = full[:, ::2, :, 1:] if layout == "sliced" else full[:, :C, :, :w].contiguous(memory_format=torch.channels_last)
    weights = rand(generator, N, K * K, h, w)
    assert_close(ops.reflect_assembly(weights, x, K), reference_reflect_assembly(weights, x.contiguous(), K), 1e-12)
    assert_close(ops.reflect_similarity(x, x, K), reference_reflect_similarity(x.contiguous(), x.contiguous(), K),
                 1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_and_gradgradcheck(ops, generator, device):
    K = 3
    q, k = (rand(generator, 1, 2, 4, 5, device=device).requires_grad_() for _ in range(2))
    weights = rand(generator, 1, K * K, 4, 5, device=device).requires_grad_()
    for op, inputs in [(ops.reflect_similarity, (q, k)), (ops.reflect_assembly, (weights, k))]:
        assert torch.autograd.gradcheck(lambda a, b: op(a, b, K), inputs)
        assert torch.autograd.gradgradcheck(lambda a, b: op(a, b, K), inputs)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(ops, generator, device):
    K = 3
    q, k = (rand(generator, 2, 3, 5, 4, dtype=torch.float32, device=device).requires_grad_() for _ in range(2))
    weights = rand(generator, 2, K * K, 5, 4, dtype=torch.float32, device=device).requires_grad_()
    grad_logits, grad_out = torch.randn(2, K * K, 5, 4, device=device), torch.randn(2, 3, 5, 4, device=device)
    torch.library.opcheck(ops.reflect_similarity.default, (q, k, K))
    torch.library.opcheck(ops.reflect_assembly.default, (weights, k, K))
    torch.library.opcheck(ops.reflect_similarity_backward.default, (grad_logits, q, k, K))
    torch.library.opcheck(ops.reflect_assembly_backward.default, (grad_out, weights, k, K))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(ops, generator, device):
    K = 5
    x = rand(generator, 1, 4, 6, 7, dtype=torch.float32, device=device)
    weights = torch.softmax(rand(generator, 1, K * K, 6, 7, dtype=torch.float32, device=device), dim=1)

    def both(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return ops.reflect_assembly(weights, x, K) + ops.reflect_similarity(x, x, K).sum(1, keepdim=True)

    compiled = torch.compile(both, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(weights, x), both(weights, x))


def test_errors_name_the_op_and_what_was_expected(ops, generator):
    x = rand(generator, 1, 3, 3, 5)
    weights = rand(generator, 1, 49, 3, 5)
    cases = [
        (lambda o: o.reflect_assembly(weights, x, 7), r"reflect_assembly: reflect padding by K/2 = 3 needs h and w "
                                                        r"of at least 4 \(K=7\), got x .* \[1, 3, 3, 5\]"),
        (lambda o: o.reflect_similarity(x, x, 4), r"reflect_similarity: K must be an odd integer >= 1"),
        (lambda o: o.reflect_similarity(x, x[:, :, :, :4], 3), r"reflect_similarity: query .* and key .* must "
                                                                 r"share N, h and w"),
        (lambda o: o.reflect_similarity(x[:, :2], x, 3), r"reflect_similarity: query and key must have the same "
                                                          r"number of channels"),
        (lambda o: o.reflect_assembly(weights[:, :8], x, 3), r"reflect_assembly: weights must have K\*K = 9 channels"),
        (lambda o: o.reflect_assembly(weights[:, :9].float(), x, 3), r"reflect_assembly: weights .* has dtype Float"),
        (lambda o: o.reflect_assembly_backward(x[:, :2], weights[:, :9], x, 3), r"grad must have the forward "
                                                                                  r"output's shape"),
        (lambda o: o.reflect_similarity(x[0], x[0], 3), r"reflect_similarity: query .* must be a rank-4"),
    ]
    for call, message in cases:
        with pytest.raises(RuntimeError, match=message):
            call(ops)


def test_the_fakes_propagate_shapes_and_refuse_what_the_kernels_refuse(ops):
    meta = {"device": "meta", "dtype": torch.float32}
    x = torch.empty(2, 3, 5, 6, **meta)
    assert ops.reflect_similarity(x, x, 5).shape == (2, 25, 5, 6)
    assert ops.reflect_assembly(torch.empty(2, 9, 5, 6, **meta), x, 3).shape == (2, 3, 5, 6)
    with pytest.raises(RuntimeError, match=r"reflect padding by K/2 = 5 needs h and w of at least 6"):
        ops.reflect_assembly(torch.empty(2, 121, 5, 6, **meta), x, 11)
