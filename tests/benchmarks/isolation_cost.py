"""What --isolate costs per row: each row measured in this process and through one worker process,
alternately (so both see the same load), counting warmed in both so only measuring is compared.
Prints the median per-row times, the median of the per-row differences, and the worker's start-up
time. Not a test (nothing is asserted about time); run it on a quiet machine:

    python tests/benchmarks/isolation_cost.py
"""
from __future__ import annotations

import os
import statistics
import time

from upbench.isolate import IsolatedMeasurer
from upbench.measure import measure_config
from upbench.spec import SweepSpec

ROUNDS = 3


def main() -> None:
    spec = SweepSpec(ops=("nearest", "bilinear"), channels=(4,), sizes=tuple(range(4, 24, 2)), devices=("cpu",),
                     warmup=1, min_run_time=0.01)
    configs = spec.expand()
    total = len(configs)
    in_process, isolated = [], []
    with IsolatedMeasurer(spec) as worker:
        started = time.perf_counter()
        worker.start()
        start_up = time.perf_counter() - started
        for index, config in enumerate(configs):  # warms both counting caches
            measure_config(config, spec, index, total)
            worker.measure(config, index, total)
        for _ in range(ROUNDS):
            for index, config in enumerate(configs):
                started = time.perf_counter()
                measure_config(config, spec, index, total)
                in_process.append(time.perf_counter() - started)
                started = time.perf_counter()
                worker.measure(config, index, total)
                isolated.append(time.perf_counter() - started)
    overhead = statistics.median(b - a for a, b in zip(in_process, isolated))
    print(f"{len(in_process)} row pairs, load average {os.getloadavg()[0]:.2f}: median in-process "
          f"{statistics.median(in_process) * 1e3:.1f} ms/row, isolated {statistics.median(isolated) * 1e3:.1f} ms/row, "
          f"median difference {overhead * 1e3:.1f} ms/row; worker start-up {start_up:.2f} s")


if __name__ == "__main__":
    main()
