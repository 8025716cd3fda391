"""What a fuzzing of the Python API found: a script's own operator under a built-in's name took the built-ins
away, counts cached before a counting rule was added outlived it, a half-loaded plugin stayed registered, and
declarations, shards, retries and paths the command line checks went unchecked from Python."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from torch import nn

import upbench
import upbench.launch
from upbench.counting import _count_operator, count_operator
from upbench.formulas import Cost, Formulas

SCRIPT_NAMING_A_BUILTIN = """
import torch, upbench
from torch import nn
class Mine(nn.Module):
    def __init__(self, channels):
        super().__init__()
    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=2)
try:
    upbench.wrap(Mine, "nearest")
except ValueError as error:
    print("refused:", error)
print(len(upbench.available()), type(upbench.make("bilinear", 4)).__name__)
"""


def test_a_script_naming_a_builtin_is_refused_and_the_builtins_stay():
    done = subprocess.run([sys.executable, "-c", SCRIPT_NAMING_A_BUILTIN], capture_output=True, text=True, check=True)
    assert "refused: operator 'nearest' is claimed twice" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("16 ")


def test_counts_cached_before_a_counting_rule_are_not_used_after_it(isolated_registry):
    count_operator("nearest", 4, 1, 4, 4)
    misses = _count_operator.cache_info().misses
    count_operator("nearest", 4, 1, 4, 4)
    assert _count_operator.cache_info().misses == misses  # cached
    upbench.counting_rule("apitest::blend", lambda *shapes, out_shape: 0)
    count_operator("nearest", 4, 1, 4, 4)
    assert _count_operator.cache_info().misses == misses + 1  # counted again, with the rule


@pytest.mark.parametrize("op, message", [("upbench::sapa_fused", "upbench's by upbench"), (5, "expected a custom op"),
                                         ("apitest::blend.default", "without an overload (apitest::blend)")])
def test_a_counting_rule_for_an_op_it_cannot_count_is_refused(isolated_registry, op, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        upbench.counting_rule(op, lambda *shapes, out_shape: 0)


def test_a_plugin_that_fails_half_way_registers_nothing(isolated_registry, tmp_path):
    plugin = tmp_path / "half.py"
    body = ("import torch, upbench\nfrom torch import nn\n"
            "class Up(nn.Module):\n    def __init__(self, channels):\n        super().__init__()\n"
            "    def forward(self, x):\n        return torch.nn.functional.interpolate(x, scale_factor=2)\n"
            "upbench.wrap(Up, 'half-api')\nupbench.counting_rule('apitest::half', lambda *s, out_shape: 0)\n")
    plugin.write_text(body + "raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="failed to load: RuntimeError: boom"):
        upbench.load_plugin(plugin)
    assert "half-api" not in upbench.available() and "apitest::half" not in upbench.rules.rules()
    plugin.write_text(body)  # fixed: it loads
    assert upbench.load_plugin(plugin) == ["half-api"]


def test_one_name_registered_twice_in_one_module_says_so(isolated_registry):
    def up(channels):
        return nn.Upsample(scale_factor=2)

    upbench.wrap(up, "twice-api")
    with pytest.raises(ValueError, match=r"'twice-api' is registered twice in .*test_api_findings.* \(a cell run"):
        upbench.wrap(up, "twice-api")


class _Base(upbench.Upsampler):
    stages = ("body",)

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        self.body = nn.Upsample(scale_factor=2)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("knobs, message", [
    ({"a": upbench.Knob(3, dims_field="K"), "b": upbench.Knob(5, dims_field="K")}, "knobs 'a' and 'b' both fill"),
    ({"K": upbench.Knob(3), "b": upbench.Knob(5, dims_field="K")}, "knobs 'K' and 'b' both fill"),
    ({"channels": upbench.Knob(5)}, "knob 'channels' has the name of an argument every operator takes"),
    ({"impl": upbench.Knob(5)}, "knob 'impl' has the name of an argument"),
    (["K"], "expected a mapping of knob names"),
    ({3: upbench.Knob(5)}, "knob name 3; expected a Python identifier"),
])
def test_a_declaration_no_row_could_run_is_refused(isolated_registry, knobs, message):
    class Declared(_Base):
        name = "declared-api"

    Declared.knobs = knobs
    with pytest.raises(ValueError, match=message):
        upbench.register(Declared)


@pytest.mark.parametrize("cost, message", [(lambda s: Cost(s.pixels * s.C / 3, 0), "returned macs=.*whole number"),
                                           (lambda s: Cost("x", 0), "returned macs='x'"),
                                           (lambda s: Cost(-5, 0), "returned macs=-5")])
def test_a_formula_returning_no_count_is_named(isolated_registry, cost, message):
    from upbench.table1 import Grid, validation_table

    upbench.wrap(lambda channels: nn.Upsample(scale_factor=2), "formula-api",
                 formulas=Formulas(paper={"body": cost}, exact={"body": cost}))
    table = validation_table(["formula-api"], Grid(C=(4,), sizes=((4, 4),)))
    assert list(table["status"]) == ["error"]
    assert re.match(f"a formula failed: formula-api: its .* formula for stage 'body' {message}", table["note"][0])
    assert upbench.formulas.evaluate(lambda s: Cost(8.0, 2), None, "paper", "total") == Cost(8, 2)  # 8.0 is a count


@pytest.mark.parametrize("shard", [(3, 2), (-1, 2), (0, 0), "0/2", (0, 2, 1), (True, 2)])
def test_a_shard_outside_its_sweep_is_refused(tmp_path, shard):
    spec = upbench.SweepSpec(ops=("nearest",), channels=(4,), sizes=(4,), devices=("cpu",))
    with pytest.raises(ValueError, match=r"shard=.*expected \(i, n\) with 0 <= i < n"):
        upbench.run_sweep(spec, tmp_path / "x.csv", shard=shard)


@pytest.mark.parametrize("kwargs, message", [(dict(retry=("failed",)), "with resume=True"),
                                             (dict(retry="failed", resume=True), "expected a tuple"),
                                             (dict(retry=("bogus",), resume=True), "retry bogus: expected some of")])
def test_retry_is_checked_from_python_too(tmp_path, kwargs, message):
    spec = upbench.SweepSpec(ops=("nearest",), channels=(4,), sizes=(4,), devices=("cpu",))
    with pytest.raises(ValueError, match=message):
        upbench.run_sweep(spec, tmp_path / "x.csv", **kwargs)
    with pytest.raises(ValueError, match=message):
        upbench.launch.launch_sweep(spec, tmp_path / "l.csv", 2, upbench.launch.Resources(cluster="local"), **kwargs)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "l.shards").exists()


@pytest.mark.parametrize("name, message", [("x.md", "names a report; expected the row log's .csv"),
                                           ("", "is a folder")])
def test_run_sweep_refuses_a_report_name_or_a_folder_as_its_log(tmp_path, name, message):
    spec = upbench.SweepSpec(ops=("nearest",), channels=(4,), sizes=(4,), devices=("cpu",))
    with pytest.raises(ValueError, match=message):
        upbench.run_sweep(spec, tmp_path / name)
    assert not (tmp_path / "x.md").exists()


def test_one_operator_name_given_as_a_string_is_one_name():
    from upbench.network import network_report
    from upbench.presets import get_preset
    from upbench.table1 import Grid, validation_table

    assert list(network_report(get_preset("segformer-b1"), "nearest")["operator"]) == ["nearest"]
    grid = Grid(C="16", sizes="4")
    assert (grid.C, grid.sizes) == ((16,), ((4, 4),))
    assert set(validation_table("nearest", Grid(C=(4,), sizes=((4, 4),)))["operator"]) == {"nearest"}


@pytest.mark.parametrize("kwargs, message", [(dict(min_run_time=float("nan")), "min_run_time=nan"),
                                             (dict(impl="fast"), "impl='fast'")])
def test_a_measured_network_report_checks_how_it_measures_first(kwargs, message):
    from upbench.network import network_report
    from upbench.presets import get_preset

    with pytest.raises(ValueError, match=message):
        network_report(get_preset("segformer-b1"), ["nearest"], measure=True, **kwargs)
