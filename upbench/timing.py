"""Latency of a no-argument callable: torch.utils.benchmark on CPU, CUDA events on GPU.

Both report the median and the 20th / 80th percentiles of per-call times and how many calls
were timed, after warm-up calls (lazy initialisation, allocator growth, autotuning, JIT builds).

On a shared machine a timing is only as good as the cores were free: :func:`timing_doubts` says why a
timing cannot be trusted, from what was seen while it ran (the process's own CPU time against the wall
time of the timed calls, the spread of the runs) and from the thread count against the usable cores.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.utils.benchmark as benchmark

# Fewest timed calls on GPU however slow one call is: a median of fewer means little.
MIN_CUDA_RUNS = 5
# Most timed calls on GPU: bounds the event list for kernels of a few microseconds.
MAX_CUDA_RUNS = 10_000
# Flush buffer when the device does not report its L2 size (larger than any current L2).
FALLBACK_FLUSH_BYTES = 256 * 2**20
# The timing thread computes or waits on its own workers all through a CPU timing: its process gets at
# least one core's worth of CPU time unless the scheduler gave the core to other work.
MIN_CPU_UTIL = 0.9
# p80 / p20 of a quiet run stays within a few percent; far more means the machine changed pace mid-row.
MAX_SPREAD = 1.5


@dataclass(frozen=True)
class Timing:
    median_s: float
    p20_s: float
    p80_s: float
    runs: int  # calls timed
    cache: str  # "warm", or "cold" when L2 was flushed before every call
    # CPU: the process's CPU time over the wall time of the timed calls (2.0: two cores busy all along);
    # None on GPU, where the host waits on the device
    cpu_util: float | None = None


def usable_cores() -> int:
    """Cores this process may run on (its affinity), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def timing_doubts(timing: Timing, threads: int, cores: int | None = None) -> list[str]:
    """Why ``timing`` (taken with ``threads`` threads) cannot be trusted; empty when nothing was seen."""
    cores = usable_cores() if cores is None else cores
    doubts = []
    if timing.cpu_util is not None and timing.cpu_util < MIN_CPU_UTIL:
        doubts.append(f"descheduled: own CPU time was {timing.cpu_util:.0%} of wall time (other work had the cores)")
    if timing.p20_s > 0 and timing.p80_s / timing.p20_s > MAX_SPREAD:
        doubts.append(f"unsteady: p80/p20 = {timing.p80_s / timing.p20_s:.2f}")
    if threads > cores:
        doubts.append(f"{threads} threads on {cores} usable cores")
    return doubts


def _summary(times: list[float], runs: int, cache: str, cpu_util: float | None = None) -> Timing:
    p20, median, p80 = np.percentile(np.asarray(times, dtype=float), [20, 50, 80])
    return Timing(float(median), float(p20), float(p80), runs, cache, cpu_util)


def call_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call, synchronised on GPU: the sweep's budget check and warm-up."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def time_cpu(fn: Callable[[], object], min_run_time: float) -> Timing:
    """torch.utils.benchmark with every thread torch uses (its default is one).

    ``Measurement.times`` holds one mean per block of calls, so the percentiles are over blocks;
    ``runs`` counts the calls.
    """
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    cpu_util = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    runs = len(measurement.raw_times) * measurement.number_per_run
    return _summary(list(measurement.times), runs, "warm", cpu_util)


def _l2_flush_buffer(device: torch.device) -> torch.Tensor:
    l2_bytes = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or FALLBACK_FLUSH_BYTES // 2
    return torch.empty(2 * l2_bytes, dtype=torch.uint8, device=device)


def time_cuda(
    fn: Callable[[], object], device: torch.device, *, warmup: int, min_run_time: float, l2_flush: bool,
) -> Timing:
    """CUDA events around every call, recorded back to back and read after one synchronisation.

    The number of calls is chosen from the warm-up so that the timed calls take about
    ``min_run_time``. With ``l2_flush`` a buffer twice the L2 size is zeroed before each call
    (outside its events), so every call starts from a cold cache.
    """
    flush = _l2_flush_buffer(device) if l2_flush else None
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(max(warmup, 1)):
        if flush is not None:  # part of each timed call's wall time too: counted when choosing the runs
            flush.zero_()
        fn()
    torch.cuda.synchronize(device)
    per_call = (time.perf_counter() - start) / max(warmup, 1)
    runs = int(min(MAX_CUDA_RUNS, max(MIN_CUDA_RUNS, min_run_time / max(per_call, 1e-7))))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    with torch.cuda.device(device):
        for begin, end in zip(starts, ends):
            if flush is not None:
                flush.zero_()
            begin.record()
            fn()
            end.record()
    torch.cuda.synchronize(device)
    times = [begin.elapsed_time(end) / 1e3 for begin, end in zip(starts, ends)]
    return _summary(times, runs, "cold" if l2_flush else "warm")


def time_call(
    fn: Callable[[], object], device: torch.device, *, warmup: int, min_run_time: float, l2_flush: bool = False,
) -> Timing:
    """Latency of ``fn()`` on ``device``; see :func:`time_cpu` and :func:`time_cuda`."""
    if device.type == "cuda":
        return time_cuda(fn, device, warmup=warmup, min_run_time=min_run_time, l2_flush=l2_flush)
    for _ in range(warmup):
        fn()
    return time_cpu(fn, min_run_time)
