"""A test plugin: a wrapped module whose forward is one custom op no policy can count (blend_op.py)."""
import math
import sys
from pathlib import Path

import upbench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blend_op import Blend  # noqa: E402

upbench.wrap(Blend, name="test-blend")


def add_rule() -> None:
    """The op's counting rule, registered next to the operator: one multiply per output element."""
    upbench.counting_rule("upbench_test::blend", lambda x, weight, out_shape: math.prod(out_shape))
