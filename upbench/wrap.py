"""Any x2 upsampling module as a registered operator, without subclassing :class:`Upsampler`."""
from __future__ import annotations

import inspect
from typing import Callable, Mapping

import torch
from torch import nn

from .base import RESERVED_KNOBS, Knob, Upsampler, output_problem
from .checks import is_whole
from .formulas import NO_FORMULAS, Formulas
from .registry import register

# The wrapped module is one stage: every op of its forward is attributed to it.
WRAPPED_STAGE = "body"


def _knob(operator: str, name: str, value: Knob | int) -> Knob:
    if isinstance(value, Knob):
        return value
    if not is_whole(value):
        raise ValueError(f"{operator}: knob {name}={value!r}; expected a Knob or an integer default")
    return Knob(value)


def _check_factory_signature(operator: str, factory: Callable[..., nn.Module], needs_guide: bool,
                             knobs: Mapping[str, Knob]) -> None:
    """A factory that cannot take the call upbench makes is refused when it registers: it failed every row of
    every sweep and table1 point with the same TypeError."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C extension without a signature: its first call will tell
        return
    extra = {"guide_channels": 1} if needs_guide else {}
    try:
        signature.bind(1, **extra, **{knob: declared.default for knob, declared in knobs.items()})
    except TypeError as error:
        named = [*extra, *knobs]
        call = ", ".join(["channels", *(f"{argument}=..." for argument in named)])
        raise ValueError(f"wrap {operator!r}: the factory cannot be called as factory({call}): {error}; expected it to "
                         f"take the channels first{' and ' + ', '.join(named) + ' by name' if named else ''}"
                         f"{' (guide_channels: needs_guide=True)' if needs_guide else ''}") from None


def _guide_left_none(module: nn.Module) -> str | None:
    """The name of the parameter the module's forward takes after x with a default of None (a guide, left None
    where upbench calls forward(x)), if it has one."""
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return positional[1].name if len(positional) > 1 and positional[1].default is None else None


def wrap(
    factory: Callable[..., nn.Module], name: str, needs_guide: bool = False,
    knobs: Mapping[str, Knob | int] | None = None, formulas: Formulas | None = None,
    guide_must_match: bool = False,
) -> type[Upsampler]:
    """Register ``factory`` as operator ``name`` and return the operator class.

    ``factory(channels, **knobs)`` (with ``needs_guide``: ``factory(channels, guide_channels=Cg, **knobs)``)
    builds a module whose ``forward(x)`` (or ``forward(x, guide)``) maps (N, C, H, W) to (N, C, 2H, 2W).
    ``knobs`` maps each hyperparameter the factory takes to its default (an int, or a :class:`Knob` with a
    rule). ``formulas`` is optional; without it the counts are reported with status ``no formula``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"wrap: name={name!r}; expected a non-empty operator name")
    if not callable(factory):
        raise ValueError(f"wrap {name!r}: factory={factory!r} is not callable; expected a function or nn.Module class")
    if formulas is not None and not isinstance(formulas, Formulas):
        raise ValueError(f"wrap {name!r}: formulas must be an upbench.Formulas, got {type(formulas).__name__}")
    checked_knobs = {knob: _knob(name, knob, value) for knob, value in (knobs or {}).items()}
    if reserved := sorted(RESERVED_KNOBS.intersection(checked_knobs)):
        raise ValueError(f"wrap {name!r}: knob {reserved[0]!r} is given by upbench (channels and guide_channels are "
                         f"the factory's arguments, impl upbench's); expected other knob names")

    def check_declaration(cls: type[Upsampler]) -> None:
        Upsampler.check_declaration.__func__(cls)  # the knobs' own mistakes are named first
        _check_factory_signature(name, factory, needs_guide, checked_knobs)

    def __init__(self: Upsampler, channels: int, guide_channels: int | None = None, impl: str = "auto",
                 **hparams: int) -> None:
        Upsampler.__init__(self, channels, guide_channels, impl, **hparams)
        extra = {"guide_channels": self.guide_channels} if self.needs_guide else {}
        body = factory(channels, **extra, **self.hparams)
        if not isinstance(body, nn.Module):
            raise ValueError(f"{name}: the factory returned {type(body).__name__}; expected a torch.nn.Module")
        setattr(self, WRAPPED_STAGE, body)

    def upsample(self: Upsampler, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        body = getattr(self, WRAPPED_STAGE)
        try:
            out = body(x, guide) if self.needs_guide else body(x)
        except (AttributeError, TypeError) as error:
            # a forward(x, guide=None) registered without needs_guide is called forward(x), and fails on its None
            # guide with torch's or Python's words, which do not say why it was None
            guide_name = _guide_left_none(body)
            if self.needs_guide or guide_name is None or "NoneType" not in str(error):
                raise
            raise ValueError(f"{name}: the wrapped module's forward failed on a None ({type(error).__name__}: "
                             f"{error}); if that was {guide_name!r}, which it takes after x and which defaults to "
                             f"None: upbench passes it only to an operator wrapped with needs_guide=True") from error
        problem = output_problem(x, out)
        if problem is not None:
            raise ValueError(f"{name}: the wrapped module returned {problem}")
        return out

    namespace = {
        "name": name, "needs_guide": needs_guide, "guide_must_match": guide_must_match, "knobs": checked_knobs,
        "stages": (WRAPPED_STAGE,), "formulas": formulas or NO_FORMULAS, "compiled_ops": False,
        "__init__": __init__, "upsample": upsample, "check_declaration": classmethod(check_declaration),
        "__doc__": inspect.getdoc(factory) or f"{name}: a wrapped module",
        # a functools.partial's module is functools: the function it binds says where the code is
        "__module__": getattr(getattr(factory, "func", factory), "__module__", None) or __name__,
    }
    class_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_") if part) or "Wrapped"
    return register(type(class_name, (Upsampler,), namespace))
