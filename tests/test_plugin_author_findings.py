"""What a researcher bringing their own operator met: paper formulas that differ from the exact ones without a
reason, a paper total left out or at odds with its own rows, formulas that forget the batch."""
from __future__ import annotations

import io

import pandas as pd
import pytest
import torch.nn.functional as F
from torch import nn

import upbench
from upbench.commands import main
from upbench.formulas import TOTAL, Cost
from upbench.table1 import EXPLAINED, MATCH, UNEXPLAINED, Grid, validation_table, with_failed_probes

pytestmark = pytest.mark.usefixtures("isolated_registry", "single_thread")


class SubPixel(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4 * channels, 1)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2)


def exact(s: upbench.Dims) -> Cost:
    return Cost(s.pixels * s.C * 4 * s.C, 4 * s.C * s.C + 4 * s.C)


def without_bias(s: upbench.Dims) -> Cost:
    return Cost(s.pixels * s.C * 4 * s.C, 4 * s.C * s.C)


def _statuses(paper: dict, why: dict | None = None) -> dict[str, tuple]:
    """Each stage's status and note in table1 of SubPixel with these paper formulas (a new name each call)."""
    name = f"subpx{len(upbench.available())}"
    upbench.wrap(SubPixel, name=name, formulas=upbench.Formulas(paper=paper, exact={"body": exact}, why=why or {}))
    table = validation_table([name], Grid(C=(8,), sizes=((4, 4),)))
    return {row.stage: (row.status, row.note) for row in table.itertuples()}


def test_a_paper_row_that_differs_without_a_reason_is_unexplained_and_fails_the_check(tmp_path, capsys):
    statuses = _statuses({"body": without_bias, TOTAL: without_bias})
    assert statuses["body"] == (UNEXPLAINED, "exact - paper: MACs +0, params +32; no reason recorded for the "
                                             "difference (the operator's Formulas(why=...))")
    assert statuses[TOTAL][0] == UNEXPLAINED and "no reason recorded for the difference of body" in statuses[TOTAL][1]
    assert _statuses({"body": without_bias, TOTAL: without_bias}, {"body": "the paper leaves out the bias"}) == {
        "body": (EXPLAINED, "exact - paper: MACs +0, params +32; the paper leaves out the bias"),
        TOTAL: (EXPLAINED, "exact - paper: MACs +0, params +32; [body] the paper leaves out the bias")}
    plugin = tmp_path / "subpx.py"
    plugin.write_text("import upbench, torch.nn.functional as F\nfrom torch import nn\n"
                      "from upbench.formulas import TOTAL, Cost\n"
                      "class S(nn.Module):\n    def __init__(self, channels):\n        super().__init__()\n"
                      "        self.conv = nn.Conv2d(channels, 4 * channels, 1)\n"
                      "    def forward(self, x):\n        return F.pixel_shuffle(self.conv(x), 2)\n"
                      "paper = lambda s: Cost(s.pixels * 4 * s.C * s.C, 4 * s.C * s.C)\n"
                      "exact = lambda s: Cost(s.pixels * 4 * s.C * s.C, 4 * s.C * s.C + 4 * s.C)\n"
                      "upbench.wrap(S, name='subpx2', formulas=upbench.Formulas(paper={'body': paper}, "
                      "exact={'body': exact}))\n")
    assert main(["--plugin", str(plugin), "table1", "--ops", "subpx2", "--C", "8", "--size", "4"]) == 0
    assert main(["--plugin", str(plugin), "table1", "--ops", "subpx2", "--C", "8", "--size", "4", "--check"]) == 1
    assert "2 unexplained" in capsys.readouterr().err


def test_a_paper_without_a_total_row_totals_its_rows():
    assert _statuses({"body": exact}) == {"body": (MATCH, ""), TOTAL: (MATCH, "")}
    status, note = _statuses({"body": without_bias}, {"body": "no bias"})[TOTAL]
    assert (status, note) == (EXPLAINED, "exact - paper: MACs +0, params +32; [body] no bias")


def test_a_paper_total_at_odds_with_its_own_rows_needs_a_reason_of_its_own():
    def short_total(s: upbench.Dims) -> Cost:
        return Cost(s.pixels * s.C * 4 * s.C - 1, 4 * s.C * s.C + 4 * s.C)

    status, note = _statuses({"body": exact, TOTAL: short_total})[TOTAL]
    assert status == UNEXPLAINED and "difference of the paper total with its own rows" in note
    status, note = _statuses({"body": exact, TOTAL: short_total}, {TOTAL: "the paper drops one MAC"})[TOTAL]
    assert (status, note) == (EXPLAINED, "exact - paper: MACs +1, params +0; [total] the paper drops one MAC")


class GuidedGate(nn.Module):
    """x pixel-shuffled, times a sigmoid gate of a 1x1 conv of the guide (C_g -> C)."""

    def __init__(self, channels: int, guide_channels: int):
        super().__init__()
        self.expand = nn.Conv2d(channels, 4 * channels, 1, bias=False)
        self.gate = nn.Conv2d(guide_channels, channels, 1, bias=False)

    def forward(self, x, guide):
        return F.pixel_shuffle(self.expand(x), 2) * self.gate(guide).sigmoid()


def _gated(name: str, gate_macs_per_pixel) -> str:
    """GuidedGate registered as ``name``, its gate's MACs per high-res pixel as given (the product is left out)."""
    def cost(s: upbench.Dims) -> Cost:
        return Cost(s.pixels * 4 * s.C * s.C + gate_macs_per_pixel(s) + 4 * s.pixels * s.C,
                    4 * s.C * s.C + s.Cg * s.C)
    upbench.wrap(GuidedGate, name=name, needs_guide=True, formulas=upbench.Formulas(paper={"body": cost},
                                                                                      exact={"body": cost}))
    return name


@pytest.mark.parametrize("gate_macs,what", [
    (lambda s: s.H * s.W * 4 * s.Cg * s.C, "forgets the batch"),
    (lambda s: s.pixels * 4 * s.C * s.C, "reads C for C_g"),
    (lambda s: s.pixels * 4 * s.Cg * s.C + s.N * s.H * (s.H - s.W), "is only right where H = W"),
])
def test_check_probes_a_point_where_a_formula_right_at_the_defaults_is_wrong(gate_macs, what, capsys):
    name = _gated(f"gated{len(upbench.available())}", gate_macs)
    assert main(["table1", "--ops", name, "--C", "8", "--size", "4"]) == 0, what
    capsys.readouterr()
    assert main(["table1", "--ops", name, "--C", "8", "--size", "4", "--check", "--format", "csv"]) == 1, what
    out, err = capsys.readouterr()
    assert "--check probed each operator at N=2, 4x5, Cg=4 where it reads a guide of any width: 2 rows do not hold" \
        in err
    table = pd.read_csv(io.StringIO(out))
    probed = table[table["note"].str.startswith("probe point of --check: fvcore - exact", na=False)]
    assert probed[["stage", "N", "C", "Cg", "H", "W"]].values.tolist() == [["body", 2, 8, 4, 4, 5],
                                                                         ["total", 2, 8, 4, 4, 5]]


def test_a_formula_that_forgets_the_batch_is_a_mismatch_at_table1_N(capsys):
    name = _gated(f"gated{len(upbench.available())}", lambda s: s.H * s.W * 4 * s.Cg * s.C)
    assert main(["table1", "--ops", name, "--C", "8", "--size", "4", "--N", "1,2", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns[:8]) == ["operator", "stage", "N", "C", "K", "d", "H", "W"]
    assert list(zip(table["N"], table["status"])) == [(1, MATCH), (1, MATCH), (2, "mismatch"), (2, "mismatch")]


def test_every_builtin_holds_at_the_check_probe_point():
    grid = Grid()
    probed = with_failed_probes(validation_table(None, grid), None, grid)
    assert probed.failed == 0 and not probed.skipped and set(probed.table["status"]) <= {MATCH, EXPLAINED}


class SquareOnly(SubPixel):
    def forward(self, x):
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"square maps only, got {tuple(x.shape[-2:])}")
        return super().forward(x)


def test_a_probe_point_an_operator_cannot_run_is_said_not_failed(capsys):
    name = f"square{len(upbench.available())}"
    upbench.wrap(SquareOnly, name=name, formulas=upbench.Formulas(paper={"body": exact}, exact={"body": exact}))
    assert main(["table1", "--ops", f"{name},resfu", "--C", "96", "--size", "4", "--check"]) == 0
    err = capsys.readouterr().err
    # the plugin's own message, with the sizes a trace gives it (tensor(4))
    assert f"table1: probe point not validated for {name}: the forward failed: ValueError: square maps only" in err
    assert "table1: probe point not validated for resfu: it could not be built: ValueError: resfu: " \
           "guide_channels=48; expected a multiple of 32" in err


def _wrapped_with(formula) -> str:
    name = f"subpx{len(upbench.available())}"
    upbench.wrap(SubPixel, name=name, formulas=upbench.Formulas(paper={"body": formula}, exact={"body": formula}))
    return name


def test_a_formula_failing_at_some_points_is_an_error_row_there_and_the_table_goes_on(capsys):
    def below_nine(s: upbench.Dims) -> Cost:
        if s.H > 8:
            raise ValueError("only up to 8")
        return exact(s)

    name = _wrapped_with(below_nine)
    assert main(["table1", "--ops", f"{name},nearest", "--C", "8", "--size", "8,16", "--format", "csv"]) == 1
    printed = capsys.readouterr()
    table = pd.read_csv(io.StringIO(printed.out))
    assert list(table["status"]).count("match") == 6 and set(table.loc[table["operator"] == "nearest", "H"]) == {8, 16}
    failed = table[table["status"] == "error"]
    assert list(failed["H"]) == [16] and failed["note"].iloc[0] == (
        f"a formula failed: {name}: its paper formula for stage 'body' raised ValueError: only up to 8")


def test_a_formula_that_fails_at_the_probe_point_fails_the_check(capsys):
    def square_only(s: upbench.Dims) -> Cost:
        if s.H != s.W:
            raise ValueError("square maps only")
        return exact(s)

    name = _wrapped_with(square_only)
    assert main(["table1", "--ops", name, "--C", "8", "--size", "8", "--check"]) == 1
    err = capsys.readouterr().err
    assert "--check probed each operator at N=2, 8x9: 1 row does not hold (added to the table)" in err
    assert f"{name} at N=2, C=8, 8x9: probe point of --check: a formula failed: {name}: its paper formula" in err


class SquareAtFive(SubPixel):
    def __init__(self, channels: int, K: int):
        super().__init__(channels)
        self.K = K

    def forward(self, x):
        if self.K == 5 and x.shape[-1] != x.shape[-2]:
            raise ValueError("square maps only at K=5")
        return super().forward(x)


def test_a_probe_point_the_operator_refuses_at_one_knob_value_still_checks_the_others(capsys):
    def square_only(s: upbench.Dims) -> Cost:
        if s.H != s.W:
            raise ValueError("square maps only")
        return exact(s)

    name = f"sqfive{len(upbench.available())}"
    upbench.wrap(SquareAtFive, name=name, knobs={"K": 3},
                 formulas=upbench.Formulas(paper={"body": square_only}, exact={"body": square_only}))
    assert main(["table1", "--ops", name, "--C", "8", "--size", "8", "--K", "3,5", "--check"]) == 1
    err = capsys.readouterr().err
    assert f"probe point not validated for {name}: the forward failed: ValueError: square maps only at K=5" in err
    assert f"{name} at N=2, C=8, 8x9, K=3: probe point of --check: a formula failed" in err


def test_a_check_that_validates_nothing_fails_and_names_the_operators_without_formulas(capsys):
    name = f"bare{len(upbench.available())}"
    upbench.wrap(SubPixel, name=name)
    assert main(["table1", "--ops", name, "--C", "8", "--size", "8", "--check"]) == 1
    err = capsys.readouterr().err
    assert f"--check has no formulas to check for {name}" in err and "--check validated nothing" in err
    assert main(["table1", "--ops", f"{name},nearest", "--C", "8", "--size", "8", "--check"]) == 0
    assert f"--check has no formulas to check for {name}" in capsys.readouterr().err


def test_a_network_report_says_its_batch_and_an_input_other_than_the_presets(capsys):
    args = ["network", "--preset", "segformer-b1", "--ops", "sapa-b", "--size", "256x256", "--batch", "2"]
    assert main([*args, "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert r"\caption{segformer-b1: SegFormer-B1 all-MLP head (ADE20K, 512x512): c4, c3, c2 brought to 1/4 by x2 " \
           r"stages; here at input 256x256, batch 2}" in latex
    assert "(3,648 pixels per image); MACs for the batch of 2." in latex
    assert main([*args, "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table["batch"]) == [2] and list(table["size"]) == ["256x256"]
    assert main(["network", "--preset", "segformer-b1", "--ops", "sapa-b", "--format", "latex"]) == 0
    assert "here at" not in capsys.readouterr().out


def test_latex_prints_quotes_and_a_flags_hyphens_as_typed():
    from upbench.latex import escape

    assert escape('the "FLOPs" column of --format csv, a---b') == r"the ``FLOPs'' column of -{}-format csv, a-{}-{}-b"


def test_a_sweeps_latex_says_what_a_knobs_hyphen_means(tmp_path):
    out = tmp_path / "run.csv"
    assert main(["sweep", "--ops", "carafe,nearest", "--K", "3,5", "--C", "4", "--size", "4", "--min-run-time", "0.001",
                 "--warmup", "0", "--out", str(out), "--formats", "latex", "--quiet"]) == 0
    latex = out.with_suffix(".tex").read_text()
    assert "\nnearest & - & " in latex and "-: not a knob of that operator (Cg: it reads no guide)." in latex


def test_a_plugin_file_named_without_its_py_is_suggested(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert main(["--plugin", "mine", "table1", "--ops", "nearest"]) == 2
    assert "plugin module mine: no module of that name; did you mean the file mine.py?" in capsys.readouterr().err


def test_a_network_report_takes_an_operators_knobs_and_says_them(capsys):
    from upbench.network import network_report
    from upbench.presets import get_preset

    preset = get_preset("segformer-b1")
    default = network_report(preset, ["bilinear", "sapa-b"]).set_index("operator")
    small = network_report(preset, ["bilinear", "sapa-b"], knobs={"K": 3}).set_index("operator")
    assert list(small["knobs"]) == ["", "K=3"] and small.loc["bilinear", "added_gmacs_paper"] == 0
    # SAPA-B's inner products and assembly scale with K^2: 9/25 of the default K=5 window work, the embedding unchanged
    assert small.loc["sapa-b", "added_gmacs_paper"] < default.loc["sapa-b", "added_gmacs_paper"]
    assert small.loc["sapa-b", "added_params_m"] == default.loc["sapa-b", "added_params_m"]
    added = small.loc["sapa-b", "added_gmacs_paper"]
    assert small.loc["sapa-b", "table1_added_gmacs"] == pytest.approx(added, abs=0.005)
    assert main(["network", "--preset", "segformer-b1", "--ops", "bilinear,sapa-b", "--knob", "K=3", "--format",
                 "latex"]) == 0
    assert "\nsapa-b (K=3) & " in capsys.readouterr().out
    assert main(["network", "--preset", "segformer-b1", "--ops", "bilinear", "--knob", "K=3"]) == 2
    assert "unknown knob 'K': no selected operator has it" in capsys.readouterr().err
    assert main(["network", "--preset", "segformer-b1", "--ops", "sapa-b", "--knob", "K=3,5"]) == 2
    assert "--knob K: one value for the whole report, got 3, 5" in capsys.readouterr().err


def test_a_formula_reading_a_name_dims_lacks_is_refused_at_registration():
    def typo(s: upbench.Dims) -> Cost:
        return Cost(s.pixels * s.hiden, 0)

    with pytest.raises(ValueError, match=r"typo_op: its exact formula for stage 'body' raised AttributeError: Dims has "
                                         r"no 'hiden': .* and the knobs hidden; a formula reads the fields of "
                                         r"upbench.Dims and the operator's knobs"):
        upbench.wrap(lambda channels, hidden: SubPixel(channels), name="typo_op", knobs={"hidden": 8},
                     formulas=upbench.Formulas(paper={}, exact={"body": typo}))
    assert "typo_op" not in upbench.available()


def test_a_stage_whose_module_never_ran_is_said_so_not_blamed_on_another_stages_op():
    def expand(s: upbench.Dims) -> Cost:
        return Cost(s.pixels * 4 * s.C * s.C, 4 * s.C * s.C)

    def gate(s: upbench.Dims) -> Cost:
        return Cost(4 * s.pixels * s.Cg * s.C, s.Cg * s.C)

    class Staged(upbench.Upsampler):
        name = f"staged{len(upbench.available())}"
        needs_guide = True
        stages = ("expand", "gate")
        formulas = upbench.Formulas(paper={}, exact={"expand": expand, "gate": gate})

        def __init__(self, channels, guide_channels=None, impl="auto", **hparams):
            super().__init__(channels, guide_channels, impl, **hparams)
            self.expand = nn.Conv2d(channels, 4 * channels, 1, bias=False)
            self.gate = nn.Conv2d(self.guide_channels, channels, 1, bias=False)

        def upsample(self, x, guide):  # the gate is built, its params counted, and never called
            return F.pixel_shuffle(self.expand(x), 2)

    upbench.register(Staged)
    table = validation_table([Staged.name], Grid(C=(8,), sizes=((4, 4),))).set_index("stage")
    assert table.loc["gate", "status"] == "mismatch"
    assert table.loc["gate", "note"].endswith("neither count saw a MAC in this stage: did its module run in the forward?")
    assert "pixel_shuffle" not in table.loc["gate", "note"]
