"""upbench: what a feature upsampler really costs."""
from .base import Knob, Upsampler
from .formulas import Cost, Dims, Formulas
from .registry import available, get, make, register

__all__ = ["Cost", "Dims", "Formulas", "Knob", "Upsampler", "available", "get", "make", "register"]
