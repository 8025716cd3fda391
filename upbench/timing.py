"""Latency of a no-argument callable: every call timed on its own, by the wall clock on CPU and by CUDA
events on GPU.

Both report the median and the 20th / 80th percentiles of per-call times and how many calls
were timed, after warm-up calls (lazy initialisation, allocator growth, autotuning, JIT builds).

On a shared machine a timing is only as good as the cores were free: :func:`timing_doubts` says why a
timing cannot be trusted, from what was seen while it ran (the process's own CPU time against the wall
time of the timed calls, the other work the usable cores did meanwhile, hypervisor steal included, the
spread of the calls, how many there were) and from the thread count against the usable cores.
"""
from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .allocator import settle_allocator
from .vocabulary import MIN_PROBE_S

# Fewest timed calls a timer aims for however slow one call is: a median of fewer means little.
MIN_RUNS = 5
# Most timed calls on CPU: bounds the list of times for calls of a microsecond.
MAX_CPU_RUNS = 1_000_000
# Most timed calls on GPU: bounds the event list for kernels of a few microseconds.
MAX_CUDA_RUNS = 10_000
# Flush buffer when the device does not report its L2 size (larger than any current L2).
FALLBACK_FLUSH_BYTES = 256 * 2**20
# The timing thread computes or waits on its own workers all through a CPU timing: its process gets at
# least one core's worth of CPU time unless the scheduler gave the core to other work.
MIN_CPU_UTIL = 0.9
# p80 / p20 of a quiet run stays within a few percent; far more means the machine changed pace mid-row.
MAX_SPREAD = 1.5
# Cores' worth of other work (other processes, hypervisor steal) tolerated beyond the cores the timing
# threads leave free: /proc/stat counts in clock ticks (10 ms), so a short timing reads a few tenths off.
MAX_OTHER_WORK = 0.25
# Untimed calls before timing, by default: lazy initialisation, allocator growth and autotuning stay out of
# the median (a sweep's ``warmup`` setting, and the network report's).
WARMUP_CALLS = 3


@dataclass(frozen=True)
class Timing:
    median_s: float
    p20_s: float
    p80_s: float
    runs: int  # calls timed, each one a sample
    cache: str  # "warm", or "cold" when the caches were flushed before every call (GPU: L2; CPU: every level)
    # CPU: the process's CPU time over the wall time of the timed calls (2.0: two cores busy all along);
    # None on GPU, where the host waits on the device
    cpu_util: float | None = None
    # CPU: cores' worth of other work on the usable cores while timing (other processes' CPU time and
    # hypervisor steal, over the wall time); None on GPU, or where /proc/stat cannot be read
    cpu_others: float | None = None


def usable_cores() -> int:
    """Cores this process may run on (its affinity), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


FEW_CALLS = "few calls"  # the doubt's name, before its colon


def timing_doubts(timing: Timing, threads: int, cores: int | None = None) -> list[str]:
    """Why ``timing`` (taken with ``threads`` threads) cannot be trusted; empty when nothing was seen."""
    cores = usable_cores() if cores is None else cores
    doubts = []
    if timing.cpu_util is not None and timing.cpu_util < MIN_CPU_UTIL:
        doubts.append(f"descheduled: own CPU time was {timing.cpu_util:.0%} of wall time (other work had the cores)")
    if timing.cpu_others is not None and timing.cpu_others > max(cores - threads, 0) + MAX_OTHER_WORK:
        doubts.append(f"shared: other work (other processes, hypervisor steal) kept {timing.cpu_others:.2f} of "
                      f"{cores} usable cores busy beside {threads} timing thread(s)")
    if timing.p20_s > 0 and timing.p80_s / timing.p20_s > MAX_SPREAD:
        doubts.append(f"unsteady: p80/p20 = {timing.p80_s / timing.p20_s:.2f}")
    if timing.runs < MIN_RUNS:
        doubts.append(f"{FEW_CALLS}: {timing.runs} timed (a median wants at least {MIN_RUNS})")
    if threads > cores:
        doubts.append(f"{threads} threads on {cores} usable cores")
    return doubts


def suspect_cell(timing: Timing, threads: int) -> str:
    """A row's ``timing_suspect`` cell: every doubt of :func:`timing_doubts`, joined; empty when none."""
    return "; ".join(timing_doubts(timing, threads))


def _summary(times: list[float], cache: str, cpu_util: float | None = None,
             cpu_others: float | None = None) -> Timing:
    p20, median, p80 = np.percentile(np.asarray(times, dtype=float), [20, 50, 80])
    return Timing(float(median), float(p20), float(p80), len(times), cache, cpu_util, cpu_others)


class CoreUsage:
    """What the usable cores did from its creation to :meth:`others`: /proc/stat's per-core clock ticks
    (busy and steal) less this process's own CPU time. Linux only; elsewhere it sees nothing."""

    def __init__(self) -> None:
        try:
            self.cores = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            self.cores = set()
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        self.start_ticks = self._ticks()
        self.start_cpu, self.start_wall = time.process_time(), time.perf_counter()

    def _ticks(self) -> tuple[int, int] | None:
        """(busy, steal) clock ticks summed over the usable cores; None where /proc/stat cannot be read."""
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return None
        busy = steal = 0
        for line in lines:
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cores):
                continue
            user, nice, system, _idle, _iowait, irq, softirq, stolen = (int(v) for v in (fields + ["0"] * 8)[:8])
            busy += user + nice + system + irq + softirq
            steal += stolen
        return busy, steal

    def own_util(self) -> float:
        """This process's CPU time over the wall time since start (2.0: two cores busy all along)."""
        return (time.process_time() - self.start_cpu) / max(time.perf_counter() - self.start_wall, 1e-9)

    def others(self) -> float | None:
        """Cores' worth of other work since start: other processes' busy time plus steal, over the wall time
        (at most the usable cores); None for a timing shorter than :data:`MIN_PROBE_S`."""
        end = self._ticks()
        wall = time.perf_counter() - self.start_wall
        if end is None or self.start_ticks is None or wall < MIN_PROBE_S:
            return None
        busy, steal = (after - before for after, before in zip(end, self.start_ticks))
        other_seconds = (busy + steal) * self.tick_s - (time.process_time() - self.start_cpu)
        return min(max(other_seconds, 0.0) / wall, float(len(self.cores)))


def call_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call, synchronised on GPU: the sweep's budget check and warm-up."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def cache_size_bytes(text: str) -> int | None:
    """sysfs's cache size ("48K", "2048K", "300M", or bytes) in bytes; None for anything else."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    digits = text[:-1] if scale > 1 else text
    return int(digits) * scale if digits.isdigit() else None


def cpu_cache_bytes(caches: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """The largest cache the first CPU reports (its last level), or None where sysfs reports none."""
    try:
        sizes = [cache_size_bytes(path.read_text()) for path in caches.glob("index*/size")]
    except OSError:
        return None
    return max((size for size in sizes if size), default=None)


def flush_buffer(cache_bytes: int | None, device: torch.device) -> torch.Tensor:
    """Twice ``cache_bytes`` (half of :data:`FALLBACK_FLUSH_BYTES` where the size is unknown) on ``device``:
    writing all of it leaves none of a call's data in that cache."""
    return torch.empty(2 * (cache_bytes or FALLBACK_FLUSH_BYTES // 2), dtype=torch.uint8, device=device)


def cpu_flush_buffer() -> torch.Tensor:
    """Twice the last-level cache: written from torch's threads, it leaves none of a call's data in any
    level of any core's caches."""
    return flush_buffer(cpu_cache_bytes(), torch.device("cpu"))


def flush_cpu_caches(buffer: torch.Tensor) -> None:
    # A read-modify-write of every line: a large zero fill may go past the caches (memset's non-temporal
    # stores) and evict nothing.
    buffer.add_(1)


def time_cpu(fn: Callable[[], object], min_run_time: float, min_runs: int = MIN_RUNS,
             flush: torch.Tensor | None = None) -> Timing:
    """Every call timed on its own by the wall clock, with the threads torch uses now, until ``min_run_time``
    seconds have passed and ``min_runs`` calls are timed; the garbage collector waits meanwhile. With a
    ``flush`` buffer (:func:`cpu_flush_buffer`) the caches are flushed before each call, outside its time.

    Per-call times, not means of blocks of calls: the percentiles show a call that is sometimes slow.
    The clock's own cost (tens of nanoseconds a call) is inside each time. The C allocator is settled first
    (:func:`upbench.allocator.settle_allocator`; a sweep settles it before a row's warm-up): a timing must not
    depend on what the process ran before it.
    """
    settle_allocator()
    times: list[float] = []
    collecting = gc.isenabled()
    gc.disable()
    usage = CoreUsage()
    try:
        deadline = time.perf_counter() + min_run_time
        while len(times) < MAX_CPU_RUNS:
            if flush is not None:  # inside the row's run time, outside the call's
                flush_cpu_caches(flush)
            start = time.perf_counter()
            fn()
            end = time.perf_counter()
            times.append(end - start)
            if end >= deadline and len(times) >= min_runs:
                break
    finally:
        if collecting:
            gc.enable()
    return _summary(times, "warm" if flush is None else "cold", usage.own_util(), usage.others())


def _l2_bytes(device: torch.device) -> int:
    return getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)


def time_cuda(
    fn: Callable[[], object], device: torch.device, *, warmup: int, min_run_time: float, l2_flush: bool,
    min_runs: int = MIN_RUNS,
) -> Timing:
    """CUDA events around every call, recorded back to back and read after one synchronisation.

    The number of calls is chosen from the warm-up so that the timed calls take about
    ``min_run_time``. With ``l2_flush`` a buffer twice the L2 size is zeroed before each call
    (outside its events), so every call starts from a cold cache.
    """
    flush = flush_buffer(_l2_bytes(device), device) if l2_flush else None
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(max(warmup, 1)):
        if flush is not None:  # part of each timed call's wall time too: counted when choosing the runs
            flush.zero_()
        fn()
    torch.cuda.synchronize(device)
    per_call = (time.perf_counter() - start) / max(warmup, 1)
    runs = int(min(MAX_CUDA_RUNS, max(min_runs, min_run_time / max(per_call, 1e-7))))
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
    return _summary(times, "cold" if l2_flush else "warm")


def time_call(
    fn: Callable[[], object], device: torch.device, *, warmup: int, min_run_time: float, l2_flush: bool = False,
    min_runs: int = MIN_RUNS, cpu_flush: torch.Tensor | None = None,
) -> Timing:
    """Latency of ``fn()`` on ``device``; see :func:`time_cpu` and :func:`time_cuda`. ``l2_flush``: every call
    from cold caches (GPU: L2; CPU: every level, by writing a buffer twice the last-level cache: ``cpu_flush``
    where the caller made it already, else a :func:`cpu_flush_buffer` of its own). The allocator is settled before
    the warm-up (:func:`upbench.allocator.settle_allocator`)."""
    settle_allocator()
    if device.type == "cuda":
        return time_cuda(fn, device, warmup=warmup, min_run_time=min_run_time, l2_flush=l2_flush, min_runs=min_runs)
    flush = (cpu_flush if cpu_flush is not None else cpu_flush_buffer()) if l2_flush else None
    for _ in range(warmup):
        if flush is not None:
            flush_cpu_caches(flush)
        fn()
    return time_cpu(fn, min_run_time, min_runs, flush)
