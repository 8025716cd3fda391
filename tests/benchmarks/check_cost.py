"""What upbench's checks of an operator's inputs and output cost per call, the cost the timed calls no longer
pay (only a row's first call runs them): each operator's forward with the checks and without, alternately over
rounds so both see the same load, one thread. Prints the medians and their ratio. Not a test (nothing is
asserted about time); run it on a quiet machine:

    python tests/benchmarks/check_cost.py
"""
from __future__ import annotations

import statistics

import torch

import upbench
from upbench.timing import time_cpu

ROUNDS = 3
CASES = (("nearest", 16, 8), ("bilinear", 16, 8), ("nearest", 64, 32), ("sapa-b", 64, 16))


def median_us(op: upbench.Upsampler, inputs: tuple, checked: bool) -> float:
    op.check_calls = checked

    def call() -> torch.Tensor:
        with torch.no_grad():
            return op(*inputs)

    for _ in range(20):
        call()
    return time_cpu(call, min_run_time=0.3).median_s * 1e6


def main() -> None:
    torch.set_num_threads(1)
    for name, channels, size in CASES:
        op = upbench.make(name, channels).eval()
        inputs = op.example_inputs(1, size, size, generator=torch.Generator().manual_seed(0))
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(ROUNDS):
            for checked in times:
                times[checked].append(median_us(op, inputs, checked))
        on, off = statistics.median(times[True]), statistics.median(times[False])
        print(f"{name} C={channels} {size}x{size}: checked {on:.1f} us, unchecked {off:.1f} us, ratio {on / off:.2f}")


if __name__ == "__main__":
    main()
