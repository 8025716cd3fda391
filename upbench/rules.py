"""Counting rules a plugin registers for its own custom ops, next to its operator.

A rule is a small pure function ``rule(*args, out_shape) -> MACs`` of the op's arguments as called:
every tensor argument is given as its shape (a tuple), every other argument as its value. One rule
serves every counting policy: the fvcore policies (``paper``, ``fvcore``) call it from a traced graph,
the ``torch`` policy from FlopCounterMode (which counts FLOPs: 2 x the rule's MACs).

Without a rule, a custom op counts zero and is named in the row and the reports ("counted as zero").
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

Rule = Callable[..., int]

_RULES: dict[str, Rule] = {}


def _check_op_name(op: str) -> None:
    namespace, sep, name = op.partition("::")
    if not (sep and namespace and name) or namespace in ("aten", "prim"):
        raise ValueError(f"counting rule for {op!r}: expected a custom op name 'namespace::op' (e.g. 'mylib::blend'); "
                         "aten and prim ops are counted by the policies themselves")


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


def rules() -> Mapping[str, Rule]:
    """Every registered rule, by op name."""
    return dict(_RULES)


def short_op_name(op: str) -> str:
    """'aten::mul' -> 'mul'; a custom op keeps its namespace ('mylib::blend'), so a reader can tell it apart."""
    namespace, _, name = op.partition("::")
    return name if namespace in ("aten", "prim") else op


def is_custom_op(op: str) -> bool:
    return "::" in op


def custom_zero_ops(zero_ops: tuple[str, ...] | list[str]) -> list[str]:
    """The custom ops among a zero list (the ones a plugin may owe a counting rule)."""
    return [op for op in zero_ops if is_custom_op(op)]


def counted_as_zero_note(zero_ops: tuple[str, ...] | list[str]) -> str:
    """'counted as zero: mylib::blend' for the custom ops that no rule counted; '' when there are none."""
    custom = custom_zero_ops(zero_ops)
    return f"counted as zero: {', '.join(custom)}" if custom else ""
