"""The upsamplers, one family per file. Importing this package registers them all.

Import order is registry order, which is the order reports list them in.
"""
from . import interpolate  # noqa: F401  isort: skip
from . import carafe  # noqa: F401  isort: skip
from . import indexnet  # noqa: F401  isort: skip
from . import a2u  # noqa: F401  isort: skip
from . import sapa  # noqa: F401  isort: skip
from . import dysample  # noqa: F401  isort: skip
from . import fade  # noqa: F401  isort: skip
from . import pixel_shuffle  # noqa: F401  isort: skip
from . import deconv  # noqa: F401  isort: skip
from . import jbu  # noqa: F401  isort: skip
from . import resfu  # noqa: F401  isort: skip
