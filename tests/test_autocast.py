"""Every operator runs under autocast, as in a mixed-precision training or inference loop: its convolutions hand
the window ops half-precision weights beside float32 features, which the compiled ops take in autocast's dtype,
as torch's convolutions and matmuls do; x may come in float32 or already in autocast's dtype."""
from __future__ import annotations

import pytest
import torch

import upbench
from upbench.base import output_problem


def _ops_and_impls() -> list[tuple[str, str]]:
    return [(name, impl) for name in upbench.available() for impl in ("reference", "compiled")
            if impl == "reference" or upbench.get(name).compiled_ops]


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name,impl", _ops_and_impls())
def test_every_operator_runs_forward_and_backward_under_cpu_autocast(name, impl, x_dtype, request, single_thread):
    if impl == "compiled":
        request.getfixturevalue("compiled_ops")
    torch.manual_seed(0)
    op = upbench.make(name, 16, impl=impl).eval()  # JBU's fixup has dropout
    x, guide = op.example_inputs(N=1, H=6, W=6)
    exact = op(x, guide)
    x = x.to(x_dtype).requires_grad_(True)  # a decoder feature an earlier autocast layer returned in bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = op(x, None if guide is None else guide.to(x_dtype))
    assert mixed.dtype in (torch.float32, torch.bfloat16)
    # bfloat16 keeps 8 bits of mantissa (the operators are off by 1% at most); a window op fed the wrong channel
    # or tap is off by the values' own size
    assert (mixed.float() - exact).abs().mean() <= 0.03 * exact.abs().mean()
    mixed.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == x_dtype and torch.isfinite(x.grad).all()


# Each op's two inputs (K = 3): window weights or a query at 2H x 2W, features or keys at H x W (the reflect ops
# take both at one size).
WINDOW_OP_SHAPES = {"dynamic_assembly": ((1, 9, 8, 8), (1, 4, 4, 4)), "reflect_assembly": ((1, 9, 8, 8), (1, 4, 8, 8)),
                    "local_similarity": ((1, 4, 8, 8), (1, 4, 4, 4))}


@pytest.mark.parametrize("op_name", WINDOW_OP_SHAPES)
def test_a_window_op_takes_mixed_dtypes_in_autocasts_dtype_under_autocast_only(op_name, compiled_ops):
    op = getattr(torch.ops.upbench, op_name)
    a, b = (torch.randn(shape) for shape in WINDOW_OP_SHAPES[op_name])
    with pytest.raises(RuntimeError, match="all inputs must share one dtype"):
        op(a.bfloat16(), b, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = op(a.bfloat16(), b, 3)
        in_float = op(a, b, 3)
        in_double = op(a.double(), b.double(), 3)  # float64 is autocast's to leave alone
    assert mixed.dtype == in_float.dtype == torch.bfloat16 and in_double.dtype == torch.float64
    torch.testing.assert_close(mixed, op(a.bfloat16(), b.bfloat16(), 3))
    with pytest.raises(RuntimeError, match="all inputs must share one dtype"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            op(a.double(), b, 3)


def test_the_output_check_takes_autocasts_dtypes_only_under_autocast():
    x = torch.randn(1, 2, 3, 3)
    out = torch.zeros(1, 2, 6, 6, dtype=torch.bfloat16)
    assert output_problem(x, out) == "dtype torch.bfloat16; expected torch.float32, the dtype of x"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert output_problem(x, out) is None and output_problem(x.bfloat16(), out.float()) is None
        assert output_problem(x, out.half()) == ("dtype torch.float16; expected torch.float32, the dtype of x, or "
                                                 "torch.bfloat16 under autocast")
