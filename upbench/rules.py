"""Counting rules a plugin registers for its own custom ops, next to its operator.

A rule is a small pure function ``rule(*args, out_shape) -> MACs`` of the op's arguments as called:
every tensor argument is given as its shape (a tuple), every other argument as its value. One rule
serves every counting policy: the fvcore policies (``paper``, ``fvcore``) call it from a traced graph,
the ``torch`` policy from FlopCounterMode (which counts FLOPs: 2 x the rule's MACs).

Without a rule, a custom op counts zero and is named in the row and the reports ("counted as zero").

upbench's own compiled window ops are counted by rules of the same form (:data:`COMPILED_OP_PARTS`), the
one place their MACs are written down for every policy.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterable, Mapping

Rule = Callable[..., int]

_RULES: dict[str, Rule] = {}


def _similarity_macs(query: tuple, *rest: Any, out_shape: tuple) -> int:
    """The query (N, d, 2H, 2W), or (N, d, h, w) for the reflect op, dotted with K*K keys per output pixel (K is
    the last argument)."""
    return math.prod(query) * rest[-1] ** 2


def _assembly_macs(*args: Any, out_shape: tuple) -> int:
    """Every output element (N, C, 2H, 2W), or (N, C, h, w) for the reflect op, a K*K-term weighted sum (K is the
    last argument)."""
    return math.prod(out_shape) * args[-1] ** 2


def _norm_linear_macs(x: tuple, *rest: Any, out_shape: tuple) -> int:
    """nn.Linear's count of the projection: every output element (N, d, H, W) a C-term sum."""
    return math.prod(out_shape) * x[1]


def _layer_norm_macs(x: tuple, *rest: Any, out_shape: tuple) -> int:
    """fvcore's estimate for an affine aten::layer_norm: 5 per input element."""
    return 5 * math.prod(x)


def _batched_product_macs(bias: tuple, batch1: tuple, batch2: tuple, *rest: Any, out_shape: tuple) -> int:
    """baddbmm / addbmm: the bmm of (b, n, m) and (b, m, p); the added bias is free, as for addmm."""
    return math.prod(batch1) * batch2[-1]


def _matrix_vector_macs(*args: Any, out_shape: tuple) -> int:
    """mv / addmv: one multiply-add per element of the (n, m) matrix, the first 2-d argument."""
    return math.prod(next(a for a in args if isinstance(a, tuple) and len(a) == 2))


def _dot_macs(a: tuple, b: tuple, *rest: Any, out_shape: tuple) -> int:
    """dot / vdot of two (n,) vectors: n multiply-adds."""
    return math.prod(a)


def _tensordot_macs(a: tuple, b: tuple, dims_a: Any, *rest: Any, out_shape: tuple) -> int:
    """Every free index of a and b times the contracted ones."""
    contracted = math.prod(a[i] for i in ([dims_a] if isinstance(dims_a, int) else dims_a))
    return math.prod(a) * math.prod(b) // max(contracted, 1)


def _attention_macs(query: tuple, key: tuple, value: tuple, *rest: Any, out_shape: tuple) -> int:
    """softmax(q k^T) v over (..., L, E) queries and (..., S, E), (..., S, Ev) keys and values: two matmuls."""
    return math.prod(query[:-1]) * key[-2] * (query[-1] + value[-1])


def _native_attention_macs(query: tuple, key: tuple, value: tuple, *rest: Any, out_shape: tuple) -> int:
    """nn.MultiheadAttention's fused inference path on (B, L, E) and (B, S, E): the q, k and v projections,
    the attention's two matmuls over all heads, and the output projection."""
    batch, length, embed = query
    source = key[-2]
    return batch * (length * embed * embed * 2 + source * embed * embed * 2 + 2 * length * source * embed)


# aten ops the matrix products of a forward can run as besides mm / bmm / matmul / linear / addmm (which
# fvcore's handles cover): the paper policy counts them by these rules, and a policy that leaves one at zero
# names it in the reports as it names a custom op without a rule.
MATRIX_PRODUCT_RULES: Mapping[str, Rule] = {
    "aten::baddbmm": _batched_product_macs,
    "aten::addbmm": _batched_product_macs,
    "aten::mv": _matrix_vector_macs,
    "aten::addmv": _matrix_vector_macs,
    "aten::dot": _dot_macs,
    "aten::vdot": _dot_macs,
    "aten::tensordot": _tensordot_macs,
    "aten::scaled_dot_product_attention": _attention_macs,
    "aten::_scaled_dot_product_flash_attention_for_cpu": _attention_macs,
    "aten::_native_multi_head_attention": _native_attention_macs,
}

# MACs of each compiled op, split into the parts it does. A part is named after the op that does it alone,
# so the fused SAPA op's similarity and assembly can each be given its own stage (``op_stages``).
COMPILED_OP_PARTS: Mapping[str, Mapping[str, Rule]] = {
    "upbench::local_similarity": {"local_similarity": _similarity_macs},
    "upbench::dynamic_assembly": {"dynamic_assembly": _assembly_macs},
    "upbench::sapa_fused": {"local_similarity": _similarity_macs, "dynamic_assembly": _assembly_macs},
    "upbench::norm_linear": {"linear": _norm_linear_macs, "layer_norm": _layer_norm_macs},
    "upbench::reflect_similarity": {"reflect_similarity": _similarity_macs},
    "upbench::reflect_assembly": {"reflect_assembly": _assembly_macs},
}

# Parts that do the work of an aten op the reference path runs instead: a policy counts such a part only
# where it counts that aten op, so the compiled and reference paths get the same counts under every policy.
ATEN_PARTS: Mapping[str, str] = {
    "linear": "aten::linear",
    "layer_norm": "aten::layer_norm",
    # JBU's reference takes the window taps as elementwise products of shifted views
    "reflect_similarity": "aten::mul",
    "reflect_assembly": "aten::mul",
}


def counted_parts(parts: Mapping[str, Rule], counts_aten_op: Callable[[str], bool]) -> dict[str, Rule]:
    """The parts a policy counts: every upbench part, and an aten part where the policy counts its op."""
    return {part: rule for part, rule in parts.items() if part not in ATEN_PARTS or counts_aten_op(ATEN_PARTS[part])}


def whole(parts: Mapping[str, Rule]) -> Rule:
    """One rule for an op: the sum of its parts."""
    return lambda *args, out_shape: sum(rule(*args, out_shape=out_shape) for rule in parts.values())


# upbench's own compiled ops are counted by COMPILED_OP_PARTS alike on both paths: a plugin's rule for one would
# make the compiled path count otherwise than the reference path it stands for
RESERVED_NAMESPACES = ("aten", "prim", "upbench")


def _check_op_name(op: object) -> None:
    if not isinstance(op, str):
        raise ValueError(f"counting rule for {op!r}: expected a custom op name 'namespace::op' (e.g. 'mylib::blend')")
    namespace, sep, name = op.partition("::")
    if not (sep and namespace and name) or namespace in RESERVED_NAMESPACES:
        raise ValueError(f"counting rule for {op!r}: expected a custom op name 'namespace::op' (e.g. 'mylib::blend'); "
                         "aten and prim ops are counted by the policies themselves, upbench's by upbench")
    if "." in name:
        raise ValueError(f"counting rule for {op!r}: expected the op's name without an overload "
                         f"({namespace}::{name.partition('.')[0]}): a rule counts every overload")


def counting_rule(op: str, rule: Rule | None = None) -> Any:
    """Register ``rule`` as the MACs of custom op ``op`` ("namespace::name"); usable as a decorator.

    Registering a different rule for an op that has one is a ValueError (two plugins disagreeing).
    """
    _check_op_name(op)

    def add(function: Rule) -> Rule:
        if not callable(function):
            raise ValueError(f"counting rule for {op!r}: {function!r} is not callable")
        if _RULES.get(op, function) is not function:
            raise ValueError(f"counting rule for {op!r} is registered twice: {_RULES[op].__qualname__} "
                             f"and {function.__qualname__}")
        _RULES[op] = function
        return function

    return add if rule is None else add(rule)


class CountingRuleError(ValueError):
    """A plugin's counting rule raised, or returned no count of MACs: the rule's fault, not its operator's forward."""


def _checked(op: str, rule: Rule) -> Rule:
    """``rule`` whose failure or result that is no count of MACs is a ValueError naming ``op``: int() of what it
    returned made 1.5 one MAC, a negative count subtracted from the torch policy's total, and a rule that raised
    (a signature that does not match the op's arguments) was reported as the operator's forward failing."""
    def checked(*args: Any, out_shape: tuple[int, ...]) -> int:
        try:
            macs = rule(*args, out_shape=out_shape)
        except Exception as error:  # noqa: BLE001  named, with how a rule is called
            raise CountingRuleError(f"counting rule for {op!r} raised {type(error).__name__}: {error}; a rule is "
                                    f"called as rule(*arguments, out_shape=...) with the op's {len(args)} arguments "
                                    f"(tensors as shapes)") from error
        if isinstance(macs, float) and macs.is_integer():
            macs = int(macs)
        if isinstance(macs, bool) or not isinstance(macs, numbers.Integral) or macs < 0:
            raise CountingRuleError(f"counting rule for {op!r} returned {macs!r}; expected a non-negative integer "
                                    f"of MACs")
        return int(macs)

    return checked


def forget_rules(ops: Iterable[str]) -> None:
    """Unregister the rules of ``ops`` (what a plugin registered before it failed)."""
    for op in ops:
        _RULES.pop(op, None)


def rules_key() -> tuple[tuple[str, int], ...]:
    """Which rules are registered, as a cache key: counts cached before a rule was added are not those after."""
    return tuple(sorted((op, id(rule)) for op, rule in _RULES.items()))


def rules() -> Mapping[str, Rule]:
    """Every registered rule, by op name, each checked as it counts (:func:`_checked`)."""
    return {op: _checked(op, rule) for op, rule in _RULES.items()}


def short_op_name(op: str) -> str:
    """'aten::mul' -> 'mul'; a custom op keeps its namespace ('mylib::blend'), so a reader can tell it apart."""
    namespace, _, name = op.partition("::")
    return name if namespace in ("aten", "prim") else op


def is_custom_op(op: str) -> bool:
    return "::" in op


_MATRIX_PRODUCT_NAMES = {short_op_name(op) for op in MATRIX_PRODUCT_RULES}


def custom_zero_ops(zero_ops: tuple[str, ...] | list[str]) -> list[str]:
    """The ops among a zero list that may hide real work: custom ops (a plugin may owe them a counting rule)
    and the matrix products a policy leaves at zero (:data:`MATRIX_PRODUCT_RULES`)."""
    return [op for op in zero_ops if is_custom_op(op) or op in _MATRIX_PRODUCT_NAMES]


def counted_as_zero_note(zero_ops: tuple[str, ...] | list[str]) -> str:
    """'counted as zero: mylib::blend, tensordot' for the ops that may hide work and that no rule counted;
    '' when there are none."""
    custom = custom_zero_ops(zero_ops)
    return f"counted as zero: {', '.join(custom)}" if custom else ""
