"""Numbers a reviewer can trust: per-call CPU timing, doubts about the machine while timing, and a row log
that neither mixes setups on resume or merge nor loses its header to a kill."""
from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import upbench
import upbench.measure as measure_module
from upbench.commands import main
from upbench.rows import merge_frames, read_rows, write_csv
from upbench.spec import SweepSpec
from upbench.sweep import run_sweep
import upbench.timing as timing_module
from upbench.timing import (MIN_PROBE_S, MIN_RUNS, CoreUsage, Timing, cache_size_bytes, cpu_cache_bytes, time_call,
                            time_cpu, timing_doubts, usable_cores)

TINY = dict(channels=(4,), sizes=(4, 8), devices=("cpu",), warmup=0, min_run_time=0.001, policies=("paper",))


@pytest.fixture(scope="module")
def plain() -> str:
    return next(n for n in upbench.available() if not upbench.get(n).knobs and not upbench.get(n).needs_guide)


@pytest.fixture(scope="module")
def compiled() -> str:
    return next(n for n in upbench.available() if upbench.get(n).compiled_ops)


def fake_measure(config, spec, row) -> None:
    row.update(latency_median_ms=1.0, runs=MIN_RUNS, status="ok")


# -- the CPU timer ----------------------------------------------------------------------------
def test_cpu_percentiles_are_of_single_calls():
    """One call in four is 5x slower: per-call percentiles show it, means of blocks of calls would not."""
    calls = 0

    def sometimes_slow() -> None:
        nonlocal calls
        calls += 1
        end = time.perf_counter() + (1e-3 if calls % 4 == 0 else 2e-4)
        while time.perf_counter() < end:
            pass

    timing = time_cpu(sometimes_slow, min_run_time=0.1)
    assert timing.runs == calls
    assert timing.median_s < 4e-4 and timing.p80_s > 9e-4
    assert any(doubt.startswith("unsteady") for doubt in timing_doubts(timing, threads=1, cores=8))


def test_a_slow_call_is_timed_min_runs_times():
    timing = time_cpu(lambda: time.sleep(0.01), min_run_time=0.0)
    assert timing.runs == MIN_RUNS
    assert time_cpu(lambda: time.sleep(0.01), min_run_time=0.0, min_runs=2).runs == 2


def test_cache_sizes_are_read_from_sysfs(tmp_path):
    assert [cache_size_bytes(t) for t in ("48K\n", "2048K", "300M", "1G", "512", "", "big", "K")] == [
        48 * 2**10, 2048 * 2**10, 300 * 2**20, 2**30, 512, None, None, None]
    for index, size in enumerate(("48K", "32K", "2048K", "307200K")):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert cpu_cache_bytes(tmp_path) == 300 * 2**20  # the last level, the largest
    assert cpu_cache_bytes(tmp_path / "none") is None


def test_a_cold_cpu_timing_flushes_before_every_call_outside_its_time(monkeypatch):
    """--l2-flush on CPU: a flush before every call, warm-up included, none of it inside a call's time."""
    events = []
    monkeypatch.setattr(timing_module, "cpu_flush_buffer", lambda: torch.zeros(16, dtype=torch.uint8))

    def slow_flush(buffer: torch.Tensor) -> None:
        events.append("flush")
        time.sleep(0.01)

    monkeypatch.setattr(timing_module, "flush_cpu_caches", slow_flush)
    timing = time_call(lambda: events.append("call"), torch.device("cpu"), warmup=2, min_run_time=0.0, l2_flush=True)
    assert timing.cache == "cold" and timing.runs == MIN_RUNS
    assert events == ["flush", "call"] * (2 + MIN_RUNS)
    assert timing.p80_s < 0.005  # the 10 ms flushes are outside the calls' times
    assert time_call(lambda: None, torch.device("cpu"), warmup=0, min_run_time=0.0).cache == "warm"


def test_a_cold_cpu_sweep_says_so_in_its_rows(plain, monkeypatch):
    monkeypatch.setattr(measure_module, "cpu_flush_buffer", lambda: torch.zeros(2**20, dtype=torch.uint8))
    assert set(run_sweep(SweepSpec(ops=(plain,), l2_flush=True, **TINY))["cache"]) == {"cold"}


def test_a_cold_cpu_row_counts_its_flushes_against_the_budget(plain, monkeypatch):
    """Each timed call's flush (twice the last-level cache written: ~0.1 s where sysfs reports a 300 MB L3) takes
    its share of --budget: a row whose budget leaves room for fewer flushed calls than MIN_RUNS times fewer, flagged,
    where it used to time MIN_RUNS calls and their flushes past its budget."""
    flushes = []
    for module in (measure_module, timing_module):
        monkeypatch.setattr(module, "cpu_flush_buffer", lambda: torch.zeros(16, dtype=torch.uint8), raising=False)

    def slow_flush(buffer: torch.Tensor) -> None:
        flushes.append(1)
        time.sleep(0.06)

    for module in (measure_module, timing_module):
        monkeypatch.setattr(module, "flush_cpu_caches", slow_flush, raising=False)
    spec = SweepSpec(ops=(plain,), l2_flush=True, row_budget_s=0.25, **{**TINY, "sizes": (4,), "warmup": 1,
                                                                        "min_run_time": 0.2})
    row = run_sweep(spec).iloc[0]
    assert row["status"] == "ok" and row["cache"] == "cold"
    assert row["runs"] < MIN_RUNS and "few calls" in row["timing_suspect"]
    assert len(flushes) < 1 + MIN_RUNS  # the warm-up's and the timed calls' flushes


def test_doubts_name_other_work_and_few_calls():
    quiet = Timing(1.0, 0.99, 1.01, 100, "warm", cpu_util=1.0, cpu_others=0.1)
    assert timing_doubts(quiet, threads=2, cores=2) == []
    busy = Timing(1.0, 0.99, 1.01, 100, "warm", cpu_util=1.0, cpu_others=0.6)
    assert timing_doubts(busy, threads=1, cores=2) == []  # the core the timing left free
    assert timing_doubts(busy, threads=2, cores=2) == [
        "shared: other work (other processes, hypervisor steal) kept 0.60 of 2 usable cores busy beside "
        "2 timing thread(s)"]
    assert timing_doubts(Timing(1.0, 1.0, 1.0, 2, "warm"), threads=1, cores=2) == [
        f"few calls: 2 timed (a median wants at least {MIN_RUNS})"]


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat")
def test_other_processes_are_seen_on_the_cores():
    context = multiprocessing.get_context("fork")
    spinners = [context.Process(target=_spin, args=(2.0,)) for _ in range(usable_cores())]
    for process in spinners:
        process.start()
    try:
        time.sleep(0.2)
        usage = CoreUsage()
        time.sleep(1.0)
        others = usage.others()
    finally:
        for process in spinners:
            process.terminate()
            process.join()
    assert others is not None and others > 0.5 * usable_cores()


def test_a_timing_too_short_for_clock_ticks_reads_no_other_work():
    timing = time_cpu(lambda: None, min_run_time=0.001)
    assert timing.cpu_others is None and timing.runs >= MIN_RUNS


def test_rows_time_at_least_min_runs_calls(plain):
    rows = run_sweep(SweepSpec(ops=(plain,), **{**TINY, "min_run_time": 2 * MIN_PROBE_S}))
    assert (rows["runs"] >= MIN_RUNS).all()
    assert rows["cpu_others"].notna().all() == Path("/proc/stat").exists()


# -- the row log ------------------------------------------------------------------------------
def test_a_torn_header_is_cut_and_written_again(tmp_path, plain, monkeypatch):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), **TINY)
    out = tmp_path / "run.csv"
    out.write_text("spec_id,config_index,config_to")  # killed while writing the header
    rows = run_sweep(spec, out, resume=True)
    assert len(rows) == 2 and list(rows.columns) == spec.columns()


def _rewrite(path: Path, **columns) -> None:
    rows = read_rows(path)
    for column, value in columns.items():
        rows[column] = value
    write_csv(rows, path)


@pytest.mark.parametrize("column, value", [("threads", 99), ("torch_version", "0.1.0+not-this-one"),
                                           ("git_commit", "0123abc"), ("device_name", "another CPU")])
def test_resume_refuses_rows_of_another_setup(tmp_path, plain, monkeypatch, capsys, column, value):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), **TINY)
    out = tmp_path / "run.csv"
    first = run_sweep(spec, out)
    write_csv(first.iloc[:1], out)
    _rewrite(out, **{column: value})
    with pytest.raises(ValueError, match=f"another setup.*cpu: {column}"):
        run_sweep(spec, out, resume=True)
    flags = ["sweep", "--ops", plain, "--C", "4", "--size", "4,8", "--device", "cpu", "--min-run-time", "0.001",
             "--warmup", "0", "--policy", "paper", "--quiet", "--formats", "markdown", "--out", str(out), "--resume"]
    assert main(flags) == 2
    assert "--allow-mixed" in capsys.readouterr().err
    assert main([*flags, "--allow-mixed"]) == 0
    assert len(read_rows(out)) == 2


def test_resume_under_the_same_setup_goes_on(tmp_path, plain, monkeypatch):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), threads=1, **TINY)
    out = tmp_path / "run.csv"
    write_csv(run_sweep(spec, out).iloc[:1], out)
    assert list(run_sweep(spec, out, resume=True)["threads"]) == [1, 1]


def test_resume_refuses_rows_auto_resolved_otherwise(tmp_path, compiled, monkeypatch):
    """impl auto meant compiled when the log was started and reference now (the kernels no longer build)."""
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(compiled,), impls=("auto",), **TINY)
    out = tmp_path / "run.csv"
    monkeypatch.setattr("upbench.kernels.compiled_available", lambda: True)
    write_csv(run_sweep(spec, out).iloc[:1], out)
    monkeypatch.setattr("upbench.kernels.compiled_available", lambda: False)
    with pytest.raises(ValueError, match="configs this run does not expand.*compiled"):
        run_sweep(spec, out, resume=True)


# -- merging ----------------------------------------------------------------------------------
@pytest.fixture
def logged(tmp_path, plain, monkeypatch) -> pd.DataFrame:
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    return run_sweep(SweepSpec(ops=(plain,), **TINY), tmp_path / "run.csv")


def test_merge_keeps_the_ok_row_of_a_config_in_either_order(logged):
    failed = logged.copy()
    failed["status"], failed["latency_median_ms"] = "error", float("nan")
    for frames in ([failed, logged], [logged, failed]):
        merged = merge_frames(frames)
        assert list(merged["status"]) == ["ok", "ok"]


def test_setups_compare_threads_on_cpu_only_and_commits_with_their_edits(logged):
    from upbench.rows import mixed_environments

    rows = pd.concat([logged.assign(device="cuda:0", device_name="GPU")] * 2, ignore_index=True)
    rows["git_commit"] = "4567def"
    rows.loc[0, "threads"], rows.loc[1, "git_commit"] = 99, "4567def+dirty"  # edits of old rows: unknown
    assert mixed_environments(rows) == []
    rows["git_commit"] = "4567def+dirty.aaaa1111"  # a requeued job on the same edits
    assert mixed_environments(rows) == []
    rows.loc[1, "git_commit"] = "4567def+dirty.bbbb2222"
    assert mixed_environments(rows) == ["cuda:0: git_commit 4567def+dirty.aaaa1111 / 4567def+dirty.bbbb2222"]
    rows["git_commit"] = "4567def+dirty.bbbb2222"
    rows.loc[0, "git_commit"] = "4567def"  # the commit, then edits of it
    assert mixed_environments(rows) == ["cuda:0: git_commit 4567def / 4567def+dirty.bbbb2222"]
    rows["git_commit"] = "4567def"
    rows.loc[1, "git_commit"] = "0123abc+dirty"
    assert mixed_environments(rows) == ["cuda:0: git_commit 0123abc / 4567def"]


def test_merge_refuses_configs_numbered_differently(logged):
    other = logged.copy()
    other["key"] = other["key"] + "|other"
    with pytest.raises(ValueError, match="config 0 has rows for different configs"):
        merge_frames([logged, other])


def test_merge_names_the_columns_that_differ(logged):
    other = logged.drop(columns=["cpu_others"]).assign(hidden=4)
    with pytest.raises(ValueError, match="only log 1 has cpu_others; only log 2 has hidden"):
        merge_frames([logged, other])


def test_git_commit_is_upbenchs_never_that_of_a_repository_it_is_installed_in(tmp_path, monkeypatch):
    """An installed upbench may live in a venv inside the user's own repository: that repository's commit
    must not be recorded as the commit of the code that measured."""
    import subprocess

    from upbench import environment

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "tracked").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "tracked"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    users_commit = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    site_packages = tmp_path / ".venv" / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    monkeypatch.setattr(environment, "REPO_ROOT", site_packages.resolve())
    assert environment.git_commit.__wrapped__() == environment.installed_code()
    assert environment.installed_code().startswith(f"upbench {environment.upbench_version()} files ")
    monkeypatch.setattr(environment, "REPO_ROOT", tmp_path.resolve())  # a checkout of its own: its HEAD
    assert environment.git_commit.__wrapped__() == users_commit
    stamps = []
    for text in ("y", "z", "y"):  # uncommitted edits: named by their hash, the same edits alike
        (tmp_path / "tracked").write_text(text)
        stamps.append(environment.git_commit.__wrapped__())
    assert all(stamp.startswith(users_commit + "+dirty.") for stamp in stamps)
    assert stamps[0] == stamps[2] != stamps[1]
    (tmp_path / "tracked").write_text("x")
    # installed code is told apart by its files, the version being the same for every commit
    package = site_packages / "upbench"
    package.mkdir()
    (package / "measure.py").write_text("x = 1\n")
    monkeypatch.setattr(environment, "__file__", str(package / "environment.py"))
    before = environment.installed_code()
    (package / "measure.py").write_text("x = 2\n")
    assert environment.installed_code() != before


def test_merge_refuses_rows_of_an_operator_measured_from_two_sources(logged):
    first, second = logged.iloc[:1].copy(), logged.iloc[1:].copy()
    second["operator_source"] = "0123456789ab"
    operator = first["operator"].iloc[0]
    with pytest.raises(ValueError, match=f"different setups \\({operator}: source .*edited between the runs"):
        merge_frames([first, second])
    assert len(merge_frames([first, second], allow_mixed=True)) == 2


def test_merge_refuses_mixed_setups_unless_allowed(tmp_path, logged, capsys):
    first, second = logged.iloc[:1].copy(), logged.iloc[1:].copy()
    second["threads"] = int(first["threads"].iloc[0]) + 1
    with pytest.raises(ValueError, match="different setups.*cpu: threads"):
        merge_frames([first, second])
    assert len(merge_frames([first, second], allow_mixed=True)) == 2
    write_csv(first, tmp_path / "a.csv")
    write_csv(second, tmp_path / "b.csv")
    merge = ["merge", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "m.csv"),
             "--formats", "markdown"]
    assert main(merge) == 2 and "--allow-mixed" in capsys.readouterr().err
    assert main([*merge, "--allow-mixed"]) == 0



# -- LaTeX rounding ---------------------------------------------------------------------------
def test_latex_keeps_two_significant_digits_of_small_values():
    from upbench.latex import booktabs

    table = pd.DataFrame({"operator": ["deconv", "carafe", "sapa-b"], "Params": [1_200_000, 17_472, 8_224],
                          "Latency": [1.5, 0.25, 0.0123], "MACs": [2.5e9, 1.25e9, 0.5e9]}).astype(object)
    latex = booktabs(table, {"operator": "text", "Params": "params", "Latency": "ms", "MACs": "macs"})
    assert "deconv & 1.2000 & 1.500 & 2.50" in latex
    assert "carafe & 0.0175 & 0.250 & 1.25" in latex
    assert "sapa-b & 0.0082 & 0.012 & 0.50" in latex
    assert "as headed, rounded, MACs to 2 decimals, parameters to 4 decimals;" in latex  # not "rounded to MACs to"
    assert "latency in ms (median), 3 decimals" in latex


def test_latex_prints_whole_counts_without_decimals(counted_not_timed, tmp_path, capsys):
    """Params below 1,000 have no unit to scale to: sapa-b's 608 printed as 608.00, nearest's 0 as 0.00."""
    from upbench.latex import booktabs

    table = pd.DataFrame({"operator": ["nearest", "sapa-b"], "Params": [0, 72], "MACs": [2e9, 3e9],
                          "Latency": [1.0, 2.0]}).astype(object)
    kinds = {"operator": "text", "Params": "params", "MACs": "macs", "Latency": "ms"}
    latex = booktabs(table, kinds)
    assert r"operator & Params & MACs (G) & Latency (ms) \\" in latex
    assert r"nearest & 0 & 2 & 1.00 \\" in latex and r"sapa-b & 72 & 3 & 2.00 \\" in latex
    assert "as headed, exact (whole numbers);" in latex
    mixed = booktabs(table.assign(MACs=[2.5e9, 3e9]), kinds)  # one number of decimals through a quantity
    assert r"sapa-b & 72 & 3.00 & 2.00 \\" in mixed
    assert "as headed, rounded, MACs to 2 decimals, parameters exact;" in mixed
    out = tmp_path / "small.csv"
    upbench.run_sweep(SweepSpec(ops=("nearest", "sapa-b"), channels=(8,), sizes=(4,), devices=("cpu",)), out)
    assert main(["report", str(out), "--pivot", "params", "--format", "latex"]) == 0
    assert r"sapa-b & 608 \\" in capsys.readouterr().out


# -- float32 on GPUs with TF32 ----------------------------------------------------------------
@pytest.mark.parametrize("tf32", [False, True])
def test_tf32_is_set_alike_for_matmuls_and_convolutions_and_recorded(tmp_path, plain, monkeypatch, tf32):
    seen = []

    def tf32_flags() -> tuple:
        if hasattr(torch.backends.cudnn.conv, "fp32_precision"):  # torch >= 2.9: the per-backend setting
            return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
        return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    def record_flags(config, spec, row) -> None:
        seen.append(tf32_flags())
        fake_measure(config, spec, row)

    monkeypatch.setattr(measure_module, "_measure", record_flags)
    before = tf32_flags()
    flags = ["sweep", "--ops", plain, "--C", "4", "--size", "4", "--device", "cpu", "--quiet", "--formats",
             "markdown", "--out", str(tmp_path / "run.csv"), *(["--tf32"] if tf32 else [])]
    assert main(flags) == 0
    expected = ("tf32" if tf32 else "ieee",) * 2 if isinstance(before[0], str) else (tf32, tf32)
    assert seen == [expected] and tf32_flags() == before
    assert list(read_rows(tmp_path / "run.csv")["tf32"]) == [tf32]


# -- what a timed call runs ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_only_the_first_call_runs_upbenchs_checks_and_a_wrong_output_still_fails_it(mode, monkeypatch):
    """Every timed call ran the input and output checks, a few microseconds each: 7-14% more than nearest alone
    at 16 channels of 8x8 (tests/benchmarks/check_cost.py)."""
    from upbench.spec import Config

    op = upbench.make("sapa-b", 8)
    config = Config(operator="sapa-b", impl=op.impl, C=8, hparams=tuple(op.hparams.items()), N=1, H=4, W=4,
                    dtype="fp32", device="cpu", mode=mode)
    checked = []
    monkeypatch.setattr(type(op), "check_inputs", lambda self, x, guide: checked.append(x.shape))
    call = measure_module.build_call(op, config, torch.Generator().manual_seed(0))
    for _ in range(4):
        call()
    assert len(checked) == 1 and not op.check_calls
    monkeypatch.setattr(type(op), "upsample", lambda self, x, guide: x)  # forgot to upsample
    with pytest.raises(ValueError, match=r"sapa-b: upsample returned"):
        measure_module.build_call(op, config, torch.Generator().manual_seed(0))()


def test_a_config_in_two_merged_logs_keeps_its_newest_ok_row_whatever_their_order(tmp_path, plain, monkeypatch):
    """merge kept the last file's row: 'merge a b' and 'merge b a' gave different latencies, without a word."""
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), **TINY)
    for name in ("a.csv", "b.csv"):
        run_sweep(spec, tmp_path / name)
    older, newer = read_rows(tmp_path / "a.csv"), read_rows(tmp_path / "b.csv")
    older["timestamp"], newer["timestamp"] = "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"
    older["latency_median_ms"], newer["latency_median_ms"] = 1.0, 2.0
    failed_newest = newer.assign(status="error", timestamp="2026-01-03T00:00:00+00:00")
    for frames in ([older, newer], [newer, older], [older, failed_newest, newer]):
        assert merge_frames(frames)["latency_median_ms"].tolist() == [2.0, 2.0]


def test_rows_record_their_measurement_settings_and_a_refused_resume_says_what_differs(tmp_path, plain, monkeypatch,
                                                                                        capsys):
    """Only the spec_id hash said how rows were measured: diff called runs of --min-run-time 0.01 and 0.02 'the
    same setup', and a refused --resume listed every axis and setting instead of the one that differed."""
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), **TINY)
    rows = run_sweep(spec, tmp_path / "a.csv")
    assert rows[["warmup", "min_run_time_s", "budget_s", "seed"]].drop_duplicates().values.tolist() == [
        [1, 0.001, 60.0, 0]]  # warmup 0 makes one warm-up call, and the rows say so
    longer = SweepSpec(ops=(plain,), **{**TINY, "min_run_time": 0.002, "sizes": (4, 8, 12)})
    with pytest.raises(ValueError, match=r"\(min_run_time \(--min-run-time\) 0\.001 in the log, 0\.002 now; the log's spec has 2 "
                                         r"configs, this one 3; size \(--size\) 4x4, 8x8 in the log, 12x12, 4x4, "
                                         r"8x8 now\)"):
        run_sweep(longer, tmp_path / "a.csv", resume=True)
    run_sweep(SweepSpec(ops=(plain,), **{**TINY, "min_run_time": 0.002}), tmp_path / "b.csv")
    assert main(["diff", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 0
    out = capsys.readouterr().out
    assert "The setups differ in: min_run_time_s." in out
    assert main(["report", str(tmp_path / "a.csv")]) == 0
    said = "Measured with 1 warm-up call(s), timed for at least 0.001 s, row budget 60 s, seed 0."
    assert said in capsys.readouterr().out


def test_a_timing_the_row_budget_cut_short_says_so(plain):
    """--budget 0.05 beside --min-run-time 0.2 timed each row for under 0.05 s, an ok row that did not say so."""
    spec = SweepSpec(ops=(plain,), **{**TINY, "sizes": (4,), "min_run_time": 0.2, "row_budget_s": 0.05})
    row = run_sweep(spec).iloc[0]
    assert row["status"] == "ok"
    assert "s of the 0.2 s asked (--min-run-time): the row budget (0.05 s) left no more" in row["message"]
