"""Every registered upsampler at C=64 and sizes 16, 32, 64, fwd and fwd+bwd, with pytest-benchmark.

The configs are those of a sweep (so the impl is resolved and knobs are each operator's defaults),
each timed with a clock that synchronises the GPU, with its MACs, bytes and shapes in extra_info. float32
is measured as a sweep measures it: TF32 off for matmuls and convolutions alike (upbench.measure.float32_math).
"""
from __future__ import annotations

import time

import pytest
import torch

from upbench.counting import POLICIES
from upbench.environment import device_from_environment
from upbench.registry import make
from upbench.measure import build_call, compulsory_bytes, count_config, float32_math
from upbench.spec import DTYPES, SweepSpec

BENCH_DEVICE = torch.device(device_from_environment())
CONFIGS = SweepSpec(channels=(64,), sizes=(16, 32, 64), modes=("fwd", "fwd+bwd"),
                    devices=(str(BENCH_DEVICE),)).expand()


def synchronized_clock() -> float:
    """perf_counter after the GPU's queued work is done, so a timed call includes its kernels."""
    if BENCH_DEVICE.type == "cuda" and torch.cuda.is_initialized():
        torch.cuda.synchronize(BENCH_DEVICE)  # the benchmarked device's queue, not the current device's
    return time.perf_counter()


@pytest.mark.benchmark(group="upsamplers", timer=synchronized_clock)
@pytest.mark.parametrize("config", CONFIGS, ids=[c.key for c in CONFIGS])
def test_upsampler(benchmark, config):
    device, dtype = torch.device(config.device), DTYPES[config.dtype]
    op = make(config.operator, config.C, impl=config.impl, **dict(config.hparams)).to(device=device, dtype=dtype)
    call = build_call(op, config, torch.Generator(device=device).manual_seed(0))
    counts = count_config(config, POLICIES)
    x_shape = (config.N, config.C, config.H, config.W)
    benchmark.extra_info.update(
        key=config.key, operator=config.operator, impl=config.impl, mode=config.mode, dtype=config.dtype,
        device=config.device, hparams=dict(config.hparams), input_shape=list(x_shape),
        guide_shape=[config.N, op.guide_channels, 2 * config.H, 2 * config.W] if op.needs_guide else None,
        output_shape=[config.N, config.C, 2 * config.H, 2 * config.W],
        bytes_moved=compulsory_bytes(op, config, counts["params"]), tf32=False, **counts,
    )
    with float32_math(tf32=False):
        call()  # warm-up: lazy initialisation and allocator growth stay out of the timings
        benchmark(call)
