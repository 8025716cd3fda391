"""The ``torch`` counting policy: torch.utils.flop_counter.FlopCounterMode, an independent cross-check of
fvcore (which traces with torch.jit).

FlopCounterMode counts matrix products, convolutions and attention (``flop_registry``) and nothing else;
here it also counts the compiled window ops, every plugin's custom-op rule (:mod:`upbench.rules`) and the
matrix products its registry lacks (CPU flash attention, nn.MultiheadAttention's fused inference path,
:data:`upbench.rules.MATRIX_PRODUCT_RULES`), through ``register_flop_formula``. Every other op that ran on
tensors (views aside) is listed as counted as zero, so a difference from the exact formulas can be traced to
the ops FlopCounterMode leaves out.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

from .rules import COMPILED_OP_PARTS, MATRIX_PRODUCT_RULES, Rule, counted_parts, rules, short_op_name, whole


@contextmanager
def counting_forward(module: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad for the one forward a policy counts, then every module's own training flag back:
    a frozen eval BatchNorm inside a training model must come back in eval."""
    was_training = {child: child.training for child in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for child, training in was_training.items():
            child.training = training


def _shape_args(args: tuple) -> list[Any]:
    return [tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in args]


def _op_packet(op: str) -> Any | None:
    """torch.ops.<namespace>.<name>, or None while its library is not loaded."""
    namespace, _, name = op.partition("::")
    try:
        return getattr(getattr(torch.ops, namespace), name)
    except (AttributeError, RuntimeError):
        return None


# The aten ops whose work FlopCounterMode counts, among those a compiled op's parts stand for: a linear
# runs as the mm / addmm it decomposes into; layer norms have no formula.
_COUNTED_ATEN_OPS = {"aten::linear"}


def _parts(op: str) -> dict[str, Rule]:
    return counted_parts(COMPILED_OP_PARTS.get(op, {}), _COUNTED_ATEN_OPS.__contains__)


def _as_flop_formula(rule: Rule) -> Callable[..., int]:
    def flops(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return 2 * int(rule(*args, *kwargs.values(), out_shape=tuple(out_shape)))

    return flops


def register_rules() -> None:
    """Hand FlopCounterMode a formula for every rule whose op is loaded (once per op)."""
    compiled = {op: whole(_parts(op)) for op in COMPILED_OP_PARTS}
    for op, rule in {**MATRIX_PRODUCT_RULES, **compiled, **rules()}.items():
        packet = _op_packet(op)
        if packet is not None and packet not in flop_registry:
            register_flop_formula(packet)(_as_flop_formula(rule))


class _OpsSeen(TorchDispatchMode):
    """Records every op that returns a new tensor (views and in-place aliases are data movement), and the
    MACs of each part of a multi-part compiled op under the stage it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[Any] = set()
        self.stage: str | None = None
        self.parts: dict[tuple[str, str], int] = {}  # (stage it ran in, part) -> MACs

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        schema = func._schema
        if not any(r.alias_info is not None for r in schema.returns) and any(
            str(r.type) == "Tensor" for r in schema.returns
        ):
            self.ops.add(func.overloadpacket)
        out = func(*args, **(kwargs or {}))
        parts = _parts(func.overloadpacket._qualified_op_name)
        if parts and self.stage is not None:
            shapes = [*_shape_args(args), *(kwargs or {}).values()]
            for part, rule in parts.items():
                key = (self.stage, part)
                self.parts[key] = self.parts.get(key, 0) + int(rule(*shapes, out_shape=tuple(out.shape)))
        return out


def _move_parts(stage_macs: dict[str, int], parts: dict[tuple[str, str], int], op_stages: Mapping[str, str]) -> None:
    """Each part of a multi-part op moved from the stage it ran in to the stage ``op_stages`` declares."""
    for (ran_in, part), macs in parts.items():
        target = op_stages.get(part)
        if target is not None and target != ran_in:
            stage_macs[ran_in] -= macs
            stage_macs[target] += macs


def count_torch(
    module: nn.Module, inputs: tuple, stages: tuple[str, ...], op_stages: Mapping[str, str],
) -> tuple[int, dict[str, int], tuple[str, ...]]:
    """MACs of one forward under FlopCounterMode: (total, per stage, ops counted as zero sorted).

    Runs in eval mode under no_grad, like the fvcore policies; stages are attributed with hooks that read
    the running total around each stage module's forward. ``op_stages`` is the module's, checked against
    ``stages`` (:func:`upbench.counting.declared_op_stages`).
    """
    register_rules()
    counter = FlopCounterMode(display=False)
    stage_flops = dict.fromkeys(stages, 0)
    started: dict[str, int] = {}
    handles = []
    seen = _OpsSeen()

    def enter(stage: str) -> None:
        started[stage] = counter.get_total_flops()
        seen.stage = stage

    def leave(stage: str) -> None:
        stage_flops[stage] += counter.get_total_flops() - started[stage]
        seen.stage = None

    for stage in stages:
        child = module.get_submodule(stage)
        handles.append(child.register_forward_pre_hook(lambda _m, _a, stage=stage: enter(stage)))
        handles.append(child.register_forward_hook(lambda _m, _a, _o, stage=stage: leave(stage)))
    try:
        with counting_forward(module), counter, seen:
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    stage_macs = {s: f // 2 for s, f in stage_flops.items()}
    _move_parts(stage_macs, seen.parts, op_stages)
    zero_ops = {short_op_name(packet._qualified_op_name) for packet in seen.ops if packet not in flop_registry}
    return counter.get_total_flops() // 2, stage_macs, tuple(sorted(zero_ops))
