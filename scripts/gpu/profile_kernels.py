"""One forward and one backward of each compiled op at issue 8's shape, for Nsight Compute.

The warm-up calls (the build, lazy CUDA initialisation, the caching allocator's first blocks) and the
making of each profiled call's inputs run outside the profiler's range, so ``ncu --profile-from-start off``
sees each op's own kernels, one launch each, at N=1, C=256, 128x128 -> 256x256, K=5, d=32 (the reflect ops
on the 256x256 maps, as JBU runs them). ``session.sh profile`` runs it so; alone, without ncu, it prints
what it would profile.

    ncu --profile-from-start off --section SpeedOfLight ... python scripts/gpu/profile_kernels.py \\
        [--dtypes float32,float16] [--ops sapa_fused,dynamic_assembly]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from upbench import kernels  # noqa: E402
from upbench.selfcheck import CHECKED_OPS, DTYPES, CheckedOp, Shape  # noqa: E402

ISSUE_SHAPE = Shape("issue 8", N=1, d=32, C=256, H=128, W=128, K=5)


def prepared(op: CheckedOp, dtype: torch.dtype, device: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The op's inputs at the issue's shape and a gradient of its output's shape: made (casts, copies and
    fills on the device, and one forward for the shape) before the profiled range, so that it holds the op's
    own kernels alone."""
    generator = torch.Generator().manual_seed(0)
    inputs = [t.to(device, dtype).requires_grad_() for t in op.inputs(ISSUE_SHAPE, generator)]
    with torch.no_grad():
        out = op.compiled()(*inputs, *op.scalars(ISSUE_SHAPE))
    return inputs, torch.ones_like(out)


def forward_and_backward(op: CheckedOp, inputs: list[torch.Tensor], grad: torch.Tensor) -> None:
    op.compiled()(*inputs, *op.scalars(ISSUE_SHAPE)).backward(grad)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="float32,float16", help=f"of {', '.join(DTYPES)}")
    parser.add_argument("--ops", default=",".join(op.name for op in CHECKED_OPS))
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    by_name = {op.name: op for op in CHECKED_OPS}
    for flag, given, known in (("--ops", args.ops, by_name), ("--dtypes", args.dtypes, DTYPES)):
        unknown = [name for name in given.split(",") if name not in known]
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; expected some of {', '.join(known)}")
    kernels.require_compiled("profile_kernels")
    ops = [by_name[name] for name in args.ops.split(",")]
    dtypes = [DTYPES[name] for name in args.dtypes.split(",")]
    for dtype in dtypes:
        for op in ops:
            forward_and_backward(op, *prepared(op, dtype, args.device))  # warm-up, outside the profiled range
    on_cuda = args.device.startswith("cuda")
    for dtype in dtypes:
        for op in ops:
            print(f"profiling {op.name} forward + backward, {str(dtype).removeprefix('torch.')}, at {ISSUE_SHAPE}",
                  flush=True)
            inputs, grad = prepared(op, dtype, args.device)
            if on_cuda:
                torch.cuda.synchronize()
                torch.cuda.profiler.start()
            forward_and_backward(op, inputs, grad)
            if on_cuda:
                torch.cuda.synchronize()
                torch.cuda.profiler.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
