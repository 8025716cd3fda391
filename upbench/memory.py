"""Peak memory probes that see torch's allocator (tracemalloc does not)."""
from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import Any, Callable, Iterator

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


MEMORY_EVENT = "[memory]"


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide what native code writes to fd 2: the CPU profiler prints two kineto lines per use, which
    would drown a progress bar. Python exceptions are unaffected."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def cpu_peak_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Peak bytes the CPU allocator held above its level at entry while ``fn`` ran.

    Each allocation and free is one raw ``[memory]`` record with its own timestamp and signed byte
    count; their running sum in time order is the memory held, its maximum the peak. (Summing
    ``FunctionEvent.cpu_memory_usage`` instead counts an allocation once per enclosing op.) Blocks
    allocated before the call and freed during it push the sum below zero, so the peak is taken
    against the level at entry and is never negative.
    """
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(*args, **kwargs)
    records = [e for e in prof.profiler.kineto_results.events()
               if e.name() == MEMORY_EVENT and e.device_type() == DeviceType.CPU]
    level = peak = 0
    for record in sorted(records, key=lambda e: e.start_ns()):
        level += record.nbytes()
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


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: CUDA's OutOfMemoryError, or the CPU allocator's
    RuntimeError ("can't allocate memory")."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def release_cached_memory(device: str | torch.device) -> None:
    """Give the CUDA caching allocator's free blocks back after a failed measurement, so the next one
    starts clean. Call it once the exception and its frames are gone: until then they hold the tensors."""
    if torch.device(device).type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
