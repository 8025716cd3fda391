"""Operators from outside the repository: entry points, --plugin files and modules, wrap, counting rules
for custom ops, the torch counting policy, and the paper-ready outputs (LaTeX, bench.py report)."""
from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import upbench
from upbench import registry
from upbench.commands import main
from upbench.counting import count
from upbench.files import DIGEST_CHARS, digest_files
from upbench.latex import MARK, booktabs, count_unit, escape
from upbench.table1 import ERROR, NO_FORMULA, Grid, validation_table

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FILE = REPO / "examples" / "my_upsampler.py"
EXAMPLE_PACKAGE = REPO / "examples" / "plugin_package"
BLEND_PLUGIN = REPO / "tests" / "plugins" / "blend_plugin.py"
BUILTINS = ["nearest", "bilinear", "carafe", "indexnet-hin", "indexnet-m2o", "a2u", "sapa-i", "sapa-b", "sapa-g",
            "dysample-lp", "dysample-pl", "fade", "pixel-shuffle", "deconv", "jbu", "resfu"]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def registry_per_test(isolated_registry):
    yield isolated_registry


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    inherited = filter(None, [env.get("PYTHONPATH")])  # the caller's dependencies (fvcore, say) stay found
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(REPO), *inherited])
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


# -- one registration path ----------------------------------------------------------------------
def test_operators_import_no_names_from_the_package_root():
    submodules = {path.stem for path in (REPO / "upbench").glob("*.py")}
    for path in (REPO / "operators").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "upbench":
                names = {alias.name for alias in node.names}
                assert names <= submodules, f"{path.name} imports {names - submodules} from the upbench root"


STALE_METADATA = """
import upbench.registry as registry
registry.entry_points = lambda group: []  # metadata installed before the built-ins had their entry point
import upbench
print(upbench.available())
print(registry.origin("carafe"))
"""


def test_builtins_load_where_the_installed_metadata_is_stale(tmp_path):
    names, origin = _run(["-c", STALE_METADATA], _env(), tmp_path).stdout.strip().splitlines()
    assert eval(names) == BUILTINS  # noqa: S307  (our own printout)
    assert origin == "built-in module operators"


def test_builtins_are_declared_as_an_entry_point_and_load_first(monkeypatch):
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared[registry.ENTRY_POINT_GROUP] == {"builtin": registry.BUILTIN_SOURCE}
    group = registry.ENTRY_POINT_GROUP
    points = [EntryPoint("aaa", "zz_plugin", group), EntryPoint("builtin", "operators", group),
              EntryPoint("again", "operators", group)]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    assert [ep.value for ep in registry._declared_entry_points()] == ["operators", "zz_plugin"]


def test_a_broken_entry_point_warns_and_the_rest_load(monkeypatch):
    broken = EntryPoint("broken", "no_such_plugin_module_xyz", registry.ENTRY_POINT_GROUP)
    builtin = EntryPoint("builtin", "operators", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [broken, builtin])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with pytest.warns(UserWarning, match="skipped entry point broken = no_such_plugin_module_xyz"):
        names = registry.available()
    assert names[: len(BUILTINS)] == BUILTINS


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory) -> Path:
    """examples/plugin_package installed (with its entry point) into a throwaway directory."""
    target = tmp_path_factory.mktemp("site")
    # Built from a copy: a build writes build/ and *.egg-info beside the sources it is given.
    source = shutil.copytree(EXAMPLE_PACKAGE, tmp_path_factory.mktemp("src") / EXAMPLE_PACKAGE.name)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    return target


ENTRY_POINT_RUN = """
import upbench
from upbench.commands import main
print(upbench.available())
print(upbench.registry.origin("bilinear-dw"))
main(["table1", "--ops", "bilinear-dw,sapa-b", "--C", "8", "--size", "4", "--format", "csv"])
"""


def test_entry_point_package_end_to_end(installed_package, tmp_path):
    names, origin, *table = _run(["-c", ENTRY_POINT_RUN], _env(installed_package), tmp_path).stdout.splitlines()
    assert eval(names) == BUILTINS + ["bilinear-dw"]  # noqa: S307
    assert origin == "entry point bilinear-dw = upbench_example_plugin of upbench-example-plugin"
    frame = pd.read_csv(io.StringIO("\n".join(table)))
    mine = frame[frame["operator"] == "bilinear-dw"]
    assert list(mine["status"]) == ["match", "match"]
    assert list(mine["fvcore_macs"]) == [4 * 16 * 9 * 8] * 2  # 4HW pixels x ke^2 x C


def test_plugin_file_end_to_end_on_the_command_line(tmp_path):
    """--plugin before the command: the file's operator is swept beside the built-ins and rendered to LaTeX."""
    out = tmp_path / "mine.csv"
    _run([str(REPO / "bench.py"), "--plugin", str(EXAMPLE_FILE), "sweep", "--ops", "subpixel,nearest", "--C", "4",
          "--size", "4,8", "--device", "cpu", "--warmup", "1", "--min-run-time", "0.01", "--policy", "paper,torch",
          "--out", str(out), "--formats", "latex,markdown", "--quiet"], _env(), tmp_path)
    rows = pd.read_csv(out)
    assert list(rows["status"]) == ["ok"] * 4
    assert list(rows["macs_torch"]) == list(rows["macs_paper"])
    assert rows.loc[rows["operator"] == "subpixel", "macs_paper"].tolist() == [16 * 9 * 4 * 16, 64 * 9 * 4 * 16]
    latex = out.with_suffix(".tex").read_text()
    assert r"\toprule" in latex and r"\bottomrule" in latex
    assert "subpixel &" in latex and r"\multicolumn{3}{c}{8}" in latex


def test_plugin_after_the_command_and_in_every_report(tmp_path, capsys):
    args = ["--plugin", str(EXAMPLE_FILE)]
    assert main(["table1", "--ops", "subpixel,carafe", "--C", "8", "--size", "4", "--format", "latex", *args]) == 0
    assert "subpixel & body" in capsys.readouterr().out
    assert main(["network", "--preset", "segformer-b1", "--ops", "subpixel,sapa-b", "--format", "latex", *args]) == 0
    network = capsys.readouterr().out
    assert "subpixel &" in network and "Added MACs (G)" in network
    out = tmp_path / "compare.csv"
    assert main(["compare", "--ops", "subpixel", "--C", "4", "--size", "4", "--device", "cpu", "--warmup", "1",
                 "--min-run-time", "0.01", "--out", str(out), "--formats", "markdown", "--quiet", *args]) == 0
    rows = pd.read_csv(out)
    assert set(rows["operator"]) == {"subpixel"} and set(rows["impl"]) == {"reference"}
    assert set(rows["status"]) == {"ok"}


def test_an_edited_plugin_is_not_resumed_into_the_rows_of_its_old_source(tmp_path):
    """Rows record a hash of the operator's source: a plugin edited between a killed run and its resume
    would mix two versions of the researcher's operator in one table, and the upbench commit cannot tell."""
    plugin, out = tmp_path / "mine.py", tmp_path / "mine.csv"
    shutil.copy(EXAMPLE_FILE, plugin)
    sweep = [str(REPO / "bench.py"), "--plugin", str(plugin), "sweep", "--ops", "subpixel,nearest", "--C", "4",
             "--size", "4,8", "--device", "cpu", "--warmup", "0", "--min-run-time", "0.001", "--policy", "paper",
             "--out", str(out), "--formats", "markdown", "--quiet"]
    _run(sweep, _env(), tmp_path)
    rows = pd.read_csv(out, dtype={"operator_source": str})
    sources = rows.groupby("operator")["operator_source"].unique()
    assert all(len(values) == 1 and len(values[0]) == DIGEST_CHARS for values in sources)
    assert sources["subpixel"][0] != sources["nearest"][0]
    rows.iloc[:1].to_csv(out, index=False)  # a run killed after its first row
    plugin.write_text(plugin.read_text() + "\n# edited after the first run\n")
    refused = subprocess.run([sys.executable, *sweep, "--resume"], cwd=tmp_path, env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2
    assert "subpixel: source " in refused.stderr and sources["subpixel"][0] in refused.stderr
    assert "nearest: source" not in refused.stderr
    assert "edited between the runs" in refused.stderr and "--allow-mixed" in refused.stderr
    _run([*sweep, "--resume", "--allow-mixed"], _env(), tmp_path)
    resumed = pd.read_csv(out, dtype={"operator_source": str})
    assert len(resumed) == 4 and resumed["operator_source"].nunique() == 3
    report = out.with_suffix(".md").read_text()
    mixed = next(line for line in report.splitlines() if "more than one version" in line)
    assert "(operator_source): subpixel (" in mixed and "nearest" not in mixed


def test_a_plugins_source_hash_covers_the_plugin_file_and_the_wrapped_modules_file(tmp_path):
    model, plugin = tmp_path / "edited_model.py", tmp_path / "edited_plugin.py"
    model.write_text("from torch import nn\n\n\ndef make(channels):\n    return nn.Upsample(scale_factor=2)\n")
    plugin.write_text(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport upbench\nimport edited_model\n\n"
                      f"upbench.wrap(edited_model.make, 'edited-op')\n")
    upbench.load_plugin(plugin)
    before = registry.source_digest("edited-op")
    assert before == digest_files([model.resolve(), plugin.resolve()])
    for edited in (model, plugin):
        text = edited.read_text()
        edited.write_text(text + "# edited\n")
        assert digest_files([model.resolve(), plugin.resolve()]) != before, edited.name
        edited.write_text(text)
    sys.modules.pop("edited_model", None)


@pytest.fixture
def scratch_modules(tmp_path, monkeypatch):
    """The modules a test's plugin imports from tmp_path are forgotten after it, and sys.path is restored."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or ()), None)
        if where and str(where).startswith(str(tmp_path)):
            del sys.modules[name]


def test_a_plugins_source_hash_follows_the_helper_files_it_imports(tmp_path, scratch_modules):
    """A plain helper file beside the plugin file (no package), and the helper that one imports: editing
    either changes what the operator computes, so it must change the hash; upbench's own files and
    installed libraries are never hashed."""
    (tmp_path / "beside_block.py").write_text("import beside_scale\n\n\ndef scale():\n"
                                              "    return beside_scale.FACTOR\n")
    (tmp_path / "beside_scale.py").write_text("FACTOR = 2\n")
    plugin = tmp_path / "beside_plugin.py"
    plugin.write_text(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nfrom torch import nn\nimport upbench\n"
                      f"from beside_block import scale\n\n\ndef make(channels):\n"
                      f"    return nn.Upsample(scale_factor=scale())\n\n\nupbench.wrap(make, 'beside-op')\n")
    upbench.load_plugin(plugin)
    files = registry._source_files(upbench.get("beside-op"))
    assert files == sorted(p.resolve() for p in tmp_path.glob("beside_*.py"))
    assert registry.source_digest("beside-op") == digest_files(files)


def test_a_plugin_file_imports_a_helper_file_beside_it_as_a_script_would(tmp_path, scratch_modules):
    (tmp_path / "my_blocks_beside.py").write_text("from torch import nn\n\n\ndef body(channels):\n"
                                                  "    return nn.Upsample(scale_factor=2)\n")
    plugin = tmp_path / "uses_blocks.py"
    plugin.write_text("import upbench\nfrom my_blocks_beside import body\n\nupbench.wrap(body, 'blocks-op')\n")
    assert upbench.load_plugin(plugin) == ["blocks-op"]
    assert sys.path[-1] == str(tmp_path)  # after the installed packages: a helper named like one does not hide it


def test_the_source_hash_follows_namespace_packages_skips_site_folders_and_survives_odd_objects(tmp_path,
                                                                                               scratch_modules):
    """``import nspkg.blocks`` binds a namespace package (no __file__) whose submodule is the helper; a
    library on PYTHONPATH in a site-packages folder is installed code, not the user's; and an object that
    raises when looked at (a lazy settings proxy) must not keep the plugin from loading."""
    (tmp_path / "odd_nspkg").mkdir()
    (tmp_path / "odd_nspkg" / "blocks.py").write_text("from torch import nn\n\n\ndef make(channels):\n"
                                                      "    return nn.Upsample(scale_factor=2)\n")
    library = tmp_path / "lib" / "site-packages"
    library.mkdir(parents=True)
    (library / "odd_library.py").write_text("VERSION = 1\n")
    (tmp_path / "odd_lazy.py").write_text("class Lazy:\n    def __getattribute__(self, name):\n"
                                          "        raise RuntimeError('settings are not configured')\n\n\n"
                                          "settings = Lazy()\n")
    plugin = tmp_path / "odd_plugin.py"
    plugin.write_text(f"import sys\nsys.path[:0] = [{str(tmp_path)!r}, {str(library)!r}]\nimport upbench\n"
                      f"import odd_nspkg.blocks\nimport odd_library\nfrom odd_lazy import settings\n\n"
                      f"upbench.wrap(odd_nspkg.blocks.make, 'odd-op')\n")
    upbench.load_plugin(plugin)
    hashed = [plugin, tmp_path / "odd_nspkg" / "blocks.py", tmp_path / "odd_lazy.py"]
    assert registry.source_digest("odd-op") == digest_files(sorted(p.resolve() for p in hashed))


def test_one_plugin_loaded_as_a_file_and_as_a_module_is_named_as_such(tmp_path, monkeypatch, scratch_modules):
    """The same file imported under two module names registers two classes of one name: the message must say
    that, not advise renaming one of two operators."""
    plugin = tmp_path / "twice_plugin.py"
    plugin.write_text("from torch import nn\nimport upbench\n\n\ndef make(channels):\n"
                      "    return nn.Upsample(scale_factor=2)\n\n\nupbench.wrap(make, 'twice-op')\n")
    sys.path.insert(0, str(tmp_path))
    upbench.load_plugin(plugin)
    with pytest.raises(ValueError, match=r"'twice-op' is registered twice from one file, .*twice_plugin\.py: by "
                                         r"plugin file .* and by plugin module twice_plugin, .*load it once"):
        upbench.load_plugin("twice_plugin")


def test_a_plugin_packages_source_hash_is_the_same_loaded_as_file_or_module_and_follows_its_helpers(tmp_path):
    """A plugin package: a wrapped functools.partial of a helper's factory. Its hash must not depend on how
    the plugin is named (--plugin pkg.mod or pkg/mod.py), and must change when any file of the package
    does (the partial's arguments in the plugin, the helper's code)."""
    package = tmp_path / "edited_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("from torch import nn\n\n\ndef make(channels, mode):\n"
                                       "    return nn.Upsample(scale_factor=2, mode=mode)\n")
    plugin = package / "plug.py"
    plugin.write_text("import functools\nimport upbench\nfrom edited_pkg import helper\n\n"
                      "upbench.wrap(functools.partial(helper.make, mode='nearest'), 'pkg-op')\n")

    def digest(source: str) -> str:
        run = ["-c", f"import upbench; upbench.load_plugin({source!r}); "
                     f"print(upbench.registry.source_digest('pkg-op'))"]
        return _run(run, _env(tmp_path), tmp_path).stdout.strip()

    first = digest("edited_pkg.plug")
    assert digest(str(plugin)) == first
    plugin.write_text(plugin.read_text().replace("'nearest'", "'bilinear'"))
    after_plugin = digest("edited_pkg.plug")
    assert after_plugin != first and digest(str(plugin)) == after_plugin
    (package / "helper.py").write_text((package / "helper.py").read_text() + "# edited\n")
    assert digest("edited_pkg.plug") not in (first, after_plugin)


def test_unknown_plugin_exits_2_naming_it(capsys):
    assert main(["--plugin", "no/such/file.py", "table1"]) == 2
    assert "no/such/file.py" in capsys.readouterr().err
    assert main(["table1", "--plugin", "no_such_module_xyz"]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err


@pytest.mark.parametrize("body, said", [
    ("import sys\nsys.exit(3)\n", "it called sys.exit(3) while being imported"),
    ("import sys\nsys.exit()\n", "it called sys.exit() while being imported"),
    ("class Stop(BaseException):\n    pass\n\nraise Stop('odd')\n", "Stop: odd"),
], ids=["exit-3", "exit", "base-exception"])
def test_a_plugin_that_exits_while_imported_is_one_line_exit_2(tmp_path, capsys, body, said):
    """sys.exit(3) in a plugin ended bench.py silently with exit 3 (sys.exit() with 0, as if it had run), and an
    exception that is no Exception came out as a traceback."""
    plugin = tmp_path / "quits.py"
    plugin.write_text(body)
    assert main(["--plugin", str(plugin), "table1", "--ops", "nearest"]) == 2
    assert capsys.readouterr().err == f"bench.py: --plugin {plugin}: plugin file {plugin}: failed to load: {said}\n"


def test_ctrl_c_while_a_plugin_loads_is_one_line_exit_130(tmp_path, capsys):
    """Ctrl-C in a slow plugin's import (here the plugin raises the KeyboardInterrupt) came out as a traceback:
    plugins loaded before the command's interrupts were handled."""
    plugin = tmp_path / "slow.py"
    plugin.write_text("raise KeyboardInterrupt\n")
    try:
        code = main(["--plugin", str(plugin), "table1", "--ops", "nearest"])
    except KeyboardInterrupt:
        pytest.fail("the interrupt came out of main: a traceback on the command line")
    assert code == 130 and capsys.readouterr().err == "table1: interrupted\n"


def test_an_entry_point_that_exits_while_imported_warns_and_the_rest_load(tmp_path, monkeypatch):
    (tmp_path / "exiting_plugin_xyz.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    quits = EntryPoint("quits", "exiting_plugin_xyz", registry.ENTRY_POINT_GROUP)
    builtin = EntryPoint("builtin", "operators", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [quits, builtin])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with pytest.warns(UserWarning, match=r"skipped entry point quits = exiting_plugin_xyz: it called sys.exit\(3\)"):
        names = registry.available()
    assert names[: len(BUILTINS)] == BUILTINS


def test_two_plugins_claiming_one_name_is_an_error_naming_both(tmp_path):
    for stem in ("first", "second"):
        (tmp_path / f"{stem}.py").write_text(
            "import upbench\nfrom torch import nn\n"
            "upbench.wrap(lambda channels: nn.Upsample(scale_factor=2), name='dup')\n")
    upbench.load_plugin(tmp_path / "first.py")
    with pytest.raises(ValueError) as caught:
        upbench.load_plugin(str(tmp_path / "second.py"))
    message = str(caught.value)
    assert "'dup' is claimed twice" in message
    assert f"plugin file {tmp_path / 'first.py'}" in message and f"plugin file {tmp_path / 'second.py'}" in message
    assert upbench.load_plugin(tmp_path / "first.py") == []  # loading a plugin again is a no-op


def test_a_plugin_cannot_take_a_builtin_name():
    with pytest.raises(ValueError, match="'carafe' is claimed twice: by .*operators"):
        upbench.wrap(lambda channels: nn.Upsample(scale_factor=2), name="carafe")


# -- wrap -----------------------------------------------------------------------------------------
class Guided(nn.Module):
    def __init__(self, channels: int, guide_channels: int, width: int):
        super().__init__()
        self.mix = nn.Conv2d(guide_channels, channels, 1)
        self.width = width

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2) + self.mix(guide)


def test_wrap_builds_a_guided_operator_with_knobs(generator):
    cls = upbench.wrap(Guided, name="guided-test", needs_guide=True, knobs={"width": 7})
    op = upbench.make("guided-test", 4, guide_channels=6, width=3)
    assert op.body.width == 3 and op.hparams == {"width": 3} and cls.stages == ("body",)
    x, guide = op.example_inputs(2, 3, 5, generator=generator)
    assert op(x, guide).shape == (2, 4, 6, 10)
    counted = count(op, (x, guide))
    assert counted.macs == 2 * 6 * 10 * 6 * 4 and counted.stage_macs == {"body": counted.macs}
    with pytest.raises(ValueError, match="guided-test: unknown hyperparameter"):
        upbench.make("guided-test", 4, depth=2)


def test_wrap_rejects_a_module_that_does_not_upsample_by_two(generator):
    upbench.wrap(lambda channels: nn.Identity(), name="identity-test")
    op = upbench.make("identity-test", 3)
    with pytest.raises(ValueError, match=r"identity-test: the wrapped module returned \(1, 3, 4, 4\); expected"):
        op(*op.example_inputs(1, 4, 4, generator=generator))
    with pytest.raises(ValueError, match="knob depth='2'"):
        upbench.wrap(lambda channels: nn.Identity(), name="bad-knob", knobs={"depth": "2"})


class _Forgets(upbench.Upsampler):
    """A subclass whose upsample forgets to upsample (or casts): no wrap to check what it returns."""

    name = "forgets-test"
    stages = ("proj",)

    def __init__(self, channels: int, guide_channels: int | None = None, impl: str = "auto", **hparams: int):
        super().__init__(channels, guide_channels, impl, **hparams)
        self.proj = nn.Conv2d(channels, channels, 1)

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return self.proj(x)


class _Casts(_Forgets):
    name = "casts-test"

    def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        return nn.functional.interpolate(self.proj(x), scale_factor=2).half()


class _HalfUpsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2).half()


def test_an_upsampler_subclass_that_does_not_upsample_x2_or_casts_is_refused(generator):
    # Only wrap's modules had their output checked: a subclass returning H x W was counted, timed and
    # reported as an upsampler, and one casting to float16 was reported as a float32 row.
    forgets, casts = _Forgets(3).eval(), _Casts(3).eval()
    x = torch.randn(1, 3, 4, 4, generator=generator)
    with pytest.raises(ValueError, match=r"forgets-test: upsample returned \(1, 3, 4, 4\); expected x2 upsampled "
                                         r"\(1, 3, 8, 8\)"):
        forgets(x)
    with pytest.raises(ValueError, match="casts-test: upsample returned dtype torch.float16; expected torch.float32"):
        casts(x)
    upbench.wrap(lambda channels: _HalfUpsample(), name="wrapped-casts-test")
    with pytest.raises(ValueError, match="wrapped-casts-test: the wrapped module returned dtype torch.float16"):
        upbench.make("wrapped-casts-test", 3)(x)


@pytest.mark.parametrize("name", ["mine,v2", "mine|v2", " mine", "mine\n"])
def test_an_operator_name_the_command_line_cannot_select_is_refused(name):
    # "mine,v2" registered, and then --ops mine,v2 asked for the unknown operators 'mine' and 'v2'
    with pytest.raises(ValueError, match=f"operator name {re.escape(repr(name))} .*; expected a name without"):
        upbench.wrap(lambda channels: nn.Upsample(scale_factor=2), name=name)
    assert name not in upbench.available()


@pytest.mark.parametrize("knob", ["mode", "dtype", "key", "status", "macs_torch", "gflops_per_s_torch", "seed"])
def test_a_knob_named_as_a_row_column_is_refused_before_a_sweep_measures(knob, capsys):
    upbench.wrap(lambda channels, **_: nn.Upsample(scale_factor=2), name="column-knob-test", knobs={knob: 1})
    with pytest.raises(ValueError, match=f"column-knob-test: knob '{knob}' has the name of a column every sweep row"):
        upbench.SweepSpec(ops=("column-knob-test",), channels=(4,), sizes=(4,))
    assert main(["sweep", "--ops", "column-knob-test", "--C", "4", "--size", "4", "--quiet"]) == 2
    assert f"knob '{knob}' has the name of a column" in capsys.readouterr().err


@pytest.mark.parametrize("knob", ["size", "ops", "l2_flush", "policy", "budget"])
def test_a_knob_named_as_a_sweep_axis_or_setting_is_refused(knob, capsys):
    # --knob size=5,7 swept the input size instead of the knob (rows at 5x5 and 7x7, the knob at its default),
    # and --knob seed=5,7 failed as a bad seed (seed, warmup, tf32 and threads are row columns now, refused as such)
    upbench.wrap(lambda channels, **_: nn.Upsample(scale_factor=2), name="axis-knob-test", knobs={knob: 3})
    with pytest.raises(ValueError, match=f"axis-knob-test: knob '{knob}' has the name of a sweep axis or setting"):
        upbench.SweepSpec(ops=("axis-knob-test",), channels=(4,), sizes=(4,))
    assert main(["sweep", "--ops", "axis-knob-test", "--C", "4", "--size", "4", "--quiet"]) == 2
    assert f"knob '{knob}' has the name of a sweep axis or setting" in capsys.readouterr().err
    assert main(["sweep", "--ops", "bilinear", "--C", "4", "--size", "4", "--knob", f"{knob}=5,7", "--quiet"]) == 2
    assert f"sweep: --knob {knob}=5,7: {knob} is a sweep " in capsys.readouterr().err


class Picky(nn.Module):
    """Upsamples maps up to 8 pixels high and raises above: a plugin's forward that fails at some shapes
    (with a ValueError when ``strict`` > 1: the kind a plugin checking its input raises)."""

    def __init__(self, strict: int = 1):
        super().__init__()
        self.strict = strict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] > 8:
            raise (ValueError if self.strict > 1 else RuntimeError)(f"picky: {x.shape[2]} rows is too many")
        return nn.functional.interpolate(x, scale_factor=2)


def test_table1_keeps_every_other_row_when_a_forward_raises_a_value_error(capsys):
    upbench.wrap(lambda channels, strict: Picky(strict), name="strict-test", knobs={"strict": 1})
    table = validation_table(["strict-test"], Grid(C=(4,), sizes=((16, 16),), knobs={"strict": (1, 2)}))
    assert list(table["status"]) == [ERROR, ERROR] and list(table["strict"]) == [1, 2]
    assert table["note"].iloc[1] == "the forward failed: ValueError: picky: 16 rows is too many"
    assert main(["table1", "--ops", "strict-test,nearest", "--C", "4", "--size", "16", "--knob", "strict=2",
                 "--format", "csv"]) == 1
    out, err = capsys.readouterr()
    assert "nearest,total" in out
    assert "table1: strict-test at C=4, 16x16, strict=2: the forward failed: ValueError: picky: 16 rows" in err
    for knob in ("note", "stage"):  # a knob named as a table1 column would overwrite it
        upbench.wrap(lambda channels, **knobs: Picky(), name=f"{knob}-knob-test", knobs={knob: 1})
        assert main(["table1", "--ops", f"{knob}-knob-test", "--knob", f"{knob}=1"]) == 2
        assert f"knob {knob!r} has the name of a table1 column" in capsys.readouterr().err


def test_table1_keeps_every_other_row_when_a_forward_raises(capsys):
    upbench.wrap(lambda channels: Picky(), name="picky-test")
    table = validation_table(["nearest", "picky-test"], Grid(C=(4,), sizes=((8, 8), (16, 16))))
    picky = table[table["operator"] == "picky-test"]
    assert list(picky["status"]) == [NO_FORMULA, NO_FORMULA, ERROR]  # body and total at 8x8, then the failure
    assert picky["note"].iloc[-1] == "the forward failed: RuntimeError: picky: 16 rows is too many"
    assert (table[table["operator"] == "nearest"]["status"] != ERROR).all()
    assert main(["table1", "--ops", "nearest,picky-test", "--C", "4", "--size", "16", "--format", "csv"]) == 1
    out, err = capsys.readouterr()
    assert "nearest,total" in out and "picky-test,total" in out
    assert "table1: picky-test at C=4, 16x16: the forward failed: RuntimeError: picky: 16 rows is too many" in err
    assert "Traceback" not in err


class Fussy(nn.Module):
    """Refuses to be built for more than 8 channels: a plugin's constructor that fails at some points."""

    def __init__(self, channels: int):
        super().__init__()
        if channels > 8:
            raise ValueError(f"fussy: {channels} channels is too many")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2)


def test_table1_keeps_every_other_row_when_a_constructor_raises(capsys):
    # the constructor ran outside the per-point try: its ValueError ended the table (exit 2, no rows, the
    # baselines' and its own good points' too), and a TypeError printed a traceback
    upbench.wrap(Fussy, name="fussy-test")
    assert main(["table1", "--ops", "fussy-test,nearest", "--C", "4,16", "--size", "4", "--format", "csv"]) == 1
    out, err = capsys.readouterr()
    table = pd.read_csv(io.StringIO(out))
    fussy = table[table["operator"] == "fussy-test"]
    assert list(fussy["status"]) == [NO_FORMULA, NO_FORMULA, ERROR] and list(fussy["C"]) == [4, 4, 16]
    assert fussy["note"].iloc[-1] == "it could not be built: ValueError: fussy: 16 channels is too many"
    assert (table[table["operator"] == "nearest"]["status"] != ERROR).all() and len(table) == 7
    assert "table1: fussy-test at C=16, 4x4: it could not be built: ValueError: fussy: 16" in err
    assert "Traceback" not in err


def test_table1_says_a_failing_counting_rule_failed_not_the_forward():
    upbench.load_plugin(BLEND_PLUGIN)
    upbench.counting_rule("upbench_test::blend", lambda x, weight, out_shape: 1.5)
    table = validation_table(["test-blend"], Grid(C=(3,), sizes=((4, 4),)))
    assert list(table["status"]) == [ERROR]
    assert table["note"].iloc[0].startswith("its counting rule failed: counting rule for 'upbench_test::blend' "
                                            "returned 1.5")


@pytest.mark.parametrize("declare, message", [
    (dict(knobs={"kernel": 3}), r"factory\(channels, kernel=...\): got an unexpected keyword argument 'kernel'"),
    (dict(needs_guide=True), r"factory\(channels, guide_channels=...\).*\(guide_channels: needs_guide=True\)"),
])
def test_a_factory_that_cannot_take_its_call_is_refused_when_it_registers(declare, message):
    # it was accepted, and every row of every sweep and table1 point then failed with the same TypeError
    with pytest.raises(ValueError, match=f"wrap 'narrow-test': the factory cannot be called as {message}"):
        upbench.wrap(lambda channels, K=3: nn.Upsample(scale_factor=2), name="narrow-test", **declare)
    assert "narrow-test" not in upbench.available()
    upbench.wrap(lambda channels, **knobs: nn.Upsample(scale_factor=2), name="wide-test", knobs={"kernel": 3})


@pytest.mark.parametrize("stages, message", [
    ("body", "stages='body'; expected a tuple (or list) of the names of its stage modules"),
    (("body", ""), "stages=('body', ''); expected a tuple (or list) of the names of its stage modules"),
    (("body", "body"), "stages=('body', 'body') names a stage twice"),
])
def test_stages_that_are_no_tuple_of_names_are_refused_when_registering(stages, message):
    # stages = "body" was taken as the stages 'b', 'o', 'd', 'y': table1 then failed on a missing attribute 'b'
    class Odd(upbench.Upsampler):
        name = "odd-stages-test"

    Odd.stages = stages
    with pytest.raises(ValueError, match=f"odd-stages-test: {re.escape(message)}"):
        upbench.register(Odd)


def test_a_plugin_that_registers_nothing_is_warned_of_and_a_folder_is_refused(tmp_path, capsys):
    (tmp_path / "nothing.py").write_text("VALUE = 1\n")
    assert main(["--plugin", str(tmp_path / "nothing.py"), "table1", "--ops", "nearest", "--C", "4", "--size", "4",
                 "--format", "csv"]) == 0
    err = capsys.readouterr().err
    warned = f"bench.py: warning: plugin file {tmp_path / 'nothing.py'} registered no operator and no counting rule"
    assert warned in err
    assert main(["--plugin", str(tmp_path), "table1", "--ops", "nearest"]) == 2
    assert "a folder; expected a Python file (path/to/file.py) or an importable module" in capsys.readouterr().err


def test_a_package_folder_in_the_working_directory_is_a_module_plugin(tmp_path, monkeypatch):
    """The folder check came before the import: --plugin my_ops, a package beside the user, was refused."""
    package = tmp_path / "upbench_folder_test_ops"
    package.mkdir()
    (package / "__init__.py").write_text("import torch.nn as nn, upbench\n"
                                         "upbench.wrap(lambda channels: nn.Upsample(scale_factor=2), name='folder-op')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert upbench.load_plugin("upbench_folder_test_ops") == ["folder-op"]


def test_a_plugins_own_warnings_keep_their_form(tmp_path, capsys):
    """Only upbench's warning about a plugin is one 'bench.py: warning:' line; what the plugin's imports warn
    of is shown as Python shows it, with its category."""
    (tmp_path / "noisy.py").write_text("import warnings, torch.nn as nn, upbench\n"
                                       "warnings.warn('deprecated knob', UserWarning)\n"
                                       "upbench.wrap(lambda channels: nn.Upsample(scale_factor=2), name='noisy-op')\n")
    with pytest.warns(UserWarning, match="deprecated knob"):
        assert main(["--plugin", str(tmp_path / "noisy.py"), "table1", "--ops", "noisy-op", "--C", "4", "--size", "4",
                     "--format", "csv"]) == 0
    assert "bench.py: warning: deprecated knob" not in capsys.readouterr().err


def test_table1_without_formulas_says_no_formula_never_match():
    upbench.wrap(lambda channels: nn.ConvTranspose2d(channels, channels, 2, stride=2), name="deconv-test")
    table = validation_table(["deconv-test"])
    assert set(table["status"]) == {NO_FORMULA}
    assert table["paper_macs"].isna().all() and table["exact_params"].isna().all()
    assert (table["fvcore_macs"] == 256 * 256 * 4 * 16 * 16).all()


# -- custom ops and counting rules --------------------------------------------------------------
def test_custom_op_is_counted_as_zero_by_name_until_a_plugin_gives_a_rule(generator, capsys):
    upbench.load_plugin(BLEND_PLUGIN)
    op = upbench.make("test-blend", 3)
    inputs = op.example_inputs(1, 4, 4, generator=generator)
    for policy in ("paper", "fvcore", "torch"):
        counted = count(op, inputs, policy)
        assert (counted.macs, counted.zero_ops) == (0, ("upbench_test::blend",)), policy
    assert main(["table1", "--ops", "test-blend", "--C", "3", "--size", "4", "--format", "csv"]) == 0
    notes = pd.read_csv(io.StringIO(capsys.readouterr().out))["note"]
    assert all("counted as zero: upbench_test::blend" in note for note in notes)

    sys.modules[[m for m in sys.modules if m.startswith("upbench_plugin_blend_plugin")][0]].add_rule()
    for policy in ("paper", "fvcore", "torch"):
        counted = count(op, inputs, policy)
        assert (counted.macs, counted.zero_ops) == (3 * 8 * 8, ()), policy
    with pytest.raises(ValueError, match="registered twice"):
        upbench.counting_rule("upbench_test::blend", lambda *args, out_shape: 0)
    with pytest.raises(ValueError, match="expected a custom op name"):
        upbench.counting_rule("aten::mul", lambda *args, out_shape: 0)


@pytest.mark.parametrize("rule, message", [
    (lambda x, weight, out_shape: 1.5, "returned 1.5; expected a non-negative integer of MACs"),
    (lambda x, weight, out_shape: -5, "returned -5; expected a non-negative integer of MACs"),
    (lambda x, out_shape: 1, "raised TypeError: .*; a rule is called as rule.* with the op's 2 arguments"),
])
def test_a_counting_rule_that_fails_or_returns_no_count_is_named(rule, message, generator):
    # int() of the result made 1.5 one MAC and let -5 subtract; a rule that raised was "the forward failed"
    upbench.load_plugin(BLEND_PLUGIN)
    upbench.counting_rule("upbench_test::blend", rule)
    op = upbench.make("test-blend", 3)
    for policy in ("paper", "fvcore"):
        with pytest.raises(ValueError, match=f"counting rule for 'upbench_test::blend' {message}"):
            count(op, op.example_inputs(1, 4, 4, generator=generator), policy)


def test_sweep_report_names_custom_ops_counted_as_zero(tmp_path, capsys):
    out = tmp_path / "blend.csv"
    assert main(["--plugin", str(BLEND_PLUGIN), "sweep", "--ops", "test-blend", "--C", "2", "--size", "2",
                 "--device", "cpu", "--warmup", "1", "--min-run-time", "0.01", "--out", str(out),
                 "--formats", "markdown", "--quiet"]) == 0
    assert pd.read_csv(out)["zero_ops_paper"].tolist() == ["upbench_test::blend"]
    assert "counted as zero: upbench_test::blend" in out.with_suffix(".md").read_text()


# -- the torch policy ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["carafe", "sapa-b", "indexnet-hin"])
def test_torch_policy_agrees_with_the_paper_policy_except_elementwise_products(name, generator):
    op = upbench.make(name, 8, impl="reference")
    inputs = op.example_inputs(1, 4, 4, generator=generator)
    paper, torch_count = count(op, inputs, "paper"), count(op, inputs, "torch")
    products = 8 * 8 * 8 if name == "indexnet-hin" else 0  # index map x upsampled feature: FlopCounterMode skips it
    assert torch_count.macs == paper.macs - products
    assert torch_count.params == paper.params
    assert ("mul" in torch_count.zero_ops) == bool(products)


def test_torch_policy_counts_the_compiled_ops(generator):
    from upbench.kernels import compiled_available

    if not compiled_available():
        pytest.skip("compiled ops not built")
    for name in ("carafe", "sapa-b"):
        reference = upbench.make(name, 8, impl="reference")
        compiled = upbench.make(name, 8, impl="compiled")
        compiled.load_state_dict(reference.state_dict())
        inputs = reference.example_inputs(1, 4, 4, generator=generator)
        assert count(compiled, inputs, "torch").macs == count(reference, inputs, "torch").macs > 0


def test_table1_names_the_ops_flop_counter_mode_leaves_out():
    table = validation_table(["indexnet-hin"], upbench.table1.Grid(C=(8,), sizes=((4, 4),)))
    total = table[table["stage"] == "total"].iloc[0]
    assert total["torch_macs"] == total["exact_macs"] - 4 * 8 * 16
    assert "torch - exact: MACs -512; FlopCounterMode counts no MACs for mul" in total["note"]


def test_unknown_policy_names_the_torch_policy():
    with pytest.raises(ValueError, match="expected one of paper, fvcore, torch"):
        upbench.SweepSpec(policies=("flops",))
    with pytest.raises(ValueError, match="expected one of paper, fvcore, torch"):
        count(nn.Identity(), (torch.zeros(1),), "flops")


# -- LaTeX and bench.py report ------------------------------------------------------------------
def test_count_unit_and_escaping():
    assert count_unit([0, 2.5e9, 1e6]) == ("G", 1e9)
    assert count_unit([999, None, float("nan")]) == ("", 1.0)
    assert count_unit([1000]) == ("k", 1e3)
    assert escape("sapa_b & 5% #1") == r"sapa\_b \& 5\% \#1"


def test_latex_sets_exponents_as_superscripts_and_escapes_what_the_default_font_misprints():
    """Table 1's notes say 4K^2 and 36K^2d: escaped as \\textasciicircum{} they printed the caret itself in a paper;
    "C -> d" printed "C -¿ d" in LaTeX's default (OT1) font encoding."""
    assert escape("4K^2, 36K^2d, ke^2 * d, 2^-11, x^y") == \
        r"4K$^{2}$, 36K$^{2}$d, ke$^{2}$ * d, 2$^{-11}$, x\textasciicircum{}y"
    assert escape("C -> d, a < b | c") == r"C -\textgreater{} d, a \textless{} b \textbar{} c"
    text = booktabs(pd.DataFrame({"operator": ["carafe"]}), {"operator": "text"}, caption="x^2",
                    notes=[f"the content-encoder bias (4K^2){MARK}"])
    assert r"\caption{x$^{2}$}" in text and r"the content-encoder bias (4K$^{2}$)$^\dagger$}" in text


def test_booktabs_groups_units_and_missing_values():
    columns = pd.MultiIndex.from_tuples([("", "operator"), ("64", "MACs"), ("64", "Latency"), ("128", "MACs")])
    table = pd.DataFrame([["a_b", 2.0e9, 1.234, 8.0e9], ["c", 5.0e8, None, None]], columns=columns)
    text = booktabs(table, {"operator": "text", "MACs": "macs", "Latency": "ms"}, caption="Cost")
    lines = text.splitlines()
    assert r" & \multicolumn{2}{c}{64} & \multicolumn{1}{c}{128} \\" in lines
    assert r"\cmidrule(lr){2-3} \cmidrule(lr){4-4}" in lines
    assert r"operator & MACs (G) & Latency (ms) & MACs (G) \\" in lines
    assert r"a\_b & 2.00 & 1.23 & 8.00 \\" in lines and r"c & 0.50 & -- & -- \\" in lines
    assert lines.index(r"\toprule") < lines.index(r"\midrule") < lines.index(r"\bottomrule")
    assert "rounded to 2 decimals" in text
    with pytest.raises(ValueError, match="no known kind"):
        booktabs(table, {"operator": "text"})


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "rows.csv"
    spec = upbench.SweepSpec(ops=("nearest", "carafe"), channels=(4,), sizes=((4, 4), (8, 8)), devices=("cpu",),
                             impls=("reference",), warmup=1, min_run_time=0.01)
    upbench.run_sweep(spec, out, progress=False)
    return out


@pytest.mark.parametrize("fmt", ["latex", "markdown", "csv", "json"])
def test_report_rerenders_a_finished_sweep(fmt, finished_sweep, capsys):
    assert main(["report", str(finished_sweep), "--format", fmt]) == 0
    out = capsys.readouterr().out
    rows = pd.read_csv(finished_sweep)
    if fmt == "csv":
        assert pd.read_csv(io.StringIO(out))["key"].tolist() == rows["key"].tolist()
    elif fmt == "json":
        assert [r["key"] for r in json.loads(out)] == rows["key"].tolist()
    elif fmt == "latex":
        body = [line for line in out.splitlines() if line.startswith(("nearest &", "carafe &"))]
        assert len(body) == 2  # one operator per row
    else:
        assert out.startswith("# upbench sweep") and "carafe" in out


def test_report_pivot(finished_sweep, capsys):
    assert main(["report", str(finished_sweep), "--pivot", "macs", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    rows = pd.read_csv(finished_sweep)
    carafe = rows[rows["operator"] == "carafe"]
    assert table.loc[table["operator"] == "carafe", ["4", "8"]].values.tolist() == [carafe["macs_paper"].tolist()]
    assert main(["report", str(finished_sweep), "--pivot", "latency", "--format", "latex"]) == 0
    assert r"operator & 4 (ms) & 8 (ms) \\" in capsys.readouterr().out
    assert main(["report", str(finished_sweep.with_suffix(".nope"))]) == 2
    assert "no such file" in capsys.readouterr().err


def test_report_of_a_csv_that_is_not_an_upbench_log_says_so(tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert main(["report", str(other)]) == 2
    assert capsys.readouterr().err.strip() == (f"report: {other}: not an upbench sweep log "
                                               "(no spec_id, config_index, config_total, key, status column)")


@pytest.mark.parametrize("pivot", [[], ["--pivot", "macs"]], ids=["report", "pivot"])
def test_report_of_json_rows_lacking_columns_names_them(tmp_path, capsys, finished_sweep, pivot):
    rows = pd.read_csv(finished_sweep).drop(columns=["device_name", "macs_paper", "macs_fvcore"], errors="ignore")
    partial = tmp_path / "partial.json"
    rows.to_json(partial, orient="records")
    assert main(["report", str(partial), *pivot]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"report: {partial}: not upbench sweep rows a report can render") and "Traceback" not in err
    assert "device_name" in err and "macs_<policy>" in err


def test_rows_of_an_earlier_version_render_with_its_later_columns_empty(tmp_path, capsys, finished_sweep):
    earlier = tmp_path / "earlier.csv"
    pd.read_csv(finished_sweep).drop(columns=["cpu_util", "cpu_others", "timing_suspect"]).to_csv(earlier, index=False)
    assert main(["report", str(earlier)]) == 0
    assert "| carafe" in capsys.readouterr().out
    assert main(["merge", str(earlier), "--out", str(tmp_path / "merged.csv")]) == 0
    assert (tmp_path / "merged.md").read_text().startswith("# upbench sweep")


@pytest.mark.parametrize("text, fragment", [
    ("[1, 2]", "not upbench sweep rows a report can render"),
    ('[{"1": 1}]', "not upbench sweep rows a report can render"),
])
def test_report_of_json_that_is_no_rows_is_one_line(tmp_path, capsys, text, fragment):
    other = tmp_path / "other.json"
    other.write_text(text)
    assert main(["report", str(other)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_report_names_a_missing_throughput_column(tmp_path, capsys, finished_sweep):
    rows = pd.read_csv(finished_sweep).drop(columns=["gflops_per_s_fvcore"])
    partial = tmp_path / "nog.json"
    rows.to_json(partial, orient="records")
    assert main(["report", str(partial)]) == 2
    assert "gflops_per_s_fvcore" in capsys.readouterr().err


def test_merge_of_logs_without_rows_says_so(tmp_path, capsys, finished_sweep):
    empty = tmp_path / "empty.csv"
    empty.write_text(finished_sweep.read_text().splitlines()[0] + "\n")
    assert main(["merge", str(empty), "--out", str(tmp_path / "m.csv"), "--allow-partial"]) == 2
    assert f"nothing to merge: {empty} holds no rows" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()
