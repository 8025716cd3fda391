"""upbench's CUDA kernels against the kernels users run today, same shapes, same run, on one GPU.

The released SAPA kernels (poppinace/sapa: ``sim`` and ``atn``, channels-last), mmcv's CARAFE kernel,
given ``--featup-src`` FeatUp's AdaptiveConv (JBU's adaptive convolution, after the reflect padding its
JBU does on every call) and, given ``--resfu-src``, the released ReSFU module with its FNS attention CUDA
kernel (the whole operator beside upbench's ``resfu``, same weights, at ReSFU's own K=3, d=32) are built
here from their own source trees, which the caller provides (``--sapa-src``, ``--mmcv-src``,
``--featup-src``, ``--resfu-src``; ``scripts/gpu/prepare.sh`` exports them from their repositories).
Nothing of theirs is part of upbench: this script compiles their files where they lie, with a binding of
its own for mmcv's two launchers (and, for ReSFU's kernel, which includes the THC header PyTorch no
longer ships, a one-line header of its own in its place), and imports the released autograd functions
and modules from their checkouts.

For each dtype it reports, per implementation: agreement with upbench's float64 definitions (at a small
shape, float64 where the kernel takes it), median forward and forward+backward times (CUDA events),
compulsory DRAM bytes, the achieved GB/s and its share of this GPU's device-to-device copy bandwidth,
measured in the same run.

    python scripts/gpu/released_kernels.py --sapa-src .released/sapa --mmcv-src .released [--featup-src .released]
        [--resfu-src .released/resfu] --out DIR
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.cpp_extension import load

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import upbench  # noqa: E402
from upbench import kernels  # noqa: E402
from upbench.environment import device_name  # noqa: E402
from upbench.formulas import compulsory_elements  # noqa: E402
from upbench.references import reference_assembly, reference_reflect_assembly, reference_sapa  # noqa: E402
from upbench.timing import time_call  # noqa: E402

# mmcv exposes its launchers through its own registry; this binding calls them directly.
MMCV_CARAFE_BINDING = r"""
#include <torch/extension.h>
using at::Tensor;
void CARAFEForwardCUDAKernelLauncher(const Tensor features, const Tensor masks, Tensor rfeatures, Tensor routput,
                                     Tensor rmasks, Tensor output, const int kernel_size, const int group_size,
                                     const int scale_factor);
void CARAFEBackwardCUDAKernelLauncher(const Tensor top_grad, const Tensor rfeatures, const Tensor masks,
                                      Tensor rtop_grad, Tensor rbottom_grad_hs, Tensor rbottom_grad,
                                      Tensor rmask_grad, Tensor bottom_grad, Tensor mask_grad,
                                      const int kernel_size, const int group_size, const int scale_factor);
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &CARAFEForwardCUDAKernelLauncher);
  m.def("backward", &CARAFEBackwardCUDAKernelLauncher);
}
"""
# ReSFU's kernel includes <THC/THCAtomics.cuh> for atomicAdd; PyTorch 2 keeps those overloads in ATen.
THC_ATOMICS_SHIM = "#pragma once\n#include <ATen/cuda/Atomic.cuh>\n"
COPY_BYTES = 2**30  # per direction: far beyond the L2 of any GPU
DEFAULT_DTYPES = (torch.float32, torch.float64)  # what torch.set_default_dtype takes


def build_released_extension(name: str, src: Path, stem: str, directory: Path, include_paths: tuple[Path, ...] = ()):
    """One extension in the layout the released SAPA and ReSFU share (``src/{stem}_ext.cpp`` binding
    ``src/cuda/{stem}_cuda.cpp`` and its ``_kernel.cu``), built in ``directory`` with their setup.py's flags and
    importable as ``name``, the name their Python imports it by."""
    flags = ["-DWITH_CUDA"]
    nvcc = [*flags, "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]
    directory.mkdir(parents=True, exist_ok=True)
    sources = [src / "cuda" / f"{stem}_cuda.cpp", src / "cuda" / f"{stem}_cuda_kernel.cu", src / f"{stem}_ext.cpp"]
    sys.modules[name] = load(name=name, sources=[str(path) for path in sources], extra_cflags=flags,
                             extra_cuda_cflags=nvcc, extra_include_paths=[str(path) for path in include_paths],
                             build_directory=str(directory), verbose=False)


def build_released_sapa(source: Path, build: Path) -> tuple[Callable, Callable]:
    """The released ``sim`` and ``atn`` autograd functions, their extensions built from ``source``
    (the folder holding setup.py and sapa/)."""
    for name, stem in (("sim_ext", "qk"), ("atn_ext", "atn")):
        build_released_extension(name, source / "sapa" / "src", stem, build / name)
    sys.path.insert(0, str(source))
    functions = importlib.import_module("sapa.sapa_func")
    return functions.sim, functions.atn


def build_mmcv_carafe(source: Path, build: Path):
    """mmcv's CARAFE launchers, built from ``source`` (the folder holding mmcv/)."""
    csrc = source / "mmcv" / "ops" / "csrc"
    directory = build / "mmcv_carafe"
    directory.mkdir(parents=True, exist_ok=True)
    binding = directory / "binding.cpp"
    binding.write_text(MMCV_CARAFE_BINDING)
    includes = [str(csrc / "common"), str(csrc / "common" / "cuda")]
    return load(name="mmcv_carafe", sources=[str(binding), str(csrc / "pytorch" / "cuda" / "carafe_cuda.cu")],
                extra_include_paths=includes, build_directory=str(directory), verbose=False)


def build_featup_adaptive_conv(source: Path, build: Path):
    """FeatUp's AdaptiveConv autograd function, its CUDA extension built from ``source`` (the folder holding
    featup/adaptive_conv_cuda)."""
    src = source / "featup" / "adaptive_conv_cuda"
    directory = build / "featup_adaptive_conv"
    directory.mkdir(parents=True, exist_ok=True)
    sys.modules["adaptive_conv_cuda_impl"] = load(
        name="adaptive_conv_cuda_impl",
        sources=[str(src / "adaptive_conv_cuda.cpp"), str(src / "adaptive_conv_kernel.cu")],
        build_directory=str(directory), verbose=False)
    # their module imports the CPU extension too, which a GPU comparison never calls
    sys.modules.setdefault("adaptive_conv_cpp_impl", types.ModuleType("adaptive_conv_cpp_impl"))
    sys.path.insert(0, str(source))
    return importlib.import_module("featup.adaptive_conv_cuda.adaptive_conv").AdaptiveConv


# The released ReSFU's parameter names that upbench's resfu keeps under its embedding stage.
RESFU_RENAMES = {"norm_x": "embedding.norm_x", "norm_y": "embedding.norm_guide", "q": "embedding.query",
                 "k": "embedding.key"}


def upbench_resfu_key(released: str) -> str:
    """A released ReSFU state-dict key as upbench's resfu names it ('q.weight' -> 'embedding.query.weight')."""
    head, _, rest = released.partition(".")
    return f"{RESFU_RENAMES[head]}.{rest}" if head in RESFU_RENAMES else released


def build_released_resfu(source: Path, build: Path) -> type:
    """The released ReSFU module class (``demo/resfu.py``), its FNS attention extension built from ``source``
    (a checkout of zmhhmz/ReSFU holding FNS_Attn/ and demo/)."""
    directory = build / "resfu_fns_attn"
    (directory / "shim" / "THC").mkdir(parents=True, exist_ok=True)
    (directory / "shim" / "THC" / "THCAtomics.cuh").write_text(THC_ATOMICS_SHIM)
    build_released_extension("fns_attn_ext", source / "FNS_Attn" / "FNS_Attn" / "src", "fns_attn", directory,
                             include_paths=(directory / "shim",))
    sys.path[:0] = [str(source), str(source / "demo")]  # their demo imports ``FNS_Attn`` and is imported as ``resfu``
    return importlib.import_module("resfu").ReSFU


class MmcvCarafe(torch.autograd.Function):
    """mmcv's carafe(features, masks, K, group 1, scale 2): the buffers its launchers expect, allocated
    as mmcv's own CARAFEFunction allocates them."""

    @staticmethod
    def forward(ctx, ext, features, masks, K):
        n, c, h, w = features.shape
        output = features.new_zeros((n, c, 2 * h, 2 * w))
        routput, rfeatures, rmasks = features.new_zeros(output.shape), features.new_zeros(features.shape), masks.new_zeros(masks.shape)
        ext.forward(features, masks, rfeatures, routput, rmasks, output, K, 1, 2)
        ctx.save_for_backward(features, masks, rfeatures)
        ctx.ext, ctx.K = ext, K
        return output

    @staticmethod
    def backward(ctx, grad):
        features, masks, rfeatures = ctx.saved_tensors
        buffers = [torch.zeros_like(grad), torch.zeros_like(grad), torch.zeros_like(features), torch.zeros_like(masks)]
        grad_features, grad_masks = torch.zeros_like(features), torch.zeros_like(masks)
        ctx.ext.backward(grad.contiguous(), rfeatures, masks, *buffers, grad_features, grad_masks, ctx.K, 1, 2)
        return None, grad_features, grad_masks, None


@dataclass(frozen=True)
class Problem:
    N: int
    C: int
    H: int
    W: int
    K: int
    d: int

    def inputs(self, dtype: torch.dtype, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        n, c, h, w, kk, d = self.N, self.C, self.H, self.W, self.K * self.K, self.d

        def rand(*shape, scale=1.0):
            return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(device, dtype)

        return {"query": rand(n, d, 2 * h, 2 * w, scale=d ** -0.25), "key": rand(n, d, h, w, scale=d ** -0.25),
                "value": rand(n, c, h, w), "weights": torch.softmax(rand(n, kk, 2 * h, 2 * w), dim=1),
                "guide": rand(n, c, 2 * h, 2 * w)}


@dataclass(frozen=True)
class Prepared:
    """One implementation on one set of inputs, layouts converted before any timing."""
    run: Callable[[], torch.Tensor]
    leaves: tuple[torch.Tensor, ...]  # what the backward differentiates
    expected: Callable[[], torch.Tensor]  # upbench's float64 definition on the CPU, NCHW
    channels_last: bool = False  # run() returns (N, H, W, C)


def nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).contiguous()


def _cpu64(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().double().cpu() for t in tensors]


def implementations(sim, atn, carafe_ext, adaptive_conv, released_resfu, K: int,
                    d: int) -> dict[str, tuple[str, Callable[[dict], Prepared]]]:
    """name -> (task, prepare: NCHW inputs -> Prepared). Tasks: the SAPA kernel, the CARAFE assembly,
    the whole SAPA-B operator, where FeatUp's AdaptiveConv was built (else None) JBU's adaptive
    convolution of the 2H x 2W map, and where ReSFU was built (else None) the whole ReSFU operator."""
    ops = torch.ops.upbench

    def sapa_definition(x):
        return lambda: reference_sapa(*_cpu64(x["query"], x["key"], x["value"]), K)

    def assembly_definition(x):
        return lambda: reference_assembly(*_cpu64(x["weights"], x["value"]), K)

    def released_sapa(x):
        q, k, v = nhwc(x["query"]), nhwc(x["key"]), nhwc(x["value"])
        return Prepared(lambda: atn(F.softmax(sim(q, k, K, 2), dim=-1), v, K, 2), (q, k, v), sapa_definition(x),
                        channels_last=True)

    def ours_fused(x):
        return Prepared(lambda: ops.sapa_fused(x["query"], x["key"], x["value"], K), (x["query"], x["key"], x["value"]),
                        sapa_definition(x))

    def ours_unfused(x):
        def run():
            return ops.dynamic_assembly(torch.softmax(ops.local_similarity(x["query"], x["key"], K), dim=1), x["value"], K)
        return Prepared(run, (x["query"], x["key"], x["value"]), sapa_definition(x))

    def mmcv_carafe(x):
        return Prepared(lambda: MmcvCarafe.apply(carafe_ext, x["value"], x["weights"], K), (x["value"], x["weights"]),
                        assembly_definition(x))

    def ours_assembly(x):
        return Prepared(lambda: ops.dynamic_assembly(x["weights"], x["value"], K), (x["weights"], x["value"]),
                        assembly_definition(x))

    def ours_sapa_b(x):
        value, guide = x["value"], x["guide"]
        torch.manual_seed(0)
        op = upbench.make("sapa-b", value.shape[1], K=K, d=d, impl="compiled").to(value.device, value.dtype)
        reference = upbench.make("sapa-b", value.shape[1], K=K, d=d, impl="reference")
        reference.load_state_dict(op.state_dict())
        reference = reference.double()
        return Prepared(lambda: op(value, guide), (value, guide),
                        lambda: reference(*_cpu64(value, guide)))

    def adaptive_conv_definition(x):
        return lambda: reference_reflect_assembly(*_cpu64(x["weights"], x["guide"]), K)

    def featup_adaptive_conv(x):
        # FeatUp's layouts, made before any timing: filters (N, 2H, 2W, K, K); the source is reflect-padded on
        # every call, as its JBU does
        n, _, h, w = x["weights"].shape
        filters = x["weights"].permute(0, 2, 3, 1).reshape(n, h, w, K, K).contiguous()
        source = x["guide"]
        return Prepared(lambda: adaptive_conv.apply(F.pad(source, [K // 2] * 4, mode="reflect"), filters),
                        (source, filters), adaptive_conv_definition(x))

    def ours_reflect_assembly(x):
        return Prepared(lambda: ops.reflect_assembly(x["weights"], x["guide"], K), (x["weights"], x["guide"]),
                        adaptive_conv_definition(x))

    def resfu_pair(x, impl: str = "reference"):
        """upbench's resfu on its ``impl`` path, the released module with its weights and upbench's float64
        definition, all made with the run's dtype as the default (the released Gaussian is a plain tensor made in
        the default dtype, which .to() does not convert; float16 runs make it in float32, so the released module is
        not run in float16: released_resfu_module says why). ReSFU takes at most 32 channels or a multiple of
        32: the agreement problem's 37 are cut to 32."""
        value, guide = x["value"], x["guide"]
        if value.shape[1] > 32 and value.shape[1] % 32:
            value, guide = value[:, :32].contiguous(), guide[:, :32].contiguous()
        torch.manual_seed(0)
        before = torch.get_default_dtype()
        torch.set_default_dtype(value.dtype if value.dtype in DEFAULT_DTYPES else before)
        try:
            ours = upbench.make("resfu", value.shape[1], impl=impl)
            theirs = released_resfu(dim_y=guide.shape[1], dim_x=value.shape[1], scale_factor=2)
            reference = upbench.make("resfu", value.shape[1], impl="reference")
        finally:
            torch.set_default_dtype(before)
        state = ours.state_dict()
        theirs.load_state_dict({key: state.get(upbench_resfu_key(key), tensor) for key, tensor in theirs.state_dict().items()})
        reference.load_state_dict(state)
        ours, theirs = ours.to(value.device, value.dtype), theirs.to(value.device, value.dtype)
        return ours, theirs, (value, guide), lambda: reference.double()(*_cpu64(value, guide))

    def released_resfu_module(x):
        if x["value"].dtype not in DEFAULT_DTYPES:
            raise UnsupportedAsReleased("its Gaussian is made in the default dtype, float32 in a float16 run, and "
                                        "its FNS kernel then meets it beside float16 data ('expected scalar type "
                                        "Half but found Float', seen on the H100)")
        _, theirs, (value, guide), expected = resfu_pair(x)
        return Prepared(lambda: theirs(guide, value), (value, guide), expected)

    def ours_resfu(impl: str):
        def prepare(x):
            ours, _, (value, guide), expected = resfu_pair(x, impl)
            return Prepared(lambda: ours(value, guide), (value, guide), expected)
        return prepare

    released = {"released SAPA sim+softmax+atn": ("sapa", released_sapa), "upbench sapa_fused": ("sapa", ours_fused),
                "upbench local_similarity+softmax+dynamic_assembly": ("sapa", ours_unfused),
                "upbench SAPA-B operator": ("sapa-b operator", ours_sapa_b),
                "mmcv carafe": ("carafe", mmcv_carafe), "upbench dynamic_assembly": ("carafe", ours_assembly)}
    if adaptive_conv is not None:
        released |= {"FeatUp reflect pad + AdaptiveConv": ("adaptive conv", featup_adaptive_conv),
                     "upbench reflect_assembly": ("adaptive conv", ours_reflect_assembly)}
    if released_resfu is not None:
        released |= {"released ReSFU (FNS attention CUDA)": ("resfu operator", released_resfu_module),
                     "upbench ReSFU operator (compiled)": ("resfu operator", ours_resfu("compiled")),
                     "upbench ReSFU operator (reference)": ("resfu operator", ours_resfu("reference"))}
    return released


def compulsory_bytes(task: str, p: Problem, element: int) -> dict[str, int]:
    """Each input read once, the output written once (forward); the backward reads the grad and the
    inputs once and writes every input's gradient once. The SAPA-B operator's inputs are those of the
    sweeps' model (upbench.formulas.compulsory_elements): x, the guide and its parameters."""
    hi, lo = 4 * p.H * p.W, p.H * p.W
    out = p.N * p.C * hi
    if task == "sapa":
        inputs = p.N * (p.d * hi + p.d * lo + p.C * lo)
    elif task == "carafe":
        inputs = p.N * (p.K * p.K * hi + p.C * lo)
    elif task == "adaptive conv":  # weights and the source, both 2H x 2W
        inputs = p.N * (p.K * p.K * hi + p.C * hi)
    else:  # a whole operator: "sapa-b operator" at the problem's K and d, "resfu operator" at its own defaults
        name = task.removesuffix(" operator")
        op = upbench.make(name, p.C, impl="reference", **({"K": p.K, "d": p.d} if name == "sapa-b" else {}))
        inputs = compulsory_elements(op.dims(p.N, p.H, p.W), sum(t.numel() for t in op.parameters())) - out
    return {"fwd": (inputs + out) * element, "fwd+bwd": (inputs + out + out + 2 * inputs) * element}


def copy_bandwidth(device: str) -> float:
    """Bytes read + written per second by a device-to-device copy of COPY_BYTES."""
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    timing = time_call(lambda: dst.copy_(src), torch.device(device), warmup=3, min_run_time=0.5)
    return 2 * COPY_BYTES / timing.median_s


def agreement(prepared: Prepared) -> float:
    """Largest difference from upbench's float64 definition, relative to the output's largest magnitude."""
    with torch.no_grad():
        got = prepared.run()
    if prepared.channels_last:
        got = got.permute(0, 3, 1, 2)
    want = prepared.expected()
    return ((got.double().cpu() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def timed(run: Callable, leaves: tuple[torch.Tensor, ...], device: str, min_run_time: float) -> dict[str, float]:
    dev = torch.device(device)
    with torch.no_grad():
        forward = time_call(run, dev, warmup=5, min_run_time=min_run_time).median_s
    for t in leaves:
        t.requires_grad_(True)
    out = run()
    grad = torch.randn_like(out)

    def forward_backward():
        for t in leaves:
            t.grad = None
        run().backward(grad)

    both = time_call(forward_backward, dev, warmup=3, min_run_time=min_run_time).median_s
    for t in leaves:
        t.requires_grad_(False)
        t.grad = None
    return {"fwd": forward, "fwd+bwd": both}


class UnsupportedAsReleased(Exception):
    """A dtype that a released implementation does not run as released. Its rows say why, and the run does
    not count it as a failure (the run's exit status is for what should have worked)."""


UNSUPPORTED = "unsupported as released: "


def failed_implementations(rows: list[dict]) -> list[str]:
    """'dtype implementation' of each implementation that failed, leaving out those unsupported as released."""
    return sorted({f"{row['dtype']} {row['implementation']}" for row in rows
                   if row["error"] and not row["error"].startswith(UNSUPPORTED)})


def measured_rows(name: str, task: str, prepare: Callable[[dict], Prepared], small: dict, x: dict, problem: Problem,
                  device: str, bandwidth: float, min_run_time: float) -> list[dict]:
    """One implementation's rows (fwd, fwd+bwd) at one dtype. An implementation that fails (a released kernel
    without this dtype, an out-of-memory) gives rows that say how, and the run goes on: one failure must not
    cost the session's device time for everything after it."""
    dtype_name = str(x["value"].dtype).removeprefix("torch.")
    common = {"device": device_name(device), "dtype": dtype_name, "task": task, "implementation": name}
    try:
        difference = agreement(prepare(small))
        prepared = prepare(x)
        seconds = timed(prepared.run, prepared.leaves, device, min_run_time)
    except Exception as error:  # noqa: BLE001  recorded in the rows, and printed
        if isinstance(error, UnsupportedAsReleased):
            failure = f"{UNSUPPORTED}{error}"
            print(f"{dtype_name} {name}: not run, {failure}", flush=True)
        else:
            failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            print(f"{dtype_name} {name}: FAILED {failure}", flush=True)
            if device == "cuda":
                torch.cuda.empty_cache()
        return [{**common, "mode": mode, "error": failure} for mode in ("fwd", "fwd+bwd")]
    moved = compulsory_bytes(task, problem, x["value"].element_size())
    print(f"{dtype_name} {name}: fwd {seconds['fwd'] * 1e3:.3f} ms, fwd+bwd {seconds['fwd+bwd'] * 1e3:.3f} ms",
          flush=True)
    return [{**common, "mode": mode, "ms": seconds[mode] * 1e3, "compulsory MB": moved[mode] / 1e6,
             "GB/s": moved[mode] / seconds[mode] / 1e9, "share of copy GB/s": moved[mode] / seconds[mode] / bandwidth,
             "max rel. diff vs definition": difference, "error": ""} for mode in ("fwd", "fwd+bwd")]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sapa-src", type=Path, required=True, help="poppinace/sapa's sapa/ folder (holds setup.py)")
    parser.add_argument("--mmcv-src", type=Path, required=True, help="a checkout of open-mmlab/mmcv (holds mmcv/)")
    parser.add_argument("--featup-src", type=Path, default=None,
                        help="a checkout of mhamilton723/FeatUp (holds featup/adaptive_conv_cuda); optional")
    parser.add_argument("--resfu-src", type=Path, default=None,
                        help="a checkout of zmhhmz/ReSFU (holds FNS_Attn/ and demo/resfu.py); optional")
    parser.add_argument("--build", type=Path, default=Path("/tmp/released_build"))
    parser.add_argument("--C", type=int, default=256)
    parser.add_argument("--size", type=int, default=128, help="low-resolution side (output is twice it)")
    parser.add_argument("--N", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,float16")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--build-only", action="store_true", help="compile and load the released kernels, then stop")
    parser.add_argument("--out", type=Path, default=None, help="folder for released_kernels.csv / .md")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    sim, atn = build_released_sapa(args.sapa_src, args.build)
    carafe_ext = build_mmcv_carafe(args.mmcv_src, args.build)
    adaptive_conv = build_featup_adaptive_conv(args.featup_src, args.build) if args.featup_src else None
    released_resfu = build_released_resfu(args.resfu_src, args.build) if args.resfu_src else None
    print(f"released kernels built and loaded in {time.perf_counter() - start:.0f} s", flush=True)
    if args.build_only:
        return 0
    if not kernels.compiled_available():
        raise SystemExit(f"upbench's compiled ops are unavailable: {kernels.build_info()['error']}")
    device = "cuda"
    problem = Problem(args.N, args.C, args.size, args.size, 5, 32)
    check = Problem(2, 37, 9, 11, 5, 32)
    bandwidth = copy_bandwidth(device)
    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        small = check.inputs(torch.float64 if dtype == torch.float32 else dtype, device)
        x = problem.inputs(dtype, device)
        for name, (task, prepare) in implementations(sim, atn, carafe_ext, adaptive_conv, released_resfu, problem.K, problem.d).items():
            rows += measured_rows(name, task, prepare, small, x, problem, device, bandwidth, args.min_run_time)
    table = pd.DataFrame(rows)
    header = (f"# Released kernels vs upbench on {device_name(device)}\n\nN={problem.N}, C={problem.C}, "
              f"{problem.H}x{problem.W} -> {2 * problem.H}x{2 * problem.W}, K={problem.K}, d={problem.d}; "
              f"device-to-device copy {bandwidth / 1e9:.0f} GB/s (read + write) in the same run; "
              f"torch {torch.__version__}, CUDA {torch.version.cuda}.\n\n"
              f"Command: python scripts/gpu/released_kernels.py {' '.join(argv)}\n\n")
    markdown = header + table.to_markdown(index=False, floatfmt=".4g") + "\n"
    print(markdown)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "released_kernels.csv", index=False)
        (args.out / "released_kernels.md").write_text(markdown)
    failed = failed_implementations(rows)
    if failed:
        print(f"released_kernels: {len(failed)} implementation(s) failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
