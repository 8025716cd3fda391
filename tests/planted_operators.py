"""Upsamplers that kill or hang the process that runs them: the planted bad rows of the isolation
tests. Importing this module registers them (a worker process imports it to find them); the
``planted`` fixture in test_distributed.py takes them out of the registry again after each test, so
no other test ever sweeps them."""
from __future__ import annotations

import os
import signal
import time

import torch

from upbench import Upsampler, register


class _Planted(Upsampler):
    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        self.misbehave()
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    def misbehave(self) -> None:
        raise NotImplementedError


class Segfaulting(_Planted):
    name = "planted-segfault"

    def misbehave(self) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)


class Hanging(_Planted):
    """Hangs; first touches the file $UPBENCH_PLANTED_HANG_MARK names, if set, so a test knows it hangs."""

    name = "planted-hang"

    def misbehave(self) -> None:
        if os.environ.get("UPBENCH_PLANTED_HANG_MARK"):
            open(os.environ["UPBENCH_PLANTED_HANG_MARK"], "w").close()
        time.sleep(3600)


class CudaFailing(_Planted):
    """Raises what a kernel's illegal memory access raises, without needing a GPU."""

    name = "planted-cuda-error"

    def misbehave(self) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


PLANTED = (Segfaulting, Hanging, CudaFailing)
for _cls in PLANTED:
    register(_cls)
