"""The compiled ops against their definitions (upbench.references) on every device present.

A new machine's numbers mean something only once its kernels compute the right thing. Each check runs
one op on one device in one dtype at one shape, forward and the gradient of every input, and compares
them with the float64 definition evaluated on the CPU from the same rounded inputs. The shapes are the
ones kernels get wrong: a 1 x 1 map, a window larger than the map, channel counts off every block
size and past 1024, and an Inf at a border pixel whose window reaches outside the map (for the zero-padded
ops the zero there must be multiplied in, giving NaN, as zero padding does; for the reflect ops the Inf
is read again through the mirror).

Data flows one way: ``CHECKED_OPS`` x ``SHAPES`` x dtypes x devices -> :func:`run_check` -> rows.
"""
from __future__ import annotations

import math
import platform
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from .environment import cpu_model, git_commit
from .references import (reference_assembly, reference_norm_linear, reference_reflect_assembly,
                         reference_reflect_similarity, reference_sapa, reference_similarity)
from .vocabulary import MESSAGE_CHARS, first_line

PASS, FAIL, ERROR = "PASS", "FAIL", "ERROR"
DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Allowed error, relative to the reference's scale (its largest finite magnitude, at least 1) plus the
# element's own magnitude. float16 and bfloat16 inputs are rounded alike on both sides; what remains is
# float32 accumulation and the rounding of each result (2^-11 and 2^-8 of it), with room for sums of
# up to a few thousand terms. A wrong index or a lost tap is off by the scale itself.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}
NORM_EPS = 1e-5


@dataclass(frozen=True)
class Shape:
    """One problem size: batch N, embedding d, channels C, low-resolution H x W, window K."""
    label: str
    N: int
    d: int
    C: int
    H: int
    W: int
    K: int
    inf_at_border: bool = False

    def __str__(self) -> str:
        return f"N{self.N} d{self.d} C{self.C} {self.H}x{self.W} K{self.K}"


SHAPES = (
    Shape("typical", 2, 32, 64, 12, 10, 5),
    Shape("1x1 map", 1, 4, 3, 1, 1, 3),
    Shape("K > H, W", 2, 5, 7, 2, 3, 7),
    Shape("odd C", 3, 7, 33, 5, 7, 3),
    Shape("C > 1024", 1, 1030, 1030, 3, 5, 5),
    Shape("Inf at border", 1, 3, 4, 3, 4, 3, inf_at_border=True),
)


@dataclass(frozen=True)
class CheckedOp:
    """A compiled op, its definition, and how to make its inputs at a shape.

    ``inputs`` gives the float64 CPU tensors (their names come from ``input_names``); ``scalars`` the
    trailing non-tensor arguments. ``windowed`` ops read a K x K window, so the Inf-at-border shape
    applies to them: the Inf goes into the first input at pixel (0, 0)."""
    name: str
    input_names: tuple[str, ...]
    inputs: Callable[[Shape, torch.Generator], list[torch.Tensor]]
    scalars: Callable[[Shape], tuple]
    reference: Callable[..., torch.Tensor]
    windowed: bool = True

    def compiled(self) -> Callable[..., torch.Tensor]:
        return getattr(torch.ops.upbench, self.name)

    def describe(self) -> str:
        return f"{self.name}: output, grad " + ", grad ".join(self.input_names)


def _randn(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


def _similarity_inputs(s: Shape, g: torch.Generator) -> list[torch.Tensor]:
    # d^-1/4 on each side keeps the logits near unit variance, so a softmax after them is not one-hot
    # and its gradients are not all zero: the comparison then tests something at every d.
    scale = s.d ** -0.25
    return [_randn(g, s.N, s.d, 2 * s.H, 2 * s.W, scale=scale), _randn(g, s.N, s.d, s.H, s.W, scale=scale)]


def _assembly_inputs(s: Shape, g: torch.Generator) -> list[torch.Tensor]:
    return [_randn(g, s.N, s.K * s.K, 2 * s.H, 2 * s.W), _randn(g, s.N, s.C, s.H, s.W)]


def _sapa_inputs(s: Shape, g: torch.Generator) -> list[torch.Tensor]:
    return [*_similarity_inputs(s, g), _randn(g, s.N, s.C, s.H, s.W)]


# The reflect ops read windows of a same-size map: they get the shape's 2H x 2W maps, the size JBU runs
# them at, so K > H still mirrors a map larger than the radius.
def _reflect_similarity_inputs(s: Shape, g: torch.Generator) -> list[torch.Tensor]:
    scale = s.d ** -0.25
    return [_randn(g, s.N, s.d, 2 * s.H, 2 * s.W, scale=scale), _randn(g, s.N, s.d, 2 * s.H, 2 * s.W, scale=scale)]


def _reflect_assembly_inputs(s: Shape, g: torch.Generator) -> list[torch.Tensor]:
    return [_randn(g, s.N, s.K * s.K, 2 * s.H, 2 * s.W), _randn(g, s.N, s.C, 2 * s.H, 2 * s.W)]


def _norm_linear_inputs(s: Shape, g: torch.Generator) -> list[torch.Tensor]:
    scale = s.C ** -0.5  # a Linear's usual initial scale: outputs of unit size at every C
    return [_randn(g, s.N, s.C, s.H, s.W), 1 + 0.1 * _randn(g, s.C), 0.1 * _randn(g, s.C),
            _randn(g, s.d, s.C, scale=scale), 0.1 * _randn(g, s.d)]


def _window(s: Shape) -> tuple:
    return (s.K,)


CHECKED_OPS = (
    CheckedOp("local_similarity", ("query", "key"), _similarity_inputs, _window, reference_similarity),
    CheckedOp("dynamic_assembly", ("weights", "x"), _assembly_inputs, _window, reference_assembly),
    CheckedOp("sapa_fused", ("query", "key", "value"), _sapa_inputs, _window, reference_sapa),
    CheckedOp("reflect_similarity", ("query", "key"), _reflect_similarity_inputs, _window,
              reference_reflect_similarity),
    CheckedOp("reflect_assembly", ("weights", "x"), _reflect_assembly_inputs, _window, reference_reflect_assembly),
    CheckedOp("norm_linear", ("x", "gamma", "beta", "weight", "bias"), _norm_linear_inputs,
              lambda s: (NORM_EPS,), reference_norm_linear, windowed=False),
)


@dataclass(frozen=True)
class Check:
    op: CheckedOp
    shape: Shape
    dtype: torch.dtype
    device: str


def plan(ops: Sequence[CheckedOp], shapes: Sequence[Shape], dtypes: Sequence[torch.dtype],
         devices: Sequence[str]) -> list[Check]:
    """Every (device, op, dtype, shape) combination that applies: the Inf shape only to windowed ops."""
    return [Check(op, shape, dtype, device) for device in devices for op in ops for dtype in dtypes
            for shape in shapes if op.windowed or not shape.inf_at_border]


@dataclass(frozen=True)
class Comparison:
    """The worst element of one tensor against its reference: the error, what was allowed, and whether
    the two tensors are non-finite (NaN, +Inf, -Inf) in exactly the same places."""
    name: str
    error: float
    allowed: float
    same_non_finite: bool

    @property
    def ratio(self) -> float:
        return self.error / self.allowed if self.allowed > 0 else (0.0 if self.error == 0 else math.inf)

    @property
    def passed(self) -> bool:
        return self.same_non_finite and self.ratio <= 1.0


def compare(name: str, got: torch.Tensor, want: torch.Tensor, tolerance: float) -> Comparison:
    """got (any dtype and device) against want (float64, CPU): |got - want| <= tolerance * (scale + |want|)."""
    got = got.detach().to("cpu", torch.float64)
    finite = torch.isfinite(want)
    same_non_finite = bool(torch.equal(finite, torch.isfinite(got))) and bool(
        torch.equal(got[~finite].nan_to_num(posinf=1.0, neginf=-1.0, nan=0.0),
                    want[~finite].nan_to_num(posinf=1.0, neginf=-1.0, nan=0.0)))
    if not same_non_finite or not finite.any():
        return Comparison(name, 0.0 if same_non_finite else math.inf, 1.0, same_non_finite)
    got, want = got[finite], want[finite]
    scale = max(1.0, want.abs().max().item())
    excess = (got - want).abs() / (tolerance * (scale + want.abs()))
    worst = int(excess.argmax())
    allowed = tolerance * (scale + want[worst].abs().item())
    return Comparison(name, (got[worst] - want[worst]).abs().item(), allowed, same_non_finite)


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)  # an asynchronous kernel fault surfaces here, in its own check


def run_check(check: Check, seed: int = 0) -> list[Comparison]:
    """Forward and every input's gradient of the compiled op against the float64 definition."""
    op, shape, dtype = check.op, check.shape, check.dtype
    generator = torch.Generator().manual_seed(seed)
    leaves = [t.to(dtype) for t in op.inputs(shape, generator)]  # the rounded values both sides see
    if shape.inf_at_border:
        leaves[0][0, 0, 0, 0] = math.inf
    scalars = op.scalars(shape)
    # Copies on both sides: .to() of a tensor already on the device (or in float64) returns the tensor
    # itself, and two sides sharing a leaf would share its gradient too.
    got_inputs = [t.to(check.device, copy=True).requires_grad_() for t in leaves]
    want_inputs = [t.to(torch.float64, copy=True).requires_grad_() for t in leaves]
    got = op.compiled()(*got_inputs, *scalars)
    want = op.reference(*want_inputs, *scalars)
    grad = torch.randn(want.shape, generator=generator, dtype=torch.float64).to(dtype)
    got.backward(grad.to(check.device))
    want.backward(grad.double())
    _synchronize(check.device)
    tolerance = TOLERANCE[dtype]
    comparisons = [compare("output", got, want, tolerance)]
    if got.dtype != dtype:
        comparisons.append(Comparison(f"output dtype {got.dtype} != {dtype}", math.inf, 1.0, False))
    for name, a, b in zip(op.input_names, got_inputs, want_inputs):
        comparisons.append(compare(f"grad {name}", a.grad, b.grad, tolerance))
    return comparisons


def _row_head(check: Check) -> dict[str, object]:
    return {"device": check.device, "op": check.op.name, "dtype": str(check.dtype).removeprefix("torch."),
            "case": check.shape.label, "shape": str(check.shape)}


def _error_row(check: Check, message: str) -> dict[str, object]:
    return {**_row_head(check), "worst": "", "error": math.nan, "allowed": math.nan, "result": ERROR,
            "message": message[:MESSAGE_CHARS]}


def check_row(check: Check, seed: int = 0) -> dict[str, object]:
    """One table row: the check, its worst comparison and PASS / FAIL; ERROR with the message if it raised."""
    try:
        comparisons = run_check(check, seed)
    except Exception as error:  # noqa: BLE001 - a raising kernel is a result of the check, not the end of it
        return _error_row(check, first_line(error))
    worst = max(comparisons, key=lambda c: (not c.same_non_finite, c.ratio))
    failed = [c.name for c in comparisons if not c.passed]
    message = "" if not failed else "off: " + ", ".join(failed)
    if failed and not worst.same_non_finite:
        message += " (NaN / Inf in other places than the reference's)"
    return {**_row_head(check), "worst": worst.name, "error": worst.error, "allowed": worst.allowed,
            "result": PASS if not failed else FAIL, "message": message}


def device_usable(device: str) -> bool:
    """After a check raised: whether the device still runs work. A CUDA fault (an illegal address, a
    trap) leaves the context unusable, and every later call on it fails with the same error."""
    if torch.device(device).type != "cuda":
        return True
    try:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    except RuntimeError:
        return False
    return True


def run_checks(checks: Sequence[Check], seed: int = 0) -> Iterator[dict[str, object]]:
    """The rows of the checks in order. Once a device's context is lost, its remaining checks are not
    run: their rows say where it was lost instead of repeating that check's error."""
    lost: dict[str, str] = {}
    for check in checks:
        if check.device in lost:
            yield _error_row(check, f"not run: {check.device} was unusable after {lost[check.device]}")
            continue
        row = check_row(check, seed)
        if row["result"] == ERROR and not device_usable(check.device):
            lost[check.device] = f"{row['op']} {row['dtype']} {row['case']} ({row['message']})"
        yield row


# ---- what the table stands on: the machine and the build ----------------------------------------------

def present_devices() -> list[str]:
    """cpu, then every CUDA device."""
    return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()) if torch.cuda.is_available())]


def _first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not found"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"failed: {error}"
    lines = [line for line in (done.stdout or done.stderr).splitlines() if line.strip()]
    return lines[-1].strip() if command[0] == "nvcc" and lines else (lines[0].strip() if lines else "")


def build_compiler() -> str:
    """The C++ compiler the kernels are built with (cpp_extension's: $CXX, else c++) and its version: a
    machine may set CXX to a compiler other than the c++ on its PATH (the H100 machines here do)."""
    from torch.utils.cpp_extension import get_cxx_compiler

    compiler = get_cxx_compiler()
    return f"{compiler}: {_first_line([compiler, '--version'])}"


def environment_rows() -> list[tuple[str, str]]:
    rows = [
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torch CUDA", torch.version.cuda or "none (CPU build)"),
        ("cpu", f"{cpu_model()}, {torch.get_num_threads()} threads"),
        ("c++ compiler", build_compiler()),
        ("nvcc", _first_line(["nvcc", "--version"])),
        ("git commit", git_commit()),
    ]
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(index)
        rows.append((f"cuda:{index}", f"{props.name}, sm_{props.major}{props.minor}, "
                                      f"{props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs"))
    return rows


def registered_backends(op_name: str) -> list[str]:
    """The dispatch keys that have a kernel of ``upbench::<op_name>``: what the build registered."""
    keys = ("CPU", "CUDA", "Meta", "Autograd")
    try:
        return [key for key in keys if torch._C._dispatch_has_kernel_for_dispatch_key(f"upbench::{op_name}", key)]
    except RuntimeError:  # the op is not defined: the library did not load
        return []


def build_rows(info: dict[str, object], ops: Sequence[CheckedOp]) -> list[tuple[str, str]]:
    if not info["available"]:
        return [("status", "FAILED"), ("build dir", str(info["build_dir"])), ("error", str(info["error"]))]
    how = "compiled now" if info["compiled"] else "loaded (sources unchanged since the last build)"
    rows = [
        ("status", f"{how} in {info['build_seconds']:.1f} s"),
        ("with CUDA sources", f"yes ({info['cuda_home']})" if info["with_cuda"] else "no"),
        ("library", str(info["library"])),
        ("sources", ", ".join(str(s).rsplit("csrc/", 1)[-1] for s in info["sources"])),
    ]
    names = [name for op in ops for name in (op.name, f"{op.name}_backward")]
    rows += [(f"upbench::{name}", ", ".join(registered_backends(name)) or "not registered") for name in names]
    rows += [("note", str(note)) for note in info["notes"]]
    return rows
