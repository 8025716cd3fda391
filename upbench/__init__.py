"""upbench: what a feature upsampler really costs."""
from __future__ import annotations

from typing import Any

from .base import Knob, Upsampler
from .formulas import Cost, Dims, Formulas
from .registry import available, get, load_plugin, make, register
from .rules import counting_rule
from .wrap import wrap

__all__ = ["Cost", "Dims", "Formulas", "Knob", "SweepSpec", "Upsampler", "available", "counting_rule", "get",
           "load_plugin", "make", "register", "run_sweep", "wrap"]

# Loaded on first use: an operator file imports upbench.formulas, which must not pull in the sweep machinery
# (fvcore, pandas, the row log) with it.
_LAZY = {"SweepSpec": "spec", "run_sweep": "sweep"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
