"""What a researcher bringing their own operator runs into first: plugin knobs of any name, declaration
mistakes caught when the operator is registered, formula mistakes named, paste-ready LaTeX, failed rows
that fail the command and can be measured again, and output paths that say what is wrong."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import upbench
import upbench.measure as measure_module
from upbench import Cost, Formulas, Knob
from upbench.commands import main
from upbench.reports import to_latex, to_markdown
from upbench.views import paper_table
from upbench.rows import read_rows, rows_to_retry
from upbench.formulas import per_pixel
from upbench.rowlog import read_log
from upbench.table1 import validation_table


@pytest.fixture(autouse=True)
def registry_per_test(isolated_registry):
    yield isolated_registry


class Gated(nn.Module):
    """A 1x1 conv to ``hidden`` channels and back, then nearest x2: knob ``hidden`` fills no formula field."""

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.down, self.up = nn.Conv2d(channels, hidden, 1, bias=False), nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.up(self.down(x)), scale_factor=2, mode="nearest")


def gated_formulas(hidden_macs=lambda s: 2 * s.C * s.hidden) -> Formulas:
    body = per_pixel(hidden_macs, lambda s: 2 * s.C * s.hidden)
    return Formulas(paper={"body": body, "total": body}, exact={"body": body})


def sweep_flags(tmp_path: Path, ops: str, *more: str) -> list[str]:
    return ["sweep", "--ops", ops, "--C", "8", "--size", "4", "--device", "cpu", "--warmup", "0",
            "--min-run-time", "0.001", "--quiet", "--formats", "markdown", "--out", str(tmp_path / "run.csv"), *more]


# -- plugin knobs and declarations --------------------------------------------------------------
def test_a_knob_of_any_name_reaches_the_module_and_the_formulas(tmp_path):
    upbench.wrap(Gated, name="gated", knobs={"hidden": 16}, formulas=gated_formulas())
    op = upbench.make("gated", 8, hidden=4)
    assert op.dims(1, 3, 3).hidden == 4
    assert main(sweep_flags(tmp_path, "gated", "--knob", "hidden=4,8")) == 0
    rows = read_rows(tmp_path / "run.csv")
    assert list(rows["hidden"]) == [4, 8] and (rows["status"] == "ok").all()
    assert list(rows["params"]) == [2 * 8 * 4, 2 * 8 * 8]
    table = validation_table(["gated"])
    assert set(table["status"]) == {"match"}


def test_dims_names_its_fields_for_a_misspelt_knob():
    with pytest.raises(ValueError, match=r"gated: its paper formula for stage 'body' raised AttributeError: "
                                         r"Dims has no 'hiden'.*and the knobs hidden"):  # at registration
        upbench.wrap(Gated, name="gated", knobs={"hidden": 16}, formulas=gated_formulas(lambda s: s.hiden))


@pytest.mark.parametrize("declare, message", [
    (dict(knobs={"hidden": Knob(16, dims_field="width")}), "knob 'hidden' fills the formula field 'width'; expected one of K, d, ke"),
    (dict(knobs={"C": 3}), "knob 'C' fills the formula field 'C'"),
    (dict(knobs={"pixels": 3}), "knob 'pixels' fills the formula field 'pixels'"),
    (dict(knobs={"hidden": Knob(4, "odd")}), r"the default of hidden=4 is invalid; expected a positive odd"),
    # an unknown rule checked nothing, and a bad value then failed with a KeyError traceback
    (dict(knobs={"hidden": Knob(4, "od")}), r"knob 'hidden' has rule 'od'; expected one of positive, odd, even, flag"),
    (dict(knobs={"hidden": Knob(4, max="8")}), r"knob 'hidden' has max='8'; expected an integer upper bound"),
    (dict(formulas=Formulas(paper={"conv": lambda s: Cost(0, 0)}, exact={})), "its paper formulas name stage"
                                                                               r"\(s\) 'conv' it does not have; its stages: body"),
])
def test_declaration_mistakes_are_refused_when_registering(declare, message):
    with pytest.raises(ValueError, match=message):
        upbench.wrap(Gated, name="gated", **declare)
    assert "gated" not in upbench.available()


@pytest.mark.parametrize("formula, message", [
    (lambda s: s.C // 0, "raised ZeroDivisionError: integer division or modulo by zero"),
    (lambda s: 7, "returned int; expected an upbench.Cost"),
])
def test_table1_names_the_operator_and_stage_of_a_failing_formula(formula, message, capsys):
    upbench.wrap(Gated, name="gated", formulas=Formulas(paper={"body": formula}, exact={}))
    assert main(["table1", "--ops", "gated", "--size", "8,16"]) == 1  # an error row per point, the table kept
    printed = capsys.readouterr()
    failing = [line for line in printed.err.splitlines() if "a formula failed" in line]
    assert [line.split(": a formula failed: ")[0] for line in failing] == ["table1: gated at C=256, 8x8",
                                                                          "table1: gated at C=256, 16x16"]
    assert all(f"gated: its paper formula for stage 'body' {message}" in line for line in failing)
    assert "Traceback" not in printed.err and printed.out.count("| error ") == 2


def test_a_wrong_output_shape_is_told_in_integers_also_while_counting(tmp_path):
    upbench.wrap(lambda channels: nn.Conv2d(channels, channels, 1), name="same-size")
    assert main(sweep_flags(tmp_path, "same-size")) == 1
    message = read_rows(tmp_path / "run.csv")["message"][0]
    assert "returned (1, 8, 4, 4); expected x2 upsampled (1, 8, 8, 8)" in message and "tensor" not in message


# -- failed rows ------------------------------------------------------------------------------
def test_failed_rows_fail_the_command_and_are_measured_again_on_request(tmp_path, capsys, monkeypatch):
    broken = {"on": True}

    def factory(channels: int) -> nn.Module:
        if broken["on"]:
            raise RuntimeError("not finished yet")
        return nn.Upsample(scale_factor=2)

    upbench.wrap(factory, name="mine")
    flags = sweep_flags(tmp_path, "mine,nearest")
    assert main(flags) == 1
    err = capsys.readouterr().err
    assert "1 row(s) failed (1 error); rerun with --resume --retry failed once fixed" in err
    broken["on"] = False
    assert main([*flags, "--resume"]) == 1  # without asking, a failed row stays as it was
    assert "0 measured now" in capsys.readouterr().err
    assert main([*flags, "--resume", "--retry", "failed"]) == 0
    assert "1 config(s) were logged already, 1 measured now" in capsys.readouterr().err
    rows = read_rows(tmp_path / "run.csv")
    assert list(rows["status"]) == ["error", "ok", "ok"]  # the log keeps what happened
    assert list(read_log(tmp_path / "run.csv")["operator"]) == ["mine", "nearest"]  # in sweep order
    report = (tmp_path / "run.md").read_text()
    assert "2 rows: 2 ok" in report  # the tables keep the row measured last
    assert main(["report", str(tmp_path / "run.csv"), "--format", "csv"]) == 0
    assert "error" not in capsys.readouterr().out
    assert main([*flags[:-2], "--retry", "failed"]) == 2
    assert main([*flags, "--resume", "--retry", "slow"]) == 2
    assert "retry slow: expected some of failed, suspect" in capsys.readouterr().err


def test_suspect_timings_are_measured_again_on_request(tmp_path, capsys, monkeypatch):
    doubts = iter(["shared: other work kept 1.00 of 2 usable cores busy beside 2 timing thread(s)",
                   "few calls: 2 timed (a median wants at least 5)", "", ""])

    def measured(config, spec, row) -> None:
        row.update(latency_median_ms=1.0, runs=5, status="ok", timing_suspect=next(doubts))

    monkeypatch.setattr(measure_module, "_measure", measured)
    flags = sweep_flags(tmp_path, "nearest,bilinear")
    assert main(flags) == 0
    assert ("2 row(s) with timing that cannot be trusted (column timing_suspect); 1 of them disturbed by other "
            "work, which --resume --retry suspect measures again") in capsys.readouterr().err
    assert main([*flags, "--resume", "--retry", "suspect"]) == 0
    assert "1 config(s) were logged already, 1 measured now" in capsys.readouterr().err
    rows = read_rows(tmp_path / "run.csv")
    assert len(rows) == 3 and rows["timing_suspect"].isna().sum() == 1  # the log keeps the suspect row
    report = (tmp_path / "run.md").read_text()
    assert "Timing that cannot be trusted (1 of 2 rows)" in report and "few calls" in report  # not retried


def test_only_doubts_that_measuring_again_can_clear_are_retried():
    rows = pd.DataFrame({"status": ["ok", "ok", "ok", "ok", "error"],
                         "timing_suspect": ["unsteady: p80/p20 = 3.00", "4 threads on 2 usable cores",
                                            "few calls: 2 timed (a median wants at least 5)",
                                            "4 threads on 2 usable cores; descheduled: own CPU time was 40%", None]})
    assert list(rows_to_retry(rows, ["suspect"])) == [True, False, False, True, False]
    assert list(rows_to_retry(rows, ["failed", "suspect"])) == [True, False, False, True, True]


# -- output paths -----------------------------------------------------------------------------
def test_output_paths_that_cannot_be_written_are_named(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    flags = sweep_flags(tmp_path, "nearest")[:-2]
    assert main([*flags, "--out", f"{folder}/"]) == 2
    assert f"--out {folder}/ is a directory; give a file name, e.g. {folder / 'sweep.csv'}" in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()
    assert main([*flags, "--out", f"{tmp_path / 'new'}/"]) == 2 and not (tmp_path / "new.csv").exists()
    capsys.readouterr()
    table = tmp_path / "new" / "deeper" / "table1.md"
    assert main(["table1", "--ops", "nearest", "--out", str(table)]) == 0 and table.exists()
    for command in (["sweep", "--quiet"], ["table1"], ["network", "--preset", "segformer-b1"]):
        with pytest.raises(SystemExit) as exited:  # an empty --ops would otherwise mean every operator
            main([*command, "--ops", ""])
        assert exited.value.code == 2 and "--ops: expected at least one name" in capsys.readouterr().err


# -- LaTeX ------------------------------------------------------------------------------------
@pytest.fixture
def knob_rows(tmp_path, monkeypatch) -> pd.DataFrame:
    def fake(config, spec, row) -> None:
        row.update(measure_module.count_config(config, spec.policies), latency_median_ms=1.0, peak_mem_bytes=2**20,
                   runs=5, status="ok")

    monkeypatch.setattr(measure_module, "_measure", fake)
    spec = upbench.SweepSpec(ops=("nearest", "carafe"), channels=(8,), sizes=((4, 4), (8, 8)), knobs={"K": (3, 5)},
                             devices=("cpu",), policies=("paper",))
    return upbench.run_sweep(spec)


def test_latex_marks_suspect_latencies_and_says_how_the_rows_were_measured(knob_rows, tmp_path, capsys):
    rows = knob_rows.copy()
    suspect = (rows["operator"] == "carafe") & (rows["K"] == 5) & (rows["H"] == 8)
    rows.loc[suspect, "timing_suspect"] = "unsteady: p80/p20 = 1.9"
    latex = to_latex(rows)
    marked = [line for line in latex.splitlines() if r"$^\dagger$" in line and "&" in line]
    assert len(marked) == 1 and marked[0].startswith("carafe & 5 &") and marked[0].count(r"$^\dagger$") == 1
    assert marked[0].split(" & ")[-2].endswith(r"$^\dagger$")  # the 8x8 latency, not its MACs or memory
    assert r"$^\dagger$: timing suspect" in latex
    assert f"C = 8, batch 1, fp32, inference forward (eval mode, no\\_grad), {rows['threads'].iloc[0]} CPU thread" \
        in latex
    assert r"$^\dagger$" not in to_latex(knob_rows)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert main(["report", str(tmp_path / "rows.csv"), "--pivot", "latency", "--format", "latex"]) == 0
    pivot_marked = [line for line in capsys.readouterr().out.splitlines() if r"$^\dagger$" in line and "&" in line]
    assert len(pivot_marked) == 1 and pivot_marked[0].startswith("carafe & 5 &")


def test_latex_says_what_its_empty_cells_are(knob_rows, tmp_path, capsys):
    rows = knob_rows.copy()
    failed = (rows["operator"] == "carafe") & (rows["H"] == 8)
    rows.loc[failed, ["status", "message", "latency_median_ms", "peak_mem_bytes"]] = ["oom", "out of memory", None, None]
    latex = to_latex(rows)
    carafe = [line for line in latex.splitlines() if line.startswith("carafe &")]
    assert all(line.endswith(r"-- & -- \\") for line in carafe)
    assert "--: not measured: carafe K=3 at 8 (oom); carafe K=5 at 8 (oom); each row's status and message columns say " \
           "why." in latex
    assert "not measured" not in to_latex(knob_rows)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert main(["report", str(tmp_path / "rows.csv"), "--pivot", "latency", "--format", "latex"]) == 0
    assert "not measured: carafe K=3 at 8 (oom); carafe K=5 at 8 (oom)" in capsys.readouterr().out


def test_markdown_latency_tables_mark_suspect_timings(knob_rows, tmp_path, capsys):
    rows = knob_rows.copy()
    suspect = (rows["operator"] == "carafe") & (rows["K"] == 5) & (rows["H"] == 8)
    rows.loc[suspect, "timing_suspect"] = "shared: other work kept 1.2 of 2 usable cores busy"

    def marked_lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if "\N{DAGGER}" in line and line.startswith("|")]

    report = to_markdown(rows)
    latency = report.split("## Latency median")[1].split("## Peak memory")[0]
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in marked_lines(latency)]
    assert cells == [["carafe", "5", "1", "1 \N{DAGGER}"]]  # the 8x8 latency, not the 4x4 one
    assert "\N{DAGGER}: timing suspect" in latency
    assert marked_lines(report.split("## Peak memory")[1]) == [] and "\N{DAGGER}" not in to_markdown(knob_rows)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert main(["report", str(tmp_path / "rows.csv"), "--pivot", "latency"]) == 0
    printed = capsys.readouterr().out
    assert len(marked_lines(printed)) == 1 and "\N{DAGGER}: timing suspect" in printed
    assert main(["report", str(tmp_path / "rows.csv"), "--pivot", "memory"]) == 0
    assert "\N{DAGGER}" not in capsys.readouterr().out


def test_sweep_latex_has_one_row_per_operator_and_knob_that_ran(knob_rows):
    table = paper_table(knob_rows)
    assert list(zip(table[("", "operator")], table[("", "K")])) == [("nearest", "-"), ("carafe", "3"), ("carafe", "5")]
    latex = to_latex(knob_rows).splitlines()
    header = next(line for line in latex if r"\multicolumn" in line)
    body = next(line for line in latex if line.startswith("operator &"))
    # one empty cell per leading column (operator, K, Params), so each spanner sits over its own three columns
    assert header == r" &  &  & \multicolumn{3}{c}{4} & \multicolumn{3}{c}{8} \\"
    assert body.count("&") == 3 + 2 * 3 - 1
    assert "Params (k)" in body  # thousands as SI k: a K would read as the kernel size


def test_compare_resumes_and_measures_suspect_rows_again(tmp_path, capsys, monkeypatch):
    """compare is a sweep too: a noisy run is finished with --resume --retry suspect, not measured again whole."""
    doubts = iter(["unsteady: p80/p20 = 2.0"] + [""] * 20)

    def measured(config, spec, row) -> None:
        row.update(measure_module.count_config(config, spec.policies), latency_median_ms=1.0, peak_mem_bytes=2**20,
                   runs=5, status="ok", timing_suspect=next(doubts))

    monkeypatch.setattr(measure_module, "_measure", measured)
    out = tmp_path / "cmp.csv"
    flags = ["compare", "--ops", "carafe", "--C", "4", "--size", "4", "--device", "cpu", "--out", str(out),
             "--formats", "markdown"]
    assert main(flags) == 0
    capsys.readouterr()
    assert main([*flags, "--resume", "--retry", "suspect"]) == 0
    rows = read_rows(out)
    assert len(rows) == 5 and rows["timing_suspect"].fillna("").ne("").sum() == 1  # 4 configs, one measured again
    assert "Timing that cannot be trusted" not in (tmp_path / "cmp.md").read_text()
    with pytest.raises(SystemExit):
        main(["compare", "--retry", "suspect", "--bogus"])
    assert main(["compare", "--retry", "suspect", "--out", str(out)]) == 2
    assert "--retry needs --resume" in capsys.readouterr().err
