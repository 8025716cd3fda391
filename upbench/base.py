"""The one interface every upsampler implements."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import torch
from torch import nn

from .checks import is_whole
from .formulas import DIMS_FIELDS, NO_FORMULAS, SHAPE_FIELDS, TOTAL, Dims, Formulas
from .rules import COMPILED_OP_PARTS

IMPLS = ("reference", "compiled")
IMPL_CHOICES = ("auto", *IMPLS)  # auto: compiled where the operator has compiled ops and they built

# Largest knob values, shared by the operators. A 63 x 63 window already covers the whole low-resolution
# map at every size the paper benchmarks, and keeps every window size and kernel index far inside int64;
# 4096 embedding channels and 32 x 32 encoder filters are past any published configuration.
MAX_K = 63
MAX_D = 4096
MAX_ENCODER_KERNEL = 32
# A plugin's knob that states no bound of its own still has one: no knob is unbounded.
MAX_KNOB = 1 << 16


# The parts a multi-part compiled op is counted in (upbench.rules): what ``op_stages`` may name.
OP_PARTS = tuple(dict.fromkeys(part for parts in COMPILED_OP_PARTS.values() for part in parts))


def check_op_stages(owner: str, op_stages: object, stages: tuple[str, ...]) -> None:
    """ValueError, naming ``owner``, for an ``op_stages`` that is not a mapping of a compiled op's part to one of
    ``stages``: a part no op has would never move, and a stage the module lacks has no count to move into."""
    if not isinstance(op_stages, Mapping):
        raise ValueError(f"{owner}: op_stages is {type(op_stages).__name__}; expected a mapping of op part to stage")
    for part, stage in op_stages.items():
        if part not in OP_PARTS:
            raise ValueError(f"{owner}: op_stages names the op part {part!r}, which no compiled op has; "
                             f"expected one of {', '.join(OP_PARTS)}")
        if stage not in stages:
            raise ValueError(f"{owner}: op_stages gives {part!r} to stage {stage!r}, which is not among its stages; "
                             f"expected one of {', '.join(stages) or 'none (it declares no stages)'}")


def sizes(tensor: torch.Tensor) -> tuple[int, ...]:
    """A tensor's shape as ints: while counting traces the module, sizes are tensors that print as tensor(4)."""
    return tuple(int(size) for size in tensor.shape)


def _describe(value: object) -> str:
    return f"shape {sizes(value)}" if isinstance(value, torch.Tensor) else type(value).__name__


def output_problem(x: torch.Tensor, out: object) -> str | None:
    """What makes ``out`` no x2 upsampling of ``x`` ('<what it is>; expected <what it should be>'), or None.
    Checked on every forward: an operator that forgot to upsample, or cast its result to another dtype, would
    otherwise be counted, timed and reported as if it were one."""
    n, c, h, w = x.shape
    if isinstance(out, torch.Tensor) and out.dtype == x.dtype and out.shape == (n, c, 2 * h, 2 * w):
        return None  # the timed path: a microsecond, as check_inputs
    # under autocast an operator's convolutions return its lower precision and its float32 ops (softmax,
    # grid_sample) float32, and so may the operator, whatever x's dtype
    autocast = _autocast_dtype(x.device.type)
    in_autocast = (autocast, torch.float32) if autocast else ()
    if isinstance(out, torch.Tensor) and out.dtype in in_autocast and out.shape == (n, c, 2 * h, 2 * w):
        return None
    n, c, h, w = sizes(x)  # ints for the message, also while counting traces the module
    expected = (n, c, 2 * h, 2 * w)
    if not isinstance(out, torch.Tensor):
        return f"{type(out).__name__}; expected a tensor of shape {expected}"
    if sizes(out) != expected:
        return f"{sizes(out)}; expected x2 upsampled {expected}"
    also = "".join(f", or {dtype}" for dtype in dict.fromkeys(in_autocast) if dtype != x.dtype)
    return f"dtype {out.dtype}; expected {x.dtype}, the dtype of x{also + ' under autocast' if also else ''}"


KNOB_RULES = ("positive", "odd", "even", "flag")
# What make() and every Upsampler take besides the knobs: a knob of one of these names could never be set.
RESERVED_KNOBS = frozenset({"channels", "guide_channels", "impl"})


@dataclass(frozen=True)
class Knob:
    """A hyperparameter: its paper default, the rule its values obey and its largest sensible value."""

    default: int
    rule: str = "positive"  # "positive", "odd" (positive odd), "even" (positive even) or "flag" (0 or 1)
    dims_field: str = ""  # which Dims field it fills (defaults to the knob's own name)
    # Never unbounded: an unbounded knob let K = 2**63 - 1 reach the kernels, whose K*K overflows.
    max: int = field(default=MAX_KNOB, kw_only=True)

    def check(self, operator: str, name: str, value: object) -> int:
        if not is_whole(value):
            raise ValueError(f"{operator}: {name}={value!r} is not an integer; expected a {self.describe()}")
        if self.rule == "flag":  # an on/off architecture switch, kept an integer so sweeps and CSV columns stay ints
            bad = value not in (0, 1)
        else:
            bad = value < 1 or (self.rule == "odd" and value % 2 == 0) or (self.rule == "even" and value % 2 == 1)
        if bad or value > self.max:
            raise ValueError(f"{operator}: {name}={value} is invalid; expected a {self.describe()}")
        return value

    def describe(self) -> str:
        if self.rule == "flag":
            return "0 or 1 integer"
        kind = {"positive": "positive", "odd": "positive odd", "even": "positive even"}[self.rule]
        return f"{kind} integer <= {self.max}"


def _dims(knobs: Mapping[str, "Knob"], hparams: Mapping[str, int], N: int, C: int, H: int, W: int, Cg: int) -> Dims:
    """The formula inputs of an operator with ``knobs`` at the values ``hparams``: each knob in the field it fills."""
    named = {knob.dims_field or name: hparams[name] for name, knob in knobs.items()}
    fields = {name: value for name, value in named.items() if name in DIMS_FIELDS}
    extra = tuple((name, value) for name, value in named.items() if name not in DIMS_FIELDS)
    return Dims(N=N, C=C, H=H, W=W, Cg=Cg, extra=extra, **fields)


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type``; never for one autocast does not know (meta), which torch's own
    query raises on."""
    available = getattr(torch.amp, "is_autocast_available", None)  # torch >= 2.5
    try:
        return (available is None or available(device_type)) and torch.is_autocast_enabled(device_type)
    except RuntimeError:  # torch 2.4 on a device type autocast does not know
        return False


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on ``device_type``, where it is on."""
    return torch.get_autocast_dtype(device_type) if _autocast_on(device_type) else None


class Upsampler(nn.Module):
    """x2 feature upsampler: ``forward(x, guide=None)``, x (N, C, H, W) -> (N, C, 2H, 2W).

    Subclasses declare, as class attributes:

    * ``name``: the registry name.
    * ``needs_guide``: whether ``guide``, the (N, C_g, 2H, 2W) encoder feature, is required.
    * ``guide_must_match``: whether C_g must equal C.
    * ``knobs``: hyperparameters with their paper defaults and rules.
    * ``stages``: names of child modules, in execution order; every op of the forward runs inside
      one of them, so counts can be attributed per stage without naming the operator.
    * ``op_stages``: which stage each part of a multi-part compiled op counts in, wherever the op runs
      (``{"local_similarity": "inner_product"}``: a fused kernel called from one stage that does another
      stage's work); parts are those of :data:`upbench.rules.COMPILED_OP_PARTS`.
    * ``formulas``: the Table 1 and exact cost formulas, keyed by stage.
    * ``compiled_ops``: whether an ``impl="compiled"`` path exists.
    * ``forward_share_goal``: for an operator with compiled ops, the share of this machine's float32 matmul
      GFLOP/s its compiled forward should reach (``bench.py roofline`` checks it); None sets no goal.

    and implement ``upsample(x, guide)``.
    """

    name: ClassVar[str] = ""
    needs_guide: ClassVar[bool] = False
    guide_must_match: ClassVar[bool] = False
    knobs: ClassVar[Mapping[str, Knob]] = {}
    stages: ClassVar[tuple[str, ...]] = ()
    op_stages: ClassVar[Mapping[str, str]] = {}
    formulas: ClassVar[Formulas] = NO_FORMULAS
    compiled_ops: ClassVar[bool] = False
    forward_share_goal: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # each operator's own copy of its formulas, so an error in one names it, also where one class
        # inherits another's formulas under a new name
        if isinstance(cls.formulas, Formulas):
            cls.formulas = cls.formulas.named(cls.name)

    @classmethod
    def reads_any_guide(cls) -> bool:
        """Whether the guide may have another width than C (a Cg axis applies to this operator)."""
        return cls.needs_guide and not cls.guide_must_match

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__()
        if not is_whole(channels, 1):
            raise ValueError(f"{self.name}: channels={channels!r}; expected a positive integer")
        unknown = sorted(set(hparams) - set(self.knobs))
        if unknown:
            known = ", ".join(self.knobs) or "none"
            raise ValueError(f"{self.name}: unknown hyperparameter(s) {', '.join(unknown)}; {self.name} takes: {known}")
        self.channels = channels
        self.hparams = {k: knob.check(self.name, k, hparams.get(k, knob.default)) for k, knob in self.knobs.items()}
        self.guide_channels = self._resolve_guide_channels(guide_channels)
        self.impl = self._resolve_impl(impl)
        # off only between calls known good, as the harness times them (measure.build_call): the checks cost a
        # few microseconds a call, a tenth or more of a nearest upsampling of a small map
        self.check_calls = True

    def _resolve_guide_channels(self, guide_channels: int | None) -> int:
        if not self.needs_guide:
            if guide_channels is not None:
                raise ValueError(f"{self.name}: takes no guide, but guide_channels={guide_channels} was given")
            return 0
        if guide_channels is None:
            return self.channels
        if not is_whole(guide_channels, 1):
            raise ValueError(f"{self.name}: guide_channels={guide_channels!r}; expected a positive integer")
        if self.guide_must_match and guide_channels != self.channels:
            raise ValueError(
                f"{self.name}: needs guide channels equal to the decoder channels; "
                f"got guide_channels={guide_channels}, channels={self.channels}"
            )
        return guide_channels

    def _resolve_impl(self, impl: str) -> str:
        if impl not in IMPL_CHOICES:
            raise ValueError(f"{self.name}: impl={impl!r}; expected one of {', '.join(IMPL_CHOICES)}")
        if not self.compiled_ops:
            if impl == "compiled":
                raise ValueError(f"{self.name}: has no compiled implementation; use impl='reference'")
            return "reference"
        if impl == "auto":
            from .kernels import compiled_available

            return "compiled" if compiled_available() else "reference"
        if impl == "compiled":
            from .kernels import require_compiled

            require_compiled(self.name)
        return impl

    @classmethod
    def check_declaration(cls) -> None:
        """ValueError, naming the operator, for a declaration that would fail on every row: a knob whose
        default breaks its own rule or that fills a shape field or an unknown one, formulas keyed by a stage
        the operator does not have, ``op_stages`` naming an unknown op part or stage, a goal that is no share."""
        if not isinstance(cls.knobs, Mapping):
            raise ValueError(f"{cls.name}: knobs={cls.knobs!r}; expected a mapping of knob names to upbench.Knob")
        if reserved := sorted(RESERVED_KNOBS.intersection(cls.knobs)):
            # make(name, C, channels=...) got 'multiple values' on every row
            raise ValueError(f"{cls.name}: knob {reserved[0]!r} has the name of an argument every operator takes "
                             f"({', '.join(sorted(RESERVED_KNOBS))}); expected another name")
        fills: dict[str, str] = {}
        for name, knob in cls.knobs.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"{cls.name}: knob name {name!r}; expected a Python identifier")
            if not isinstance(knob, Knob):
                raise ValueError(f"{cls.name}: knob {name!r} is {type(knob).__name__}; expected an upbench.Knob")
            # an unknown rule checked nothing (rule "od" let K=4 through) and failed with a KeyError on a bad value
            if knob.rule not in KNOB_RULES:
                raise ValueError(f"{cls.name}: knob {name!r} has rule {knob.rule!r}; expected one of "
                                 f"{', '.join(KNOB_RULES)}")
            if not is_whole(knob.max):
                raise ValueError(f"{cls.name}: knob {name!r} has max={knob.max!r}; expected an integer upper bound")
            knob.check(cls.name, f"the default of {name}", knob.default)
            target = knob.dims_field or name
            shadowed = target not in DIMS_FIELDS and hasattr(Dims, target)  # s.pixels would read the property
            if target in SHAPE_FIELDS or shadowed or (knob.dims_field and target not in DIMS_FIELDS):
                fillable = [f for f in DIMS_FIELDS if f not in SHAPE_FIELDS]
                raise ValueError(f"{cls.name}: knob {name!r} fills the formula field {target!r}; expected one of "
                                 f"{', '.join(fillable)}, or no dims_field (formulas then read it as s.{name})")
            if target in fills:  # the formulas would see the last one only
                raise ValueError(f"{cls.name}: knobs {fills[target]!r} and {name!r} both fill the formula field "
                                 f"{target!r}; expected one knob per field")
            fills[target] = name
        stages = cls.stages
        # stages = "body" iterated as the stages 'b', 'o', 'd', 'y'
        if not isinstance(stages, (tuple, list)) or not all(isinstance(stage, str) and stage for stage in stages):
            raise ValueError(f"{cls.name}: stages={stages!r}; expected a tuple (or list) of the names of its stage "
                             "modules, e.g. ('body',)")
        if len(set(stages)) != len(stages):
            raise ValueError(f"{cls.name}: stages={stages!r} names a stage twice; expected each stage module once")
        if not isinstance(cls.formulas, Formulas):
            raise ValueError(f"{cls.name}: formulas is {type(cls.formulas).__name__}; expected an upbench.Formulas")
        cls.formulas.check_stages(cls.name, cls.stages)
        cls._check_formula_names()
        check_op_stages(cls.name, cls.op_stages, cls.stages)
        goal = cls.forward_share_goal
        if goal is not None and (isinstance(goal, bool) or not isinstance(goal, (int, float)) or not goal > 0):
            raise ValueError(f"{cls.name}: forward_share_goal={goal!r}; expected None or a positive number "
                             "(a share of the matmul GFLOP/s, e.g. 0.25)")
        if goal is not None and not cls.compiled_ops:
            raise ValueError(f"{cls.name}: forward_share_goal={goal!r} but compiled_ops is False; the goal is the "
                             "compiled forward's, so declare compiled ops or no goal")

    @classmethod
    def _check_formula_names(cls) -> None:
        """ValueError where a formula reads a name Dims does not have (``s.hiden`` for the knob ``hidden``): found
        at registration, as every other mistake of the declaration, not by table1 alone while a sweep ran on."""
        defaults = {name: knob.default for name, knob in cls.knobs.items()}
        sample = _dims(cls.knobs, defaults, 1, 16, 8, 8, 16 if cls.needs_guide else 0)
        formulas = cls.formulas.named(cls.name)
        for stage in (*cls.stages, TOTAL):
            for cost in (formulas.paper_cost, formulas.exact_cost):
                try:
                    cost(stage, sample)
                except ValueError as error:
                    if isinstance(error.__cause__, AttributeError):
                        raise ValueError(f"{error}; a formula reads the fields of upbench.Dims and the operator's "
                                         f"knobs") from None
                    # any other failure is the formula's at this one point: table1 names it where it fails

    # -- shapes ---------------------------------------------------------------------------
    def dims(self, N: int, H: int, W: int) -> Dims:
        """The formula inputs for a batch of N decoder features of H x W."""
        return _dims(self.knobs, self.hparams, N, self.channels, H, W, self.guide_channels)

    def example_inputs(
        self, N: int, H: int, W: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random inputs of the shapes forward expects."""
        x = torch.randn(N, self.channels, H, W, dtype=dtype, device=device, generator=generator)
        guide = None
        if self.needs_guide:
            guide = torch.randn(N, self.guide_channels, 2 * H, 2 * W, dtype=dtype, device=device, generator=generator)
        return x, guide

    # -- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        if not self.check_calls:
            return self.upsample(x, guide)
        self.check_inputs(x, guide)
        out = self.upsample(x, guide)
        problem = output_problem(x, out)
        if problem is not None:
            raise ValueError(f"{self.name}: upsample returned {problem}")
        return out

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def check_inputs(self, x: torch.Tensor, guide: torch.Tensor | None) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"{self.name}: x must be a 4-D (N, C, H, W) tensor; got {_describe(x)}")
        n, c, h, w = sizes(x)  # ints, also where counting traces the module: a message says 4, not tensor(4)
        if c != self.channels:
            raise ValueError(f"{self.name}: built for {self.channels} channels; x has shape {sizes(x)}")
        if h < 1 or w < 1 or n < 1:
            raise ValueError(f"{self.name}: x must have N, H, W >= 1; got shape {sizes(x)}")
        self._check_like_weights(x)
        if not self.needs_guide:
            if guide is not None:
                raise ValueError(f"{self.name}: takes no guide; got a guide ({_describe(guide)})")
            return
        if guide is None:
            raise ValueError(f"{self.name}: needs a guide of shape ({n}, {self.guide_channels}, {2 * h}, {2 * w}); got None")
        if not isinstance(guide, torch.Tensor) or guide.dim() != 4:
            raise ValueError(f"{self.name}: guide must be a 4-D (N, C_g, 2H, 2W) tensor; got {_describe(guide)}")
        gn, gc, gh, gw = sizes(guide)
        if gn != n:
            raise ValueError(f"{self.name}: batch mismatch: x has N={n}, guide has N={gn}")
        if (gh, gw) != (2 * h, 2 * w):
            raise ValueError(f"{self.name}: guide must be 2H x 2W = {2 * h} x {2 * w} for x of {h} x {w}; got {gh} x {gw}")
        if gc != self.guide_channels:
            raise ValueError(
                f"{self.name}: built for {self.guide_channels} guide channels; guide has shape {sizes(guide)}"
            )
        if (guide.dtype, guide.device) != (x.dtype, x.device):
            raise ValueError(f"{self.name}: guide is {guide.dtype} on {guide.device}, x {x.dtype} on {x.device}; "
                             f"expected both alike")

    def _check_like_weights(self, x: torch.Tensor) -> None:
        """x must be floating point, on the weights' device and, outside autocast (where a half-precision x beside
        float32 weights is what mixed precision means), of their dtype: torch's own errors name neither."""
        if not x.is_floating_point():
            raise ValueError(f"{self.name}: x is {x.dtype}; expected a floating-point tensor")
        weight = next(self.parameters(), None)
        if weight is None:
            return
        autocast = _autocast_on(x.device.type)
        if x.device != weight.device or (x.dtype != weight.dtype and not autocast):
            raise ValueError(f"{self.name}: x is {x.dtype} on {x.device}, its weights {weight.dtype} on "
                             f"{weight.device}; expected x alike (or op.to(x.dtype) / op.to(x.device))")

    def extra_repr(self) -> str:
        knobs = ", ".join(f"{k}={v}" for k, v in self.hparams.items())
        guide = f", guide_channels={self.guide_channels}" if self.needs_guide else ""
        return f"channels={self.channels}{guide}{', ' + knobs if knobs else ''}, impl={self.impl}"
