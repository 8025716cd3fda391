"""bench.py roofline: the compiled CPU path against this machine's own matmul and copy speed.

Everything is measured in one run, so the ratios hold whatever the machine: the operators' forward
GFLOP/s as a share of a 2048^3 float32 matmul, the fused SAPA kernel against its memory floor
(compulsory bytes / copy bandwidth), forward+backward over forward, the 1 -> N thread speedup, and
float64 agreement with the reference path.

Each ratio is a median over rounds of paired timings: within a round the two sides of the ratio are
timed one right after the other, so both ran under the same load from other processes. On a shared
machine that load comes and goes within seconds, and a ratio of timings taken far apart can be off
by any factor.
"""
from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("--min-run-time", type=float, default=0.25, help="seconds per timing, default 0.25")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of paired timings per ratio, default 5")
    parser.add_argument("--format", choices=FORMATS, default="markdown")
    parser.add_argument("--out", default=None, help="write the table to this file instead of stdout")


@dataclass(frozen=True)
class TimingPlan:
    """How to time: threads for the ratios, seconds per timing, rounds of paired timings."""
    threads: int
    min_run_time: float
    rounds: int


@dataclass(frozen=True)
class Machine:
    """The reference workloads, built once: a 2048^3 float32 matmul and a copy far beyond any cache."""
    matmul: Callable[[], object]
    copy: Callable[[], object]
    copy_bytes: int  # read + written by one copy

    @classmethod
    def build(cls) -> "Machine":
        a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
        src, dst = torch.randn(COPY_ELEMENTS), torch.empty(COPY_ELEMENTS)
        return cls(lambda: a @ b, lambda: dst.copy_(src), 2 * src.nbytes)


MATMUL_FLOPS = 2 * MATMUL_SIZE**3


def _seconds(fn: Callable[[], object], threads: int, min_run_time: float) -> float:
    torch.set_num_threads(threads)
    # min_runs=1: each timing is one round of several, and the ratios are medians over the rounds; five
    # calls of the 2048^3 matmul each round would multiply the command's time for nothing
    return time_cpu(fn, min_run_time, min_runs=1).median_s


def paired_seconds(timed: dict[str, tuple[Callable[[], object], int]], timing: TimingPlan) -> dict[str, list[float]]:
    """Each function's median seconds per round, {name: (function, threads)} timed one after another
    within each round."""
    seconds: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(timing.rounds):
        for name, (fn, threads) in timed.items():
            seconds[name].append(_seconds(fn, threads, timing.min_run_time))
    return seconds


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of numerator / denominator, each ratio within one round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def _row(quantity: str, value: float, unit: str, goal: str = "", met: bool | None = None) -> dict[str, object]:
    # significant digits, not decimals: a float64 difference of 3e-16 must not print as 0
    return {"quantity": quantity, "value": float(f"{value:.5g}"), "unit": unit, "goal": goal,
            "met": "" if met is None else ("yes" if met else "NO")}


def machine_rows(machine: Machine, timing: TimingPlan) -> list[dict]:
    seconds = paired_seconds({"matmul": (machine.matmul, timing.threads), "copy": (machine.copy, timing.threads)},
                             timing)
    return [
        _row(f"matmul {MATMUL_SIZE}^3 float32", MATMUL_FLOPS / statistics.median(seconds["matmul"]) / 1e9, "GFLOP/s"),
        _row(f"copy {COPY_ELEMENTS * 4 // 2**20} MiB float32 (read + write)",
             machine.copy_bytes / statistics.median(seconds["copy"]) / 1e9, "GB/s"),
    ]


def fused_rows(C: int, H: int, W: int, machine: Machine, timing: TimingPlan) -> list[dict]:
    """sapa_fused alone (N=1, d=32, K=5) against its memory floor: read q, k, v once, write the output once."""
    d, K = 32, 5
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, d, 2 * H, 2 * W, generator=g), torch.randn(1, d, H, W, generator=g)
    v = torch.randn(1, C, H, W, generator=g)
    seconds = paired_seconds({"fused": (lambda: kernels.sapa_fused(q, k, v, K), timing.threads),
                              "copy": (machine.copy, timing.threads)}, timing)
    compulsory = (q.numel() + k.numel() + v.numel() + C * 4 * H * W) * q.element_size()
    # floor = compulsory / bandwidth, bandwidth = copy_bytes / copy seconds of the same round
    over_floor = median_ratio(seconds["fused"], seconds["copy"]) * machine.copy_bytes / compulsory
    fused_s = statistics.median(seconds["fused"])
    return [
        _row(f"sapa_fused alone (d={d}, K={K})", fused_s * 1e3, "ms"),
        _row("sapa_fused memory floor (compulsory bytes / copy GB/s)", fused_s / over_floor * 1e3, "ms"),
        _row("sapa_fused time / memory floor", over_floor, "x", f"<= {FUSED_FLOOR_GOAL}",
             over_floor <= FUSED_FLOOR_GOAL),
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


def operator_rows(name: str, C: int, H: int, W: int, machine: Machine, timing: TimingPlan) -> list[dict]:
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

    seconds = paired_seconds({
        "matmul": (machine.matmul, timing.threads),
        "forward": (forward, timing.threads),
        "forward, 1 thread": (forward, 1),
        "forward+backward": (forward_backward, timing.threads),
    }, timing)
    fwd = statistics.median(seconds["forward"])
    share = flops / MATMUL_FLOPS * median_ratio(seconds["matmul"], seconds["forward"])
    share_goal = FORWARD_SHARE_GOAL.get(name)
    fwd_bwd = median_ratio(seconds["forward+backward"], seconds["forward"])
    speedup = median_ratio(seconds["forward, 1 thread"], seconds["forward"])
    difference = _max_relative_difference(name, C, H, W)
    return [
        _row(f"{name} forward", fwd * 1e3, "ms"),
        _row(f"{name} forward GFLOP/s", flops / fwd / 1e9, "GFLOP/s"),
        _row(f"{name} forward / matmul GFLOP/s", share, "share",
             "" if share_goal is None else f">= {share_goal}", None if share_goal is None else share >= share_goal),
        _row(f"{name} forward+backward / forward", fwd_bwd, "x", f"<= {FWD_BWD_GOAL}", fwd_bwd <= FWD_BWD_GOAL),
        _row(f"{name} forward speedup 1 -> {timing.threads} threads", speedup, "x", f">= {SCALING_GOAL}",
             speedup >= SCALING_GOAL),
        _row(f"{name} float64 max |compiled - reference| / max |reference|", difference, "",
             f"<= {F64_TOLERANCE:g}", difference <= F64_TOLERANCE),
    ]


def roofline_table(ops: list[str], C: int, H: int, W: int, timing: TimingPlan) -> pd.DataFrame:
    kernels.require_compiled("bench.py roofline")
    previous = torch.get_num_threads()
    try:
        machine = Machine.build()
        rows = [*machine_rows(machine, timing), *fused_rows(C, H, W, machine, timing)]
        for name in ops:
            rows += operator_rows(name, C, H, W, machine, timing)
    finally:
        torch.set_num_threads(previous)
    return pd.DataFrame(rows)


def run(args: argparse.Namespace) -> int:
    if len(args.size) not in (1, 2) or args.threads < 1 or args.C < 1 or args.min_run_time <= 0 or args.rounds < 1:
        print("roofline: expected --size H or H,W, --threads >= 1, --C >= 1, --min-run-time > 0 and --rounds >= 1",
              file=sys.stderr)
        return 2
    H, W = args.size[0], args.size[-1]
    try:
        table = roofline_table(args.ops, args.C, H, W, TimingPlan(args.threads, args.min_run_time, args.rounds))
    except (ValueError, RuntimeError) as error:
        print(f"roofline: {error}", file=sys.stderr)
        return 2
    emit(render_table(table, args.format), args.out)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"roofline: C={args.C}, {H}x{W} -> {2 * H}x{2 * W}, N=1, float32, {args.threads} threads, "
          f"ratios: medians of {args.rounds} rounds of paired timings; load average {load}", file=sys.stderr)
    return 0
