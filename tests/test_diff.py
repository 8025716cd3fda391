"""bench.py diff: two runs' configs paired, each latency change judged against the timing noise."""
from __future__ import annotations

import math

import pandas as pd
import pytest

import upbench
import upbench.measure as measure_module
from upbench.commands import main
from upbench.diff import diff_runs
from upbench.rows import write_csv
from upbench.spec import SweepSpec
from upbench.sweep import run_sweep
from upbench.timing import MIN_RUNS

TINY = dict(channels=(4,), sizes=(4, 8, 12), devices=("cpu",), warmup=0, min_run_time=0.001, policies=("paper",),
            impls=("reference",))


def fake_measure(config, spec, row) -> None:
    row.update(latency_median_ms=10.0, latency_p20_ms=9.5, latency_p80_ms=10.5, runs=MIN_RUNS, peak_mem_bytes=2 ** 20,
               status="ok")


@pytest.fixture(scope="module")
def knobbed() -> str:
    return next(n for n in upbench.available() if "K" in upbench.get(n).knobs and not upbench.get(n).needs_guide)


@pytest.fixture(scope="module")
def compiled() -> str:
    return next(n for n in upbench.available() if upbench.get(n).compiled_ops and not upbench.get(n).needs_guide)


@pytest.fixture(scope="module")
def guided() -> str:
    return next(n for n in upbench.available() if upbench.get(n).reads_any_guide())


@pytest.fixture(scope="module")
def plain() -> str:
    return next(n for n in upbench.available() if not upbench.get(n).knobs and not upbench.get(n).needs_guide)


@pytest.fixture
def run(tmp_path, monkeypatch, plain, knobbed):
    """Rows of a fake-timed sweep (every latency 10 ms, p20-p80 9.5-10.5) of ``ops`` with ``knobs``."""
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    made = []

    def make(ops=(plain, knobbed), **axes) -> pd.DataFrame:
        made.append(tmp_path / f"run{len(made)}.csv")
        return run_sweep(SweepSpec(ops=ops, **{**TINY, **axes}), made[-1])
    return make


def timed(rows: pd.DataFrame, position: int, median: float, p20: float, p80: float) -> None:
    rows.loc[position, ["latency_median_ms", "latency_p20_ms", "latency_p80_ms"]] = [median, p20, p80]


def test_each_change_is_judged_against_the_noise(run):
    base = run()
    new = base.copy()
    timed(new, 0, 5.0, 4.8, 5.2)      # half the time, ranges apart: faster
    timed(new, 1, 20.0, 19.0, 21.0)   # twice: slower
    timed(new, 2, 12.0, 10.0, 14.0)   # 20% slower, but the ranges overlap: within noise
    timed(new, 3, 10.2, 10.0, 10.4)   # 2%: same
    new["timing_suspect"] = new["timing_suspect"].astype(object)
    new.loc[4, "timing_suspect"] = "shared: other work kept 1.2 of 2 usable cores busy"
    new.loc[5, ["status", "message"]] = ["oom", "out of memory"]
    result = diff_runs(base, new)
    changes = list(result.pairs["change"])
    assert changes[:6] == ["faster", "slower", "within noise", "same", "suspect", "not measured"]
    assert result.pairs.loc[0, "ms ratio"] == pytest.approx(0.5)
    assert result.pairs.loc[4, "note"] == "new timing suspect (shared)"
    assert result.pairs.loc[5, "note"] == "new oom: out of memory"
    # the mean is over the four pairs whose timing both runs trust, and the rest of the pairs
    trusted = [0.5, 2.0, 1.2, 1.02] + [1.0] * (len(changes) - 6)
    assert result.geometric_mean() == pytest.approx(math.exp(sum(map(math.log, trusted)) / len(trusted)))
    found = result.regressions(1.1)
    assert len(found.failures) == 2 and "2x slower" in found.failures[0] and "no latency in the new run (status oom); the base measured 10 ms" in found.failures[1]
    assert found.doubts == [f"{new.loc[2, 'key']}: 1.2x slower (p20-p80 ranges overlap)"]
    assert result.regressions(2.5).failures == [found.failures[1]]  # slower, but not by more than the ratio asked
    assert f"{new.loc[3, 'key']}: 1.02x slower (p20-p80 ranges overlap)" in result.regressions(1.01).doubts


@pytest.mark.parametrize("median, p20, p80", [(0.0, 0.0, 0.0), (float("nan"),) * 3, (-1.0, -1.0, -1.0)])
def test_an_ok_row_without_a_positive_latency_is_not_measured(run, median, p20, p80):
    base = run()
    new = base.copy()
    timed(new, 0, median, p20, p80)
    for first, second in ((base, new), (new, base)):
        result = diff_runs(first, second)
        assert result.pairs.loc[0, "change"] == "not measured"
        assert "ok without a positive latency" in result.pairs.loc[0, "note"]
        assert result.geometric_mean() == pytest.approx(1.0)
    assert diff_runs(base, new).regressions(1.1).failures == [
        f"{base.loc[0, 'key']}: no latency in the new run (status ok); the base measured 10 ms"]


def test_a_narrower_threshold_turns_same_into_a_change(run):
    base = run()
    new = base.copy()
    timed(new, 0, 10.3, 10.2, 10.4)  # 3%, ranges apart (9.5-10.5 overlaps 10.2-10.4: no)
    timed(base, 0, 10.0, 9.9, 10.1)
    assert diff_runs(base, new).pairs.loc[0, "change"] == "same"
    # a gate's ratio below 1 + threshold still catches it: the gate judges by its own ratio
    assert diff_runs(base, new).regressions(1.01).failures == [f"{base.loc[0, 'key']}: 1.03x slower"]
    assert diff_runs(base, new, threshold=0.01).pairs.loc[0, "change"] == "slower"
    with pytest.raises(ValueError, match="threshold"):
        diff_runs(base, new, threshold=0)


def test_configs_pair_across_the_axis_the_runs_compare(run, knobbed):
    base = run(ops=(knobbed,), knobs={"K": (3,)})
    new = run(ops=(knobbed,), knobs={"K": (5,)}, batches=(1,))
    result = diff_runs(base, new)
    assert result.across == {"K": {knobbed: (3, 5)}}
    assert len(result.pairs) == len(base) and not result.only_base and not result.only_new
    assert "K" not in result.axes and list(result.pairs["base K"]) == [3] * 3 and list(result.pairs["new K"]) == [5] * 3
    assert list(result.pairs["new key"]) == list(new["key"])


def test_shapes_or_several_axes_are_paired_across_only_when_asked(run, plain, knobbed):
    base, wider = run(), run(channels=(8,))
    with pytest.raises(ValueError, match=r"differ in C 4 -> 8: .*different workloads; .*--across C"):
        diff_runs(base, wider)
    assert diff_runs(base, wider, across=["C"]).across == {"C": {plain: (4, 8), knobbed: (4, 8)}}
    half = run(channels=(8,), dtypes=("fp16",))
    with pytest.raises(ValueError, match=r"differ in C 4 -> 8; dtype fp32 -> fp16: .*several|--across C,dtype"):
        diff_runs(base, half)
    with pytest.raises(ValueError, match=r"also differ in dtype fp32 -> fp16: add it to --across"):
        diff_runs(base, half, across=["C"])
    with pytest.raises(ValueError, match=r"--across colour: not an axis"):
        diff_runs(base, wider, across=["colour"])
    bigger = run(sizes=(16,))
    assert set(diff_runs(base.iloc[:1], bigger.iloc[:1], across=["size"]).across) == {"H", "W"}


def test_an_axis_compared_for_some_operators_pairs_the_others_as_they_are(run, plain, compiled):
    """impl auto resolves per operator: reference for one without a compiled path, compiled for the other."""
    auto = run(ops=(plain, compiled), impls=("auto",))
    reference = run(ops=(plain, compiled), impls=("reference",))
    result = diff_runs(auto, reference)
    assert result.across == {"impl": {compiled: ("compiled", "reference")}}
    assert len(result.pairs) == len(auto) and not result.only_base


def test_a_guide_that_follows_c_is_not_a_second_axis(run, guided, plain):
    base, wider = run(ops=(guided, plain)), run(ops=(guided, plain), channels=(8,))
    result = diff_runs(base, wider, across=["C"])
    assert set(result.across) == {"C"} and len(result.pairs) == len(base)
    narrow, wide = run(ops=(guided, plain), guide_channels=(2,)), run(ops=(guided, plain), guide_channels=(16,))
    assert diff_runs(narrow, wide, across=["Cg"]).across == {"Cg": {guided: (2, 16)}}


def test_knobs_an_operator_lacks_do_not_keep_it_from_pairing(run, plain, knobbed):
    base = run()
    new = run(ops=(knobbed, plain, ))  # another column order, the same configs
    result = diff_runs(base, new)
    assert len(result.pairs) == len(base) and not result.across
    assert set(result.pairs["operator"]) == {plain, knobbed}
    assert result.pairs["K"].dtype == "Int64"  # an integer column, empty for the operator without K


def test_configs_one_run_alone_holds_are_listed(run, plain, knobbed):
    base, new = run(), run(ops=(knobbed,), sizes=(4, 16))
    result = diff_runs(base, new)
    assert result.only_base == [k for k in base["key"] if k.startswith(f"{plain}|") or "|4x4|" not in k]
    assert [k for k in result.only_new] == [k for k in new["key"] if "|16x16|" in k]
    with pytest.raises(ValueError, match=f"share no config: the base holds {plain}; .* the new run {knobbed}"):
        diff_runs(run(ops=(plain,)), run(ops=(knobbed,)))
    # paired across C, the runs still differ in size: the message names both, where it named only what agreed
    with pytest.raises(ValueError, match=f"the base holds {plain}; C=4; N=1; 4x4; .* the new run {plain}; C=8; N=1; "
                                         f"16x16, 20x20;"):
        diff_runs(run(ops=(plain,), sizes=(4,)), run(ops=(plain,), channels=(8,), sizes=(16, 20)), across=["C"])


def test_counts_and_sources_that_differ_are_named(run):
    base = run().assign(params=4416, macs_paper=262144)  # the fake timing counts nothing
    new = base.copy()
    new.loc[0, "params"] = 4672
    new.loc[1, "macs_paper"] = 655360
    new["operator_source"] = "0123456789ab"
    result = diff_runs(base, new)
    assert list(result.pairs["note"][:3]) == ["params 4,416 -> 4,672", "macs_paper 262,144 -> 655,360", ""]
    sources = result.setups[result.setups["setup"].str.startswith("operator_source")]
    assert len(sources) == base["operator"].nunique() and set(sources["new"]) == {"0123456789ab"}


def test_the_command_prints_the_pairs_and_fails_on_a_regression(run, tmp_path, capsys):
    base = run()
    new = base.copy()
    new["device_name"] = "Another CPU"
    timed(new, 1, 20.0, 19.0, 21.0)
    write_csv(new, tmp_path / "new.csv")
    base_log = str(tmp_path / "run0.csv")
    assert main(["diff", base_log, str(tmp_path / "new.csv")]) == 0
    out = capsys.readouterr().out
    assert "The setups differ in: device_name." in out
    assert f"{len(base)} configs in both runs: 1 slower, {len(base) - 1} same" in out
    assert "| 20 [19, 21] " in out
    assert main(["diff", base_log, str(tmp_path / "new.csv"), "--fail-slower", "1.5"]) == 1
    assert "diff: regression: " in capsys.readouterr().err
    write_csv(new.iloc[2:], tmp_path / "short.csv")  # a new run that a crash stopped before its first rows
    assert main(["diff", base_log, str(tmp_path / "short.csv"), "--fail-slower", "3"]) == 1
    err = capsys.readouterr().err
    assert "short.csv has no row for 2 of its sweep's 6 configs (indices 0-1)" in err
    assert f"diff: regression: {base.loc[0, 'key']}: no row in the new run" in err
    assert main(["diff", base_log, str(tmp_path / "short.csv"), "--fail-slower", "3", "--allow-missing"]) == 0
    new.loc[2, "timing_suspect"] = "unsteady: p80/p20 1.6"
    timed(new, 2, 40.0, 10.0, 50.0)
    write_csv(new, tmp_path / "new.csv")
    assert main(["diff", base_log, str(tmp_path / "new.csv"), "--fail-slower", "3"]) == 0
    err = capsys.readouterr().err
    assert "diff: warning: not judged: " in err and "4x slower, timing suspect (new timing suspect (unsteady))" in err
    assert "diff: warning: 1 config not judged: their timing is suspect" in err
    assert main(["diff", base_log, str(tmp_path / "new.csv"), "--fail-slower", "3", "--strict"]) == 1


def test_the_setups_name_tf32_and_a_cold_cache(run, tmp_path, capsys):
    base = run().assign(cache="warm")
    write_csv(base, tmp_path / "base.csv")
    write_csv(base.assign(tf32=True, cache="cold"), tmp_path / "new.csv")
    assert main(["diff", str(tmp_path / "base.csv"), str(tmp_path / "new.csv")]) == 0
    assert "The setups differ in: tf32, cache." in capsys.readouterr().out
    # a side that does not say (a failed run reports no cache, an older upbench no settings) differs in nothing
    write_csv(base.assign(cache=None).drop(columns="warmup"), tmp_path / "unsaid.csv")
    assert main(["diff", str(tmp_path / "base.csv"), str(tmp_path / "unsaid.csv")]) == 0
    assert "The setups are the same." in capsys.readouterr().out


def test_a_message_with_a_pipe_or_a_newline_stays_in_its_cell(run, tmp_path, capsys):
    base = run()
    write_csv(base.assign(status="error", message="boom | pipe\nline2"), tmp_path / "new.csv")
    assert main(["diff", str(tmp_path / "run0.csv"), str(tmp_path / "new.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| operator"))
    table = [line for line in lines[start:] if line.startswith("| ") or line.startswith("|:")]
    table.pop(1)  # the alignment line
    assert len(table) == 1 + len(base)  # the header and one line per pair
    assert all(line.count(" | ") == table[0].count(" | ") for line in table)
    assert "new error: boom \\| pipe line2" in table[1]


def test_the_command_lists_unpaired_configs_in_its_csv(run, knobbed, tmp_path, capsys):
    run()
    run(ops=(knobbed,))
    assert main(["diff", str(tmp_path / "run0.csv"), str(tmp_path / "run1.csv"), "--format", "csv"]) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert (table["change"] == "only in base").sum() == 3 and table["change"].eq("same").sum() == 3


@pytest.mark.parametrize("flags, message", [
    (["--fail-slower", "0.9"], "ratio of at least 1"),
    (["--threshold", "-1"], "positive number"),
    (["--threshold", "5"], "threshold 5.0: expected a fraction between 0 and 1"),
    (["--strict"], "--strict and --allow-missing refine --fail-slower"),
])
def test_the_command_refuses_bad_flags(run, tmp_path, capsys, flags, message):
    run()
    log = str(tmp_path / "run0.csv")
    try:
        code = main(["diff", log, log, *flags])
    except SystemExit as exit_:  # argparse's own checks
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err


def test_the_command_names_a_missing_file_and_rows_it_cannot_pair(run, tmp_path, capsys):
    assert main(["diff", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 2
    assert "a.csv: no such file" in capsys.readouterr().err
    run().drop(columns="config_index").to_json(tmp_path / "rows.json", orient="records")
    assert main(["diff", str(tmp_path / "rows.json"), str(tmp_path / "rows.json")]) == 2
    assert "rows.json: not upbench sweep rows a diff can pair (no config_index column)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["report", "diff", "merge"])
def test_out_naming_an_input_is_refused_before_it_overwrites_the_rows(run, tmp_path, capsys, command):
    """report v.csv --out v.csv replaced the measured rows with their Markdown, exit 0; diff likewise."""
    run()
    log = tmp_path / "run0.csv"
    before = log.read_bytes()
    inputs = [str(log), str(log)] if command == "diff" else [str(log)]
    assert main([command, *inputs, "--out", str(tmp_path / "." / "run0.csv")]) == 2
    assert "is one of the inputs: writing it would overwrite the rows it reads" in capsys.readouterr().err
    assert log.read_bytes() == before
