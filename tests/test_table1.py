"""The Table 1 validation report: upbench.table1.validation_table and ``bench.py table1``."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

import upbench
from upbench import Cost, get
from upbench.commands import main
from upbench.table1 import COLUMNS, EXPLAINED, MATCH, MISMATCH, Grid, validation_table

pytestmark = pytest.mark.usefixtures("single_thread")

OPERATORS = [
    "nearest", "bilinear", "carafe", "indexnet-hin", "indexnet-m2o", "a2u", "sapa-i", "sapa-b", "sapa-g",
    "dysample-lp", "dysample-pl", "fade", "pixel-shuffle", "deconv", "jbu", "resfu",
]
ISSUE_COLUMNS = [
    "operator", "stage", "C", "K", "d", "H", "W",
    "paper_macs", "exact_macs", "fvcore_macs", "torch_macs", "paper_params", "exact_params", "fvcore_params",
    "status", "note",
]


@pytest.fixture(scope="module")
def default_table() -> pd.DataFrame:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped, so set up before the per-test single_thread fixture
    try:
        return validation_table()
    finally:
        torch.set_num_threads(before)


def test_columns_exactly_as_the_issue_lists(default_table):
    assert list(default_table.columns) == ISSUE_COLUMNS
    assert COLUMNS == ISSUE_COLUMNS


def test_default_grid_has_no_mismatch(default_table):
    mismatches = default_table[default_table["status"] == MISMATCH]
    assert mismatches.empty, mismatches.to_string()
    assert set(default_table["status"]) <= {MATCH, EXPLAINED}


def test_default_grid_covers_every_operator_and_stage(default_table):
    assert list(dict.fromkeys(default_table["operator"])) == OPERATORS
    for name in OPERATORS:
        stages = list(default_table.loc[default_table["operator"] == name, "stage"])
        assert stages == list(get(name).stages) + ["total"]
    assert set(default_table["C"]) == {256}
    assert set(zip(default_table["H"], default_table["W"])) == {(16, 16)}


def test_explained_rows_carry_a_reason(default_table):
    explained = default_table[default_table["status"] == EXPLAINED]
    assert not explained.empty
    for _, row in explained.iterrows():
        note = row["note"]
        assert isinstance(note, str) and note.strip(), row.to_dict()
        assert "NO REASON RECORDED" not in note, row.to_dict()
        # the note states the numeric difference, then the reason
        reason = note.split(";", 1)[1].strip() if ";" in note else ""
        assert reason, row.to_dict()


def test_status_agrees_with_the_numbers(default_table):
    for _, row in default_table.iterrows():
        assert (row["fvcore_macs"], row["fvcore_params"]) == (row["exact_macs"], row["exact_params"])
        same = (row["paper_macs"], row["paper_params"]) == (row["exact_macs"], row["exact_params"])
        assert row["status"] == (MATCH if same else EXPLAINED), row.to_dict()
        if same:  # the note only speaks of FlopCounterMode, where its count differs
            assert "exact - paper" not in row["note"]
        assert ("torch - exact" in row["note"]) == (row["torch_macs"] != row["exact_macs"]), row.to_dict()


# per low-res pixel paper totals at C = 256, defaults (see test_formulas.WORKED_EXAMPLE)
PAPER_TOTAL_PER_PIXEL = {
    "nearest": 0, "bilinear": 0,
    "carafe": 99_584, "indexnet-hin": 2_100_224, "indexnet-m2o": 68 * 256**2 + 4 * 256,
    "a2u": 27_940, "sapa-i": 8 * 25 * 256, "sapa-b": 69_760,
    "sapa-g": 5 * 256 * 32 + 4 * 25 * 32 + 4 * 25 * 256 + 256 + 5 * 32,
}


def test_totals_are_for_a_batch_of_one(default_table):
    totals = default_table[default_table["stage"] == "total"].set_index("operator")
    for name, per_pixel in PAPER_TOTAL_PER_PIXEL.items():
        assert totals.loc[name, "paper_macs"] == per_pixel * 16 * 16, name
    # A2U's per-image term appears once (N = 1): C * (2 * 36 + 4K^2) = 256 * 108
    assert totals.loc["a2u", "exact_macs"] - totals.loc["a2u", "paper_macs"] == 256 * 108


def test_grid_sweeps_only_the_knobs_an_operator_has():
    table = validation_table(["nearest", "sapa-i", "carafe"], Grid(C=(8,), K=(3, 5), d=(4, 8), sizes=((2, 3),)))
    assert len(table[table["operator"] == "nearest"]) == 2  # one point: feature_assembly + total
    sapa_i = table[table["operator"] == "sapa-i"]
    assert sorted(set(sapa_i["K"])) == [3, 5]
    assert set(sapa_i["d"]) == {8}  # d = C for SAPA-I
    carafe = table[table["operator"] == "carafe"]
    assert sorted(set(zip(carafe["K"], carafe["d"]))) == [(3, 4), (3, 8), (5, 4), (5, 8)]
    assert set(zip(table["H"], table["W"])) == {(2, 3)}
    assert not (table["status"] == MISMATCH).any()


def test_grid_sweeps_any_other_knob_in_a_column_of_its_own(capsys):
    """A formula stated in a knob (carafe's content encoder is ke^2 * 4K^2 * d) is validated at its values."""
    table = validation_table(["carafe", "nearest"], Grid(C=(8,), K=(3,), sizes=((4, 4),),
                                                         knobs={"encoder_kernel": (1, 5)}))
    assert list(table.columns) == [*COLUMNS[:COLUMNS.index("d") + 1], "encoder_kernel", *COLUMNS[COLUMNS.index("d") + 1:]]
    carafe = table[(table["operator"] == "carafe") & (table["stage"] == "kernel_generation")]
    assert list(carafe["encoder_kernel"]) == [1, 5]
    assert list(carafe["exact_macs"]) == [(ke * ke * 4 * 9 * 64 + 8 * 64) * 16 for ke in (1, 5)]  # per low-res pixel
    assert (carafe["exact_macs"] == carafe["fvcore_macs"]).all() and not (table["status"] == MISMATCH).any()
    assert table.loc[table["operator"] == "nearest", "encoder_kernel"].isna().all()
    with pytest.raises(ValueError, match="unknown knob 'groups': no selected operator has it"):
        validation_table(["carafe"], Grid(knobs={"groups": (2,)}))
    assert main(["table1", "--ops", "carafe", "--knob", "encoder_kernel=2"]) == 2
    assert "carafe: encoder_kernel=2 is invalid" in capsys.readouterr().err
    assert main(["table1", "--ops", "carafe,nearest", "--C", "8", "--size", "4", "--knob", "encoder_kernel=1",
                 "--format", "csv"]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(printed.loc[printed["operator"] == "carafe", "encoder_kernel"]) == {1}


def test_grid_sweeps_the_guides_width_where_an_operator_reads_any(capsys):
    """Table 1's SAPA-B and A2U rows assume C_g = C; at other widths fvcore must still equal the exact formula."""
    table = validation_table(["sapa-b", "a2u", "sapa-i", "nearest"], Grid(C=(32,), Cg=(8, 48), sizes=((4, 4),)))
    assert list(table.columns) == [*COLUMNS[:COLUMNS.index("C") + 1], "Cg", *COLUMNS[COLUMNS.index("C") + 1:]]
    totals = table[table["stage"] == "total"]
    assert list(zip(totals["operator"], totals["Cg"].astype(object))) == [
        ("sapa-b", 8), ("sapa-b", 48), ("a2u", 8), ("a2u", 48), ("sapa-i", 32), ("nearest", pd.NA)]
    assert (table["fvcore_macs"] == table["exact_macs"]).all() and not (table["status"] == MISMATCH).any()
    sapa_b = totals[totals["operator"] == "sapa-b"]
    assert sapa_b["exact_macs"].diff().iloc[1] == 16 * 4 * (48 - 8) * 32  # 4 Cg d per high-res pixel, d = 32
    assert "Cg" not in validation_table(["sapa-b"], Grid(C=(8,), sizes=((4, 4),))).columns
    assert main(["table1", "--ops", "sapa-i,nearest", "--Cg", "8"]) == 2
    assert "Cg 8: no selected operator reads a guide of another width than C" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--C", "--size"])
def test_an_empty_grid_is_refused_not_passed(flag, capsys):
    """A table with no rows would pass --check having validated nothing."""
    assert main(["table1", "--ops", "nearest", flag, "", "--check"]) == 2
    assert f"table1: {flag} is empty: expected at least one value to validate at" in capsys.readouterr().err


# -- command line ------------------------------------------------------------------------------
def test_check_exits_zero_from_the_repo_root(repo_root):
    result = subprocess.run(
        [sys.executable, "bench.py", "table1", "--check"], cwd=repo_root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mismatch" not in result.stderr
    assert "| operator" in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_formats_round_trip_through_pandas(fmt, tmp_path, default_table):
    out = tmp_path / f"table1.{fmt}"
    assert main(["table1", "--format", fmt, "--out", str(out), "--check"]) == 0
    text = out.read_text()
    if fmt == "csv":
        back = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    else:
        assert isinstance(json.loads(text), list)
        back = pd.read_json(io.StringIO(text), orient="records")
    assert list(back.columns) == ISSUE_COLUMNS
    assert len(back) == len(default_table)
    for column in ISSUE_COLUMNS:
        ours = default_table[column].tolist()
        theirs = back[column].tolist()
        if column in ("K", "d"):
            ours = [None if pd.isna(v) else int(v) for v in ours]
            theirs = [None if pd.isna(v) else int(v) for v in theirs]
        elif column == "note":
            theirs = ["" if (v is None or (isinstance(v, float) and pd.isna(v))) else v for v in theirs]
        assert ours == theirs, column


def test_stdout_format_csv(capsys):
    assert main(["table1", "--ops", "nearest,carafe", "--C", "8", "--size", "2x3", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    back = pd.read_csv(io.StringIO(captured.out))
    assert list(back.columns) == ISSUE_COLUMNS
    assert list(back["operator"]) == ["nearest", "nearest", "carafe", "carafe", "carafe"]
    assert "table1:" in captured.err


def _off_by_one(formulas, stage):
    exact = dict(formulas.exact)
    original = exact[stage]
    exact[stage] = lambda s: original(s) + Cost(1, 0)
    return dataclasses.replace(formulas, exact=exact)


@pytest.mark.parametrize("name,stage", [("carafe", "feature_assembly"), ("sapa-b", "inner_product")])
def test_check_fails_on_an_injected_mismatch(name, stage, monkeypatch, capsys):
    cls = get(name)
    monkeypatch.setattr(cls, "formulas", _off_by_one(cls.formulas, stage))
    args = ["table1", "--ops", name, "--C", "16", "--size", "4", "--format", "csv"]
    assert main(args + ["--check"]) == 1
    captured = capsys.readouterr()
    table = pd.read_csv(io.StringIO(captured.out), keep_default_na=False)
    bad = table[table["status"] == MISMATCH]
    probed = bad["note"].str.startswith("probe point of --check: ")
    assert sorted(bad.loc[~probed, "stage"]) == sorted(bad.loc[probed, "stage"]) == sorted([stage, "total"])
    assert all("fvcore - exact: MACs -1" in note for note in bad["note"])
    assert "mismatch" in captured.err
    # without --check the report is still produced and the exit code is 0
    assert main(args) == 0


def test_unknown_operator_exits_2_with_the_known_list(capsys):
    assert main(["table1", "--ops", "carafe,bogus-op", "--check"]) == 2
    err = capsys.readouterr().err
    assert "bogus-op" in err
    for name in OPERATORS:
        assert name in err


def test_latex_notes_hold_once_and_name_the_points_they_hold_at():
    # One note per row: at 2 C carafe's two notes came twice each, and a note of one point (a failing forward,
    # a count that differs at one C) did not say which point it was.
    from upbench.commands.table1 import render_latex

    latex = render_latex(validation_table(["carafe", "sapa-b"], Grid(C=(8, 16), sizes=((4, 4),))))
    assert latex.count("carafe / total: ") == 1 and latex.count("carafe / kernel\\_generation: ") == 1
    assert "sapa-b / total at C=8, K=5, d=32, 4x4: " in latex and "sapa-b / total at C=16, K=5, d=32, 4x4: " in latex


def test_a_latex_note_of_every_row_of_an_operator_is_said_once(isolated_registry):
    """'no formulas stated' came once per stage, and a zero-counted custom op's note likewise."""
    from torch import nn

    from upbench.commands.table1 import render_latex

    upbench.wrap(lambda channels: nn.ConvTranspose2d(channels, channels, 2, stride=2), name="deconv-note-test")
    latex = render_latex(validation_table(["deconv-note-test", "carafe"], Grid(C=(8, 16), sizes=((4, 4),))))
    assert latex.count("no formulas stated") == 1 and "deconv-note-test: no formulas stated" in latex
    assert latex.count("carafe / total: ") == 1  # a note of some stages stays with its stage


def test_knobs_the_table_has_no_column_for_are_said_with_their_defaults(capsys):
    """carafe's encoder_kernel fills no Table 1 column: its rows were counted at 3, which nothing showed."""
    from upbench.commands import main

    assert main(["table1", "--ops", "carafe,sapa-b,nearest", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "table1: knobs without a column, at their defaults: carafe encoder_kernel=3 (--knob NAME=V gives one a " \
           "column)\n" in captured.err
    assert "encoder_kernel" not in captured.out
    assert main(["table1", "--ops", "carafe", "--knob", "encoder_kernel=1", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "without a column" not in captured.err and "encoder_kernel" in captured.out.splitlines()[0]
    assert main(["table1", "--ops", "carafe", "--format", "latex"]) == 0
    assert r"knobs without a column, at their defaults: carafe encoder\_kernel=3" in capsys.readouterr().out
