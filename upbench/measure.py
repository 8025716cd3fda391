"""Measuring one config into one row: counts, latency, peak memory, achieved rates.

A row is filled step by step, so a failure keeps what was measured before it; :func:`measure_config`
never raises for a failing row (its status says ``oom``, ``error`` or ``skipped``).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from . import kernels
from .base import Upsampler
from .counting import count_operator
from .environment import environment
from .formulas import compulsory_elements
from .memory import is_out_of_memory, peak_memory_bytes, release_cached_memory
from .registry import make, source_digest
from .spec import DTYPES, Config, SweepSpec
from .timing import MIN_RUNS, Timing, call_seconds, cpu_flush_buffer, flush_cpu_caches, suspect_cell, time_call
from .vocabulary import first_line

# Calls a row makes after warm-up besides the timed ones: the memory probe, and one call's worth of room.
UNTIMED_CALLS = 2


def _output_shape(config: Config) -> tuple[int, int, int, int]:
    """Every Upsampler maps (N, C, H, W) to (N, C, 2H, 2W)."""
    return (config.N, config.C, 2 * config.H, 2 * config.W)


def build_call(op: Upsampler, config: Config, generator: torch.Generator) -> Callable[[], object]:
    """The work one timed call does, inputs made beforehand (so memory is measured above them).

    ``fwd`` is inference: eval mode, under no_grad. ``fwd+bwd`` is training: train mode, inputs
    requiring grad, and the backward of a fixed random output gradient into inputs and weights.
    """
    device, dtype = torch.device(config.device), DTYPES[config.dtype]
    x, guide = op.example_inputs(config.N, config.H, config.W, dtype, device, generator)
    if config.mode == "fwd":
        op.eval()

        def forward() -> torch.Tensor:
            with torch.no_grad():
                return op(x, guide)

        return checked_first(op, forward)
    op.train()
    inputs = [t.requires_grad_() for t in (x, guide) if t is not None]
    wrt = inputs + [p for p in op.parameters() if p.requires_grad]
    grad_out = torch.randn(_output_shape(config), dtype=dtype, device=device, generator=generator)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(op(x, guide), wrt, grad_out)

    return checked_first(op, forward_backward)


def checked_first(op: Upsampler, call: Callable[[], object]) -> Callable[[], object]:
    """``call`` whose first run checks ``op``'s inputs and output (a wrong shape is one error naming the
    operator) and whose later runs, with the same tensors, do not: the timed calls measure the operator, not
    upbench's checks of it."""

    def first() -> object:
        nonlocal current
        op.check_calls = True
        result = call()
        op.check_calls = False
        current = call
        return result

    current = first
    return lambda: current()


def compulsory_bytes(op: Upsampler, config: Config, params: int) -> int:
    """Bytes any implementation of one forward must move (the analytic model in upbench.formulas)."""
    itemsize = torch.empty((), dtype=DTYPES[config.dtype]).element_size()
    return compulsory_elements(op.dims(config.N, config.H, config.W), params) * itemsize


def count_config(config: Config, policies: tuple[str, ...]) -> dict[str, Any]:
    """MACs, FLOPs, zero ops and params of one forward: counted once per shape (cached), never timed."""
    row: dict[str, Any] = {}
    for policy in policies:
        counted = count_operator(config.operator, config.C, config.N, config.H, config.W, policy,
                                 config.Cg, config.hparams)
        row.update({f"macs_{policy}": counted.macs, f"flops_{policy}": counted.flops,
                    f"zero_ops_{policy}": ";".join(counted.zero_ops), "params": counted.params})
    return row


@dataclass(frozen=True)
class WarmUp:
    """What a row's warm-up left: its last call's seconds and, on a cold CPU row, its cache flush's (together the
    pace of a timed call), the seconds it took, and the room the row budget leaves after it for the timing."""

    last_s: float
    flush_s: float
    spent_s: float
    room_s: float

    @property
    def pace_s(self) -> float:
        return self.last_s + self.flush_s


def _warm_up(call: Callable[[], object], device: torch.device,
             spec: SweepSpec) -> tuple[WarmUp, torch.Tensor | None]:
    """The warm-up calls, which double as the budget check: the first calls can be far slower than the rest
    (allocator growth, autotuning, TorchScript profiling runs), so the last one sets the pace. A cold CPU row
    flushes before every timed call, outside its time but inside the row's (tens of ms for twice the last-level
    cache): the flush buffer (returned, None for a warm row) is made and each warm-up call flushed within the
    budget, and a flush joins the pace."""
    started = time.perf_counter()
    flush = cpu_flush_buffer() if spec.l2_flush and device.type == "cpu" else None
    flush_s = 0.0
    for _ in range(spec.settings()["warmup"]):
        if flush is not None:
            flush_s = call_seconds(lambda: flush_cpu_caches(flush), device)
        last = call_seconds(call, device)
        if time.perf_counter() - started > spec.row_budget_s:
            break
    spent = time.perf_counter() - started
    return WarmUp(last, flush_s, spent, spec.row_budget_s - spent - last * UNTIMED_CALLS), flush


def _timing_fields(timing: Timing) -> dict[str, Any]:
    return dict(latency_median_ms=timing.median_s * 1e3, latency_p20_ms=timing.p20_s * 1e3,
                latency_p80_ms=timing.p80_s * 1e3, runs=timing.runs, cache=timing.cache, cpu_util=timing.cpu_util,
                cpu_others=timing.cpu_others, timing_suspect=suspect_cell(timing, torch.get_num_threads()))


def _measure(config: Config, spec: SweepSpec, row: dict[str, Any]) -> None:
    """Fill ``row`` in place, step by step, so a failure keeps what was measured before it."""
    row.update(count_config(config, spec.policies))
    if config.impl == "compiled":
        if not kernels.compiled_available():
            row["status"] = "skipped"
            row["message"] = "compiled ops not built: upbench.kernels.compiled_available() is False"
            return
    device, dtype = torch.device(config.device), DTYPES[config.dtype]
    op = make(config.operator, config.C, guide_channels=config.Cg, impl=config.impl,
              **dict(config.hparams)).to(device=device, dtype=dtype)
    row["bytes_moved"] = compulsory_bytes(op, config, row["params"])
    call = build_call(op, config, torch.Generator(device=device).manual_seed(spec.seed))

    warm, flush = _warm_up(call, device, spec)
    room = warm.room_s
    if room < warm.pace_s:
        row.update(latency_median_ms=warm.last_s * 1e3, runs=1, cache="warm" if flush is None else "cold",
                   status="skipped",
                   message=f"warm-up took {warm.spent_s:.3g} s and its last call {warm.last_s:.3g} s"
                           + (f" (its cache flush {warm.flush_s:.3g} s)" if flush is not None else "")
                           + f": timing and the memory probe would not fit the {spec.row_budget_s:g} s row budget; "
                             "latency_median_ms is that last call")
        return
    timing = time_call(call, device, warmup=0, min_run_time=min(spec.min_run_time, room), l2_flush=spec.l2_flush,
                       min_runs=max(1, min(MIN_RUNS, int(room / max(warm.pace_s, 1e-9)))),  # fewer: flagged few calls
                       cpu_flush=flush)
    flush = None  # its hundreds of MB go before the memory probe
    row.update(_timing_fields(timing))
    row["peak_mem_bytes"] = peak_memory_bytes(call, device=device)
    if config.mode == "fwd":  # counts and the bytes model describe one forward; a backward has no model
        for policy in spec.policies:
            row[f"gflops_per_s_{policy}"] = row[f"flops_{policy}"] / timing.median_s / 1e9
        row["gbytes_per_s"] = row["bytes_moved"] / timing.median_s / 1e9
    if room < spec.min_run_time:  # the median is of a shorter timing than asked for: the row says so
        row["message"] = (f"timed for {room:.3g} s of the {spec.min_run_time:g} s asked (--min-run-time): the row "
                          f"budget ({spec.row_budget_s:g} s) left no more after the warm-up")
    row["status"] = "ok"


@contextmanager
def float32_math(tf32: bool) -> Iterator[None]:
    """TF32 for float32 matmuls and cuDNN convolutions on or off (both alike) while a row is measured, then
    as before. torch's defaults differ (convolutions TF32, matmuls not), which would time a float32 row of
    a conv-based operator in TF32 and one of a Linear-based operator in float32."""
    # torch >= 2.9 has per-backend fp32_precision; mixing it with the older allow_tf32 flags makes torch raise
    # on reading them, so where it exists only it is used
    flags = [(torch.backends.cuda.matmul, "fp32_precision", "tf32" if tf32 else "ieee"),
             (torch.backends.cudnn.conv, "fp32_precision", "tf32" if tf32 else "ieee")]
    if not all(hasattr(owner, name) for owner, name, _ in flags):
        flags = [(torch.backends.cuda.matmul, "allow_tf32", tf32), (torch.backends.cudnn, "allow_tf32", tf32)]
    saved = [getattr(owner, name) for owner, name, _ in flags]
    for owner, name, value in flags:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(flags, saved):
            setattr(owner, name, value)


def config_row(config: Config, spec: SweepSpec, index: int, total: int, round_number: int = 1) -> dict[str, Any]:
    """A row with the config and the environment filled in and nothing measured yet (``round_number``: of a sweep
    of several rounds, whose rows record it)."""
    row: dict[str, Any] = dict.fromkeys(spec.columns())
    if spec.rounds > 1:
        row["round"] = round_number
    row.update(spec_id=spec.spec_id, config_index=index, config_total=total, key=config.key,
               operator=config.operator, impl=config.impl, C=config.C, Cg=config.guide_channels, N=config.N,
               H=config.H, W=config.W,
               dtype=config.dtype, device=config.device, mode=config.mode, tf32=spec.tf32, **dict(config.hparams),
               **spec.settings())
    row["operator_source"] = source_digest(config.operator)
    row.update(environment(config.device))
    if spec.threads is not None:  # what the row runs with, also for a row the measuring process never returns
        row["threads"] = spec.threads
    return row


def failed_row(config: Config, spec: SweepSpec, index: int, total: int, status: str, message: str,
               round_number: int = 1) -> dict[str, Any]:
    """The row of a config that never returned a row of its own (its process died, or it hung)."""
    row = config_row(config, spec, index, total, round_number)
    row.update(status=status, message=message)
    return row


def measure_config(config: Config, spec: SweepSpec, index: int, total: int, round_number: int = 1) -> dict[str, Any]:
    """One finished row for ``config``: status ``ok``, ``oom``, ``error`` or ``skipped``, never an exception
    (except KeyboardInterrupt and the like, which stop the sweep)."""
    threads_before = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    row = config_row(config, spec, index, total, round_number)
    try:
        with float32_math(spec.tf32):
            _measure(config, spec, row)
    except Exception as error:  # noqa: BLE001  a failing row is data, the sweep goes on
        row["status"] = "oom" if is_out_of_memory(error) else "error"
        row["message"] = first_line(error)
    finally:
        torch.set_num_threads(threads_before)
    if row["status"] == "oom":
        release_cached_memory(config.device)
    return row
