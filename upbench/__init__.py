"""upbench: what a feature upsampler really costs."""
from .base import Knob, Upsampler
from .formulas import Cost, Dims, Formulas
from .registry import available, get, make, register
from .spec import SweepSpec
from .sweep import run_sweep

__all__ = ["Cost", "Dims", "Formulas", "Knob", "SweepSpec", "Upsampler", "available", "get", "make", "register",
           "run_sweep"]
