"""SAPA (Lu et al., NeurIPS 2022): similarity-aware point affiliation, variants I, B and G.

Keys come from the decoder feature x (H x W), queries from the encoder feature y (2H x 2W); each
output pixel softmaxes its query's inner products with the keys of the K x K window around its
low-res parent and reassembles the raw x with those weights. Projections run channels-last
(nn.LayerNorm / nn.Linear normalize and mix the last axis); the window ops take NCHW.

With impl="compiled" the LayerNorm + Linear pairs of the embedding run as one op on NCHW (the
LayerNorm folded into the projection, kernels.norm_linear), and the fused kernel does inner product, softmax and assembly in one op, called
from the ``feature_assembly`` stage; ``op_stages`` gives its similarity part to ``inner_product``, so
per-stage counts are those of the reference path. Above the fused kernel's K cap, the compiled path
runs the separate similarity and assembly ops instead.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from upbench import kernels
from upbench.base import MAX_D, MAX_K, Knob, Upsampler
from upbench.formulas import TOTAL, Cost, Dims, Formula, Formulas, per_pixel
from upbench.references import reference_similarity
from upbench.registry import register

from .assembly import FEATURE_ASSEMBLY, FeatureAssembly

# Table 1's SAPA rows; each variant takes the ones it has.
FEATURE_EMBEDDING = per_pixel(lambda s: 5 * s.C * s.d, lambda s: 2 * s.C * s.d)
GATED_ADDITION = per_pixel(lambda s: s.C + 8 * s.d, lambda s: s.C)
INNER_PRODUCT = per_pixel(lambda s: 4 * s.K**2 * s.d, lambda s: 0)


def _layer_norm_params(s: Dims) -> int:
    return 2 * s.C + 2 * s.Cg


def _linear(s: Dims, fan_in: int) -> int:
    """Params of Linear(fan_in -> d) with bias."""
    return fan_in * s.d + s.d


def _exact(feature_embedding: Formula, **more: Formula) -> dict[str, Formula]:
    """Exact formulas: the variant's embedding (and gate), then the shared similarity and assembly."""
    return {
        "feature_embedding": feature_embedding,
        **more,
        "inner_product": lambda s: Cost(macs=s.pixels * 4 * s.K**2 * s.d, params=0),
        "feature_assembly": FEATURE_ASSEMBLY,
    }


SAPA_I_FORMULAS = Formulas(
    paper={
        "inner_product": INNER_PRODUCT,
        "feature_assembly": FEATURE_ASSEMBLY,
        TOTAL: per_pixel(lambda s: 8 * s.K**2 * s.C, lambda s: 0),
    },
    exact=_exact(lambda s: Cost(macs=0, params=_layer_norm_params(s))),
    why={"feature_embedding": "Table 1 has no embedding row for SAPA-I and counts it parameter-free; "
         "the two LayerNorms carry affine weights and biases (2C + 2C_g params)"},
)

SAPA_B_FORMULAS = Formulas(
    paper={
        "feature_embedding": FEATURE_EMBEDDING,
        "inner_product": INNER_PRODUCT,
        "feature_assembly": FEATURE_ASSEMBLY,
        TOTAL: per_pixel(lambda s: 5 * s.C * s.d + 4 * s.K**2 * s.d + 4 * s.K**2 * s.C, lambda s: 2 * s.C * s.d),
    },
    # keys Linear(C -> d) at H x W, queries Linear(C_g -> d) at 2H x 2W
    exact=_exact(lambda s: Cost(
        macs=s.pixels * (s.C * s.d + 4 * s.Cg * s.d),
        params=_layer_norm_params(s) + _linear(s, s.C) + _linear(s, s.Cg),
    )),
    why={"feature_embedding": "Table 1 assumes C_g = C (5Cd = Cd keys + 4Cd queries) and leaves out the two "
         "projection biases (2d params) and the LayerNorm affines (2C + 2C_g params)"},
)

SAPA_G_FORMULAS = Formulas(
    paper={
        "feature_embedding": FEATURE_EMBEDDING,
        "gated_addition": GATED_ADDITION,
        "inner_product": INNER_PRODUCT,
        "feature_assembly": FEATURE_ASSEMBLY,
        TOTAL: per_pixel(
            lambda s: 5 * s.C * s.d + 4 * s.K**2 * s.d + 4 * s.K**2 * s.C + s.C + 5 * s.d, lambda s: 2 * s.C * s.d + s.C
        ),
    },
    exact=_exact(
        # SAPA-B's two projections plus the released code's third, Linear(C -> d) of nearest-upsampled raw x
        lambda s: Cost(
            macs=s.pixels * (s.C * s.d + 4 * s.Cg * s.d + 4 * s.C * s.d),
            params=_layer_norm_params(s) + 2 * _linear(s, s.C) + _linear(s, s.Cg),
        ),
        # gate Linear(C -> 1) at H x W, then g * q_y and (1 - g) * q_x at 2H x 2W
        gated_addition=lambda s: Cost(macs=s.pixels * (s.C + 8 * s.d), params=s.C + 1),
    ),
    why={
        "feature_embedding": "the released code's third projection, Linear(C -> d) of nearest-upsampled x at "
        "2H x 2W (4Cd MACs, Cd + d params), is not in Table 1; Table 1 also assumes C_g = C (5Cd) and leaves "
        "out the key and query projection biases (2d params) and the LayerNorm affines (2C + 2C_g params)",
        "gated_addition": "Table 1 leaves out the gate's bias (1 param)",
        TOTAL: "Table 1's G total adds C + 5d for gated addition where its own stage (2) row says C + 8d "
        "(3d x HW short), besides the stage differences",
    },
)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1)


def _channels_first(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def _upsample_nearest(t: torch.Tensor) -> torch.Tensor:
    return F.interpolate(t, scale_factor=2, mode="nearest")


# Elements of one band of rows in apply_channelwise: 4 MiB of float32.
BAND_ELEMENTS = 1 << 20


def apply_channelwise(layers: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor) -> torch.Tensor:
    """Per-pixel layers over the channel axis (LayerNorm, Linear) of an NCHW map, returned NCHW.

    The layers need channels last; on the whole 2H x 2W guide that means a channels-last copy and a
    normalised map as large as the guide, for a d-channel result. A band of rows at a time computes
    the same numbers (the layers are per-pixel) with those two copies a band large.
    """
    n, c, h, w = t.shape
    rows = max(1, BAND_ELEMENTS // (n * c * w))
    bands = [_channels_first(layers(_channels_last(band))) for band in t.split(rows, dim=2)]
    return bands[0] if len(bands) == 1 else torch.cat(bands, dim=2)


class InnerProductEmbedding(nn.Module):
    """Stage (SAPA-I): q = LN(y), k = LN(x), no projection (so d = C)."""

    def __init__(self, channels: int, guide_channels: int):
        super().__init__()
        self.norm_x = nn.LayerNorm(channels)
        self.norm_guide = nn.LayerNorm(guide_channels)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return apply_channelwise(self.norm_guide, guide), apply_channelwise(self.norm_x, x)


class BilinearEmbedding(nn.Module):
    """Stage (SAPA-B): q = Linear(C_g -> d)(LN(y)), k = Linear(C -> d)(LN(x)).

    ``folded`` (the compiled path) runs each LN + Linear pair as one op on the NCHW map with the LN
    folded into the projection (kernels.norm_linear); the parameters and the counts are the same.
    """

    def __init__(self, channels: int, guide_channels: int, d: int, folded: bool = False):
        super().__init__()
        self.folded = folded
        self.norm_x = nn.LayerNorm(channels)
        self.norm_guide = nn.LayerNorm(guide_channels)
        self.key_projection = nn.Linear(channels, d)
        self.query_projection = nn.Linear(guide_channels, d)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.guide_query(guide), self.norm_project(x, self.norm_x, self.key_projection)

    def guide_query(self, guide: torch.Tensor) -> torch.Tensor:
        return self.norm_project(guide, self.norm_guide, self.query_projection)

    def norm_project(self, t: torch.Tensor, norm: nn.LayerNorm, projection: nn.Linear) -> torch.Tensor:
        if self.folded:
            return kernels.norm_linear(t, norm.weight, norm.bias, projection.weight, projection.bias, norm.eps)
        return apply_channelwise(lambda band: projection(norm(band)), t)

    def extra_repr(self) -> str:
        return "folded=True" if self.folded else ""


class GatedEmbedding(BilinearEmbedding):
    """Stage (SAPA-G): SAPA-B's query and key, plus a second query from x, and LN(x) for the gate."""

    def __init__(self, channels: int, guide_channels: int, d: int, folded: bool = False):
        super().__init__(channels, guide_channels, d, folded)
        self.x_query_projection = nn.Linear(channels, d)

    def forward(
        self, x: torch.Tensor, guide: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        normed_x = self.norm_x(_channels_last(x))
        # the released code projects the raw x after upsampling it, not LN(x)
        x_query = apply_channelwise(self.x_query_projection, _upsample_nearest(x))
        key = _channels_first(self.key_projection(normed_x))
        return self.guide_query(guide), x_query, key, normed_x


class GatedAddition(nn.Module):
    """Stage (SAPA-G): q = g * q_y + (1 - g) * q_x, g = nearest_upsample(sigmoid(Linear(C -> 1)(LN(x))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Linear(channels, 1)

    def forward(
        self, guide_query: torch.Tensor, x_query: torch.Tensor, normed_x: torch.Tensor
    ) -> torch.Tensor:
        gate = _upsample_nearest(torch.sigmoid(_channels_first(self.gate(normed_x))))
        return gate * guide_query + (1 - gate) * x_query


class SimilarityKernels(nn.Module):
    """Stage: logits <q, k> over the K x K window of each low-res parent, softmax over the K^2 logits."""

    def __init__(self, K: int, impl: str):
        super().__init__()
        self.K = K
        self.impl = impl

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        similarity = kernels.local_similarity if self.impl == "compiled" else reference_similarity
        return F.softmax(similarity(query, key, self.K), dim=1)

    def extra_repr(self) -> str:
        return f"K={self.K}, impl={self.impl}"


class FusedSimilarityAssembly(nn.Module):
    """Stage (compiled path): inner product, softmax and assembly of the raw x in one kernel."""

    def __init__(self, K: int):
        super().__init__()
        self.K = K

    def forward(self, query: torch.Tensor, key: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return kernels.sapa_fused(query, key, x, self.K)

    def extra_repr(self) -> str:
        return f"K={self.K}"


class _SAPA(Upsampler):
    needs_guide = True
    knobs = {"K": Knob(5, "odd", max=MAX_K), "d": Knob(32, max=MAX_D)}
    stages = ("feature_embedding", "inner_product", "feature_assembly")
    # the fused kernel runs in feature_assembly; the similarity part of its count is inner_product's work
    op_stages = {"local_similarity": "inner_product", "dynamic_assembly": "feature_assembly"}
    compiled_ops = True

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        K = self.hparams["K"]
        self.fused = self.impl == "compiled" and K <= kernels.FUSED_MAX_K
        self.feature_embedding = self.make_embedding()
        self.inner_product = SimilarityKernels(K, self.impl)
        self.feature_assembly = FusedSimilarityAssembly(K) if self.fused else FeatureAssembly(K, self.impl)

    def make_embedding(self) -> nn.Module:
        raise NotImplementedError

    def query_and_key(self, x: torch.Tensor, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.feature_embedding(x, guide)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        query, key = self.query_and_key(x, guide)
        if self.fused:  # inner_product does not run; op_stages gives it its share of the count
            return self.feature_assembly(query, key, x)
        return self.feature_assembly(self.inner_product(query, key), x)


@register
class SAPAI(_SAPA):
    name = "sapa-i"
    guide_must_match = True
    knobs = {"K": Knob(5, "odd", max=MAX_K)}
    formulas = SAPA_I_FORMULAS

    def make_embedding(self) -> nn.Module:
        return InnerProductEmbedding(self.channels, self.guide_channels)

    def dims(self, N: int, H: int, W: int) -> Dims:
        # no projection: the embedding width is the channel count (Table 1's "d = C")
        return dataclasses.replace(super().dims(N, H, W), d=self.channels)


@register
class SAPAB(_SAPA):
    name = "sapa-b"
    formulas = SAPA_B_FORMULAS
    forward_share_goal = 0.25

    def make_embedding(self) -> nn.Module:
        return BilinearEmbedding(self.channels, self.guide_channels, self.hparams["d"], folded=self.impl == "compiled")


@register
class SAPAG(_SAPA):
    name = "sapa-g"
    stages = ("feature_embedding", "gated_addition", "inner_product", "feature_assembly")
    formulas = SAPA_G_FORMULAS

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        self.gated_addition = GatedAddition(channels)

    def make_embedding(self) -> nn.Module:
        return GatedEmbedding(self.channels, self.guide_channels, self.hparams["d"], folded=self.impl == "compiled")

    def query_and_key(self, x: torch.Tensor, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        guide_query, x_query, key, normed_x = self.feature_embedding(x, guide)
        return self.gated_addition(guide_query, x_query, normed_x), key
