"""What --isolate costs per row: the same rows measured in this process and through one worker
process, in one run, counting warmed in both so only measuring is compared. Prints ms per row and the
worker's start-up time. Not a test (nothing is asserted about time); run it on a quiet machine:

    python tests/benchmarks/isolation_cost.py
"""
from __future__ import annotations

import os
import time

from upbench.isolate import IsolatedMeasurer
from upbench.measure import measure_config
from upbench.spec import SweepSpec


def main() -> None:
    spec = SweepSpec(ops=("nearest", "bilinear"), channels=(4,), sizes=tuple(range(4, 24, 2)), devices=("cpu",),
                     warmup=1, min_run_time=0.01)
    configs = spec.expand()
    total = len(configs)
    for index, config in enumerate(configs):  # warms this process's counting cache
        measure_config(config, spec, index, total)
    started = time.perf_counter()
    for index, config in enumerate(configs):
        measure_config(config, spec, index, total)
    in_process = (time.perf_counter() - started) / total
    with IsolatedMeasurer(spec) as worker:
        started = time.perf_counter()
        worker.start()
        start_up = time.perf_counter() - started
        for index, config in enumerate(configs):  # warms the worker's counting cache
            worker.measure(config, index, total)
        started = time.perf_counter()
        for index, config in enumerate(configs):
            worker.measure(config, index, total)
        isolated = (time.perf_counter() - started) / total
    print(f"{total} rows, load average {os.getloadavg()[0]:.2f}: in-process {in_process * 1e3:.1f} ms/row, "
          f"isolated {isolated * 1e3:.1f} ms/row, overhead {(isolated - in_process) * 1e3:.1f} ms/row; "
          f"worker start-up {start_up:.2f} s")


if __name__ == "__main__":
    main()
