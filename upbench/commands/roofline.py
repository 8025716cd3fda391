"""bench.py roofline: the compiled CPU path against this machine's own matmul and copy speed.

Everything is measured in one run, so the ratios hold whatever the machine and its load: the
operators' forward GFLOP/s as a share of a 2048^3 float32 matmul, the fused SAPA kernel against its
memory floor (compulsory bytes / copy bandwidth), forward+backward over forward, the 1 -> N thread
speedup, and float64 agreement with the reference path.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from .. import kernels
from ..cli_args import FORMATS, emit, int_list, render_table, str_list
from ..formulas import TOTAL
from ..registry import make
from ..timing import time_cpu

HELP = "compiled CPU kernels vs this machine's matmul GFLOP/s and copy GB/s: the ratios of issue 10"

MATMUL_SIZE = 2048
COPY_ELEMENTS = 32 * 2**20  # 128 MiB of float32 each way: far beyond any cache
# Issue 10's goals: (share of the matmul for the forward, largest fwd+bwd / fwd, smallest 1 -> N speedup)
FORWARD_SHARE_GOAL = {"sapa-b": 0.25, "carafe": 0.35}
FWD_BWD_GOAL = 2.5
SCALING_GOAL = 1.85
FUSED_FLOOR_GOAL = 2.0
F64_TOLERANCE = 1e-10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", type=str_list, default=["sapa-b", "carafe"], help="operators, default sapa-b,carafe")
    parser.add_argument("--C", type=int, default=256, help="channels, default 256")
    parser.add_argument("--size", type=int_list, default=[64, 64], help="low-res H,W, default 64,64")
    parser.add_argument("--threads", type=int, default=2, help="threads for the ratios (speedup is 1 -> this)")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing, default 1")
    parser.add_argument("--format", choices=FORMATS, default="markdown")
    parser.add_argument("--out", default=None, help="write the table to this file instead of stdout")


@dataclass(frozen=True)
class Machine:
    matmul_gflops: float
    copy_gbs: float


def _seconds(fn: Callable[[], object], threads: int, min_run_time: float) -> float:
    torch.set_num_threads(threads)
    return time_cpu(fn, min_run_time).median_s


def measure_machine(threads: int, min_run_time: float) -> Machine:
    """The 2048^3 float32 matmul's GFLOP/s and a large copy's GB/s (read + write) on `threads` threads."""
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    matmul = _seconds(lambda: a @ b, threads, min_run_time)
    src, dst = torch.randn(COPY_ELEMENTS), torch.empty(COPY_ELEMENTS)
    copy = _seconds(lambda: dst.copy_(src), threads, min_run_time)
    return Machine(2 * MATMUL_SIZE**3 / matmul / 1e9, 2 * src.nbytes / copy / 1e9)


def _row(quantity: str, value: float, unit: str, goal: str = "", met: bool | None = None) -> dict[str, object]:
    # significant digits, not decimals: a float64 difference of 3e-16 must not print as 0
    return {"quantity": quantity, "value": float(f"{value:.5g}"), "unit": unit, "goal": goal,
            "met": "" if met is None else ("yes" if met else "NO")}


def fused_rows(C: int, H: int, W: int, machine: Machine, threads: int, min_run_time: float) -> list[dict]:
    """sapa_fused alone (N=1, d=32, K=5) against its memory floor: read q, k, v once, write the output once."""
    d, K = 32, 5
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, d, 2 * H, 2 * W, generator=g), torch.randn(1, d, H, W, generator=g)
    v = torch.randn(1, C, H, W, generator=g)
    seconds = _seconds(lambda: kernels.sapa_fused(q, k, v, K), threads, min_run_time)
    compulsory = (q.numel() + k.numel() + v.numel() + C * 4 * H * W) * q.element_size()
    floor = compulsory / (machine.copy_gbs * 1e9)
    return [
        _row(f"sapa_fused alone (d={d}, K={K})", seconds * 1e3, "ms"),
        _row("sapa_fused memory floor (compulsory bytes / copy GB/s)", floor * 1e3, "ms"),
        _row("sapa_fused time / memory floor", seconds / floor, "x", f"<= {FUSED_FLOOR_GOAL}",
             seconds / floor <= FUSED_FLOOR_GOAL),
    ]


def _max_relative_difference(name: str, C: int, H: int, W: int) -> float:
    """float64, compiled vs reference with the same weights: max |difference| / max |reference|."""
    compiled = make(name, C, impl="compiled").double()
    reference = make(name, C, impl="reference").double()
    reference.load_state_dict(compiled.state_dict())
    x, guide = compiled.example_inputs(1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x, guide)
        return ((compiled(x, guide) - expected).abs().max() / expected.abs().max()).item()


def operator_rows(name: str, C: int, H: int, W: int, machine: Machine, threads: int,
                  min_run_time: float) -> list[dict]:
    op = make(name, C, impl="compiled")
    x, guide = op.example_inputs(1, H, W, generator=torch.Generator().manual_seed(0))
    flops = 2 * op.formulas.exact_cost(TOTAL, op.dims(1, H, W)).macs

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return op(x, guide)

    inputs = [t.detach().requires_grad_() for t in (x, guide) if t is not None]
    leaves = inputs + [p for p in op.parameters() if p.requires_grad]
    grad_out = torch.randn_like(forward())

    def forward_backward() -> object:
        return torch.autograd.grad(op(*inputs) if len(inputs) == 2 else op(inputs[0]), leaves, grad_out)

    fwd = _seconds(forward, threads, min_run_time)
    fwd_one = _seconds(forward, 1, min_run_time)
    fwd_bwd = _seconds(forward_backward, threads, min_run_time)
    share = flops / fwd / 1e9 / machine.matmul_gflops
    share_goal = FORWARD_SHARE_GOAL.get(name)
    difference = _max_relative_difference(name, C, H, W)
    return [
        _row(f"{name} forward", fwd * 1e3, "ms"),
        _row(f"{name} forward GFLOP/s", flops / fwd / 1e9, "GFLOP/s"),
        _row(f"{name} forward / matmul GFLOP/s", share, "share",
             "" if share_goal is None else f">= {share_goal}", None if share_goal is None else share >= share_goal),
        _row(f"{name} forward+backward / forward", fwd_bwd / fwd, "x", f"<= {FWD_BWD_GOAL}", fwd_bwd / fwd <= FWD_BWD_GOAL),
        _row(f"{name} forward speedup 1 -> {threads} threads", fwd_one / fwd, "x", f">= {SCALING_GOAL}",
             fwd_one / fwd >= SCALING_GOAL),
        _row(f"{name} float64 max |compiled - reference| / max |reference|", difference, "",
             f"<= {F64_TOLERANCE:g}", difference <= F64_TOLERANCE),
    ]


def roofline_table(ops: list[str], C: int, H: int, W: int, threads: int, min_run_time: float) -> pd.DataFrame:
    kernels.require_compiled("bench.py roofline")
    previous = torch.get_num_threads()
    try:
        machine = measure_machine(threads, min_run_time)
        rows = [
            _row(f"matmul {MATMUL_SIZE}^3 float32", machine.matmul_gflops, "GFLOP/s"),
            _row(f"copy {COPY_ELEMENTS * 4 // 2**20} MiB float32 (read + write)", machine.copy_gbs, "GB/s"),
            *fused_rows(C, H, W, machine, threads, min_run_time),
        ]
        for name in ops:
            rows += operator_rows(name, C, H, W, machine, threads, min_run_time)
    finally:
        torch.set_num_threads(previous)
    return pd.DataFrame(rows)


def run(args: argparse.Namespace) -> int:
    if len(args.size) not in (1, 2) or args.threads < 1 or args.C < 1 or args.min_run_time <= 0:
        print("roofline: expected --size H or H,W, --threads >= 1, --C >= 1 and --min-run-time > 0", file=sys.stderr)
        return 2
    H, W = args.size[0], args.size[-1]
    try:
        table = roofline_table(args.ops, args.C, H, W, args.threads, args.min_run_time)
    except (ValueError, RuntimeError) as error:
        print(f"roofline: {error}", file=sys.stderr)
        return 2
    emit(render_table(table, args.format), args.out)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"roofline: C={args.C}, {H}x{W} -> {2 * H}x{2 * W}, N=1, float32, {args.threads} threads; "
          f"load average {load}", file=sys.stderr)
    return 0
