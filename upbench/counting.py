"""MACs and params with fvcore, under a declared policy, attributed per stage.

Policies:

* ``paper``: the SAPA paper's Table 1 convention. Counted: convolution, linear / matmul / addmm /
  bmm and the other matrix products (:data:`upbench.rules.MATRIX_PRODUCT_RULES`: baddbmm, mv, dot, tensordot,
  attention; biases ignored), matmul and einsum exactly (broadcast batches, vectors, ellipses), the
  elementwise product of two tensors (``a * b`` where neither side is a single element: a gated or indexed
  product that is part of an operator's definition; also when spelled addcmul, outer or linalg.vecdot), and
  the window ops of the compiled path. Everything else counts zero:
  normalization, softmax, sigmoid, activations, biases, add / sub / div, reductions, pooling,
  interpolation and data movement.
* ``fvcore``: fvcore's own handles as a user of fvcore gets them (normalization layers, nearest and
  bilinear interpolation and adaptive pooling counted, elementwise products and the matrix products
  fvcore has no handle for not: the reports name those), with three corrections: einsum counted exactly
  (fvcore's generic einsum handle parses a rounded printout), matmul counted exactly (fvcore's takes the
  batch from the first operand alone and fails on a vector), and handles for the compiled window ops (fvcore
  would count any custom op as zero).
* ``torch``: torch.utils.flop_counter.FlopCounterMode (:mod:`upbench.torch_counting`), an independent
  cross-check that does not trace with torch.jit. Not in the default :data:`POLICIES` of a sweep.

Under every policy, a plugin's counting rules (:mod:`upbench.rules`) count its custom ops; a custom op
without a rule counts zero and keeps its namespace in the zero list (``mylib::blend``).

No count is silently zero: every op that ran and contributed nothing is listed in
``Count.zero_ops``, including the data-movement ops fvcore ignores without a word.

Per-stage counts do not depend on the implementation. A compiled op whose work spans stages (the fused
SAPA kernel runs inside ``feature_assembly`` but does the ``inner_product`` stage's similarity too)
counts each part under its own name (``local_similarity``, ``dynamic_assembly``), and the module
declares, as data, which stage each named part belongs to (``op_stages``, e.g.
``{"local_similarity": "inner_product"}``); :func:`count` moves a part's count to its stage wherever it ran.
One MAC is one multiply-add; FLOPs = 2 x MACs.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

import torch
from fvcore.nn import FlopCountAnalysis, parameter_count
from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS
from fvcore.nn.jit_handles import get_shape
from torch import nn

from .base import check_op_stages
from .formulas import TOTAL
from .registry import make
from .rules import COMPILED_OP_PARTS, MATRIX_PRODUCT_RULES, Rule, counted_parts, rules, rules_key, short_op_name
from .torch_counting import count_torch, counting_forward

POLICIES = ("paper", "fvcore")  # a sweep's default
ALL_POLICIES = POLICIES + ("torch",)
# Ops on Python ints (shape arithmetic in the traced forward), not on data: never costs.
SHAPE_ARITHMETIC = {"aten::Int", "aten::ScalarImplicit", "aten::size", "aten::numel", "aten::dim"}
Handle = Callable[[list, list], "int | Counter"]


# -- counting rules: each a small pure function of the traced op's shapes --------------------
def _tensor_shape(value: Any) -> list[int] | None:
    return get_shape(value) if value.type().kind() == "TensorType" else None


def einsum_shape_macs(equation: str, shapes: list[list[int]]) -> int:
    """Naive contraction cost of ``equation`` over operands of ``shapes``: the product of the extents of every
    distinct index. An ellipsis stands for each operand's leading unnamed dimensions, right-aligned and broadcast
    across operands as torch.einsum does; a broadcast operand has extent 1 where another has the full one."""
    operands = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, shape in zip(operands, shapes):
        head, ellipsis, tail = letters.partition("...")
        unnamed = len(shape) - len(head) - len(tail) if ellipsis else 0
        # the ellipsis' dimensions as indexes of their own, numbered from the right as broadcasting aligns them
        names = [*head, *(f"...{unnamed - i}" for i in range(unnamed)), *tail]
        for name, size in zip(names, shape):
            sizes[name] = max(sizes.get(name, 1), size)
    return math.prod(sizes.values())


def einsum_macs(inputs: list, outputs: list) -> int:
    """aten::einsum by :func:`einsum_shape_macs` (fvcore's own handle parses a rounded printout)."""
    return einsum_shape_macs(inputs[0].toIValue(), [get_shape(v) for v in inputs[1].node().inputs()])


def matmul_shape_macs(a: list[int], b: list[int]) -> int:
    """torch.matmul of shapes ``a`` and ``b``: a vector is a one-row (first) or one-column (second) matrix, the
    batch dimensions broadcast, and each of the batch's (n, k) @ (k, p) products is n * k * p multiply-adds."""
    a_matrix = [1, *a] if len(a) == 1 else list(a)
    b_matrix = [*b, 1] if len(b) == 1 else list(b)
    batch = torch.broadcast_shapes(tuple(a_matrix[:-2]), tuple(b_matrix[:-2]))
    return math.prod(batch) * a_matrix[-2] * a_matrix[-1] * b_matrix[-1]


def matmul_macs(inputs: list, outputs: list) -> int:
    """aten::matmul exactly: fvcore's handle takes the batch from the first operand alone (a (1, n, k) @ (b, k, p)
    broadcast counted once, not b times) and fails on a vector operand."""
    return matmul_shape_macs(get_shape(inputs[0]), get_shape(inputs[1]))


def _factors_macs(factors: list) -> int:
    """One multiply per element of the broadcast product of two traced tensors; scaling by a scalar is free."""
    shapes = [_tensor_shape(v) for v in factors]
    if any(shape is None or math.prod(shape) == 1 for shape in shapes):
        return 0
    return math.prod(torch.broadcast_shapes(*map(tuple, shapes)))


def elementwise_product_macs(inputs: list, outputs: list) -> int:
    """``a * b`` of two tensors: one multiply per output element; scaling by a scalar is free."""
    return _factors_macs(inputs[:2])


def product_of_factors_macs(inputs: list, outputs: list) -> int:
    """addcmul(s, a, b): ``s + value * a * b``, its two factors' product as ``a * b`` counts it (over their
    broadcast shape, not the sum's: s may be larger than the product)."""
    return _factors_macs(inputs[1:3])


def outer_macs(inputs: list, outputs: list) -> int:
    """outer(a, b): every product of an element of a with one of b, as ``a[:, None] * b`` counts."""
    return math.prod(get_shape(outputs[0]))


def vecdot_macs(inputs: list, outputs: list) -> int:
    """linalg.vecdot(a, b): ``(a * b).sum(dim)``, one multiply-add per element of the broadcast product."""
    return math.prod(torch.broadcast_shapes(tuple(get_shape(inputs[0])), tuple(get_shape(inputs[1]))))


def _value(v: Any) -> Any:
    """A traced non-tensor argument's value; a list built in the graph (tensordot's dims) as a list."""
    if v.node().kind() == "prim::ListConstruct":
        return [_value(item) for item in v.node().inputs()]
    return v.toIValue()


def _rule_arguments(inputs: list, outputs: list) -> tuple[list, tuple]:
    """A traced op's arguments as :mod:`upbench.rules` rules take them: tensors as shapes, the rest as values."""
    args = [tuple(shape) if (shape := _tensor_shape(v)) is not None else _value(v) for v in inputs]
    return args, tuple(get_shape(outputs[0]))


def rule_handle(rule: Rule) -> Handle:
    """A plugin's rule (:mod:`upbench.rules`) as an fvcore handle."""
    def handle(inputs: list, outputs: list) -> int:
        args, out_shape = _rule_arguments(inputs, outputs)
        return int(rule(*args, out_shape=out_shape))

    return handle


def parts_handle(parts: Mapping[str, Rule]) -> Handle:
    """A compiled op's rules as an fvcore handle counting each part under its own name, so a module's
    ``op_stages`` can attribute each part to its own stage."""
    def handle(inputs: list, outputs: list) -> Counter:
        args, out_shape = _rule_arguments(inputs, outputs)
        return Counter({part: int(rule(*args, out_shape=out_shape)) for part, rule in parts.items()})

    return handle


def no_macs(inputs: list, outputs: list) -> int:
    return 0


def compiled_op_handles(aten_handles: Mapping[str, Handle]) -> dict[str, Handle]:
    """Handles of the compiled ops for a policy whose aten handles are ``aten_handles``: a part that stands for
    an aten op counts where that op has a handle that counts something."""
    def counts(aten_op: str) -> bool:
        return aten_handles.get(aten_op, no_macs) is not no_macs

    return {op: parts_handle(counted_parts(parts, counts)) for op, parts in COMPILED_OP_PARTS.items()}


_PAPER_ATEN_HANDLES: Mapping[str, Handle] = {
    **{op: _DEFAULT_SUPPORTED_OPS[op] for op in ("aten::_convolution", "aten::addmm", "aten::bmm", "aten::mm",
                                                 "aten::linear")},
    "aten::einsum": einsum_macs,
    "aten::matmul": matmul_macs,
    "aten::mul": elementwise_product_macs,
    "aten::mul_": elementwise_product_macs,
    # the same products written another way count the same: (a * b).sum(1) as vecdot, s + a * b as addcmul
    "aten::addcmul": product_of_factors_macs,
    "aten::addcmul_": product_of_factors_macs,
    "aten::outer": outer_macs,
    "aten::linalg_vecdot": vecdot_macs,
    **{op: rule_handle(rule) for op, rule in MATRIX_PRODUCT_RULES.items()},
}
PAPER_HANDLES: Mapping[str, Handle] = {**_PAPER_ATEN_HANDLES, **compiled_op_handles(_PAPER_ATEN_HANDLES)}

_FVCORE_ATEN_HANDLES: Mapping[str, Handle] = {
    **_DEFAULT_SUPPORTED_OPS,
    "aten::einsum": einsum_macs,
    "aten::matmul": matmul_macs,
    # fvcore counts products as zero too; a handle lets shape arithmetic (2 * h) stay off the zero list
    "aten::mul": no_macs,
}
FVCORE_HANDLES: Mapping[str, Handle] = {**_FVCORE_ATEN_HANDLES, **compiled_op_handles(_FVCORE_ATEN_HANDLES)}

HANDLES = {"paper": PAPER_HANDLES, "fvcore": FVCORE_HANDLES}


# -- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Count:
    """What one forward of a module costs under one policy."""

    policy: str
    macs: int
    params: int
    stage_macs: Mapping[str, int]
    stage_params: Mapping[str, int]
    zero_ops: tuple[str, ...]  # ops that ran and were counted as zero, sorted

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def unattributed_macs(self) -> int:
        """MACs of ops that ran outside every stage module (0 for a well-formed operator)."""
        return self.macs - sum(self.stage_macs.values())

    def stage(self, name: str) -> tuple[int, int]:
        """(MACs, params) of a stage, or of the whole module for ``"total"``."""
        if name == TOTAL:
            return self.macs, self.params
        return self.stage_macs[name], self.stage_params[name]


def _has_data(value: Any) -> bool:
    """A tensor argument of at least one dimension, alone or in a list (einsum's operands): an op on one is data
    even when its result is a single number (a full contraction, a dot product)."""
    if value.node().kind() == "prim::ListConstruct":
        return any(map(_has_data, value.node().inputs()))
    return bool(_tensor_shape(value))


def _recording(name: str, handle: Handle, zero_ops: set[str]) -> Handle:
    def counted(inputs: list, outputs: list) -> int:
        if not _tensor_shape(outputs[0]) and not any(map(_has_data, inputs)):  # shape arithmetic (2 * h), not data
            return 0
        result = handle(inputs, outputs)
        macs = sum(result.values()) if isinstance(result, Mapping) else result
        if macs == 0:
            zero_ops.add(name)
        return result

    return counted


def declared_op_stages(module: nn.Module, stages: tuple[str, ...]) -> dict[str, str]:
    """The module's ``op_stages`` (none by default), checked against ``stages`` before anything is counted."""
    op_stages = getattr(module, "op_stages", {})
    check_op_stages(getattr(module, "name", "") or type(module).__name__, op_stages, stages)
    return dict(op_stages)


def _params(module: nn.Module, stages: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    """Parameters of the whole module and of each stage module."""
    counted = parameter_count(module)
    return int(counted.get("", 0)), {stage: int(counted.get(stage, 0)) for stage in stages}


def _stage_macs(analysis: FlopCountAnalysis, stages: tuple[str, ...], op_stages: Mapping[str, str]) -> dict[str, int]:
    """MACs per stage module, each op part named in ``op_stages`` moved to its declared stage."""
    by_module = analysis.by_module()
    stage_macs = {stage: int(by_module.get(stage, 0)) for stage in stages}
    if not op_stages:
        return stage_macs
    by_operator = analysis.by_module_and_operator()
    for stage in stages:
        for part, target in op_stages.items():
            moved = int(by_operator.get(stage, {}).get(part, 0))
            stage_macs[stage] -= moved
            stage_macs[target] += moved
    return stage_macs


def count(module: nn.Module, inputs: tuple | list | torch.Tensor, policy: str = "paper",
          stages: tuple[str, ...] | None = None) -> Count:
    """Count one forward of ``module(*inputs)`` under ``policy``; one tensor is ``module(inputs)``.

    ``stages`` names child modules to attribute counts to; by default the module's own
    ``stages`` attribute (every Upsampler has one), else none. The module's ``op_stages`` mapping, if
    any, assigns named op parts to stages (see the module docstring).
    """
    if policy not in ALL_POLICIES:
        raise ValueError(f"unknown counting policy {policy!r}; expected one of {', '.join(ALL_POLICIES)}")
    # fvcore wraps one tensor in a tuple and refuses a list, the torch policy unpacked a tensor's batch and took a
    # list: the same call counted under one policy and failed under another
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    elif isinstance(inputs, list):
        inputs = tuple(inputs)
    stages = tuple(getattr(module, "stages", ())) if stages is None else stages
    op_stages = declared_op_stages(module, stages)
    params, stage_params = _params(module, stages)
    if policy == "torch":
        macs, stage_macs, zero_op_names = count_torch(module, inputs, stages, op_stages)
        return Count(policy=policy, macs=macs, params=params, stage_macs=stage_macs, stage_params=stage_params,
                     zero_ops=zero_op_names)
    zero_ops: set[str] = set()
    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    analysis.clear_op_handles()
    # fvcore skips its "truly zero" ops without a word; with only shape arithmetic ignored they
    # show up as unsupported, so the zero list below is complete.
    analysis._ignored_ops = set(SHAPE_ARITHMETIC)
    handles = {**HANDLES[policy], **{op: rule_handle(rule) for op, rule in rules().items()}}
    analysis.set_op_handle(**{op: _recording(op, h, zero_ops) for op, h in handles.items()})
    with counting_forward(module):
        macs = int(analysis.total())
    zero_ops.update(analysis.unsupported_ops().keys())
    return Count(
        policy=policy,
        macs=macs,
        params=params,
        stage_macs=_stage_macs(analysis, stages, op_stages),
        stage_params=stage_params,
        zero_ops=tuple(sorted(short_op_name(op) for op in zero_ops)),
    )


def count_operator(
    name: str, channels: int, N: int, H: int, W: int, policy: str = "paper",
    guide_channels: int | None = None, hparams: tuple[tuple[str, int], ...] = (),
) -> Count:
    """Count operator ``name`` at one shape, once for the counting rules registered: later calls with the same
    shape hit the cache, until a rule is added (a sweep after a plugin's fix counts with it).

    Counts do not depend on the implementation (the compiled ops carry handles that count what
    the reference computes), so the reference path is traced.
    """
    return _count_operator(name, channels, N, H, W, policy, guide_channels, hparams, rules_key())


@lru_cache(maxsize=512)
def _count_operator(name: str, channels: int, N: int, H: int, W: int, policy: str, guide_channels: int | None,
                    hparams: tuple[tuple[str, int], ...], rules_seen: tuple[tuple[str, int], ...]) -> Count:
    op = make(name, channels, guide_channels=guide_channels, impl="reference", **dict(hparams))
    generator = torch.Generator().manual_seed(0)
    return count(op, op.example_inputs(N, H, W, generator=generator), policy)
