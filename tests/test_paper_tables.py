"""What an audit of the tables a paper pastes found: the network LaTeX dropped the setup, the counting policy and
the suspect marks; the sweep's tables never said which implementation or knob values each operator ran with; a
small count beside a large one printed one digit; an exact zero printed as a rounded one."""
from __future__ import annotations

import pandas as pd

from upbench.commands.network import measured_note, render_latex
from upbench.latex import MARK, booktabs, count_unit
from upbench.presets import get_preset
from upbench.reports import operators_as_measured


def test_a_small_count_beside_a_large_one_keeps_two_significant_digits():
    assert count_unit([1.14e9, 131_072]) == ("M", 1e6)  # in G: 0.0001
    assert count_unit([1.2e6, 17_472, 8_224]) == ("M", 1e6)  # the README's example is unchanged
    assert count_unit([2.5e9, 0, 1e8]) == ("G", 1e9)
    latex = booktabs(pd.DataFrame({"op": ["big", "small", "none"], "MACs": [1.14e9, 131_072, 0]}),
                     {"op": "text", "MACs": "macs"})
    assert "MACs (M)" in latex and "small & 0.13" in latex and "none & 0 \\\\" in latex


def _network_table(suspect: str) -> pd.DataFrame:
    return pd.DataFrame({"operator": ["bilinear", "carafe"], "added_gmacs_paper": [0.0, 1.45],
                         "added_params_m": [0.0, 0.44], "latency_ms": [15.6, 30.2], "peak_mib": [10.0, 18.3],
                         "note": ["", ""], "zero_ops_paper": ["", ""], "device": "cpu", "threads": 2,
                         "timing_suspect": ["", suspect]})


def test_the_network_latex_says_its_setup_policy_and_how_it_measured_and_marks_suspect_timings():
    preset = get_preset("segformer-b1")
    header = "segformer-b1: a decoder\n\ninput 512x512, C=256, baseline bilinear; 6 x2 stages"
    table = _network_table("shared 3/5")
    latex = render_latex(table, header, measured_note(table, preset, 1, "compiled"))
    assert r"\caption{segformer-b1: a decoder}" in latex
    assert "C=256, baseline bilinear; 6 x2 stages." in latex
    assert "Added MACs under the paper counting policy" in latex
    assert "all 6 upsampling stages of an operator run back to back, whole (not added over the baseline)" in latex
    assert "compiled path, on cpu, 2 CPU thread(s)" in latex
    assert f"30.20{MARK}" in latex and "timing suspect" in latex
    clean = render_latex(_network_table(""), header)
    assert MARK not in clean.split(r"\bottomrule")[0] and "Latency (median)" not in clean


def test_each_operator_is_said_with_its_implementation_and_knobs():
    rows = pd.DataFrame({"operator": ["nearest", "sapa-b", "sapa-b", "carafe"],
                         "impl": ["reference", "compiled", "compiled", "compiled"],
                         "C": 8, "Cg": 0, "K": [None, 5, 5, 3], "d": [None, 16, 16, 64], "N": 1, "dtype": "fp32",
                         "device": "cpu", "mode": "fwd", "H": [4, 4, 8, 4], "W": [4, 4, 8, 4]})
    assert operators_as_measured(rows) == ("As measured: nearest (reference), sapa-b (compiled; K=5, d=16), "
                                           "carafe (compiled; K=3, d=64).")
    two_ks = rows.assign(K=[None, 3, 5, 3])  # a swept K is a column of the table: not said again
    assert "sapa-b (compiled; d=16)" in operators_as_measured(two_ks)


def test_the_report_says_how_its_rows_were_timed_as_they_record_it():
    from upbench.reports import method_notes

    cpu_row = {"device": "cpu", "status": "ok", "latency_median_ms": 1.0}
    per_call = pd.DataFrame([{**cpu_row, "cpu_util": 1.0, "cpu_others": 0.1, "timing_suspect": ""}])
    assert "each call timed on its own" in method_notes(per_call) and "block means" not in method_notes(per_call)
    # an upbench before per-call timing: the readers add the later columns, empty
    blocks = method_notes(pd.DataFrame([{**cpu_row, "cpu_util": 1.0, "cpu_others": None}]))
    assert "block means" in blocks and "CPU util" in blocks and "each call timed on its own" not in blocks
    # rows of this upbench timed for under 50 ms in all, whose other work it does not read: no older rows
    short = method_notes(pd.DataFrame([{**cpu_row, "runs": 5, "cpu_util": 1.0, "cpu_others": None}]))
    assert "each call timed on its own" in short and "block means" not in short
    long = method_notes(pd.DataFrame([{**cpu_row, "runs": 200, "cpu_util": 1.0, "cpu_others": None}]))
    assert "block means" in long
    unchecked = method_notes(pd.DataFrame([{**cpu_row, "cpu_util": None, "cpu_others": None}]))
    assert "no latency carries a timing-suspect mark" in unchecked
    gpu = pd.DataFrame([{**cpu_row, "device": "cuda", "cpu_util": None, "cpu_others": None}])
    assert "block means" not in method_notes(gpu)
