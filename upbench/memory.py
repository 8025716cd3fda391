"""Peak memory probes that see torch's allocator (tracemalloc does not)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile


def cpu_peak_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Peak bytes the CPU allocator held above its level at entry, while ``fn`` ran.

    The profiler's memory events are +bytes for an allocation and -bytes for a free, in order;
    the running sum's maximum is the peak. Blocks freed during the run that were allocated before
    it can push the running sum below zero, so the peak is taken against the starting level 0.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
        fn(*args, **kwargs)
    events = [e for e in prof.events() if e.cpu_memory_usage != 0]
    events.sort(key=lambda e: e.time_range.start)
    level = peak = 0
    for event in events:
        level += event.cpu_memory_usage
        peak = max(peak, level)
    return peak


def cuda_peak_bytes(fn: Callable[..., Any], *args: Any, device: torch.device | None = None, **kwargs: Any) -> int:
    """Peak bytes allocated on the CUDA device above the baseline at entry."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn(*args, **kwargs)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def peak_memory_bytes(fn: Callable[..., Any], *args: Any, device: str | torch.device = "cpu", **kwargs: Any) -> int:
    """Peak memory of ``fn(*args, **kwargs)`` above what was allocated before it, on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return cuda_peak_bytes(fn, *args, device=device, **kwargs)
    if device.type == "cpu":
        return cpu_peak_bytes(fn, *args, **kwargs)
    raise ValueError(f"peak memory: unsupported device {device}; expected cpu or cuda")
