"""How the package is layered, and the small checks every layer shares: reading rows never loads the measuring
code, an operator file never loads the sweep machinery, no two modules import each other (function-level
imports included), and the errors these checks raise name what the user wrote."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from torch import nn

from upbench.checks import comma_items, is_whole, parse_size
from upbench.commands import main
from upbench.network import network_report
from upbench.presets import get_preset
from upbench.resume import check_same_spec
from upbench.rows import SETTING_COLUMNS, mixed_sources, mixed_environments
from upbench.rules import CountingRuleError, _checked
from upbench.spec import SweepSpec
from upbench.wrap import wrap

PACKAGE = Path(__file__).resolve().parents[1] / "upbench"
MEASURING = ("upbench.memory", "upbench.timing", "upbench.measure", "upbench.sweep", "upbench.isolate",
             "upbench.kernels", "upbench.spec", "upbench.counting")


def _loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``statement``."""
    done = subprocess.run([sys.executable, "-c", f"{statement}\nimport sys\nprint(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("module", ["upbench.rows", "upbench.rowlog", "upbench.views", "upbench.reports",
                                    "upbench.plot", "upbench.export", "upbench.diff", "upbench.latex",
                                    "upbench.vocabulary"])
def test_reading_and_exporting_rows_loads_no_measuring_code(module):
    loaded = _loaded_after(f"import {module}")
    assert module in loaded
    assert not loaded.intersection(MEASURING), sorted(loaded.intersection(MEASURING))


def test_an_operator_file_loads_no_sweep_machinery_and_the_sweep_names_still_resolve():
    loaded = _loaded_after("import upbench.formulas, upbench.base")
    assert not loaded.intersection({"upbench.spec", "upbench.sweep", "pandas", "fvcore"})
    import upbench

    from upbench import run_sweep  # the from-import form resolves too

    assert upbench.SweepSpec is SweepSpec and run_sweep is upbench.run_sweep
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        upbench.nope  # noqa: B018


def _imports(path: Path) -> set[str]:
    """The upbench modules ``path`` imports anywhere in it (a function's imports too), by full name."""
    package = "upbench." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = package.removesuffix(".__init__")
    parent = package if path.name == "__init__.py" else package.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = parent
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # from . import spec
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_two_modules_import_each_other():
    """A package's __init__ re-exporting its modules is left out: the modules import the package implicitly."""
    files = {("upbench." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _imports(path) if m in files and m != name and not files[m].name == "__init__.py"}
             for name, path in files.items() if path.name != "__init__.py"}
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert len(graph) > 30 and graph["upbench.export"]  # the walk saw the package and its imports
    assert not cycles, cycles


# -- the shared checks ----------------------------------------------------------------------------
def test_is_whole_refuses_bools_floats_and_what_is_below_least():
    assert is_whole(3) and is_whole(0, 0) and is_whole(-2) and is_whole(5, 5)
    assert not any([is_whole(True), is_whole(False, 0), is_whole(2.0), is_whole("2"), is_whole(4, 5), is_whole(None)])


def test_comma_items_and_sizes():
    assert comma_items(" a, b ") == ("a", "b") and comma_items([1, 2]) == (1, 2) and comma_items(7) == (7,)
    with pytest.raises(ValueError, match="empty item in the comma list 'a,,b'"):
        comma_items("a,,b")
    assert parse_size("32x48") == (32, 48) and parse_size(16) == (16, 16)
    with pytest.raises(ValueError, match="size: True is not a positive integer"):
        parse_size(True)


# -- errors name what the user wrote ---------------------------------------------------------------
@pytest.mark.parametrize("field, key", [("channels", "C"), ("sizes", "size"), ("batches", "N"), ("dtypes", "dtype")])
def test_an_empty_axis_is_named_as_the_user_writes_it(field, key):
    with pytest.raises(ValueError, match=f"sweep axis '{key}' is empty; expected at least one value"):
        SweepSpec(ops=("nearest",), **{field: ()})


def test_an_empty_ops_list_in_a_sweep_file_is_refused_not_read_as_every_operator(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"sweep axis 'ops' is empty in x.yaml; .*leave it out for every operator"):
        SweepSpec.from_mapping({"ops": []}, source="x.yaml")
    spec_file = tmp_path / "empty_ops.yaml"
    spec_file.write_text("ops: []\nC: [4]\nsize: [4]\n")
    assert main(["sweep", "--spec", str(spec_file), "--out", str(tmp_path / "x.csv"), "--quiet"]) == 2
    assert "sweep axis 'ops' is empty" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_a_refused_resume_lists_every_axis_the_spec_fixes(tmp_path):
    spec = SweepSpec(ops=("nearest",), channels=(4,), sizes=(4,), devices=("cpu",))
    logged = pd.DataFrame({"spec_id": ["0123456789ab"], "config_total": [1], "key": ["x"]})
    with pytest.raises(ValueError) as refused:
        check_same_spec(tmp_path / "log.csv", logged, spec)
    for name in ("ops", "C", "Cg", "size", "N", "dtype", "device", "mode", "impl", "policy", "knobs", "warmup",
                 "min_run_time", "budget", "l2_flush", "tf32", "seed", "threads"):
        assert f" {name}," in str(refused.value) or f"({name}," in str(refused.value) \
            or f" {name})" in str(refused.value), name


def test_setting_columns_record_their_own_fields():
    spec = SweepSpec(ops=("nearest",), warmup=5, min_run_time=0.03, row_budget_s=7, seed=11)
    assert spec.settings() == {"warmup": 5, "min_run_time_s": 0.03, "budget_s": 7.0, "seed": 11}
    assert tuple(spec.settings()) == SETTING_COLUMNS


def test_network_batch_is_a_positive_integer():
    """(The command line's --batch and --channels: tests/test_usage_errors.py.)"""
    preset = get_preset("mask2former-swinb")
    for batch in (0, True, 1.5):
        with pytest.raises(ValueError, match=rf"batch={batch!r}; expected a positive integer"):
            network_report(preset, ["nearest"], batch=batch)


def test_wrap_names_the_reserved_knob():
    with pytest.raises(ValueError, match="knob 'guide_channels' is given by upbench"):
        wrap(lambda channels, guide_channels=None: nn.Identity(), "reserved-knob", knobs={"guide_channels": 4})


def test_a_failing_counting_rule_keeps_its_own_traceback():
    def rule(*shapes, out_shape):
        return 1 // 0

    with pytest.raises(CountingRuleError, match="raised ZeroDivisionError") as failed:
        _checked("mine", rule)((1, 2), out_shape=(1,))
    assert isinstance(failed.value.__cause__, ZeroDivisionError)


def test_mixed_sources_leave_out_rows_without_a_source():
    rows = pd.DataFrame({"operator": ["a", "a", "b", "b"], "operator_source": ["1", "2", "3", None],
                         "device": "cpu"})
    assert mixed_sources(rows) == {"a": ["1", "2"]}
    assert mixed_environments(rows) == ["a: source 1 / 2"]
    assert mixed_sources(rows.drop(columns="operator_source")) == {}


def test_a_run_with_no_ok_row_still_writes_the_png_it_was_asked_for(tmp_path):
    from upbench.export import write_outputs
    from upbench.measure import failed_row

    spec = SweepSpec(ops=("nearest",), channels=(4,), sizes=(4, 8), devices=("cpu",), impls=("reference",))
    configs = spec.expand()
    rows = pd.DataFrame([failed_row(config, spec, index, len(configs), status, "boom")
                         for index, (config, status) in enumerate(zip(configs, ("error", "crash")))])
    written = write_outputs(rows, tmp_path / "failed.csv", ["png"])
    assert written == [tmp_path / "failed.png"] and (tmp_path / "failed.png").read_bytes()[:4] == b"\x89PNG"
