"""What a sweep is: its axes and settings (:class:`SweepSpec`), read from a file or flags, expanded to
:class:`Config` rows in a fixed order. Nothing here measures."""
from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping, Sequence

import torch

from . import base, kernels
from .base import Upsampler
from .checks import comma_items, digits_as_int, is_seconds, is_whole, parse_size, positive_ints
from .counting import ALL_POLICIES, POLICIES
from .environment import best_device
from .registry import available, get
from .rows import ALL_SETTING_COLUMNS, SETTING_COLUMNS
from .timing import WARMUP_CALLS
from .vocabulary import ENVIRONMENT_FIELDS

MODES = ("fwd", "fwd+bwd")
IMPLS = base.IMPL_CHOICES
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Rounds a sweep may have: the order of every round is drawn before the first row (and a number beyond this is a typo).
MAX_ROUNDS = 1000
DTYPE_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


# -- the spec ---------------------------------------------------------------------------------
def _dedupe(values: Iterable[Any]) -> tuple:
    return tuple(dict.fromkeys(values))


def _dtype_name(name: str) -> str:
    name = DTYPE_ALIASES.get(str(name).lower(), str(name).lower())
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of {', '.join(DTYPES)}")
    return name


def _device_name(name: str) -> str:
    if str(name).lower() in ("auto", "best"):
        return best_device()
    try:
        device = torch.device(str(name).lower())
    except RuntimeError:
        raise ValueError(f"device {name!r}: expected cpu, cuda, cuda:<index> or auto") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index is not None):
        # cpu:1 is one CPU to torch: rows recording it would not pair with cpu rows in a diff or merge
        raise ValueError(f"device {name!r}: expected cpu, cuda, cuda:<index> or auto")
    return str(device)


def _choices(axis: str, values: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    allowed = tuple(allowed)
    for value in values:
        if value not in allowed:
            raise ValueError(f"{axis} {value!r}: expected one of {', '.join(allowed)}")
    return tuple(values)


@dataclass(frozen=True)
class Config:
    """One row of a sweep: an operator at one shape, dtype, device, mode and implementation.

    ``hparams`` holds every knob the operator has (swept values, else the operator's defaults)
    and no other; ``impl`` is concrete: ``reference`` or ``compiled``.
    """

    operator: str
    impl: str
    C: int
    hparams: tuple[tuple[str, int], ...]
    N: int
    H: int
    W: int
    dtype: str
    device: str
    mode: str
    Cg: int | None = None  # guide channels; None: the operator's own choice (C for a guided one)

    @property
    def key(self) -> str:
        knobs = "".join(f"|{name}={value}" for name, value in self.hparams)
        guide = f"|Cg={self.Cg}" if self.Cg is not None else ""
        return (f"{self.operator}|{self.impl}|C={self.C}{guide}{knobs}|N={self.N}|{self.H}x{self.W}"
                f"|{self.dtype}|{self.device}|{self.mode}")

    @property
    def guide_channels(self) -> int:
        """The guide's channels in this row: ``Cg``, C for a guided operator given none, 0 without a guide."""
        if not get(self.operator).needs_guide:
            return 0
        return self.C if self.Cg is None else self.Cg


# File and CLI names of the axes and settings -> SweepSpec fields. Any other name must be a knob.
AXIS_KEYS = {"ops": "ops", "C": "channels", "Cg": "guide_channels", "size": "sizes", "N": "batches", "dtype": "dtypes",
             "device": "devices", "mode": "modes", "impl": "impls", "policy": "policies"}
SETTING_KEYS = {"warmup": "warmup", "min_run_time": "min_run_time", "budget": "row_budget_s",
                "l2_flush": "l2_flush", "tf32": "tf32", "seed": "seed", "threads": "threads", "rounds": "rounds"}
# Errors name an axis or setting as the user writes it (``size``, ``budget``), not as the field is called.
AXIS_NAMES = {field: key for key, field in AXIS_KEYS.items()}
SETTING_NAMES = {field: key for key, field in SETTING_KEYS.items()}
# The field each of the rows' ALL_SETTING_COLUMNS records (a column without one fails every spec's settings()).
SETTING_COLUMN_FIELDS = {"warmup": "warmup", "min_run_time_s": "min_run_time", "budget_s": "row_budget_s",
                         "seed": "seed", "rounds": "rounds"}


def check_knob(name: str, values: Sequence[Any], ops: Sequence[str]) -> None:
    """ValueError for a knob no operator of ``ops`` has, one given no values, or a value an operator that has
    the knob refuses."""
    owners = [get(op) for op in ops if name in get(op).knobs]
    if not owners:
        listing = "; ".join(f"{op}: {', '.join(get(op).knobs) or 'none'}" for op in ops)
        raise ValueError(f"unknown knob {name!r}: no selected operator has it (knobs: {listing})")
    if not values:
        raise ValueError(f"knob {name!r} has no values; expected at least one")
    for cls in owners:
        for value in values:
            cls.knobs[name].check(cls.name, name, value)


def check_guide_channels(values: Sequence[int], ops: Sequence[str]) -> None:
    """ValueError when guide channels are given but no operator of ``ops`` reads a guide of any width."""
    if values and not any(get(op).reads_any_guide() for op in ops):
        matching = [op for op in ops if get(op).needs_guide]
        why = f"{', '.join(matching)} take a guide of C channels only" if matching else "none reads a guide"
        raise ValueError(f"Cg {', '.join(map(str, values))}: no selected operator reads a guide of another width "
                         f"than C ({why})")


def guides_for(cls: type[Upsampler], values: Sequence[int]) -> tuple[int | None, ...]:
    """The Cg values an operator runs at: ``values`` if it reads a guide of any width and some are given, else
    None only (its own choice: a guide of C channels, or none)."""
    return tuple(values) if values and cls.reads_any_guide() else (None,)


def all_knob_names() -> tuple[str, ...]:
    """Knob names of every registered operator, in registry order."""
    return _dedupe(name for op in available() for name in get(op).knobs)


def _unique_keys_loader() -> type:
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last silently; TOML refuses)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *defaults' merges, it is no key
                    continue
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):  # the safe loader names it ("found unhashable key")
                    break
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (the first would be ignored)", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or TOML sweep file, unvalidated."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ValueError(f"{path}: expected a .yaml, .yml or .toml sweep file")
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read the sweep file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from None
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=_unique_keys_loader())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ValueError(f"{path}{where}: not valid YAML: {problem}") from None
    if data is None or data == {}:
        raise ValueError(f"{path}: the sweep file is empty (an empty spec would silently run the default sweep)")
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of axis names to values, got {type(data).__name__}")
    return dict(data)


@dataclass(frozen=True)
class SweepSpec:
    """Axes of a sweep (each a tuple; the sweep is their Cartesian product) and how to measure.

    ``knobs`` maps a knob name (``K``, ``d``, ...) to its values; an operator that lacks a knob is
    not swept over it, and one that has a knob not listed runs at its default. ``guide_channels`` (Cg)
    sweeps the width of the guide of the operators that read one and may take a guide of another width
    than C (empty: the guide has C channels, as in the paper's tables). ``ops`` empty means
    every registered operator; a device of ``auto`` means the best one present. ``impls`` of
    ``auto`` resolves, per operator, to ``compiled`` when the compiled ops are built, else
    ``reference``; operators without a compiled path only run ``reference``.

    Measurement: ``warmup`` calls (at least one is made, and recorded) before timing; ``min_run_time`` seconds of timed
    calls; ``row_budget_s``: seconds a row may spend measuring (counting aside): the timing is
    shortened to fit, and a row whose warm-up leaves no room for one timed call and the memory
    probe is recorded ``skipped`` with its last warm-up call as latency; ``l2_flush``: flush the caches before each
    timed call (cold-cache numbers; GPU: a buffer larger than L2 zeroed; CPU: a buffer twice the last-level
    cache written, which evicts every level). ``tf32``: let float32 matmuls and cuDNN
    convolutions run in TF32 on GPUs that have it (off: every float32 row computes in float32, where torch's
    own defaults would give convolutions TF32 and matmuls not). ``policies``: counting policies.
    ``threads``: CPU threads torch uses for each row (``torch.set_num_threads``); None keeps torch's own.
    ``rounds``: how many times every config is measured, each round visiting the configs in an order of its own
    (:func:`upbench.rounds.measurement_order`), so that no operator is always timed first, last or beside the same
    neighbour while the machine drifts; the tables show the median of a config's rounds
    (:func:`upbench.rounds.combine_rounds`). Rows of a sweep of several rounds have the columns ``round`` (1 to R)
    and ``rounds``; a sweep of one round has neither and visits the configs in expansion order.
    """

    ops: tuple[str, ...] = ()
    channels: tuple[int, ...] = (64,)
    guide_channels: tuple[int, ...] = ()
    knobs: Any = ()  # Mapping[str, Iterable[int]] in; tuple of (name, values) pairs once built
    sizes: tuple[tuple[int, int], ...] = ((16, 16), (32, 32), (64, 64))
    batches: tuple[int, ...] = (1,)
    dtypes: tuple[str, ...] = ("fp32",)
    devices: tuple[str, ...] = ("auto",)
    modes: tuple[str, ...] = ("fwd",)
    impls: tuple[str, ...] = ("auto",)
    policies: tuple[str, ...] = POLICIES
    warmup: int = WARMUP_CALLS
    min_run_time: float = 0.2
    row_budget_s: float = 60.0
    l2_flush: bool = False
    tf32: bool = False
    seed: int = 0
    threads: int | None = None
    rounds: int = 1

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not is_whole(self.rounds, 1) or self.rounds > MAX_ROUNDS:  # first: the row layout depends on it
            raise ValueError(f"rounds={self.rounds!r}: expected a positive integer of at most {MAX_ROUNDS}")
        ops = _dedupe(comma_items(self.ops)) or tuple(available())
        for op in ops:
            get(op)  # raises ValueError naming the known operators
        put("ops", ops)
        put("channels", _dedupe(positive_ints("C", comma_items(self.channels))))
        put("guide_channels", _dedupe(positive_ints("Cg", comma_items(self.guide_channels))))
        check_guide_channels(self.guide_channels, ops)
        put("sizes", _dedupe(parse_size(s) for s in comma_items(self.sizes)))
        put("batches", _dedupe(positive_ints("N", comma_items(self.batches))))
        put("dtypes", _dedupe(_dtype_name(d) for d in comma_items(self.dtypes)))
        put("devices", _dedupe(_device_name(d) for d in comma_items(self.devices)))
        put("modes", _choices("mode", _dedupe(comma_items(self.modes)), MODES))
        put("impls", _choices("impl", _dedupe(comma_items(self.impls)), IMPLS))
        put("policies", _choices("policy", _dedupe(comma_items(self.policies)), ALL_POLICIES))
        put("knobs", self._checked_knobs(ops))
        # every policy's columns, not only this sweep's: a knob macs_torch would collide with --policy torch's
        fixed = set(self._columns(())) | {f"{kind}_{p}" for p in ALL_POLICIES
                                          for kind in ("macs", "flops", "zero_ops", "gflops_per_s")}
        # a knob named as an axis or setting is unreachable: --knob size=5,7 (or size: in a file) set the input size
        keys = set(AXIS_KEYS) | set(SETTING_KEYS)
        for op in ops:
            if taken := sorted(fixed.intersection(get(op).knobs)):
                raise ValueError(f"{op}: knob {taken[0]!r} has the name of a column every sweep row has; expected "
                                 f"a knob name that is none of {', '.join(sorted(fixed))}")
            if taken := sorted(keys.intersection(get(op).knobs)):
                raise ValueError(f"{op}: knob {taken[0]!r} has the name of a sweep axis or setting, which --knob "
                                 f"{taken[0]}=... and a sweep file's {taken[0]!r} set instead; expected a knob name "
                                 f"that is none of {', '.join(sorted(keys))}")
        for f in fields(self):
            if f.name not in ("knobs", "guide_channels") and isinstance(getattr(self, f.name), tuple) \
                    and not getattr(self, f.name):
                raise ValueError(f"sweep axis {AXIS_NAMES.get(f.name, f.name)!r} is empty; expected at least one value")
        if not is_whole(self.warmup, 0):
            raise ValueError(f"warmup={self.warmup!r}: expected a non-negative integer")
        for name in ("min_run_time", "row_budget_s"):
            value = getattr(self, name)
            if not is_seconds(value):
                raise ValueError(f"{SETTING_NAMES[name]}={value!r}: expected a positive number of seconds")
            put(name, float(value))
        if self.threads is not None and not is_whole(self.threads, 1):
            raise ValueError(f"threads={self.threads!r}: expected a positive integer")
        for name in ("l2_flush", "tf32"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected true or false")
        if not is_whole(self.seed):
            raise ValueError(f"seed={self.seed!r}: expected an integer of at most 64 bits")

    def _checked_knobs(self, ops: tuple[str, ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
        knobs = dict(self.knobs) if not isinstance(self.knobs, Mapping) else self.knobs
        checked = []
        for name, values in knobs.items():
            values = tuple(digits_as_int(v) for v in _dedupe(comma_items(values)))
            check_knob(name, values, ops)
            checked.append((name, values))
        return tuple(checked)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], source: str = "sweep spec") -> "SweepSpec":
        """A spec from the file / CLI names: the axes and settings of :data:`AXIS_KEYS` and :data:`SETTING_KEYS`
        (ops, C, size, ..., warmup, min_run_time, budget, l2_flush, tf32, seed, threads) and any knob name (K, d,
        ...)."""
        kwargs: dict[str, Any] = {}
        knobs: dict[str, Any] = {}
        knob_names = all_knob_names()
        for key, value in mapping.items():
            # () is these axes' default: an empty list written out would silently mean every operator, or C
            if key in ("ops", "Cg") and not comma_items(value if value is not None else ()):
                meaning = "every operator" if key == "ops" else "a guide of C channels"
                raise ValueError(f"sweep axis {key!r} is empty in {source}; expected at least one value (leave it "
                                 f"out for {meaning})")
            if key in AXIS_KEYS:
                kwargs[AXIS_KEYS[key]] = value
            elif key in SETTING_KEYS:
                kwargs[SETTING_KEYS[key]] = value
            elif key in knob_names:
                knobs[key] = value
            else:
                raise ValueError(
                    f"unknown key {key!r} in {source}; axes: {', '.join(AXIS_KEYS)}; "
                    f"settings: {', '.join(SETTING_KEYS)}; knobs: {', '.join(knob_names)}"
                )
        return cls(knobs=knobs, **kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> "SweepSpec":
        """A spec from a YAML (.yaml, .yml) or TOML (.toml) file of the :meth:`from_mapping` names."""
        return cls.from_mapping(read_spec_file(path), source=str(path))

    # -- identity -------------------------------------------------------------------------
    @property
    def spec_id(self) -> str:
        """A stable hash of the axes and settings: rows of different specs are never merged."""
        fields_ = asdict(self)
        if not self.guide_channels:  # the default leaves the ids of specs from before the Cg axis as they were
            del fields_["guide_channels"]
        if self.rounds == 1:  # and of those from before rounds
            del fields_["rounds"]
        canonical = json.dumps(fields_, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def settings(self) -> dict[str, Any]:
        """The :data:`SETTING_COLUMNS` of this spec's rows (and ``rounds`` where there are several): what they were
        measured with, so warm-up calls as made (warmup 0 makes one, whose time sets the pace the row budget is
        checked against)."""
        settings = {column: getattr(self, SETTING_COLUMN_FIELDS[column]) for column in self._setting_columns()}
        return {**settings, "warmup": max(settings["warmup"], 1)}

    def _setting_columns(self) -> tuple[str, ...]:
        return ALL_SETTING_COLUMNS if self.rounds > 1 else SETTING_COLUMNS

    def knob_columns(self) -> tuple[str, ...]:
        """Knob columns of the rows: every knob any selected operator has."""
        return _dedupe(name for op in self.ops for name in get(op).knobs)

    def columns(self) -> list[str]:
        return self._columns(self.knob_columns())

    def _columns(self, knob_columns: Sequence[str]) -> list[str]:
        policy_columns = [c for p in self.policies for c in (f"macs_{p}", f"flops_{p}", f"zero_ops_{p}")]
        return [
            "spec_id", "config_index", "config_total", *(("round",) if self.rounds > 1 else ()), "key",
            "operator", "impl", "C", "Cg", *knob_columns, "N", "H", "W", "dtype", "device", "mode",
            *policy_columns, "params", "bytes_moved",
            "latency_median_ms", "latency_p20_ms", "latency_p80_ms", "runs", "cache", "tf32", "cpu_util", "cpu_others",
            "timing_suspect",
            "peak_mem_bytes",
            *(f"gflops_per_s_{p}" for p in self.policies), "gbytes_per_s",
            "status", "message",
            *self._setting_columns(),
            "operator_source", *ENVIRONMENT_FIELDS,
        ]

    # -- expansion ------------------------------------------------------------------------
    def _guides_for(self, cls: type[Upsampler]) -> tuple[int | None, ...]:
        return guides_for(cls, self.guide_channels)

    def _impls_for(self, cls: type[Upsampler]) -> tuple[str, ...]:
        if not cls.compiled_ops:
            return ("reference",) if set(self.impls) - {"compiled"} else ()
        if "auto" not in self.impls:  # no need to build the kernels just to resolve it
            return _dedupe(self.impls)
        auto = "compiled" if kernels.compiled_available() else "reference"
        return _dedupe(auto if impl == "auto" else impl for impl in self.impls)

    def ops_without_impl(self) -> list[str]:
        """The operators none of whose configs the impls given can run (``--impl compiled`` and an operator
        without a compiled path): they have no row."""
        return [op for op in self.ops if not self._impls_for(get(op))]

    def expand(self) -> list[Config]:
        """Every config, in a fixed order, without duplicates."""
        swept = dict(self.knobs)
        configs = []
        for op in self.ops:
            cls = get(op)
            knob_names = tuple(cls.knobs)
            knob_values = [swept.get(name, (cls.knobs[name].default,)) for name in knob_names]
            for C, Cg, combo, N, (H, W), dtype, device, mode, impl in itertools.product(
                self.channels, self._guides_for(cls), itertools.product(*knob_values), self.batches, self.sizes,
                self.dtypes, self.devices, self.modes, self._impls_for(cls),
            ):
                configs.append(Config(op, impl, C, tuple(zip(knob_names, combo)), N, H, W, dtype, device, mode, Cg))
        configs = list(dict.fromkeys(configs))
        if not configs:
            raise ValueError(f"the sweep is empty: none of {', '.join(self.ops)} runs impl {', '.join(self.impls)}")
        return configs
