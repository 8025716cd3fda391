"""FADE (Lu et al., ECCV 2022 / IJCV 2024), as in poppinace/fade's FADE_L2H.py: encoder-and-decoder kernels.

Kernel generation ("semi-shift"): both features are compressed to d channels by 1x1 convs (the encoder
one with a bias, the decoder one without) and go through ONE shared ke x ke content encoder
(d -> K^2): on the encoder feature at 2H x 2W, on the decoder feature at H x W then nearest-upsampled;
the two are summed and softmax-normalised over K^2. The released FADE_H2L.py computes the same sum as
four stride-2 convs of shifted copies; FADE_L2H.py writes it as here. The content encoder's bias is
added by both branches, as released.

Reassembly: CARAFE's, of the decoder feature x with those kernels. Gated addition: a 1x1 conv of x
(C -> 1), nearest-upsampled, sigmoid -> gate; out = gate * guide + (1 - gate) * reassembled. So the guide
must have the decoder's width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from upbench.base import MAX_D, MAX_ENCODER_KERNEL, MAX_K, Knob, Upsampler
from upbench.formulas import Cost, paper_is_exact
from upbench.registry import register

from .assembly import FEATURE_ASSEMBLY, FeatureAssembly

# FADE's papers print network totals, not per-stage formulas: paper = exact. Their SegFormer-B1 cost
# (+2.65 GFLOPs, +0.29 M params) is what the network report gives on the segformer-b1 preset.
FORMULAS = paper_is_exact({
    # per low-res pixel: the guide compressor at 4 pixels, the decoder compressor, the content encoder at
    # 4 + 1 pixels; params: compressors (guide side with bias), the shared encoder with its bias
    "kernel_generation": lambda s: Cost(
        macs=s.pixels * (4 * s.Cg * s.d + s.C * s.d + 5 * s.ke**2 * s.d * s.K**2),
        params=(s.Cg * s.d + s.d) + s.C * s.d + (s.ke**2 * s.d * s.K**2 + s.K**2),
    ),
    "feature_assembly": FEATURE_ASSEMBLY,
    # the gate conv C -> 1 at H x W, then gate * guide and (1 - gate) * reassembled at 2H x 2W
    "gated_addition": lambda s: Cost(macs=s.pixels * (s.C + 2 * 4 * s.C), params=s.C + 1),
})


def _xavier_uniform_zero_bias(conv: nn.Conv2d) -> None:
    """The released initialisation (mmcv ``xavier_init(distribution='uniform')``)."""
    nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class SemiShiftKernels(nn.Module):
    """Stage: decoder x (N, C, H, W) and guide (N, C_g, 2H, 2W) -> kernels (N, K*K, 2H, 2W), softmax over K*K."""

    def __init__(self, channels: int, guide_channels: int, K: int, d: int, encoder_kernel: int):
        super().__init__()
        self.guide_compressor = nn.Conv2d(guide_channels, d, 1)
        self.decoder_compressor = nn.Conv2d(channels, d, 1, bias=False)
        self.content_encoder = nn.Conv2d(d, K * K, encoder_kernel, padding=encoder_kernel // 2)
        for conv in (self.guide_compressor, self.decoder_compressor, self.content_encoder):
            _xavier_uniform_zero_bias(conv)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        from_guide = self.content_encoder(self.guide_compressor(guide))
        from_decoder = self.content_encoder(self.decoder_compressor(x))
        logits = from_guide + F.interpolate(from_decoder, scale_factor=2, mode="nearest")
        return F.softmax(logits, dim=1)


class GatedAddition(nn.Module):
    """Stage: mix the guide and the reassembled decoder feature with a per-pixel gate predicted from x."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Conv2d(channels, 1, 1)
        _xavier_uniform_zero_bias(self.gate)

    def forward(self, x: torch.Tensor, guide: torch.Tensor, reassembled: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(F.interpolate(self.gate(x), scale_factor=2, mode="nearest"))
        return gate * guide + (1 - gate) * reassembled


@register
class FADE(Upsampler):
    name = "fade"
    needs_guide = True
    guide_must_match = True
    knobs = {"K": Knob(5, "odd", max=MAX_K), "d": Knob(64, max=MAX_D),
             "encoder_kernel": Knob(3, "odd", dims_field="ke", max=MAX_ENCODER_KERNEL)}
    stages = ("kernel_generation", "feature_assembly", "gated_addition")
    formulas = FORMULAS
    compiled_ops = True

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        hp = self.hparams
        self.kernel_generation = SemiShiftKernels(channels, self.guide_channels, hp["K"], hp["d"], hp["encoder_kernel"])
        self.feature_assembly = FeatureAssembly(hp["K"], self.impl)
        self.gated_addition = GatedAddition(channels)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        reassembled = self.feature_assembly(self.kernel_generation(x, guide), x)
        return self.gated_addition(x, guide, reassembled)
