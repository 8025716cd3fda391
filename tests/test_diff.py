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
    regressions = result.regressions(1.1)
    assert len(regressions) == 2 and "2x slower" in regressions[0] and "oom in the new run" in regressions[1]
    assert result.regressions(2.5) == [regressions[1]]  # slower, but not by more than the ratio asked


def test_a_narrower_threshold_turns_same_into_a_change(run):
    base = run()
    new = base.copy()
    timed(new, 0, 10.3, 10.2, 10.4)  # 3%, ranges apart (9.5-10.5 overlaps 10.2-10.4: no)
    timed(base, 0, 10.0, 9.9, 10.1)
    assert diff_runs(base, new).pairs.loc[0, "change"] == "same"
    assert diff_runs(base, new, threshold=0.01).pairs.loc[0, "change"] == "slower"
    with pytest.raises(ValueError, match="threshold"):
        diff_runs(base, new, threshold=0)


def test_configs_pair_across_the_axis_the_runs_compare(run, knobbed):
    base = run(ops=(knobbed,), knobs={"K": (3,)})
    new = run(ops=(knobbed,), knobs={"K": (5,)}, batches=(1,))
    result = diff_runs(base, new)
    assert result.across == {"K": (3, 5)}
    assert len(result.pairs) == len(base) and not result.only_base and not result.only_new
    assert "K" not in result.pairs.columns


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
    assert "| 20 (19-21) " in out
    assert main(["diff", base_log, str(tmp_path / "new.csv"), "--fail-slower", "1.5"]) == 1
    assert "diff: regression: " in capsys.readouterr().err
    new.loc[2, "timing_suspect"] = "unsteady: p80/p20 1.6"
    write_csv(new, tmp_path / "new.csv")
    assert main(["diff", base_log, str(tmp_path / "new.csv"), "--fail-slower", "3"]) == 0
    assert "diff: warning: 1 config(s) not judged" in capsys.readouterr().err


def test_the_command_lists_unpaired_configs_in_its_csv(run, knobbed, tmp_path, capsys):
    run()
    run(ops=(knobbed,))
    assert main(["diff", str(tmp_path / "run0.csv"), str(tmp_path / "run1.csv"), "--format", "csv"]) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert (table["change"] == "only in base").sum() == 3 and table["change"].eq("same").sum() == 3


@pytest.mark.parametrize("flags, message", [
    (["--fail-slower", "0.9"], "ratio of at least 1"),
    (["--threshold", "-1"], "positive number"),
])
def test_the_command_refuses_bad_flags(run, tmp_path, capsys, flags, message):
    run()
    log = str(tmp_path / "run0.csv")
    with pytest.raises(SystemExit) as exit_:
        main(["diff", log, log, *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_command_names_a_missing_file(tmp_path, capsys):
    assert main(["diff", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 2
    assert "a.csv: no such file" in capsys.readouterr().err
