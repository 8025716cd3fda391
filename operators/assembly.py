"""The stage modules around the window ops the dynamic upsamplers share. The ops' pure-PyTorch
definitions and their conventions live in upbench.references; each stage picks the compiled op or that
definition by its ``impl``.
"""
from __future__ import annotations

import torch
from torch import nn

from upbench import kernels
from upbench.formulas import per_pixel
from upbench.references import reference_assembly

# The cost of FeatureAssembly, Table 1's row and the exact one alike: every output pixel (4 per low-res
# pixel) of every channel a K x K weighted sum; the weights come from the stage before, so no params.
FEATURE_ASSEMBLY = per_pixel(lambda s: 4 * s.K**2 * s.C, lambda s: 0)


class FeatureAssembly(nn.Module):
    """Stage: reassemble x with per-output K x K kernels (CARAFE, A2U and SAPA all end this way)."""

    def __init__(self, K: int, impl: str):
        super().__init__()
        self.K = K
        self.impl = impl

    def forward(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "compiled":
            return kernels.dynamic_assembly(weights, x, self.K)
        return reference_assembly(weights, x, self.K)

    def extra_repr(self) -> str:
        return f"K={self.K}, impl={self.impl}"
