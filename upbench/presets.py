"""Decoder presets: where real models upsample by x2, as data.

A preset lists a model's x2 upsampling stages: which feature each stage upsamples (its input
stride), and which feature a guided operator gets as its guide (the one at the stage's output
stride). The network-level report (:mod:`upbench.network`) swaps one operator into every stage and
prices the swap against the model's own upsampler.

Sizes. Every preset model pads its input up to a multiple of its coarsest feature stride
(``size_divisor``) before the backbone: mmdetection's ``size_divisor=32`` for Faster R-CNN,
Swin's patch and window padding in MaskFormer and Mask2Former, and for SegFormer the strided
patch-embedding convolutions round up (ceil) at every stride, which equals padding to a multiple of
32 whenever the chain of x2 stages is to meet its guides exactly. So a stage with input stride s
works on ``ceil(H / size_divisor) * size_divisor / s`` rows (likewise columns): 512 / 32 = 16
exactly; 1333 -> 1344 -> 42 at stride 32.

Channels. In all four models the upsampling stages run at the decoder width C (SegFormer's MLP head
projects every encoder feature to C first; the FPNs' lateral convs do the same), and the feature at
the output stride that serves as guide has C channels too. A stage's ``guide_channels`` of ``None``
records exactly that, so ``--channels`` moves decoder and guide widths together.

The paper's "Params" column for the baseline rows (the whole model) cannot be derived from the
upsampling stages and is not modelled here.
"""
from __future__ import annotations

from dataclasses import dataclass

from .checks import is_whole


@dataclass(frozen=True)
class Stage:
    """One x2 upsampling stage: the feature at ``input_stride`` goes to ``input_stride // 2``."""

    input_stride: int
    source: str  # the feature being upsampled, in the model's own terms
    guide: str  # the feature at the output stride that guided operators read
    guide_channels: int | None = None  # None: the guide has the decoder's own width C

    @property
    def output_stride(self) -> int:
        return self.input_stride // 2


@dataclass(frozen=True)
class StageShape:
    """A stage resolved for one input size and width: what one operator instance is built and run for."""

    input_stride: int
    H: int  # input rows; the output and the guide are 2H x 2W
    W: int
    channels: int
    guide_channels: int

    @property
    def pixels(self) -> int:
        return self.H * self.W


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    size: tuple[int, int]  # default input (H, W)
    channels: int  # decoder width C
    baseline: str  # the operator the model ships with
    stages: tuple[Stage, ...]
    size_divisor: int = 32  # the input is padded up to a multiple of this (see the module docstring)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError(f"preset {self.name}: has no stages; expected at least one x2 stage")
        if not is_whole(self.size_divisor, 2):
            raise ValueError(f"preset {self.name}: size_divisor={self.size_divisor!r}; expected an integer >= 2")
        for stage in self.stages:
            stride = stage.input_stride
            if stride < 2 or stride & (stride - 1) or self.size_divisor % stride:
                raise ValueError(
                    f"preset {self.name}: stage input stride {stride}; expected a power of two >= 2 "
                    f"dividing the size divisor {self.size_divisor}"
                )
        check_size(self.size, f"preset {self.name}")
        check_channels(self.channels, f"preset {self.name}")

    def shapes(self, size: tuple[int, int] | None = None, channels: int | None = None) -> tuple[StageShape, ...]:
        """Every stage's input H x W and widths, for ``size`` (default: the preset's) and ``channels``."""
        H, W = check_size(self.size if size is None else size, f"preset {self.name}")
        C = check_channels(self.channels if channels is None else channels, f"preset {self.name}")
        padded_h, padded_w = (-(-side // self.size_divisor) * self.size_divisor for side in (H, W))
        return tuple(
            StageShape(
                input_stride=stage.input_stride,
                H=padded_h // stage.input_stride,
                W=padded_w // stage.input_stride,
                channels=C,
                guide_channels=C if stage.guide_channels is None else stage.guide_channels,
            )
            for stage in self.stages
        )


def check_size(size: object, what: str) -> tuple[int, int]:
    if (
        not isinstance(size, tuple) or len(size) != 2
        or any(not is_whole(v, 1) for v in size)
    ):
        raise ValueError(f"{what}: size={size!r}; expected (H, W), two positive integers")
    return size


def check_channels(channels: object, what: str) -> int:
    if not is_whole(channels, 1):
        raise ValueError(f"{what}: channels={channels!r}; expected a positive integer")
    return channels


# FPN top-down path, 1/32 -> 1/16 -> 1/8 -> 1/4: each upsampled map is added to a lateral feature,
# which is the guide.
FPN_TOP_DOWN = (
    Stage(32, "top-down P5 (1/32)", "lateral of C4 (1/16)"),
    Stage(16, "top-down P4 (1/16)", "lateral of C3 (1/8)"),
    Stage(8, "top-down P3 (1/8)", "lateral of C2 (1/4)"),
)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="segformer-b1",
            description="SegFormer-B1 all-MLP head (ADE20K, 512x512): c4, c3, c2 brought to 1/4 by x2 stages",
            size=(512, 512),
            channels=256,
            baseline="bilinear",
            stages=(
                Stage(32, "c4 (1/32), step 1 of 3", "MLP-projected c3 (1/16)"),
                Stage(16, "c4, step 2 of 3", "MLP-projected c2 (1/8)"),
                Stage(8, "c4, step 3 of 3", "MLP-projected c1 (1/4)"),
                Stage(16, "c3 (1/16), step 1 of 2", "MLP-projected c2 (1/8)"),
                Stage(8, "c3, step 2 of 2", "MLP-projected c1 (1/4)"),
                Stage(8, "c2 (1/8), step 1 of 1", "MLP-projected c1 (1/4)"),
            ),
        ),
        Preset(
            name="maskformer-swinb",
            description="MaskFormer Swin-B FPN pixel decoder (ADE20K, 640x640)",
            size=(640, 640),
            channels=256,
            baseline="nearest",
            stages=FPN_TOP_DOWN,
        ),
        Preset(
            name="mask2former-swinb",
            description="Mask2Former Swin-B pixel decoder (ADE20K, 640x640): its one FPN x2 stage, 1/8 -> 1/4",
            size=(640, 640),
            channels=256,
            baseline="bilinear",
            stages=(Stage(8, "deformable-attention output (1/8)", "lateral of res2 (1/4)"),),
        ),
        Preset(
            name="faster-rcnn-fpn",
            description="Faster R-CNN R50-FPN (mmdetection, COCO test scale 1333x800, an 800x1333 input H x W): "
                        "FPN top-down path",
            size=(800, 1333),
            channels=256,
            baseline="nearest",
            stages=FPN_TOP_DOWN,
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
