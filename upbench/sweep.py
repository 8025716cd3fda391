"""Sweeps: a declarative spec, expanded to configs, each measured into one row.

Data flows one way::

    SweepSpec --expand--> [Config] --measure_config--> row dict --> CSV log --> DataFrame --> exports

A row is appended to the CSV log (flushed and fsynced) as soon as it is measured, so a sweep
killed at any point keeps every finished row, and ``resume=True`` skips the configs already
logged. ``shard=(i, n)`` measures configs i, i+n, i+2n, ... of the expansion, so several
processes or machines can split one sweep; their logs merge back with :func:`upbench.export.merge_frames`.

Every row carries the spec's ``spec_id`` (a hash of the axes and measurement settings) so logs of
different specs are never mixed, and ``config_index`` / ``config_total`` so a merge can say what
is missing.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import torch

from . import base
from .base import Upsampler
from .counting import POLICIES, count_operator
from .environment import best_device, check_device, environment
from .export import read_rows
from .formulas import compulsory_elements
from .memory import is_out_of_memory, peak_memory_bytes, release_cached_memory
from .registry import available, get, make
from .timing import MIN_CUDA_RUNS, call_seconds, time_call

MODES = ("fwd", "fwd+bwd")
IMPLS = ("auto",) + base.IMPLS
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
MESSAGE_CHARS = 300
# Calls a row makes after warm-up besides the timed ones: the timer's calibration, the memory probe.
UNTIMED_CALLS = 2


# -- the spec ---------------------------------------------------------------------------------
def _as_tuple(value: Any) -> tuple:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return tuple(value)
    return (value,)


def _positive_ints(axis: str, values: Iterable[Any]) -> tuple[int, ...]:
    result = []
    for value in values:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{axis}: {value!r} is not a positive integer")
        result.append(value)
    return tuple(result)


def _size(value: Any) -> tuple[int, int]:
    """16 -> (16, 16); "32x48" or [32, 48] -> (32, 48)."""
    if isinstance(value, str):
        h, _, w = value.lower().partition("x")
        pair: tuple = (h, w or h)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = tuple(value)
    else:
        pair = (value, value)
    return _positive_ints("size", pair)  # type: ignore[return-value]


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
    if device.type not in ("cpu", "cuda"):
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

    @property
    def key(self) -> str:
        knobs = "".join(f"|{name}={value}" for name, value in self.hparams)
        return (f"{self.operator}|{self.impl}|C={self.C}{knobs}|N={self.N}|{self.H}x{self.W}"
                f"|{self.dtype}|{self.device}|{self.mode}")


# File and CLI names of the axes and settings -> SweepSpec fields. Any other name must be a knob.
AXIS_KEYS = {"ops": "ops", "C": "channels", "size": "sizes", "N": "batches", "dtype": "dtypes",
             "device": "devices", "mode": "modes", "impl": "impls", "policy": "policies"}
SETTING_KEYS = {"warmup": "warmup", "min_run_time": "min_run_time", "budget": "row_budget_s",
                "l2_flush": "l2_flush", "seed": "seed"}


def all_knob_names() -> tuple[str, ...]:
    """Knob names of every registered operator, in registry order."""
    return _dedupe(name for op in available() for name in get(op).knobs)


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or TOML sweep file, unvalidated."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(path.read_text()) or {}
    elif suffix == ".toml":
        data = tomllib.loads(path.read_text())
    else:
        raise ValueError(f"{path}: expected a .yaml, .yml or .toml sweep file")
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of axis names to values, got {type(data).__name__}")
    return dict(data)


@dataclass(frozen=True)
class SweepSpec:
    """Axes of a sweep (each a tuple; the sweep is their Cartesian product) and how to measure.

    ``knobs`` maps a knob name (``K``, ``d``, ...) to its values; an operator that lacks a knob is
    not swept over it, and one that has a knob not listed runs at its default. ``ops`` empty means
    every registered operator; a device of ``auto`` means the best one present. ``impls`` of
    ``auto`` resolves, per operator, to ``compiled`` when the compiled ops are built, else
    ``reference``; operators without a compiled path only run ``reference``.

    Measurement: ``warmup`` calls (at least one) before timing; ``min_run_time`` seconds of timed
    calls; ``row_budget_s``: seconds a row may spend measuring (counting aside): the timing is
    shortened to fit, and a row whose warm-up leaves no room for one timed call and the memory
    probe is recorded ``skipped`` with its last warm-up call as latency; ``l2_flush``: zero a buffer larger than L2 before each
    timed GPU call (cold-cache numbers; CPU rows are always warm). ``policies``: counting policies.
    """

    ops: tuple[str, ...] = ()
    channels: tuple[int, ...] = (64,)
    knobs: Any = ()  # Mapping[str, Iterable[int]] in; tuple of (name, values) pairs once built
    sizes: tuple[tuple[int, int], ...] = ((16, 16), (32, 32), (64, 64))
    batches: tuple[int, ...] = (1,)
    dtypes: tuple[str, ...] = ("fp32",)
    devices: tuple[str, ...] = ("auto",)
    modes: tuple[str, ...] = ("fwd",)
    impls: tuple[str, ...] = ("auto",)
    policies: tuple[str, ...] = POLICIES
    warmup: int = 3
    min_run_time: float = 0.2
    row_budget_s: float = 60.0
    l2_flush: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        ops = _dedupe(_as_tuple(self.ops)) or tuple(available())
        for op in ops:
            get(op)  # raises ValueError naming the known operators
        put("ops", ops)
        put("channels", _dedupe(_positive_ints("C", _as_tuple(self.channels))))
        put("sizes", _dedupe(_size(s) for s in _as_tuple(self.sizes)))
        put("batches", _dedupe(_positive_ints("N", _as_tuple(self.batches))))
        put("dtypes", _dedupe(_dtype_name(d) for d in _as_tuple(self.dtypes)))
        put("devices", _dedupe(_device_name(d) for d in _as_tuple(self.devices)))
        put("modes", _choices("mode", _dedupe(_as_tuple(self.modes)), MODES))
        put("impls", _choices("impl", _dedupe(_as_tuple(self.impls)), IMPLS))
        put("policies", _choices("policy", _dedupe(_as_tuple(self.policies)), POLICIES))
        put("knobs", self._checked_knobs(ops))
        for f in fields(self):
            if f.name not in ("knobs",) and isinstance(getattr(self, f.name), tuple) and not getattr(self, f.name):
                raise ValueError(f"sweep axis {f.name!r} is empty")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup={self.warmup!r}: expected a non-negative integer")
        for name in ("min_run_time", "row_budget_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}={value!r}: expected a positive number of seconds")
            put(name, float(value))
        if not isinstance(self.l2_flush, bool):
            raise ValueError(f"l2_flush={self.l2_flush!r}: expected true or false")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed={self.seed!r}: expected an integer")

    def _checked_knobs(self, ops: tuple[str, ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
        knobs = dict(self.knobs) if not isinstance(self.knobs, Mapping) else self.knobs
        checked = []
        for name, values in knobs.items():
            owners = [get(op) for op in ops if name in get(op).knobs]
            if not owners:
                offered = {op: ", ".join(get(op).knobs) or "none" for op in ops}
                listing = "; ".join(f"{op}: {names}" for op, names in offered.items())
                raise ValueError(f"unknown knob {name!r}: no selected operator has it (knobs: {listing})")
            values = _dedupe(_as_tuple(values))
            if not values:
                raise ValueError(f"knob {name!r} has no values")
            values = tuple(int(v) if isinstance(v, str) and v.strip().isdigit() else v for v in values)
            for cls in owners:
                for value in values:
                    cls.knobs[name].check(cls.name, name, value)
            checked.append((name, values))
        return tuple(checked)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], source: str = "sweep spec") -> "SweepSpec":
        """A spec from the file / CLI names: ops, C, size, N, dtype, device, mode, impl, policy,
        warmup, min_run_time, budget, l2_flush, seed, and any knob name (K, d, ...)."""
        kwargs: dict[str, Any] = {}
        knobs: dict[str, Any] = {}
        knob_names = all_knob_names()
        for key, value in mapping.items():
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
        canonical = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def knob_columns(self) -> tuple[str, ...]:
        """Knob columns of the rows: every knob any selected operator has."""
        return _dedupe(name for op in self.ops for name in get(op).knobs)

    def columns(self) -> list[str]:
        policy_columns = [c for p in self.policies for c in (f"macs_{p}", f"flops_{p}", f"zero_ops_{p}")]
        return [
            "spec_id", "config_index", "config_total", "key",
            "operator", "impl", "C", "Cg", *self.knob_columns(), "N", "H", "W", "dtype", "device", "mode",
            *policy_columns, "params", "bytes_moved",
            "latency_median_ms", "latency_p20_ms", "latency_p80_ms", "runs", "cache", "peak_mem_bytes",
            *(f"gflops_per_s_{p}" for p in self.policies), "gbytes_per_s",
            "status", "message",
            "device_name", "torch_version", "cuda_version", "cpu_model", "threads", "cpu_cores", "load_1min",
            "git_commit", "timestamp",
        ]

    # -- expansion ------------------------------------------------------------------------
    def _impls_for(self, cls: type[Upsampler]) -> tuple[str, ...]:
        if not cls.compiled_ops:
            return ("reference",) if set(self.impls) - {"compiled"} else ()
        if "auto" not in self.impls:  # no need to build the kernels just to resolve it
            return _dedupe(self.impls)
        from .kernels import compiled_available

        auto = "compiled" if compiled_available() else "reference"
        return _dedupe(auto if impl == "auto" else impl for impl in self.impls)

    def expand(self) -> list[Config]:
        """Every config, in a fixed order, without duplicates."""
        swept = dict(self.knobs)
        configs = []
        for op in self.ops:
            cls = get(op)
            knob_names = tuple(cls.knobs)
            knob_values = [swept.get(name, (cls.knobs[name].default,)) for name in knob_names]
            for C, combo, N, (H, W), dtype, device, mode, impl in itertools.product(
                self.channels, itertools.product(*knob_values), self.batches, self.sizes,
                self.dtypes, self.devices, self.modes, self._impls_for(cls),
            ):
                configs.append(Config(op, impl, C, tuple(zip(knob_names, combo)), N, H, W, dtype, device, mode))
        configs = list(dict.fromkeys(configs))
        if not configs:
            raise ValueError(f"the sweep is empty: none of {', '.join(self.ops)} runs impl {', '.join(self.impls)}")
        return configs


# -- sharding ---------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n), 0 <= i < n: the slice of configs i, i+n, i+2n, ..."""
    index, slash, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not slash or not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return shard


def shard_configs(configs: list[Config], shard: tuple[int, int] | None) -> list[tuple[int, Config]]:
    """(index in the whole sweep, config) of one shard; round-robin spreads sizes evenly."""
    indexed = list(enumerate(configs))
    if shard is None:
        return indexed
    index, count = shard
    return indexed[index::count]


# -- measuring one config ---------------------------------------------------------------------
def first_line(error: BaseException) -> str:
    """The error's type and first line, trimmed: what a row's message column holds."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


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

        return forward
    op.train()
    inputs = [t.requires_grad_() for t in (x, guide) if t is not None]
    wrt = inputs + [p for p in op.parameters() if p.requires_grad]
    grad_out = torch.randn(_output_shape(config), dtype=dtype, device=device, generator=generator)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(op(x, guide), wrt, grad_out)

    return forward_backward


def compulsory_bytes(op: Upsampler, config: Config, params: int) -> int:
    """Bytes any implementation of one forward must move (the analytic model in upbench.formulas)."""
    itemsize = torch.empty((), dtype=DTYPES[config.dtype]).element_size()
    return compulsory_elements(op.dims(config.N, config.H, config.W), params) * itemsize


def count_config(config: Config, policies: tuple[str, ...]) -> dict[str, Any]:
    """MACs, FLOPs, zero ops and params of one forward: counted once per shape (cached), never timed."""
    row: dict[str, Any] = {}
    for policy in policies:
        counted = count_operator(config.operator, config.C, config.N, config.H, config.W, policy,
                                 None, config.hparams)
        row.update({f"macs_{policy}": counted.macs, f"flops_{policy}": counted.flops,
                    f"zero_ops_{policy}": ";".join(counted.zero_ops), "params": counted.params})
    return row


def _measure(config: Config, spec: SweepSpec, row: dict[str, Any]) -> None:
    """Fill ``row`` in place, step by step, so a failure keeps what was measured before it."""
    row.update(count_config(config, spec.policies))
    if config.impl == "compiled":
        from .kernels import compiled_available

        if not compiled_available():
            row["status"] = "skipped"
            row["message"] = "compiled ops not built: upbench.kernels.compiled_available() is False"
            return
    device, dtype = torch.device(config.device), DTYPES[config.dtype]
    op = make(config.operator, config.C, impl=config.impl, **dict(config.hparams)).to(device=device, dtype=dtype)
    row["Cg"] = op.guide_channels
    row["bytes_moved"] = compulsory_bytes(op, config, row["params"])
    call = build_call(op, config, torch.Generator(device=device).manual_seed(spec.seed))

    # Warm-up doubles as the budget check: the first calls can be far slower than the rest
    # (allocator growth, autotuning, TorchScript profiling runs), so the last one sets the pace.
    started = time.perf_counter()
    for _ in range(max(spec.warmup, 1)):
        last = call_seconds(call, device)
        if time.perf_counter() - started > spec.row_budget_s:
            break
    spent = time.perf_counter() - started
    room = spec.row_budget_s - spent - last * UNTIMED_CALLS
    fewest_timed_calls = MIN_CUDA_RUNS if device.type == "cuda" else 1  # the CUDA timer times at least that many
    if room < fewest_timed_calls * last:
        row.update(latency_median_ms=last * 1e3, runs=1, cache="warm", status="skipped",
                   message=f"warm-up took {spent:.3g} s and its last call {last:.3g} s: timing and the memory probe "
                           f"would not fit the {spec.row_budget_s:g} s row budget; latency_median_ms is that last call")
        return
    timing = time_call(call, device, warmup=0, min_run_time=min(spec.min_run_time, room), l2_flush=spec.l2_flush)
    row.update(latency_median_ms=timing.median_s * 1e3, latency_p20_ms=timing.p20_s * 1e3,
               latency_p80_ms=timing.p80_s * 1e3, runs=timing.runs, cache=timing.cache)
    row["peak_mem_bytes"] = peak_memory_bytes(call, device=device)
    if config.mode == "fwd":  # counts and the bytes model describe one forward; a backward has no model
        for policy in spec.policies:
            row[f"gflops_per_s_{policy}"] = row[f"flops_{policy}"] / timing.median_s / 1e9
        row["gbytes_per_s"] = row["bytes_moved"] / timing.median_s / 1e9
    row["status"] = "ok"


def measure_config(config: Config, spec: SweepSpec, index: int, total: int) -> dict[str, Any]:
    """One finished row for ``config``: status ``ok``, ``oom``, ``error`` or ``skipped``, never an exception
    (except KeyboardInterrupt and the like, which stop the sweep)."""
    row: dict[str, Any] = dict.fromkeys(spec.columns())
    row.update(spec_id=spec.spec_id, config_index=index, config_total=total, key=config.key,
               operator=config.operator, impl=config.impl, C=config.C, N=config.N, H=config.H, W=config.W,
               dtype=config.dtype, device=config.device, mode=config.mode, **dict(config.hparams))
    row.update(environment(config.device))
    try:
        _measure(config, spec, row)
    except Exception as error:  # noqa: BLE001  a failing row is data, the sweep goes on
        row["status"] = "oom" if is_out_of_memory(error) else "error"
        row["message"] = first_line(error)
    if row["status"] == "oom":
        release_cached_memory(config.device)
    return row


# -- the row log ------------------------------------------------------------------------------
class RowLog:
    """The CSV a sweep appends its rows to, one flushed and fsynced line per finished row."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns
        fresh = not path.exists() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns)
        if fresh:
            self.writer.writeheader()
            self._sync()

    def _sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def write(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow(row)
        self._sync()

    def close(self) -> None:
        self.file.close()


def drop_torn_line(path: Path) -> None:
    """Cut a last line a kill left half-written (every complete line ends with a newline)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def logged_keys(path: Path, spec: SweepSpec, columns: list[str]) -> set[str]:
    """Keys of the rows already in ``path``, after checking they belong to ``spec``."""
    drop_torn_line(path)
    if path.stat().st_size == 0:
        return set()
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), [])
    if header != columns:
        raise ValueError(f"{path}: its columns differ from this sweep's (another spec or upbench version); "
                         f"refusing to resume into it")
    logged = read_rows(path)
    others = sorted(set(logged["spec_id"]) - {spec.spec_id})
    if others:
        raise ValueError(f"{path}: holds rows of spec {', '.join(others)}, not of this spec {spec.spec_id}; "
                         f"refusing to resume into it")
    return set(logged["key"])


def _progress_bar(total: int, enabled: bool | None):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, disable=not enabled, unit="row", desc="sweep", file=sys.stderr, dynamic_ncols=True)


def run_sweep(
    spec: SweepSpec,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    progress: bool | None = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Measure every config of ``spec`` (or of one ``shard``) and return the rows as a DataFrame.

    With ``out``, each row is appended to that CSV as it finishes; an existing file is refused
    unless ``resume``, which skips the configs it already holds (whatever their status) and returns
    its old rows with the new. ``progress``: a bar with ETA on stderr (None: only on a terminal).
    ``on_row`` sees every new row after it is logged.
    """
    for device in spec.devices:
        check_device(device)
    configs = spec.expand()
    todo = shard_configs(configs, shard)
    columns = spec.columns()
    log = None
    if out is not None:
        out = Path(out)
        if out.exists() and out.stat().st_size > 0:
            if not resume:
                raise FileExistsError(f"{out} exists: resume it (--resume) or choose another output")
            done = logged_keys(out, spec, columns)
            todo = [(index, config) for index, config in todo if config.key not in done]
        log = RowLog(out, columns)
    rows = []
    try:
        with _progress_bar(len(todo), progress) as bar:
            for index, config in todo:
                bar.set_postfix_str(config.key, refresh=False)
                row = measure_config(config, spec, index, len(configs))
                rows.append(row)
                if log is not None:
                    log.write(row)
                bar.update()
                if on_row is not None:
                    on_row(row)
    finally:
        if log is not None:
            log.close()
    if out is not None:
        return read_rows(out)
    # Through CSV text, so an in-memory sweep types its columns exactly as a logged one reads back.
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    text.seek(0)
    return read_rows(text)
