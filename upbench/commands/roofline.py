"""bench.py roofline: the compiled CPU path against this machine's own matmul and copy speed.

Everything is measured in one run, so the ratios hold whatever the machine: the operators' forward
GFLOP/s as a share of a 2048^3 float32 matmul, a one-pass kernel (where an operator's forward calls it,
with the arguments that forward gives it) against its memory floor (compulsory bytes / copy bandwidth),
forward+backward over forward, the 1 -> N thread speedup, and float64 agreement with the reference path.
The one-pass kernels are those the op registrations declare (``ONE_PASS_OPS``); nothing here knows an operator.

Each ratio is a median over rounds of paired timings: within a round the two sides of the ratio are
timed one right after the other, so both ran under the same load from other processes. On a shared
machine that load comes and goes within seconds, and a ratio of timings taken far apart can be off
by any factor.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable

import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .. import kernels
from ..cli_args import (PLAIN_FORMATS, add_format_argument, check_out, emit, file_name, image_size, name_list,
                        positive_float, positive_int, render_table)
from .._op_registrations import ONE_PASS_OPS
from ..formulas import TOTAL
from ..measure import build_call
from ..registry import available, get, make
from ..spec import Config
from ..timing import FEW_CALLS, Timing, time_cpu, timing_doubts

HELP = ("compiled CPU kernels vs this machine's matmul GFLOP/s and copy GB/s, each ratio against the goal "
        "the compiled path is held to")

MATMUL_SIZE = 2048
COPY_ELEMENTS = 32 * 2**20  # 128 MiB of float32 each way: far beyond any cache
# The goals every compiled operator is held to; the forward's share of the matmul is each operator's own
# (Upsampler.forward_share_goal), as what a forward can reach depends on how much of it is matrix products.
FWD_BWD_GOAL = 2.5
SCALING_GOAL = 1.85
FUSED_FLOOR_GOAL = 2.0
F64_TOLERANCE = 1e-10

GOALS = (
    f"Goals (column met): an operator's compiled forward reaches at least the share of the matmul GFLOP/s it "
    f"declares (its forward_share_goal; none for an operator that declares none); forward+backward takes at most "
    f"{FWD_BWD_GOAL}x the forward; --threads threads run the forward at least {SCALING_GOAL}x faster than one; "
    f"a one-pass kernel ({', '.join(op.partition('::')[2] for op in ONE_PASS_OPS)}), where an operator's forward "
    f"calls it, takes at most {FUSED_FLOOR_GOAL}x its memory floor (the bytes it must read and write / this "
    f"machine's copy GB/s); the compiled float64 forward differs from the reference by at most {F64_TOLERANCE:g} of "
    f"its largest value."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = GOALS
    parser.add_argument("--ops", type=name_list, default=None,
                        help="operators with compiled ops (comma list); default: those declaring a forward-share goal")
    parser.add_argument("--C", type=positive_int, default=256, help="channels, default 256")
    parser.add_argument("--size", type=image_size, default=(64, 64), help="low-res H, HxW or H,W, default 64,64")
    parser.add_argument("--threads", type=positive_int, default=2, help="threads for the ratios (speedup is 1 -> this)")
    parser.add_argument("--min-run-time", type=positive_float, default=0.25, help="seconds per timing, default 0.25")
    parser.add_argument("--rounds", type=positive_int, default=5, help="rounds of paired timings per ratio, default 5")
    add_format_argument(parser, PLAIN_FORMATS)
    parser.add_argument("--out", type=file_name, default=None, help="write the table to this file instead of stdout")


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


def _timing(fn: Callable[[], object], threads: int, min_run_time: float) -> Timing:
    torch.set_num_threads(threads)
    # min_runs=1: each timing is one round of several, and the ratios are medians over the rounds; five
    # calls of the 2048^3 matmul each round would multiply the command's time for nothing
    return time_cpu(fn, min_run_time, min_runs=1)


@dataclass(frozen=True)
class Paired:
    """Seconds per round of each timed function, and what made its timings doubtful, if anything."""
    seconds: dict[str, list[float]]
    doubts: dict[str, list[str]]  # per function: 'shared 3/5', one entry per kind of doubt and the rounds it was in

    def suspect(self, *names: str) -> str:
        """Why a quantity made of the timings of ``names`` cannot be trusted ('copy: shared 3/5, unsteady 1/5
        rounds'); empty when nothing was seen."""
        return "; ".join(f"{name}: {', '.join(self.doubts[name])} rounds" for name in names if self.doubts[name])


def _round_doubts(timings: list[Timing], threads: int) -> list[str]:
    """Each kind of :func:`timing_doubts` seen, with the rounds it was seen in. A round's single call is not
    doubted for being one: the rounds are the samples."""
    kinds: dict[str, int] = {}
    for timing in timings:
        for kind in dict.fromkeys(doubt.partition(":")[0] for doubt in timing_doubts(timing, threads)):
            if kind != FEW_CALLS:
                kinds[kind] = kinds.get(kind, 0) + 1
    return [f"{kind} {n}/{len(timings)}" for kind, n in kinds.items()]


def paired_seconds(timed: dict[str, tuple[Callable[[], object], int]], timing: TimingPlan) -> Paired:
    """Each function's median seconds per round, {name: (function, threads)} timed one after another
    within each round, after one untimed call of each (a first call touches its buffers' pages: the
    copy's 128 MiB destination)."""
    for fn, threads in timed.values():
        torch.set_num_threads(threads)
        fn()
    timings: dict[str, list[Timing]] = {name: [] for name in timed}
    for _ in range(timing.rounds):
        for name, (fn, threads) in timed.items():
            timings[name].append(_timing(fn, threads, timing.min_run_time))
    return Paired({name: [t.median_s for t in runs] for name, runs in timings.items()},
                  {name: _round_doubts(runs, timed[name][1]) for name, runs in timings.items()})


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of numerator / denominator, each ratio within one round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def _row(quantity: str, value: float, unit: str, goal: str = "", met: bool | None = None,
         suspect: str = "") -> dict[str, object]:
    # significant digits, not decimals: a float64 difference of 3e-16 must not print as 0
    return {"quantity": quantity, "value": float(f"{value:.5g}"), "unit": unit, "goal": goal,
            "met": "" if met is None else ("yes" if met else "NO"), "timing suspect": suspect}


def machine_rows(machine: Machine, timing: TimingPlan) -> list[dict]:
    paired = paired_seconds({"matmul": (machine.matmul, timing.threads), "copy": (machine.copy, timing.threads)},
                            timing)
    seconds = paired.seconds
    return [
        _row(f"matmul {MATMUL_SIZE}^3 float32", MATMUL_FLOPS / statistics.median(seconds["matmul"]) / 1e9, "GFLOP/s",
             suspect=paired.suspect("matmul")),
        _row(f"copy {COPY_ELEMENTS * 4 // 2**20} MiB float32 (read + write)",
             machine.copy_bytes / statistics.median(seconds["copy"]) / 1e9, "GB/s", suspect=paired.suspect("copy")),
    ]


class _CallsOf(TorchDispatchMode):
    """Records the arguments (positional, keyword) of every call of one op during the forwards run under it."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func.overloadpacket._qualified_op_name == self.op:
            self.calls.append((args, kwargs or {}))
        return func(*args, **(kwargs or {}))


def _compiled_op(qualified: str) -> Any:
    namespace, _, name = qualified.partition("::")
    return getattr(getattr(torch.ops, namespace), name)


def _arguments(qualified: str, args: tuple, kwargs: dict[str, Any]) -> str:
    """A call's arguments as a label: each tensor's channels, each other argument's value, by the schema's names."""
    schema = _compiled_op(qualified).default._schema
    named = [*zip((argument.name for argument in schema.arguments), args), *kwargs.items()]
    return ", ".join(f"{name} C={value.shape[1]}" if isinstance(value, torch.Tensor) else f"{name}={value}"
                     for name, value in named)


def one_pass_rows(name: str, forward: Callable[[], object], machine: Machine, timing: TimingPlan) -> list[dict]:
    """Each one-pass kernel (``ONE_PASS_OPS``) alone, as operator ``name``'s forward calls it (so with its knobs),
    against its memory floor: read every input once, write every output once. No rows for a kernel the
    forward does not call."""
    rows = []
    for qualified in ONE_PASS_OPS:
        with _CallsOf(qualified) as seen:
            forward()
        if not seen.calls:
            continue
        (args, kwargs), kernel, short = seen.calls[0], _compiled_op(qualified), qualified.partition("::")[2]
        with torch.no_grad():
            outputs = kernel(*args, **kwargs)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        paired = paired_seconds({"kernel": (lambda: kernel(*args, **kwargs), timing.threads),
                                 "copy": (machine.copy, timing.threads)}, timing)
        seconds = paired.seconds
        compulsory = sum(t.numel() * t.element_size() for t in (*args, *kwargs.values(), *outputs)
                         if isinstance(t, torch.Tensor))
        # floor = compulsory / bandwidth, bandwidth = copy_bytes / copy seconds of the same round
        over_floor = median_ratio(seconds["kernel"], seconds["copy"]) * machine.copy_bytes / compulsory
        kernel_s = statistics.median(seconds["kernel"])
        rows += [
            _row(f"{name} {short} alone ({_arguments(qualified, args, kwargs)})", kernel_s * 1e3, "ms",
                 suspect=paired.suspect("kernel")),
            _row(f"{name} {short} memory floor (compulsory bytes / copy GB/s)", kernel_s / over_floor * 1e3, "ms",
                 suspect=paired.suspect("copy")),
            _row(f"{name} {short} time / memory floor", over_floor, "x", f"<= {FUSED_FLOOR_GOAL}",
                 over_floor <= FUSED_FLOOR_GOAL, paired.suspect("kernel", "copy")),
        ]
    return rows


def _max_relative_difference(name: str, C: int, H: int, W: int) -> float:
    """float64, compiled vs reference with the same weights: max |difference| / max |reference|."""
    # eval mode, as the timed forward runs (measure.build_call): inference is what is compared
    compiled = make(name, C, impl="compiled").double().eval()
    reference = make(name, C, impl="reference").double().eval()
    reference.load_state_dict(compiled.state_dict())
    x, guide = compiled.example_inputs(1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x, guide)
        return ((compiled(x, guide) - expected).abs().max() / expected.abs().max()).item()


def operator_rows(name: str, C: int, H: int, W: int, machine: Machine, timing: TimingPlan) -> list[dict]:
    op = make(name, C, impl="compiled")
    # two copies with the same weights: build_call puts the forward's in eval mode and the other in train mode
    training_op = copy.deepcopy(op)
    config = Config(operator=name, impl="compiled", C=C, hparams=tuple(op.hparams.items()), N=1, H=H, W=W,
                    dtype="fp32", device="cpu", mode="fwd")
    forward = build_call(op, config, torch.Generator().manual_seed(0))
    forward_backward = build_call(training_op, replace(config, mode="fwd+bwd"), torch.Generator().manual_seed(0))
    flops = 2 * op.formulas.exact_cost(TOTAL, op.dims(1, H, W)).macs
    share_goal = op.forward_share_goal
    one_pass = one_pass_rows(name, forward, machine, timing)
    paired = paired_seconds({
        "matmul": (machine.matmul, timing.threads),
        "forward": (forward, timing.threads),
        "forward, 1 thread": (forward, 1),
        "forward+backward": (forward_backward, timing.threads),
    }, timing)
    seconds, suspect = paired.seconds, paired.suspect
    fwd = statistics.median(seconds["forward"])
    share = flops / MATMUL_FLOPS * median_ratio(seconds["matmul"], seconds["forward"])
    fwd_bwd = median_ratio(seconds["forward+backward"], seconds["forward"])
    speedup = median_ratio(seconds["forward, 1 thread"], seconds["forward"])
    difference = _max_relative_difference(name, C, H, W)
    return [
        *one_pass,
        _row(f"{name} forward", fwd * 1e3, "ms", suspect=suspect("forward")),
        _row(f"{name} forward GFLOP/s", flops / fwd / 1e9, "GFLOP/s", suspect=suspect("forward")),
        _row(f"{name} forward / matmul GFLOP/s", share, "share",
             "" if share_goal is None else f">= {share_goal}", None if share_goal is None else share >= share_goal,
             suspect("matmul", "forward")),
        _row(f"{name} forward+backward / forward", fwd_bwd, "x", f"<= {FWD_BWD_GOAL}", fwd_bwd <= FWD_BWD_GOAL,
             suspect("forward+backward", "forward")),
        _row(f"{name} forward speedup 1 -> {timing.threads} threads", speedup, "x", f">= {SCALING_GOAL}",
             speedup >= SCALING_GOAL, suspect("forward, 1 thread", "forward")),
        _row(f"{name} float64 max abs(compiled - reference) / max abs(reference)", difference, "",
             f"<= {F64_TOLERANCE:g}", difference <= F64_TOLERANCE),
    ]


def roofline_ops(names: list[str] | None) -> list[str]:
    """The operators to time, each checked before any timing: known, and with compiled ops. By default every
    operator that declares a forward-share goal."""
    if names is None:
        names = [name for name in available() if get(name).forward_share_goal is not None]
        if not names:
            raise ValueError("no registered operator declares a forward_share_goal; name operators with --ops")
    compiled = [name for name in available() if get(name).compiled_ops]
    for name in names:
        if not get(name).compiled_ops:  # get() names an unknown operator and the known ones
            raise ValueError(f"--ops {name}: {name} has no compiled ops, so nothing to time against the reference; "
                             f"operators with compiled ops: {', '.join(compiled) or 'none'}")
    return list(dict.fromkeys(names))


def roofline_table(ops: list[str] | None, C: int, H: int, W: int, timing: TimingPlan) -> pd.DataFrame:
    ops = roofline_ops(ops)
    kernels.require_compiled("bench.py roofline")
    previous = torch.get_num_threads()
    try:
        machine = Machine.build()
        rows = machine_rows(machine, timing)
        for name in ops:
            rows += operator_rows(name, C, H, W, machine, timing)
    finally:
        torch.set_num_threads(previous)
    return pd.DataFrame(rows)


def run(args: argparse.Namespace) -> int:
    check_out(args.out)
    H, W = args.size
    try:
        table = roofline_table(args.ops, args.C, H, W, TimingPlan(args.threads, args.min_run_time, args.rounds))
    except (ValueError, RuntimeError) as error:
        print(f"roofline: {error}", file=sys.stderr)
        return 2
    emit(render_table(table, args.format), args.out)
    suspect = table["timing suspect"] != ""
    if suspect.any():  # a 'met' over timings that cannot be trusted is no verdict: say so beside the table
        print(f"roofline: warning: {suspect.sum()} of {len(table)} rows rest on timings that cannot be trusted "
              f"(other work on the machine, or more threads than cores): see their 'timing suspect' column",
              file=sys.stderr)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"roofline: C={args.C}, {H}x{W} -> {2 * H}x{2 * W}, N=1, float32, {args.threads} threads, "
          f"ratios: medians of {args.rounds} rounds of paired timings; load average {load}", file=sys.stderr)
    return 0
