"""ReSFU (Zhou et al., "A Refreshed Similarity-based Upsampler for Direct High-Ratio Feature Upsampling",
arXiv 2407.02283), at x2, as in zmhhmz/ReSFU's ``demo/resfu.py`` (the December 2024 version, whose
``PCDC_Block.forward(k, q)`` the mmsegmentation copy also has).

Every output pixel of the 2H x 2W guide y gets a K x K kernel over the low-resolution x:

* embedding: x and y group-normalised (32 groups, or one per channel below 32 channels), a query
  q = 1x1 conv of y (C_g -> d) and a key k = 1x1 conv of x (C -> d), the key bilinearly upsampled to
  2H x 2W;
* query refinement: q smoothed by a fixed 3 x 3 Gaussian (sigma 1, replicate border), and q filtered by a
  guided filter with the upsampled key as input (radius 8 at scale 2: run at H x W on nearest-downsampled
  maps with 9-wide box filters, its coefficients bilinearly upsampled and applied to q);
* semantic and detail scores: two paired central difference convolution (PCDC) blocks, each
  GroupNorm(8) of both of its maps (one shared affine), a K x K grouped conv (groups 4, d -> 128) of the
  first at dilation 2 (replicate border) minus the conv of the second with that kernel's spatial sums,
  plus a bias, then ReLU, a grouped 1x1 conv (128 -> 128), ReLU, GroupNorm(8), a 1x1 conv to K^2;
  semantic: first the upsampled key, second the guided-filtered query; detail: first the smoothed query,
  second the query;
* assembly: the two scores summed, taps outside the map pushed to -1e7, softmax over the K^2 taps; the
  output pixel is the weighted sum of x sampled bilinearly at its own sub-pixel position shifted by whole
  low-resolution pixels (the released FNS attention, a CUDA kernel).

That sampling is x bilinearly upsampled to 2H x 2W (align_corners=False) read at the pixel's K x K window
of dilation 2, with a replicate border: the released kernel clamps the low-resolution position, which
reads what the upsampled map's edge row holds; those taps fall outside the map, and the mask gives them a
weight of exactly 0, so the border value never reaches the output. Here it is computed that way, one tap at a
time. The released ``lr_mult`` gradient hooks (1 by default) are left out; they scale no forward value.

``impl="compiled"`` runs that window sum as the compiled ``reflect_assembly``: a dilation-2 window on the
2H x 2W map stays within one of its four pixel phases (rows and columns of one parity), where it is a
dilation-1 window on an H x W map. The four phases go through one call, stacked along the batch. That op's
border is the mirror image, not the replicate one, and it reaches the same masked taps only: outputs,
gradients and counts are the reference's. Maps the mirror cannot pad (H or W at most K // 2) take the
reference taps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from upbench import kernels
from upbench.base import MAX_D, MAX_K, Knob, Upsampler, sizes
from upbench.formulas import Cost, Dims, paper_is_exact
from upbench.registry import register

from .assembly import window_sum

# The released constants (ReSFU's defaults, which its configs keep).
NORM_GROUPS = 32  # GroupNorm of x and y
SCORE_NORM_GROUPS = 8  # GroupNorm inside the PCDC blocks
SCORE_CHANNELS = 128  # PCDC's mid_channels
SCORE_GROUPS = 4
SCALE = 2  # the operator's upsampling ratio, which is also the PCDC dilation
GUIDED_FILTER_RADIUS = 8 // SCALE  # radius 8 at gf_scale 2
GUIDED_FILTER_EPS = 1e-3
OUTSIDE = -1e7  # the score of a tap outside the map, before the softmax
# the guided filter's box filters: N, mean_I, mean_p, mean_Ip, mean_II, mean_a, mean_b, each a horizontal and
# a vertical pass of 2 * radius + 1 taps
BOX_FILTERS = 7
BOX_TAPS = 2 * (2 * GUIDED_FILTER_RADIUS + 1)
# its products of two maps at H x W: I*p, I*I, mean_I*mean_p, mean_I*mean_I, a*mean_I (and mean_a*I0 at 2H x 2W)
LOW_RES_PRODUCTS = 5


def norm_groups(channels: int) -> int:
    """The released GroupNorm of x and y: 32 groups, or one per channel below 32 channels."""
    return NORM_GROUPS if channels >= NORM_GROUPS else channels


def _embedding_cost(s: Dims) -> Cost:
    # both GroupNorms' affine params; q at 4 pixels per low-res pixel, k at 1, both with bias
    norms = Cost(macs=0, params=2 * s.C + 2 * s.Cg)
    query = Cost(macs=4 * s.pixels * s.Cg * s.d, params=s.Cg * s.d + s.d)
    key = Cost(macs=s.pixels * s.C * s.d, params=s.C * s.d + s.d)
    return norms + query + key


def _query_refinement_cost(s: Dims) -> Cost:
    # the 3 x 3 depthwise Gaussian at 2H x 2W; the guided filter's box filters and products at H x W, then its
    # coefficient times q at 2H x 2W. Fixed filters: no params.
    smoothing = 4 * s.pixels * s.d * 9
    guided_filter = s.pixels * s.d * (BOX_FILTERS * BOX_TAPS + LOW_RES_PRODUCTS) + 4 * s.pixels * s.d
    return Cost(macs=smoothing + guided_filter, params=0)


def _pcdc_cost(s: Dims) -> Cost:
    """One PCDC block at 2H x 2W: the dilated K x K grouped conv and its centre-sum conv, the grouped 1x1 and the
    1x1 to K^2; params: the shared GroupNorm(8) of d, the conv's weight and bias, the compressor's two convs and
    its GroupNorm(8) of 128."""
    M, per_group, taps = SCORE_CHANNELS, s.d // SCORE_GROUPS, s.K**2
    macs = 4 * s.pixels * (M * per_group * taps + M * per_group + M * (M // SCORE_GROUPS) + M * taps)
    params = 2 * s.d + (M * per_group * taps + M) + (M * (M // SCORE_GROUPS) + M) + 2 * M + (M * taps + taps)
    return Cost(macs=macs, params=params)


# ReSFU's paper prints no per-stage formula: paper = exact. Normalisation, interpolation, the softmax and the
# guided filter's divisions count zero under the paper policy.
FORMULAS = paper_is_exact({
    "embedding": _embedding_cost,
    "query_refinement": _query_refinement_cost,
    "semantic_scores": _pcdc_cost,
    "detail_scores": _pcdc_cost,
    # every output element (N, C, 2H, 2W) a K^2-term weighted sum of bilinear samples
    "feature_assembly": lambda s: Cost(macs=4 * s.pixels * s.K**2 * s.C, params=0),
})


def gaussian_kernel(size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """The released smoothing kernel, (size, size), summing to 1, in the default dtype as released."""
    offsets = torch.arange(-size // 2 + 1.0, size // 2 + 1.0)
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernel = torch.exp(-squared / (2 * sigma**2))
    return kernel / kernel.sum()


class GuidedFilter(nn.Module):
    """He et al.'s guided filter of p by I, run at half resolution (nearest-downsampled inputs, its mean
    coefficients bilinearly upsampled and applied to the full-resolution I), as ReSFU releases it."""

    def __init__(self, channels: int):
        super().__init__()
        width = 2 * GUIDED_FILTER_RADIUS + 1
        self.register_buffer("box", torch.ones(channels, 1, 1, width), persistent=False)

    def box_filter(self, t: torch.Tensor) -> torch.Tensor:
        """Sums over the (2r+1) x (2r+1) window, zero outside the map: a horizontal then a vertical pass."""
        t = F.conv2d(t, self.box, padding=(0, GUIDED_FILTER_RADIUS), groups=t.shape[1])
        return F.conv2d(t, self.box.transpose(2, 3), padding=(GUIDED_FILTER_RADIUS, 0), groups=t.shape[1])

    def forward(self, guide: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        full = guide
        guide = F.interpolate(guide, scale_factor=1.0 / SCALE, mode="nearest")
        source = F.interpolate(source, scale_factor=1.0 / SCALE, mode="nearest")
        counts = self.box_filter(torch.ones_like(guide))
        mean_guide = self.box_filter(guide) / counts
        mean_source = self.box_filter(source) / counts
        covariance = self.box_filter(guide * source) / counts - mean_guide * mean_source
        variance = self.box_filter(guide * guide) / counts - mean_guide * mean_guide
        a = covariance / (variance + GUIDED_FILTER_EPS)
        b = mean_source - a * mean_guide
        mean_a = F.interpolate(self.box_filter(a) / counts, size=full.shape[-2:], mode="bilinear")
        mean_b = F.interpolate(self.box_filter(b) / counts, size=full.shape[-2:], mode="bilinear")
        return mean_a * full + mean_b


class QueryRefinement(nn.Module):
    """Stage: query (N, d, 2H, 2W) and upsampled key -> (Gaussian-smoothed query, guided-filtered query)."""

    def __init__(self, embedding_channels: int):
        super().__init__()
        smoothing = gaussian_kernel()[None, None].repeat(embedding_channels, 1, 1, 1)
        self.register_buffer("smoothing", smoothing, persistent=False)
        self.guided_filter = GuidedFilter(embedding_channels)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        smoothed = F.conv2d(F.pad(query, (1, 1, 1, 1), mode="replicate"), self.smoothing, groups=query.shape[1])
        return smoothed, self.guided_filter(query, key)


class Embedding(nn.Module):
    """Stage: x (N, C, H, W) and guide (N, C_g, 2H, 2W) -> query (N, d, 2H, 2W), key upsampled to 2H x 2W."""

    def __init__(self, channels: int, guide_channels: int, embedding_channels: int):
        super().__init__()
        self.norm_x = nn.GroupNorm(norm_groups(channels), channels)
        self.norm_guide = nn.GroupNorm(norm_groups(guide_channels), guide_channels)
        self.query = nn.Conv2d(guide_channels, embedding_channels, 1)
        self.key = nn.Conv2d(channels, embedding_channels, 1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        query = self.query(self.norm_guide(guide))
        key = F.interpolate(self.key(self.norm_x(x)), size=query.shape[-2:], mode="bilinear")
        return query, key


class PairedCentralDifference(nn.Module):
    """Stage (ReSFU's PCDC block): scores (N, K^2, 2H, 2W) of a pair of (N, d, 2H, 2W) maps: the dilated K x K
    grouped conv of the first minus what that conv gives at the centre tap alone on the second."""

    def __init__(self, embedding_channels: int, K: int):
        super().__init__()
        self.padding = SCALE * (K - 1) // 2
        self.norm = nn.GroupNorm(SCORE_NORM_GROUPS, embedding_channels)
        per_group = embedding_channels // SCORE_GROUPS
        self.weight = nn.Parameter(torch.empty(SCORE_CHANNELS, per_group, K, K))
        self.bias = nn.Parameter(torch.zeros(1, SCORE_CHANNELS, 1, 1))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.channel_compressor = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(SCORE_CHANNELS, SCORE_CHANNELS, 1, groups=SCORE_GROUPS),
            nn.ReLU(),
            nn.GroupNorm(SCORE_NORM_GROUPS, SCORE_CHANNELS),
            nn.Conv2d(SCORE_CHANNELS, K * K, 1),
        )

    def forward(self, windowed: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        windowed, centre = self.norm(windowed), self.norm(centre)
        windowed = F.pad(windowed, [self.padding] * 4, mode="replicate")
        around = F.conv2d(windowed, self.weight, dilation=SCALE, groups=SCORE_GROUPS)
        centre_kernel = self.weight.sum(dim=(-2, -1), keepdim=True)
        at_centre = F.conv2d(centre, centre_kernel, groups=SCORE_GROUPS)
        return self.channel_compressor(around - at_centre + self.bias)


def outside_taps(K: int, height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, K^2, height, width): -1e7 where tap (i, j) of a pixel's dilation-2 window, at (y + 2(i - r),
    x + 2(j - r)), falls outside the map, 0 elsewhere."""
    span = SCALE * (K // 2)
    steps = torch.arange(-span, span + 1, SCALE, device=device)

    def inside(size: int) -> torch.Tensor:  # (K, size): whether tap i of position p lands in [0, size)
        positions = torch.arange(size, device=device)[None, :] + steps[:, None]
        return (positions >= 0) & (positions < size)

    both = inside(height)[:, None, :, None] & inside(width)[None, :, None, :]  # (K, K, height, width)
    return torch.where(both, 0.0, OUTSIDE).to(dtype).reshape(1, K * K, height, width)


def to_phases(t: torch.Tensor) -> torch.Tensor:
    """(N, C, 2h, 2w) -> (4N, C, h, w): batch block 2p + q holds the pixels (2y + p, 2x + q)."""
    n, c, height, width = t.shape
    phases = t.reshape(n, c, height // SCALE, SCALE, width // SCALE, SCALE).permute(3, 5, 0, 1, 2, 4)
    return phases.reshape(SCALE * SCALE * n, c, height // SCALE, width // SCALE)


def from_phases(t: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_phases`."""
    n, c, h, w = t.shape[0] // (SCALE * SCALE), *t.shape[1:]
    interleaved = t.reshape(SCALE, SCALE, n, c, h, w).permute(2, 3, 4, 0, 5, 1)
    return interleaved.reshape(n, c, SCALE * h, SCALE * w)


class FineGrainedAssembly(nn.Module):
    """Stage: semantic and detail scores (N, K^2, 2H, 2W) and x (N, C, H, W) -> (N, C, 2H, 2W): their sum
    softmaxed over the taps inside the map, then each output pixel the weighted sum of x's bilinear samples at
    its K x K window (ReSFU's FNS attention)."""

    def __init__(self, K: int, impl: str):
        super().__init__()
        self.K = K
        self.impl = impl

    def forward(self, semantic: torch.Tensor, detail: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        scores = semantic + detail
        height, width = scores.shape[-2:]
        attention = F.softmax(scores + outside_taps(self.K, height, width, scores.dtype, scores.device), dim=1)
        upsampled = F.interpolate(x, size=(height, width), mode="bilinear")
        if self.impl == "compiled" and min(x.shape[-2:]) > self.K // 2:
            return from_phases(kernels.reflect_assembly(to_phases(attention), to_phases(upsampled), self.K))
        return window_sum(attention, upsampled, self.K, "replicate", dilation=SCALE)

    def extra_repr(self) -> str:
        return f"K={self.K}, impl={self.impl}"


def _init_convolutions(module: nn.Module) -> None:
    """The released initialisation of every nn.Conv2d (PCDC's own weight keeps its Kaiming init)."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@register
class ReSFU(Upsampler):
    name = "resfu"
    needs_guide = True
    knobs = {"K": Knob(3, "odd", max=MAX_K), "d": Knob(32, max=MAX_D)}
    stages = ("embedding", "query_refinement", "semantic_scores", "detail_scores", "feature_assembly")
    formulas = FORMULAS
    compiled_ops = True

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        K, d = self.hparams["K"], self.hparams["d"]
        for what, width in (("channels", channels), ("guide_channels", self.guide_channels)):
            if width > NORM_GROUPS and width % NORM_GROUPS:
                raise ValueError(f"{self.name}: {what}={width}; expected a multiple of {NORM_GROUPS} or at most "
                                 f"{NORM_GROUPS} (ReSFU group-normalises x and the guide in {NORM_GROUPS} groups, "
                                 f"one per channel below {NORM_GROUPS})")
        if d % SCORE_NORM_GROUPS:
            raise ValueError(f"{self.name}: d={d}; expected a multiple of {SCORE_NORM_GROUPS} (the score blocks "
                             f"group-normalise the d embedding channels in {SCORE_NORM_GROUPS} groups and convolve "
                             f"them in {SCORE_GROUPS})")
        self.embedding = Embedding(channels, self.guide_channels, d)
        self.query_refinement = QueryRefinement(d)
        self.semantic_scores = PairedCentralDifference(d, K)
        self.detail_scores = PairedCentralDifference(d, K)
        self.feature_assembly = FineGrainedAssembly(K, self.impl)
        self.apply(_init_convolutions)

    def check_inputs(self, x: torch.Tensor, guide: torch.Tensor | None) -> None:
        super().check_inputs(x, guide)
        n, _, h, w = sizes(x)
        if n * h * w == 1 and self.channels <= NORM_GROUPS:
            # one channel per group, one pixel, one sample: torch's GroupNorm refuses a single value to normalise
            raise ValueError(f"{self.name}: x of shape {sizes(x)} leaves GroupNorm one value per group (at most "
                             f"{NORM_GROUPS} channels are normalised one per group), which torch refuses; expected "
                             f"a batch or a map of more than one pixel")

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        query, key = self.embedding(x, guide)
        smoothed, filtered = self.query_refinement(query, key)
        return self.feature_assembly(self.semantic_scores(key, filtered), self.detail_scores(smoothed, query), x)
