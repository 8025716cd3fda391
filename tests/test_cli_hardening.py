"""Issue 9, items 8 to 15: the command line and the row log under bad input, faults and a loaded machine.
Every failure is one line on stderr and a non-zero exit, never a traceback; no row is ever lost."""
from __future__ import annotations

import multiprocessing
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from filelock import FileLock

import upbench
import upbench.measure as measure_module
from upbench import kernels
from upbench.commands import cli, main, resume_command
from upbench.reports import to_markdown
from upbench.rows import IncompleteSweep, check_complete, read_rows
from upbench.network import network_report
from upbench.presets import get_preset
from upbench.rowlog import log_path, read_log
from upbench.spec import SweepSpec
from upbench.sweep import run_sweep
from upbench.timing import Timing, time_cpu, timing_doubts, usable_cores

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(channels=(4,), sizes=(4, 6, 8), devices=("cpu",), warmup=0, min_run_time=0.001, policies=("paper",))


@pytest.fixture(scope="module")
def plain() -> str:
    """An operator with no knobs and no guide: the cheapest to measure."""
    return next(n for n in upbench.available() if not upbench.get(n).knobs and not upbench.get(n).needs_guide)


def flags(plain: str) -> list[str]:
    return ["--ops", plain, "--C", "4", "--size", "4,6", "--device", "cpu", "--min-run-time", "0.001",
            "--warmup", "0", "--quiet"]


def fake_measure(config, spec, row) -> None:
    row.update(latency_median_ms=1.0, runs=1, status="ok")


def one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


# -- 8: the log is always a CSV ---------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".md", ".json"])
def test_out_with_a_report_suffix_keeps_the_rows_in_a_csv(tmp_path, plain, suffix):
    out = tmp_path / f"run{suffix}"
    assert main(["sweep", *flags(plain), "--out", str(out), "--formats", "markdown,json"]) == 0
    rows = read_log(tmp_path / "run.csv")
    assert len(rows) == 2 and (rows["status"] == "ok").all()
    assert (tmp_path / "run.md").read_text().startswith("# upbench sweep")
    assert log_path(tmp_path / "run") == tmp_path / "run.csv" and log_path(out) == tmp_path / "run.csv"


@pytest.mark.parametrize("report", [".md", ".markdown", ".json", ".png", ".tex"])
def test_every_report_named_as_out_names_the_log_beside_it(report):
    """The report formats a sweep writes (LaTeX too) are the names --out may give: x.tex is not x.tex.csv."""
    assert log_path(Path("res") / f"x{report}") == Path("res") / "x.csv"


# -- 9: one line, never a traceback -----------------------------------------------------------
@pytest.mark.parametrize("name, text, fragments", [
    ("missing.yaml", None, ["missing.yaml", "No such file"]),
    ("bad.yaml", "ops: [nearest\nC: 4\n", ["bad.yaml", "line", "not valid YAML"]),
    ("bad.toml", "ops = [\n", ["bad.toml", "not valid TOML"]),
    ("empty.yaml", "", ["empty.yaml", "empty"]),
    ("comments.yaml", "# nothing here\n", ["comments.yaml", "empty"]),
    ("value.yaml", "ops: [nearest]\nsize: [-4]\n", ["value.yaml: size: -4 is not a positive integer"]),
])
def test_bad_spec_files_are_one_line(tmp_path, capsys, name, text, fragments):
    if text is not None:
        (tmp_path / name).write_text(text)
    assert main(["sweep", "--spec", str(tmp_path / name), "--quiet", "--out", str(tmp_path / "x.csv")]) == 2
    one_error_line(capsys, *fragments)
    assert not (tmp_path / "x.csv").exists()


def test_merge_of_a_csv_that_is_not_a_log(tmp_path, capsys):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert main(["merge", str(tmp_path / "other.csv"), "--out", str(tmp_path / "m.csv")]) == 2
    one_error_line(capsys, "other.csv", "not an upbench sweep log")


@pytest.mark.parametrize("out, fragment", [("/proc/upbench-x.csv", "/proc/upbench-x.csv"),
                                           ("/dev/null/x.csv", "/dev/null is not a directory")])
def test_unwritable_out_is_one_line(plain, capsys, out, fragment):
    assert main(["sweep", *flags(plain), "--out", out]) == 2
    one_error_line(capsys, fragment)


def test_closed_stdout_pipe_exits_quietly():
    process = subprocess.Popen([sys.executable, "bench.py", "table1", "--ops", "nearest"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader went away before the table was printed (``| head`` that exited)
    _, err = process.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert process.returncode == 141


def test_ctrl_c_is_one_line_with_the_command_that_resumes(tmp_path, plain, capsys, monkeypatch):
    out = tmp_path / "run.csv"
    calls = []

    def interrupted_on_the_second_row(config, spec, row):
        calls.append(config.key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        fake_measure(config, spec, row)

    monkeypatch.setattr(measure_module, "_measure", interrupted_on_the_second_row)
    argv = ["sweep", *flags(plain), "--formats", "", "--out", str(out)]
    assert main(argv) == 130
    err = one_error_line(capsys, "interrupted", str(out), "resume with:")
    assert len(read_rows(out)) == 1  # the finished row is kept
    command = shlex.split(err.split("resume with: ")[1])
    assert command[:2] == [os.path.basename(sys.executable), "bench.py"] and command[-1] == "--resume"
    assert main(command[2:]) == 0
    assert len(read_rows(out)) == 2 and read_rows(out)["key"].is_unique


def test_resume_command_names_the_script_as_it_was_run(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["../elsewhere/bench.py", "sweep"])
    assert resume_command("bench.py", ["sweep"], log_path("b.csv")).split()[1] == "../elsewhere/bench.py"
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert resume_command("bench.py", ["sweep"], log_path("b.csv")).split()[1] == "bench.py"


def test_resume_command_replaces_out_and_adds_resume():
    assert resume_command("upbench", ["sweep", "--out=a.csv", "--C", "4", "--resume"], log_path("b.md")) == \
        "upbench sweep --C 4 --out b.csv --resume"


# -- 10: a corrupted log is named by file and line, and nothing is appended -------------------
def test_resume_into_a_corrupted_middle_line_names_file_and_line(tmp_path, plain, monkeypatch):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), **TINY)
    out = tmp_path / "run.csv"
    run_sweep(spec, out, shard=(0, 1))
    lines = out.read_text().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 3] + "\n"  # a half-written row in the middle, then a good one
    out.write_text("".join(lines[:3]))
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"run\.csv, line 3: .* fields"):
        run_sweep(spec, out, resume=True)
    assert out.read_bytes() == before


def test_a_cell_that_is_no_number_is_named_by_file_line_and_column(tmp_path, plain, monkeypatch, capsys):
    """latency_median_ms 'abc' passed the log's check: --resume measured on and then died on it naming neither
    file nor line, report and merge likewise, and diff misread every row of the run as not measured."""
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), **TINY)
    out = tmp_path / "run.csv"
    run_sweep(spec, out, shard=(0, 1))
    rows = pd.read_csv(out, dtype=str, keep_default_na=False)
    rows.loc[0, "latency_median_ms"] = "abc"
    rows.to_csv(out, index=False)
    with pytest.raises(ValueError, match=r"run\.csv, line 2: latency_median_ms 'abc' is not a number"):
        run_sweep(spec, out, resume=True)
    for argv in (["report", str(out)], ["diff", str(out), str(out)], ["merge", str(out), "--out", str(tmp_path / "m")]):
        assert main(argv) == 2
        assert "run.csv, line 2: latency_median_ms 'abc' is not a number" in capsys.readouterr().err


# -- 11: one writer per log -------------------------------------------------------------------
def test_a_second_sweep_on_a_locked_log_is_refused(tmp_path, plain, monkeypatch, capsys):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), **TINY)
    out = tmp_path / "run.csv"
    run_sweep(spec, out, shard=(0, 2))
    before = out.read_bytes()
    with FileLock(str(out) + ".lock"):  # another sweep resuming the same file holds it
        with pytest.raises(ValueError, match="being written by another sweep"):
            run_sweep(spec, out, resume=True)
        assert main(["sweep", *flags(plain), "--out", str(out), "--resume"]) == 2
        one_error_line(capsys, "being written by another sweep")
    assert out.read_bytes() == before
    assert len(run_sweep(spec, out, resume=True)) == 3  # released: the resume goes through


# -- 12: a merge that misses configs fails unless asked ---------------------------------------
def test_merge_missing_a_shard_exits_non_zero_and_lists_what_is_missing(tmp_path, plain, monkeypatch, capsys):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=(plain,), **TINY)
    shard = run_sweep(spec, tmp_path / "s0.csv", shard=(0, 2))
    with pytest.raises(IncompleteSweep, match="1 of 3 configs have no row: config indices 1"):
        check_complete(shard)
    merged = tmp_path / "merged.csv"
    assert main(["merge", str(tmp_path / "s0.csv"), "--out", str(merged)]) == 1
    one_error_line(capsys, "config indices 1", "--allow-partial")
    assert not merged.exists()
    assert main(["merge", str(tmp_path / "s0.csv"), "--out", str(merged), "--allow-partial", "--formats", ""]) == 0
    assert len(read_rows(merged)) == 2


# -- 13: strict parsing -----------------------------------------------------------------------
@pytest.mark.parametrize("bad, flag", [(["--size", "32x"], "--size"), (["--C", "8,,16"], "--C"),
                                       (["--budget", "-1"], "--budget"), (["--ops", "nearest,"], "--ops"),
                                       (["--threads", "0"], "--threads"), (["--min-run-time", "nan"], "--min-run-time")])
def test_loose_values_are_usage_errors_naming_the_flag(capsys, bad, flag):
    with pytest.raises(SystemExit) as exited:
        main(["sweep", *bad])
    assert exited.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_spec_file_errors_use_the_file_names_of_settings(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text("budget: -1\n")
    assert main(["sweep", "--spec", str(tmp_path / "spec.yaml"), "--quiet"]) == 2
    one_error_line(capsys, "budget=-1")
    with pytest.raises(ValueError, match="empty item"):
        SweepSpec(channels="8,,16")
    with pytest.raises(ValueError, match="size"):
        SweepSpec(sizes=("32x",))


def test_help_names_the_program_and_the_shard_base(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["upbench", "--help"])
    with pytest.raises(SystemExit):
        cli()
    assert capsys.readouterr().out.startswith("usage: upbench")
    with pytest.raises(SystemExit):
        main(["sweep", "--help"], prog="upbench")
    assert "counted from 0" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as exited:
        main(["--version"], prog="upbench")
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("upbench ")


# -- 14: timing on a shared machine -----------------------------------------------------------
def test_timing_doubts_name_the_reason():
    quiet = Timing(1.0, 0.99, 1.01, 100, "warm", cpu_util=1.0)
    assert timing_doubts(quiet, threads=1, cores=2) == []
    assert "descheduled" in timing_doubts(Timing(1.0, 0.99, 1.01, 100, "warm", 0.5), 1, 2)[0]
    assert "p80/p20 = 3.00" in timing_doubts(Timing(1.0, 1.0, 3.0, 100, "warm", 1.0), 1, 2)[0]
    assert timing_doubts(quiet, threads=4, cores=2) == ["4 threads on 2 usable cores"]
    assert timing_doubts(Timing(1.0, 0.99, 1.01, 100, "warm", None), 1, 2) == []  # GPU: no CPU share


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_loaded_cpu_is_seen_while_timing():
    """More busy processes than cores: the timing process cannot get a whole core."""
    context = multiprocessing.get_context("fork")
    spinners = [context.Process(target=_spin, args=(3.0,)) for _ in range(usable_cores() + 1)]
    for process in spinners:
        process.start()
    try:
        time.sleep(0.2)
        work = torch.randn(64, 64)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            timing = time_cpu(lambda: work @ work, min_run_time=0.5)
        finally:
            torch.set_num_threads(threads)
    finally:
        for process in spinners:
            process.terminate()
            process.join()
    assert timing.cpu_util < 0.9
    assert "descheduled" in "; ".join(timing_doubts(timing, threads=1))


def test_suspect_rows_are_marked_warned_once_and_reported(tmp_path, plain, monkeypatch, capsys):
    contended = Timing(1e-3, 1e-3, 1e-3, 10, "warm", cpu_util=0.4)
    monkeypatch.setattr(measure_module, "time_call", lambda *args, **kwargs: contended)
    threads = torch.get_num_threads()
    out = tmp_path / "run.csv"
    assert main(["sweep", *flags(plain), "--threads", "1", "--out", str(out), "--formats", "markdown"]) == 0
    assert torch.get_num_threads() == threads  # restored after each row
    rows = read_rows(out)
    assert (rows["threads"] == 1).all() and (rows["cpu_util"] == 0.4).all()
    assert rows["timing_suspect"].str.contains("descheduled").all()
    err = capsys.readouterr().err
    assert err.count("warning: timing of") == 1 and "2 row(s) with timing that cannot be trusted" in err
    report = out.with_suffix(".md").read_text()
    assert "## Timing that cannot be trusted (2 of 2 rows)" in report
    assert "timing suspect" in to_markdown(rows)


# -- 15: long steps say what is happening -----------------------------------------------------
def test_the_kernel_build_knows_when_it_compiles(tmp_path):
    sources = kernels._sources(with_cuda=False)
    assert kernels._needs_compiling(tmp_path, sources)  # no library yet: the first build compiles
    library = tmp_path / f"{kernels._NAME}.so"
    library.write_bytes(b"")
    os.utime(library, (time.time() + 3600, time.time() + 3600))
    assert not kernels._needs_compiling(tmp_path, sources)


def test_network_measure_reports_progress(plain):
    heard: list[str] = []
    network_report(get_preset("segformer-b1"), [plain], size=(32, 32), channels=4, measure=True,
                   min_run_time=0.001, progress=heard.append)
    assert heard[0].startswith(f"measuring {plain} (1/1)") and heard[1].startswith(f"{plain}: ok in ")


def test_a_repeated_knob_sweeps_all_its_values():
    # --knob K=3 --knob K=5 (and --K 3 --knob K=5) swept K=5 alone, silently; table1 took both
    from upbench.commands import build_parser
    from upbench.commands.sweep import spec_from_args

    for flags in (["--knob", "K=3", "--knob", "K=5"], ["--K", "3", "--knob", "K=5"]):
        args = build_parser().parse_args(["sweep", "--ops", "carafe", *flags])
        assert dict(spec_from_args(args).knobs)["K"] == (3, 5)


def test_an_out_file_named_for_a_format_gets_that_format_and_one_named_for_another_is_refused(tmp_path,
                                                                                              counted_not_timed,
                                                                                              capsys):
    log = tmp_path / "s.csv"
    assert main(["sweep", "--ops", "nearest", "--C", "4", "--size", "4", "--device", "cpu", "--out", str(log),
                 "--formats", "", "--quiet"]) == 0
    for name, starts in (("r.csv", "spec_id,"), ("r.tex", "% needs \\usepackage{booktabs}"), ("r.md", "# upbench sweep")):
        assert main(["report", str(log), "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_text().startswith(starts), name
    assert main(["report", str(log), "--out", str(tmp_path / "r.json")]) == 0
    assert list(pd.read_json(tmp_path / "r.json")["operator"]) == ["nearest"]
    assert main(["table1", "--ops", "nearest", "--C", "4", "--size", "4", "--out", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "t.csv").read_text().startswith("operator,stage,")
    capsys.readouterr()
    assert main(["report", str(log), "--format", "latex", "--out", str(tmp_path / "x.json")]) == 2
    assert "--out " + str(tmp_path / "x.json") + " names a json file, and --format is latex" in capsys.readouterr().err
    assert main(["diff", str(log), str(log), "--out", str(tmp_path / "d.tex")]) == 2
    assert "names a latex file; this command writes markdown, csv, json" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "d.tex").exists()
    assert main(["report", str(log), "--out", str(tmp_path / "notes.txt")]) == 0  # no format named: markdown
    assert (tmp_path / "notes.txt").read_text().startswith("# upbench sweep")
