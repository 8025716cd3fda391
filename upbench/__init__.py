"""upbench: what a feature upsampler really costs."""
from .base import Knob, Upsampler
from .formulas import Cost, Dims, Formulas
from .registry import available, get, load_plugin, make, register
from .rules import counting_rule
from .spec import SweepSpec
from .sweep import run_sweep
from .wrap import wrap

__all__ = ["Cost", "Dims", "Formulas", "Knob", "SweepSpec", "Upsampler", "available", "counting_rule", "get",
           "load_plugin", "make", "register", "run_sweep", "wrap"]
