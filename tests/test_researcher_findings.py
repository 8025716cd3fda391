"""Defects a researcher using upbench ran into: numbers left out of a view without a word, exports that do
not say what they hold, inputs the Python API took under one counting policy and refused under another."""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

import upbench
from upbench.commands import main
from upbench.rows import read_rows, write_csv


@pytest.fixture
def skipped_csv(tmp_path, counted_not_timed) -> str:
    """carafe and nearest at 4 and 8; carafe's rows ran out of the row budget (counted, not timed), nearest's 8
    failed before it was counted."""
    spec = upbench.SweepSpec(ops=("carafe", "nearest"), channels=(8,), sizes=((4, 4), (8, 8)), devices=("cpu",),
                             policies=("paper",))
    rows = upbench.run_sweep(spec)
    carafe = rows["operator"] == "carafe"
    rows.loc[carafe, ["status", "latency_median_ms", "peak_mem_bytes"]] = ["skipped", None, None]
    failed = (rows["operator"] == "nearest") & (rows["H"] == 8)
    rows.loc[failed, ["status", "latency_median_ms", "peak_mem_bytes", "macs_paper", "params"]] = \
        ["error", None, None, None, None]
    out = tmp_path / "skipped.csv"
    write_csv(rows, out)
    return str(out)


# -- report --pivot: rows without a cell ---------------------------------------------------------
def test_the_sweeps_markdown_report_names_the_rows_its_pivots_have_no_cell_for(skipped_csv, capsys):
    assert main(["report", skipped_csv]) == 0
    out = capsys.readouterr().out
    assert "not measured: carafe at 4, 8 (skipped); nearest at 8 (error)" in out.split("## Rows")[0]


def test_a_pivot_says_which_rows_it_has_no_cell_for(skipped_csv, capsys):
    """An operator none of whose rows is ok had no line at all in the Markdown pivot, and nothing said so
    (the LaTeX pivot's note did)."""
    assert main(["report", skipped_csv, "--pivot", "latency"]) == 0
    out = capsys.readouterr().out
    assert "carafe" not in out.split("\n\n")[1]  # the table, under its caption
    assert "not measured: carafe at 4, 8 (skipped); nearest at 8 (error)" in out
    assert main(["report", skipped_csv, "--pivot", "latency", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "not measured" not in captured.out  # csv stays numbers only
    assert "report: warning: not measured: carafe at 4, 8 (skipped); nearest at 8 (error)" in captured.err


@pytest.mark.parametrize("quantity, column", [("macs", "macs_paper"), ("params", "params")])
def test_count_pivots_keep_the_counts_of_rows_that_were_not_timed(skipped_csv, capsys, quantity, column):
    """A row skipped by its budget (or out of memory) was counted: the whole report shows its MACs, the pivot
    dropped them."""
    rows = pd.read_csv(skipped_csv)
    assert main(["report", skipped_csv, "--pivot", quantity, "--format", "csv"]) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(io.StringIO(captured.out))
    carafe = rows[rows["operator"] == "carafe"]
    assert table.loc[table["operator"] == "carafe", ["4", "8"]].values.tolist() == [carafe[column].tolist()]
    assert "report: warning: not measured: nearest at 8 (error)" in captured.err and "carafe" not in captured.err
    assert main(["report", skipped_csv, "--pivot", quantity, "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert "carafe &" in latex and "not measured: nearest at 8 (error)" in latex


# -- report --pivot macs: which counting policy ---------------------------------------------------
@pytest.fixture
def torch_then_paper(tmp_path, counted_not_timed) -> str:
    """Rows counted under the torch policy first, then the paper's: sapa-g's MACs differ between the two."""
    spec = upbench.SweepSpec(ops=("sapa-g",), channels=(8,), sizes=((4, 4),), devices=("cpu",),
                             policies=("torch", "paper"))
    out = tmp_path / "torch.csv"
    upbench.run_sweep(spec, out)
    return str(out)


def test_a_latex_macs_pivot_names_its_counting_policy(torch_then_paper, capsys):
    """The pivot shows the rows' first policy: a sweep with --policy torch,paper pasted torch's MACs into a
    paper under the caption 'macs by operator and input resolution'."""
    assert main(["report", torch_then_paper, "--pivot", "macs", "--format", "latex"]) == 0
    assert r"\caption{MACs (torch counting policy) by operator x resolution}" in capsys.readouterr().out


def test_a_macs_pivot_names_its_counting_policy_in_markdown_csv_and_json(torch_then_paper, capsys):
    """Only the LaTeX said which policy counted the MACs: the Markdown, csv and json pivots of the same rows
    printed torch's counts as bare numbers, 4% under the paper's for sapa-g."""
    rows = pd.read_csv(torch_then_paper)
    assert rows["macs_torch"].tolist() != rows["macs_paper"].tolist()
    assert main(["report", torch_then_paper, "--pivot", "macs"]) == 0
    assert capsys.readouterr().out.startswith("MACs (torch counting policy) by operator x resolution\n\n|")
    assert main(["report", torch_then_paper, "--pivot", "macs", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table[["operator", "policy", "4"]].values.tolist() == [["sapa-g", "torch", rows["macs_torch"].iloc[0]]]
    assert main(["report", torch_then_paper, "--pivot", "macs", "--format", "json"]) == 0
    assert [record["policy"] for record in json.loads(capsys.readouterr().out)] == ["torch"]
    assert main(["report", torch_then_paper, "--pivot", "params", "--format", "csv"]) == 0  # one count, any policy
    assert "policy" not in capsys.readouterr().out


# -- upbench.counting.count: inputs --------------------------------------------------------------
@pytest.mark.parametrize("policy", ["paper", "fvcore", "torch"])
def test_count_takes_one_tensor_or_a_list_under_every_policy(policy):
    """count(op, x) worked under paper and fvcore and failed under torch ("x must be a 4-D tensor; got shape
    (C, H, W)": its batch was unpacked); count(op, [x]) the other way round."""
    from upbench.counting import count

    op = upbench.make("carafe", 8)
    x, _ = op.example_inputs(1, 4, 4)
    expected = count(op, (x,), policy=policy).macs
    assert expected > 0
    assert count(op, x, policy=policy).macs == expected
    assert count(op, [x], policy=policy).macs == expected


@pytest.mark.parametrize("policy", ["paper", "fvcore", "torch"])
def test_a_shape_mistake_reads_the_same_under_every_policy(policy):
    """While fvcore traces, sizes are tensors: 'x has shape (tensor(1), tensor(4), tensor(4), tensor(4))'."""
    from upbench.counting import count

    op = upbench.make("sapa-b", 8)
    x, guide = op.example_inputs(1, 4, 4)
    with pytest.raises(ValueError, match=r"sapa-b: built for 8 channels; x has shape \(1, 4, 4, 4\)$"):
        count(op, (x[:, :4], guide), policy=policy)
    with pytest.raises(ValueError, match=r"sapa-b: built for 8 guide channels; guide has shape \(1, 4, 8, 8\)$"):
        count(op, (x, guide[:, :4]), policy=policy)


# -- compare --quiet ---------------------------------------------------------------------------
def test_compare_quiet_prints_no_table(tmp_path, counted_not_timed, capsys):
    """--quiet says 'no progress bar and no tables on stdout'; compare printed its ratio table all the same."""
    out = tmp_path / "cmp.csv"
    assert main(["compare", "--ops", "carafe", "--C", "4", "--size", "4", "--device", "cpu", "--out", str(out),
                 "--formats", "markdown", "--quiet"]) == 0
    printed = capsys.readouterr()
    assert printed.out == "" and f"wrote {out.with_suffix('.md')}" in printed.err  # as sweep --quiet says it
    assert "## Reference / compiled" in out.with_suffix(".md").read_text()
    assert main(["compare", "--ops", "carafe", "--C", "4", "--size", "4", "--device", "cpu", "--out",
                 str(tmp_path / "loud.csv"), "--formats", ""]) == 0
    assert "## Reference / compiled" in capsys.readouterr().out


def test_an_operator_without_a_compiled_path_left_out_by_impl_compiled_is_named(tmp_path, counted_not_timed,
                                                                                 compiled_ops, capsys):
    out = tmp_path / "c.csv"
    assert main(["sweep", "--ops", "nearest,carafe", "--impl", "compiled", "--C", "4", "--size", "4", "--device",
                 "cpu", "--out", str(out), "--formats", "", "--quiet"]) == 0
    assert "sweep: warning: nearest has no compiled path (Upsampler.compiled_ops), so no row with --impl compiled" \
        in capsys.readouterr().err
    assert set(read_rows(out)["operator"]) == {"carafe"}


# -- Markdown pivots to paste ------------------------------------------------------------------------
def test_a_markdown_pivot_prints_one_number_of_decimals_right_aligned_and_its_unit():
    """Three significant digits printed 40 beside 46.8 and 2 beside 0.812, left-aligned, under a title without
    a unit ('latency by operator and input resolution')."""
    from upbench.views import PIVOT_TITLES, markdown_pivot

    table = pd.DataFrame({"operator": ["a", "b", "c"], "C": [8, 8, 8], "8": [40.0, 2.0, 0.0347],
                          "16": [46.8, 0.812, None]})
    rows = pd.DataFrame(columns=["operator", "C", "latency_median_ms"])  # what the pivot was made of
    lines = markdown_pivot(table, rows).splitlines()
    assert lines[1] == "|:-----------|:----|-------:|-------:|"
    assert [line.split("|")[3:5] for line in lines[2:]] == [
        [" 40.000 ", " 46.800 "], ["  2.000 ", "  0.812 "], ["  0.035 ", "        "]]
    counts = pd.DataFrame({"operator": ["a"], "C": [8], "8": [4096.0]})  # whole numbers stay whole
    assert markdown_pivot(counts, rows).splitlines()[2] == "| a          | 8   | 4,096 |"
    assert "(ms)" in PIVOT_TITLES["latency"] and "(MiB, above the inputs and weights)" in PIVOT_TITLES["memory"]


def test_rows_timed_too_briefly_to_read_other_work_are_counted_under_both_reports(tmp_path, monkeypatch):
    import upbench.measure as measure_module
    from upbench.reports import to_latex, to_markdown

    def brief_at_four(config, spec, row) -> None:  # the 4x4 rows' calls took under 50 ms in all
        row.update(measure_module.count_config(config, spec.policies), latency_median_ms=1.5, latency_p20_ms=1.4,
                   latency_p80_ms=1.6, peak_mem_bytes=2**20, runs=5, cpu_util=1.0, status="ok",
                   cpu_others=None if config.H == 4 else 0.0)

    monkeypatch.setattr(measure_module, "_measure", brief_at_four)
    rows = upbench.run_sweep(upbench.SweepSpec(ops=("nearest", "bilinear"), channels=(4,), sizes=((4, 4), (8, 8)),
                                               devices=("cpu",), policies=("paper",)))
    said = "2 of the 4 CPU rows were timed for under 0.05 s in all, too short to read other work"
    assert said in to_markdown(rows) and said in to_latex(rows).replace("\n", " ")
    assert said not in to_markdown(rows.assign(cpu_others=0.0))
