"""bench.py selfcheck: passes on a correct build, and each kind of kernel bug it exists for makes it fail."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import pytest
import torch

from upbench import kernels, selfcheck
from upbench.commands import main
from upbench.commands import selfcheck as command
from upbench.references import reference_assembly, unfold_window

pytestmark = pytest.mark.skipif(not kernels.compiled_available(), reason="compiled ops unavailable")

ASSEMBLY = next(op for op in selfcheck.CHECKED_OPS if op.name == "dynamic_assembly")


@dataclasses.dataclass(frozen=True)
class Planted(selfcheck.CheckedOp):
    """dynamic_assembly's check with another implementation in place of the compiled op."""
    implementation: Callable[..., torch.Tensor] | None = None

    def compiled(self) -> Callable[..., torch.Tensor]:
        return self.implementation


def planted(name: str, implementation: Callable[..., torch.Tensor]) -> Planted:
    fields = {f.name: getattr(ASSEMBLY, f.name) for f in dataclasses.fields(ASSEMBLY)}
    return Planted(**{**fields, "name": name}, implementation=implementation)


def shifted_window(weights, x, K):  # reads the neighbour one column to the right: a wrong index
    return reference_assembly(weights, torch.roll(x, 1, dims=3), K)


def skipping_outside_taps(weights, x, K):  # adds nothing for a tap outside the map, even an Inf weight
    n, _, h, w = x.shape
    inside = unfold_window(torch.ones(1, 1, h, w, dtype=x.dtype), K).reshape(1, K * K, h, 1, w, 1)
    inside = inside.expand(n, K * K, h, 2, w, 2).reshape(weights.shape)
    return reference_assembly(torch.where(inside > 0, weights, torch.zeros_like(weights)), x, K)


class _WrongGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights, x, K):
        ctx.save_for_backward(weights, x)
        ctx.K = K
        return reference_assembly(weights, x, K)

    @staticmethod
    def backward(ctx, grad):
        weights, x = ctx.saved_tensors
        with torch.enable_grad():
            w, v = weights.detach().requires_grad_(), x.detach().requires_grad_()
            grad_w, grad_x = torch.autograd.grad(reference_assembly(w, v, ctx.K), (w, v), grad)
        return grad_w, 1.5 * grad_x, None


def wrong_grad_x(weights, x, K):  # the forward is right, the gradient of x is not
    return _WrongGradient.apply(weights, x, K)


def raising(weights, x, K):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def rows_of(op, dtypes=(torch.float64, torch.float32, torch.float16, torch.bfloat16)):
    checks = selfcheck.plan([op], selfcheck.SHAPES, dtypes, ["cpu"])
    return {(row["dtype"], row["case"]): row for row in selfcheck.run_checks(checks)}


def test_every_compiled_op_passes_on_this_machine(capsys):
    assert main(["selfcheck"]) == 0
    out = capsys.readouterr().out
    for section in ("## Environment", "## Build", "## Compiled vs definition"):
        assert section in out
    for op in selfcheck.CHECKED_OPS:
        assert f"upbench::{op.name}" in out and f"| {op.name} " in out
    for shape in selfcheck.SHAPES:
        assert shape.label in out
    # per device: 6 ops x 4 dtypes x 6 shapes, less norm_linear's Inf-at-border shape (it has no window)
    checks = (6 * 4 * 6 - 4) * len(selfcheck.present_devices())
    assert f"PASS: {checks} of {checks} checks passed" in out
    assert "| FAIL" not in out and "| ERROR" not in out


def test_the_shapes_are_the_awkward_ones():
    shapes = selfcheck.SHAPES
    assert any(s.H == s.W == 1 for s in shapes)
    assert any(s.K > s.H and s.K > s.W for s in shapes)
    assert any(s.C > 1024 and s.d > 1024 for s in shapes)
    assert any(s.C % 2 and s.d % 2 for s in shapes)
    assert any(s.inf_at_border and s.K > 1 for s in shapes)


def test_a_wrong_index_fails_every_shape_with_a_window_to_get_wrong():
    rows = rows_of(planted("shifted", shifted_window))
    for (dtype, case), row in rows.items():
        if case == "1x1 map":  # rolling a one-pixel map changes nothing
            assert row["result"] == selfcheck.PASS
        else:
            assert row["result"] == selfcheck.FAIL, (dtype, case)
            assert "output" in row["message"]


def test_a_skipped_outside_tap_fails_only_the_inf_at_border_shape():
    rows = rows_of(planted("skipping", skipping_outside_taps))
    for (dtype, case), row in rows.items():
        expected = selfcheck.FAIL if case == "Inf at border" else selfcheck.PASS
        assert row["result"] == expected, (dtype, case, row["message"])
    assert "NaN / Inf in other places" in rows[("float32", "Inf at border")]["message"]


def test_a_wrong_gradient_fails_and_names_it():
    rows = rows_of(planted("wrong-grad", wrong_grad_x))
    assert all(row["result"] == selfcheck.FAIL for row in rows.values())
    assert all(row["message"] == "off: grad x" for row in rows.values())


def test_a_raising_op_is_an_error_row_and_the_command_fails(monkeypatch, capsys):
    monkeypatch.setattr(command, "CHECKED_OPS", (planted("raising", raising), *selfcheck.CHECKED_OPS[:1]))
    assert main(["selfcheck", "--ops", "raising,local_similarity", "--dtypes", "float32", "--devices", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "ERROR: cpu raising float32 typical: RuntimeError: CUDA error: an illegal memory access" in captured.err
    assert "selfcheck: FAIL: 6 of 12 checks passed" in captured.out  # the other op's checks still ran


def test_a_wrong_output_dtype_fails():
    rows = rows_of(planted("upcast", lambda w, x, K: reference_assembly(w.float(), x.float(), K)),
                   dtypes=(torch.float16,))
    assert all(row["result"] == selfcheck.FAIL for row in rows.values())
    assert all("output dtype torch.float32 != torch.float16" in row["message"] for row in rows.values())


def test_a_failed_build_fails_with_its_error(monkeypatch, capsys):
    info = {"available": False, "build_dir": "/nowhere", "error": "CalledProcessError: ninja exited with 1"}
    monkeypatch.setattr(kernels, "build_info", lambda: info)
    assert main(["selfcheck"]) == 1
    captured = capsys.readouterr()
    assert "ninja exited with 1" in captured.out and "could not be built" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--dtypes", "float8"], "unknown dtype float8; expected some of float64, float32, float16, bfloat16"),
    (["--ops", "carafe"], "unknown op carafe; expected some of local_similarity"),
    (["--ops", ""], "no op given"),
    (["--devices", "tpu"], "device 'tpu': expected cpu, cuda or cuda:<index>"),
])
def test_usage_errors_name_what_was_given_and_expected(argv, message, capsys):
    assert main(["selfcheck", *argv]) == 2
    assert message in capsys.readouterr().err


def test_asking_for_an_absent_gpu_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # so it runs on a GPU machine too
    assert main(["selfcheck", "--devices", "cuda:0"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_compare_requires_the_same_non_finite_places():
    want = torch.tensor([1.0, math.inf, math.nan, -math.inf], dtype=torch.float64)
    assert selfcheck.compare("t", want.clone(), want, 1e-10).passed
    for position, value in [(1, math.nan), (2, 0.0), (3, math.inf), (0, math.nan)]:
        got = want.clone()
        got[position] = value
        result = selfcheck.compare("t", got, want, 1e-10)
        assert not result.passed and not result.same_non_finite, (position, value)


def test_compare_scales_the_tolerance_with_the_reference():
    want = torch.tensor([100.0, 1.0], dtype=torch.float64)
    near = selfcheck.compare("t", torch.tensor([100.0, 1.0 + 1e-3]), want, 1e-5)  # 1e-3 <= 1e-5 * (100 + 1)
    assert near.passed and near.error == pytest.approx(1e-3, rel=1e-3)
    far = selfcheck.compare("t", torch.tensor([100.0, 1.01]), want, 1e-5)
    assert not far.passed and far.ratio == pytest.approx(0.01 / (1e-5 * 101), rel=1e-3)


def test_a_lost_device_is_not_checked_further(monkeypatch):
    """After a fault that leaves the device unusable, its remaining checks say so instead of each
    repeating the fault's error; other devices go on."""
    monkeypatch.setattr(selfcheck, "device_usable", lambda device: False)
    ops = [planted("raising", raising), ASSEMBLY]
    rows = list(selfcheck.run_checks(selfcheck.plan(ops, selfcheck.SHAPES[:2], [torch.float32], ["cpu"])))
    assert [row["result"] for row in rows] == [selfcheck.ERROR] * 4
    assert rows[0]["message"].startswith("RuntimeError: CUDA error: an illegal memory access")
    assert all(row["message"].startswith("not run: cpu was unusable after raising float32 typical (RuntimeError")
               for row in rows[1:])


def test_the_environment_names_the_compiler_that_builds_the_kernels(tmp_path, monkeypatch):
    """cpp_extension builds with $CXX where it is set, which need not be the c++ on PATH (it is not on the
    H100 machines here); the environment must name the one that builds."""
    compiler = tmp_path / "my-g++"
    compiler.write_text("#!/bin/sh\necho 'my-g++ (a toolchain of its own) 99.1'\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    rows = dict(selfcheck.environment_rows())
    assert rows["c++ compiler"] == f"{compiler}: my-g++ (a toolchain of its own) 99.1"
