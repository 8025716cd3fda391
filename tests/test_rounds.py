"""Sweeps of several rounds (upbench.rounds): every config measured once per round, each round in an order of its
own, logged a row per round, shown one row per config, the median of its rounds."""
from __future__ import annotations

import pandas as pd
import pytest

import upbench.measure as measure_module
import upbench.sweep as sweep_module
from upbench.commands import main
from upbench.rounds import ROUND_SPREAD, ROUNDS_DISAGREE, combine_rounds, measurement_order
from upbench.rows import check_complete, IncompleteSweep, latest_rows, merge_frames, read_rows, write_csv
from upbench.spec import SweepSpec
from upbench.sweep import run_sweep

TINY = dict(channels=(4,), sizes=(4, 6), devices=("cpu",), warmup=0, min_run_time=0.001)
# The median each round's fake measurement reports: round 1 twice as slow as the others (the machine drifted).
ROUND_MS = {1: 2.0, 2: 1.0, 3: 1.1}


def fake_measure(config, spec, row) -> None:
    """Counts and timing stand-ins: a round's median from ROUND_MS, with p20 / p80 around it."""
    ms = ROUND_MS[row.get("round", 1)]
    row.update(latency_median_ms=ms, latency_p20_ms=0.9 * ms, latency_p80_ms=1.1 * ms, runs=10, cpu_util=1.0,
               cpu_others=0.0, peak_mem_bytes=1000 * row.get("round", 1), status="ok")


@pytest.fixture
def faked(monkeypatch):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)


def measured_order(monkeypatch) -> list[tuple[str, int]]:
    """(config key, round) of every measurement the sweep makes from here on, in its order."""
    order: list[tuple[str, int]] = []
    real = sweep_module.measure_config

    def spy(config, spec, index, total, number=1):
        order.append((config.key, number))
        return real(config, spec, index, total, number)

    monkeypatch.setattr(sweep_module, "measure_config", spy)
    return order


# -- the order ----------------------------------------------------------------------------------
def test_one_round_keeps_the_sweep_order_and_several_shuffle_each_round_the_same_way_every_time():
    items = list(enumerate("abcdefghij"))
    assert measurement_order(items, 1, seed=0) == [(i, 1, x) for i, x in items]
    three = measurement_order(items, 3, seed=0)
    assert [number for _, number, _ in three] == [1] * 10 + [2] * 10 + [3] * 10
    rounds = [[x for _, number, x in three if number == r] for r in (1, 2, 3)]
    assert all(sorted(r) == list("abcdefghij") for r in rounds)  # each round measures every item once
    assert len({tuple(r) for r in rounds}) == 3  # and in an order of its own
    assert measurement_order(items, 3, seed=0) == three  # a resume continues the same order
    assert measurement_order(items, 3, seed=1) != three


# -- a sweep ------------------------------------------------------------------------------------
def test_a_sweep_of_rounds_logs_a_row_per_round_and_shows_their_median(tmp_path, plain_pair, faked, monkeypatch):
    order = measured_order(monkeypatch)
    spec = SweepSpec(ops=plain_pair, rounds=3, **TINY)
    out = tmp_path / "r.csv"
    rows = run_sweep(spec, out)
    configs = [c.key for c in spec.expand()]
    assert sorted(order) == sorted((key, r) for key in configs for r in (1, 2, 3))
    assert [r for _, r in order] == sorted(r for _, r in order)  # round after round
    logged = read_rows(out)
    assert len(logged) == 3 * len(configs) and set(logged["rounds"]) == {3}
    assert list(rows["key"]) == configs and "round" in rows and rows["round"].isna().all()
    assert list(rows["latency_median_ms"]) == [1.1] * len(configs)  # median of 2.0, 1.0, 1.1
    assert rows["latency_p20_ms"].tolist() == pytest.approx([0.99] * len(configs))
    assert list(rows["runs"]) == [30] * len(configs) and list(rows["peak_mem_bytes"]) == [3000] * len(configs)
    assert list(rows[ROUND_SPREAD]) == [2.0] * len(configs)
    assert all(cell.startswith("rounds disagree: the slowest round's median is 2.00x the fastest's")
               for cell in rows["timing_suspect"])
    from upbench.reports import to_markdown
    assert f"## Timing that cannot be trusted ({len(configs)} of {len(configs)} configs)" in to_markdown(rows)
    in_memory = run_sweep(spec)
    assert list(in_memory["latency_median_ms"]) == list(rows["latency_median_ms"])


def test_rounds_that_agree_are_not_suspect_and_one_round_has_no_round_columns(tmp_path, plain_pair, monkeypatch):
    monkeypatch.setattr(measure_module, "_measure",
                        lambda config, spec, row: row.update(latency_median_ms=1.0 + 0.05 * row["round"], runs=5,
                                                             status="ok"))
    rows = run_sweep(SweepSpec(ops=plain_pair, rounds=2, **TINY), tmp_path / "r.csv")
    assert rows["timing_suspect"].fillna("").eq("").all()
    assert rows[ROUND_SPREAD].tolist() == pytest.approx([1.1 / 1.05] * len(rows))
    assert 1.1 / 1.05 < ROUNDS_DISAGREE
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    one = SweepSpec(ops=plain_pair, **TINY)
    assert not {"round", "rounds"} & set(one.columns()) and {"round", "rounds"} <= set(SweepSpec(
        ops=plain_pair, rounds=2, **TINY).columns())
    assert one.spec_id != SweepSpec(ops=plain_pair, rounds=2, **TINY).spec_id
    rows = run_sweep(one, tmp_path / "one.csv")
    assert ROUND_SPREAD not in rows and "round" not in read_rows(tmp_path / "one.csv")


@pytest.mark.parametrize("rounds", [0, -1, 1.5, True, "2", 1001, 2**66])
def test_rounds_must_be_a_positive_integer_of_at_most_a_thousand(rounds):
    """Every round's order is drawn before the first row: 10**12 rounds took minutes and gigabytes to say nothing."""
    with pytest.raises(ValueError, match=r"rounds=.*expected a positive integer of at most 1000"):
        SweepSpec(ops=("nearest",), rounds=rounds)


def test_a_round_that_fails_is_what_the_config_shows(tmp_path, plain_pair, monkeypatch):
    def second_round_fails(config, spec, row):
        fake_measure(config, spec, row)
        if row["round"] == 2:
            raise RuntimeError("boom")

    monkeypatch.setattr(measure_module, "_measure", second_round_fails)
    rows = run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "r.csv")
    assert set(rows["status"]) == {"error"}
    assert all(m == "round 2 of 3: RuntimeError: boom" for m in rows["message"])


# -- resuming -----------------------------------------------------------------------------------
def test_a_resume_measures_only_the_rounds_the_log_lacks(tmp_path, plain_pair, faked, monkeypatch):
    spec = SweepSpec(ops=plain_pair, rounds=3, **TINY)
    out = tmp_path / "r.csv"
    run_sweep(spec, out)
    logged = read_rows(out)
    write_csv(logged.iloc[:5], out)  # a kill after five measurements
    order = measured_order(monkeypatch)
    rows = run_sweep(spec, out, resume=True)
    done = {(key, int(r)) for key, r in zip(logged["key"][:5], logged["round"][:5])}
    assert order == [(key, int(r)) for key, r in zip(logged["key"][5:], logged["round"][5:])]  # the same order
    assert not done & set(order)
    assert len(read_rows(out)) == len(logged) and list(rows["latency_median_ms"]) == [1.1] * len(rows)


def test_a_resume_with_other_rounds_is_refused_naming_them(tmp_path, plain_pair, faked):
    out = tmp_path / "r.csv"
    run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), out)
    with pytest.raises(ValueError, match=r"rounds \(--rounds\) 3 in the log, 2 now"):
        run_sweep(SweepSpec(ops=plain_pair, rounds=2, **TINY), out, resume=True)
    one = tmp_path / "one.csv"
    run_sweep(SweepSpec(ops=plain_pair, **TINY), one)
    with pytest.raises(ValueError, match=r"only this sweep has round, rounds: a sweep of several rounds \(--rounds "
                                         r"above 1\) has the columns round and rounds"):
        run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), one, resume=True)


def test_retry_suspect_measures_every_round_of_a_config_whose_rounds_disagree(tmp_path, plain_pair, monkeypatch):
    first, second = plain_pair
    monkeypatch.setattr(measure_module, "_measure", lambda config, spec, row: row.update(
        latency_median_ms=ROUND_MS[row["round"]] if config.operator == first else 1.0, runs=5, status="ok"))
    spec = SweepSpec(ops=plain_pair, rounds=3, **TINY)
    out = tmp_path / "r.csv"
    before = run_sweep(spec, out)
    assert before.loc[before["operator"] == first, "timing_suspect"].str.startswith("rounds disagree").all()
    assert before.loc[before["operator"] == second, "timing_suspect"].fillna("").eq("").all()
    monkeypatch.setattr(measure_module, "_measure",
                        lambda config, spec, row: row.update(latency_median_ms=1.0, runs=5, status="ok"))
    order = measured_order(monkeypatch)
    after = run_sweep(spec, out, resume=True, retry=("suspect",))
    disagreeing = [c.key for c in spec.expand() if c.operator == first]
    assert sorted(order) == sorted((key, r) for key in disagreeing for r in (1, 2, 3))
    assert after["timing_suspect"].fillna("").eq("").all() and set(after[ROUND_SPREAD]) == {1.0}


def test_a_config_that_killed_the_sweep_twice_is_a_crash_in_every_round_left(tmp_path, plain_pair, faked, monkeypatch):
    spec = SweepSpec(ops=plain_pair, rounds=2, **TINY)
    out = tmp_path / "r.csv"
    run_sweep(spec, out)
    logged = read_rows(out)
    killer_key, killer_round = logged["key"][0], int(logged["round"][0])
    write_csv(logged.iloc[:0], out)
    out.with_name(out.name + ".measuring").write_text(f"{killer_key}|round={killer_round}\t1\n")
    order = measured_order(monkeypatch)
    rows = run_sweep(spec, out, resume=True)
    assert killer_key not in {key for key, _ in order}
    crashed = read_rows(out).query("status == 'crash'").set_index("round")
    assert set(crashed["key"]) == {killer_key} and sorted(crashed.index) == [1, 2]
    assert crashed.loc[killer_round, "message"].startswith("the sweep's process died 2 times while measuring this row")
    assert crashed.loc[3 - killer_round, "message"] == ("not measured: the config killed the sweep's process 2 times "
                                                       "in another round")
    shown = rows.set_index("key").loc[killer_key]
    assert shown["status"] == "crash" and shown["message"].startswith(f"round {killer_round} of 2: the sweep's process "
                                                                      f"died 2 times")


def test_an_isolated_sweep_of_rounds_records_each_round(tmp_path, plain_pair):
    rows = run_sweep(SweepSpec(ops=plain_pair[:1], rounds=2, **{**TINY, "sizes": (4,)}), tmp_path / "r.csv",
                     isolate=True)
    logged = read_rows(tmp_path / "r.csv")
    assert sorted(logged["round"]) == [1, 2] and list(rows["status"]) == ["ok"] and list(rows["runs"]) == [
        logged["runs"].sum()]


# -- shards, merging, reading -------------------------------------------------------------------
def test_shards_of_rounds_merge_to_a_row_per_round_and_a_missing_round_is_missing(tmp_path, plain_pair, faked):
    spec = SweepSpec(ops=plain_pair, rounds=2, **TINY)
    shards = [run_sweep(spec, tmp_path / f"s{i}.csv", shard=(i, 2)) for i in range(2)]
    assert sum(len(s) for s in shards) == len(spec.expand())
    frames = [latest_rows(read_rows(tmp_path / f"s{i}.csv")) for i in range(2)]
    merged = merge_frames(frames)
    assert len(merged) == 2 * len(spec.expand())
    check_complete(merged)
    with pytest.raises(IncompleteSweep, match=r"1 of 4 configs miss the row of a round or more: config indices 3"):
        check_complete(merged[~((merged["config_index"] == 3) & (merged["round"] == 2))])
    assert main(["merge", str(tmp_path / "s0.csv"), str(tmp_path / "s1.csv"), "--out", str(tmp_path / "m.csv"),
                 "--formats", "markdown"]) == 0
    assert len(read_rows(tmp_path / "m.csv")) == 2 * len(spec.expand())
    report = (tmp_path / "m.md").read_text()
    assert "2 rounds" in report and "round spread" in report and f"{len(spec.expand())} configs x 2 rounds: " in report


def test_the_cli_sweeps_rounds_and_report_and_diff_read_them_combined(tmp_path, plain_pair, faked, capsys):
    out = tmp_path / "r.csv"
    quick = ["--ops", ",".join(plain_pair), "--C", "4", "--size", "4", "--device", "cpu", "--quiet",
             "--min-run-time", "0.001"]
    assert main(["sweep", *quick, "--rounds", "3", "--out", str(out), "--formats", "markdown,json"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["sweep", *quick, "--rounds", "0", "--out", str(tmp_path / "x.csv")])
    assert "argument --rounds: expected an integer >= 1, got '0'" in capsys.readouterr().err
    from_csv = combine_rounds(latest_rows(read_rows(out)))
    json_rows = pd.read_json(tmp_path / "r.json")
    assert list(json_rows["latency_median_ms"]) == list(from_csv["latency_median_ms"]) == [1.1, 1.1]
    for source in (out, tmp_path / "r.json"):
        assert main(["report", str(source), "--out", str(tmp_path / "again.md")]) == 0
        report = (tmp_path / "again.md").read_text()
        assert "3 rounds" in report and "median of its ok rounds' medians" in report
    one = tmp_path / "one.csv"
    assert main(["sweep", *quick, "--out", str(one), "--formats", ""]) == 0
    capsys.readouterr()
    assert main(["diff", str(one), str(out)]) == 0
    printed = capsys.readouterr().out
    assert any(line.startswith("| rounds") and "| 1 " in line and "| 3 " in line for line in printed.splitlines())


def test_a_sweep_file_sets_rounds(tmp_path, plain_pair):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(f"ops: [{plain_pair[0]}]\nrounds: 4\n")
    assert SweepSpec.from_file(spec_file).rounds == 4


def test_a_local_launch_of_rounds_merges_every_round_and_shows_a_row_per_config(tmp_path, plain_pair):
    from upbench.launch import Resources, _logged, launch_sweep, shard_logs

    out = tmp_path / "l.csv"
    launched = launch_sweep(dict(ops=list(plain_pair), C=4, size=[4, 6], device="cpu", warmup=0, min_run_time=0.001,
                                 rounds=2), out, 2, Resources(cluster="local"), progress=False)
    assert launched.problems == [] and len(launched.rows) == 4 and launched.rows["round"].isna().all()
    merged = read_rows(out)
    assert sorted(zip(merged["config_index"], merged["round"])) == [(i, r) for i in range(4) for r in (1, 2)]
    assert [_logged(path) for path in shard_logs(out, 2)] == [(4, 8), (4, 8)]  # the progress bar's rows of 8


# -- a config whose rounds are not all alike ------------------------------------------------------
def test_a_sweep_cut_short_shows_its_configs_incomplete_and_marked(tmp_path, plain_pair, faked):
    out = tmp_path / "r.csv"
    run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), out)
    logged = read_rows(out)
    cut = logged[logged["round"] < 3]  # killed before round 3
    write_csv(cut, out)
    rows = combine_rounds(cut)
    assert list(rows["latency_median_ms"]) == [1.5] * len(rows)  # of 2.0 and 1.0: the mean of the middle two
    assert all("incomplete: 2 of 3 rounds measured ok" in cell for cell in rows["timing_suspect"])
    assert main(["report", str(out), "--pivot", "latency", "--out", str(tmp_path / "p.md")]) == 0
    pivot = (tmp_path / "p.md").read_text()
    assert pivot.count(" † |") == len(rows) and "rounds that disagree or are missing" in pivot


def test_a_round_skipped_by_its_budget_leaves_the_ok_rounds_measured_and_marked(tmp_path, plain_pair, monkeypatch):
    def round_two_over_budget(config, spec, row):
        fake_measure(config, spec, row)
        if row["round"] == 2:
            row.update(status="skipped", message="warm-up took too long")

    monkeypatch.setattr(measure_module, "_measure", round_two_over_budget)
    rows = run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "r.csv")
    assert set(rows["status"]) == {"ok"} and list(rows["latency_median_ms"]) == [1.55] * len(rows)  # 2.0 and 1.1
    assert all(cell.endswith("incomplete: 2 of 3 rounds measured ok (round 2 skipped)")
               for cell in rows["timing_suspect"])
    assert all(message == "warm-up took too long (round 2)" for message in rows["message"])

    def each_round_short(config, spec, row):
        fake_measure(config, spec, row)
        row["message"] = f"timed for 0.0{row['round']} s of the 0.2 s asked (--min-run-time): the row budget"
    monkeypatch.setattr(measure_module, "_measure", each_round_short)
    rows = run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "short.csv")
    assert set(rows["message"]) == {"timed for 0.01 s of the 0.2 s asked (--min-run-time): the row budget "
                                    "(rounds 1, 2, 3; round 1's figures)"}
    monkeypatch.setattr(measure_module, "_measure",
                        lambda config, spec, row: row.update(status="skipped", message=f"over, round {row['round']}"))
    rows = run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "all.csv")
    assert set(rows["status"]) == {"skipped"} and set(rows["message"]) == {"round 1 of 3: over, round 1"}


def test_each_kind_of_doubt_of_a_configs_rounds_is_said_once_with_its_rounds(tmp_path, plain_pair, monkeypatch):
    def shared_in_odd_rounds(config, spec, row):
        fake_measure(config, spec, row)
        row["latency_median_ms"] = 1.0
        if row["round"] % 2:
            row["timing_suspect"] = f"shared: other work kept {row['round'] / 10:.2f} of 2 usable cores busy"

    monkeypatch.setattr(measure_module, "_measure", shared_in_odd_rounds)
    rows = run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "r.csv")
    assert set(rows["timing_suspect"]) == {"shared: other work kept 0.10 of 2 usable cores busy "
                                           "(rounds 1, 3; round 1's figures)"}


def test_rounds_measured_with_different_setups_show_every_setup(tmp_path, plain_pair, faked):
    from upbench.reports import to_markdown
    from upbench.rows import mixed_environments

    out = tmp_path / "r.csv"
    run_sweep(SweepSpec(ops=plain_pair, rounds=2, **TINY), out)
    logged = read_rows(out)
    logged.loc[logged["round"] == 2, "git_commit"] = "0" * 40  # resumed with --allow-mixed after a pull
    logged["threads"] = logged["round"]  # ... and with --threads 2
    rows = combine_rounds(logged)
    assert all(commit.endswith(" / " + "0" * 40) for commit in rows["git_commit"])
    assert set(rows["threads"]) == {"1 / 2"}
    mixed = mixed_environments(rows)
    assert len(mixed) == 2 and mixed[0] == "cpu: threads 1 / 2"
    assert mixed[1].startswith("cpu: git_commit ") and "0" * 40 in mixed[1]
    report = to_markdown(rows)
    assert "0" * 40 in report and "| 1 / 2 " in report
    from upbench.reports import to_latex
    latex = to_latex(rows)  # the table that goes into a paper says it too, the commits by 12 digits
    assert "Measured with more than one setup" in latex and "cpu: threads 1 / 2" in latex
    assert "0" * 12 in latex and "0" * 13 not in latex
    write_csv(rows, tmp_path / "combined.csv")  # as report --format csv writes them: read back, and again
    assert set(read_rows(tmp_path / "combined.csv")["threads"]) == {"1 / 2"}
    assert main(["report", str(tmp_path / "combined.csv"), "--out", str(tmp_path / "again.md")]) == 0
    assert "1 / 2" in (tmp_path / "again.md").read_text()


def test_merging_logs_of_other_rounds_names_the_difference(tmp_path, plain_pair, faked):
    run_sweep(SweepSpec(ops=plain_pair, **TINY), tmp_path / "one.csv")
    run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "three.csv")
    with pytest.raises(ValueError, match=r"refusing to merge rows of different sweep specs \(\w+, \w+; rounds 1 / 3\)"):
        merge_frames([read_rows(tmp_path / "one.csv"), read_rows(tmp_path / "three.csv")])
    run_sweep(SweepSpec(ops=plain_pair, threads=1, **TINY), tmp_path / "t1.csv")
    run_sweep(SweepSpec(ops=plain_pair, threads=2, **TINY), tmp_path / "t2.csv")
    with pytest.raises(ValueError, match=r"different sweep specs \(\w+, \w+; threads 1 / 2\)"):
        merge_frames([read_rows(tmp_path / "t1.csv"), read_rows(tmp_path / "t2.csv")])


def test_the_round_shown_of_a_config_that_failed_is_its_first_failed_round_whatever_the_failure(
        tmp_path, plain_pair, monkeypatch):
    def failing(config, spec, row):
        fake_measure(config, spec, row)
        if row["round"] == 2:
            row.update(status="timeout", message=None)  # as a worker killed without a word would leave it
        if row["round"] == 3:
            raise RuntimeError("boom")

    monkeypatch.setattr(measure_module, "_measure", failing)
    rows = run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "r.csv")
    assert set(rows["status"]) == {"timeout"} and set(rows["message"]) == {"round 2 of 3: timeout"}


def test_exports_and_reports_given_the_rows_of_every_round_show_one_row_per_config(tmp_path, plain_pair, faked):
    from upbench.export import write_outputs

    out = tmp_path / "r.csv"
    run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), out)
    every_round = read_rows(out)
    write_outputs(every_round, out, ["markdown", "json"])
    configs = len(SweepSpec(ops=plain_pair, **TINY).expand())
    assert f"{configs} configs x 3 rounds: {configs} ok" in (tmp_path / "r.md").read_text()
    assert len(pd.read_json(tmp_path / "r.json")) == configs


def test_a_refused_resume_of_a_shards_log_of_rounds_names_no_axis_the_log_cannot_show(tmp_path, plain_pair, faked):
    """A shard's log of 3 rounds holds as many rows as its sweep has configs, but not every config: it was taken
    for a whole sweep, whose sizes it then misreported."""
    out = tmp_path / "shard.csv"
    run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), out, shard=(0, 2))  # sizes 4 and 6: shard 0 holds 4 only
    with pytest.raises(ValueError) as refused:
        run_sweep(SweepSpec(ops=plain_pair, rounds=3, **{**TINY, "sizes": (4, 6, 8)}), out, resume=True, shard=(0, 2))
    assert "the log's spec has 4 configs, this one 6" in str(refused.value)
    assert "size (--size)" not in str(refused.value)


def test_diff_gives_the_load_and_time_spans_of_every_round_not_the_combined_row(tmp_path, plain_pair, faked,
                                                                                 capsys):
    from upbench.diff import diff_runs

    rows = run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "r.csv")
    logged = read_rows(tmp_path / "r.csv")
    logged["load_1min"] = logged["round"].map({1: 0.5, 2: 3.0, 3: 1.0})
    logged["timestamp"] = logged["round"].map({1: "2026-01-01T00:00:00", 2: "2026-01-01T00:05:00",
                                               3: "2026-01-01T00:09:00"})
    setups = diff_runs(logged, logged).setups.set_index("setup")
    assert setups.loc["load (1 min)", "new"] == "0.5 to 3"
    assert setups.loc["measured", "base"] == "2026-01-01T00:00:00 to 2026-01-01T00:09:00"
    assert len(rows) == len(logged) // 3
    write_csv(logged, tmp_path / "r.csv")
    assert main(["diff", str(tmp_path / "r.csv"), str(tmp_path / "r.csv")]) == 0
    printed = capsys.readouterr()
    assert any(line.startswith("| load (1 min)") and "| 0.5 to 3 " in line for line in printed.out.splitlines())
    assert "2026-01-01T00:00:00 to 2026-01-01T00:09:00" in printed.out
    assert "warning" not in printed.err
    write_csv(logged[logged["round"] != 2], tmp_path / "cut.csv")  # a sweep cut short: round 2 of none measured
    assert main(["diff", str(tmp_path / "r.csv"), str(tmp_path / "cut.csv")]) == 0
    assert "warning" not in capsys.readouterr().err  # every config has a row; the cut one's are incomplete


def test_a_report_csv_or_a_merge_of_rounds_is_replaced_by_the_same_command_run_again(tmp_path, plain_pair,
                                                                                     monkeypatch):
    def slower_each_round(config, spec, row):  # the combined row's median is round 2's, its time round 3's
        fake_measure(config, spec, row)
        row.update(latency_median_ms=float(row["round"]), latency_p20_ms=0.9 * row["round"])

    monkeypatch.setattr(measure_module, "_measure", slower_each_round)
    log = tmp_path / "r.csv"
    run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), log)
    report = ["report", str(log), "--format", "csv", "--out", str(tmp_path / "rep.csv")]
    assert main(report) == 0 and main(report) == 0
    merge = ["merge", str(log), "--formats", "", "--out", str(tmp_path / "m.csv")]
    assert main(merge) == 0 and main(merge) == 0
    other = tmp_path / "other.csv"
    run_sweep(SweepSpec(ops=plain_pair, rounds=3, **{**TINY, "sizes": (8,)}), other)
    assert main(["report", str(other), "--format", "csv", "--out", str(tmp_path / "o.csv")]) == 0
    assert main([*report[:-1], str(tmp_path / "o.csv")]) == 2  # another log's report: its rows are not these


def test_rounds_each_timed_too_briefly_for_a_cpu_probe_are_not_taken_for_rows_of_block_timing(tmp_path, plain_pair,
                                                                                              monkeypatch):
    from upbench.reports import BLOCK_TIMING_NOTE, PER_CALL_NOTE, method_notes

    def brief(config, spec, row):  # 40 calls of 1 ms a round: under the probe's 50 ms, 120 ms over three rounds
        fake_measure(config, spec, row)
        row.update(latency_median_ms=1.0, runs=40, cpu_others=None)

    monkeypatch.setattr(measure_module, "_measure", brief)
    notes = method_notes(run_sweep(SweepSpec(ops=plain_pair, rounds=3, **TINY), tmp_path / "r.csv"))
    assert PER_CALL_NOTE in notes and BLOCK_TIMING_NOTE.split(":")[0] not in notes
