"""What a crash-and-resume audit found: a launch's --resume replaced an --out it never read (another run's log,
or the merge of another --shards); merge and report wrote over a sweep's log, even one a sweep was writing; a
symbolic link to a log took a second lock beside the first."""
from __future__ import annotations

from pathlib import Path

import pytest

from upbench import SweepSpec, run_sweep
from upbench.commands import main
from upbench.launch import Resources, launch_sweep, shard_logs
from upbench.rowlog import RowLog, check_replaceable

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = dict(ops=["nearest"], C=4, size=[4, 8], device="cpu", warmup=0, min_run_time=0.001)


def _sweep(out: Path, **more) -> None:
    run_sweep(SweepSpec.from_mapping({**SPEC, **more}), out)


def test_a_resumed_launch_refuses_an_out_that_is_no_merge_of_its_shards(tmp_path):
    out = tmp_path / "l.csv"
    _sweep(out)  # a one-process run's log at the launch's --out
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"l\.csv holds 2 row\(s\) that none of the logs merged into it holds .*"
                                         r"a launch resumes its shard logs only, never --out"):
        launch_sweep(SPEC, out, 2, Resources(cluster="local"), resume=True)
    assert out.read_bytes() == before and not (out.with_suffix(".shards") / "submitit").exists()


def test_a_resumed_launch_with_another_shard_count_names_the_other_logs(tmp_path):
    out = tmp_path / "l.csv"
    for index, log in enumerate(shard_logs(out, 2)):
        run_sweep(SweepSpec.from_mapping(SPEC), log, shard=(index, 2))
    assert main(["merge", *map(str, shard_logs(out, 2)), "--out", str(out), "--formats", "json"]) == 0
    with pytest.raises(ValueError, match=r"the shard logs of another --shards are there: .*shard0of2\.csv"):
        launch_sweep(SPEC, out, 3, Resources(cluster="local"), resume=True)


def test_merge_replaces_its_own_earlier_merge_and_nothing_else(tmp_path, capsys):
    shards = [tmp_path / f"s{index}.csv" for index in range(2)]
    for index, log in enumerate(shards):
        run_sweep(SweepSpec.from_mapping(SPEC), log, shard=(index, 2))
    merged, other = tmp_path / "m.csv", tmp_path / "other.csv"
    args = ["merge", *map(str, shards), "--formats", "json", "--out"]
    assert main([*args, str(merged)]) == 0 and main([*args, str(merged)]) == 0  # merged again: the same rows
    _sweep(other, size=[16])
    before = other.read_bytes()
    assert main([*args, str(other)]) == 2
    assert "other.csv holds 1 row(s) that none of the logs merged into it holds" in capsys.readouterr().err
    assert other.read_bytes() == before


def test_merge_replaces_its_earlier_merge_of_a_log_whose_retried_row_left_a_blank(tmp_path):
    import pandas as pd

    from upbench.rows import read_rows, write_csv

    log, merged = tmp_path / "s.csv", tmp_path / "m.csv"
    _sweep(log)
    rows = read_rows(log)
    failed = rows.iloc[[0]].assign(status="error", message="RuntimeError: boom", peak_mem_bytes=None,
                                   latency_median_ms=None)
    write_csv(pd.concat([failed, rows], ignore_index=True), log)  # the failed row, then its retry: peak 1.0e3 etc.
    args = ["merge", str(log), "--formats", "", "--out", str(merged)]
    assert main(args) == 0 and main(args) == 0


def test_merge_of_a_log_cut_to_its_key_columns_is_a_clear_error(tmp_path, capsys):
    given = tmp_path / "keys.csv"
    given.write_text("spec_id,config_index,config_total,key,status\nabc,0,1,nearest-C4,ok\n")
    assert main(["merge", str(given), "--out", str(tmp_path / "m.csv")]) == 2
    assert "not upbench sweep rows a report can render (no operator" in capsys.readouterr().err


def test_merge_refuses_a_log_a_sweep_is_writing(tmp_path):
    shard = tmp_path / "s.csv"
    _sweep(shard)
    busy = RowLog(tmp_path / "busy.csv", ["key"])
    try:
        with pytest.raises(ValueError, match=r"busy\.csv is being written by a sweep"):
            check_replaceable(tmp_path / "busy.csv", [shard])
    finally:
        busy.close()


@pytest.mark.parametrize("command", [["report", "{input}", "--format", "csv"], ["table1", "--ops", "nearest"],
                                     ["diff", "{input}", "{input}"]])
def test_a_command_refuses_to_write_its_output_over_a_sweeps_log(command, tmp_path, capsys):
    given, victim = tmp_path / "in.csv", tmp_path / "victim.csv"
    _sweep(given)
    _sweep(victim)
    before = victim.read_bytes()
    args = [part.format(input=given) for part in command]
    assert main([*args, "--out", str(victim)]) == 2
    assert f"--out {victim} is a sweep's row log; writing there would replace its rows" in capsys.readouterr().err
    assert victim.read_bytes() == before


def test_a_log_reached_through_a_symbolic_link_is_locked_as_the_log(tmp_path):
    log = tmp_path / "b.csv"
    (tmp_path / "link.csv").symlink_to(log)
    first = RowLog(log, ["key"])
    try:
        with pytest.raises(ValueError, match="is being written by another sweep"):
            RowLog(tmp_path / "link.csv", ["key"])
    finally:
        first.close()


def test_an_interrupted_launch_says_its_rows_are_in_the_shard_logs(tmp_path, monkeypatch, capsys):
    import upbench.commands.sweep as sweep_command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_command, "launch_sweep", interrupted)
    out = tmp_path / "k.csv"
    assert main(["sweep", "--ops", "nearest", "--C", "4", "--size", "4", "--device", "cpu", "--launcher", "submitit",
                 "--shards", "2", "--cluster", "local", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"sweep: interrupted; finished rows are in {tmp_path / 'k.shards'}; resume with: " in err
    assert err.rstrip().endswith(f"--out {out} --resume")


@pytest.mark.parametrize("signal_name,said", [("SIGINT", (130, "bench.py: interrupted\n")),
                                               ("SIGTERM", (143, "bench.py: terminated\n"))])
def test_a_signal_while_bench_py_imports_is_one_line(signal_name, said, tmp_path):
    """A Ctrl-C or SIGTERM in the second or two torch takes to import, made certain: the import of
    upbench.commands sends it."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    runner = tmp_path / "interrupted_import.py"
    runner.write_text(
        "import os, runpy, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'upbench.commands':\n"
        f"            os.kill(os.getpid(), signal.{signal_name})\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        f"sys.argv = [{str(repo / 'bench.py')!r}, 'table1']\n"
        f"runpy.run_path({str(repo / 'bench.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, str(runner)], cwd=repo, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == said


@pytest.mark.parametrize("changed,said", [
    (["--l2-flush"], "l2_flush (--l2-flush) off in the log, on now"),
    (["--size", "8,4"], "the same configs in another order (--ops, --size or another list given in another order)"),
    (["--threads", "1"],  # the rows record the one thread single_thread gives
     "nothing the rows record: a flag given now and not then, or the other way round"),
    (["--policy", "paper"], "count columns come from --policy"),
    (["--N", "2"], "N (--N) 1 in the log, 2 now"),
    (["--C", "8"], "C (--C) 4 in the log, 8 now"),
    (["--size", "4,8,16"], "size (--size) 4x4, 8x8 in the log, 16x16, 4x4, 8x8 now"),
])
def test_a_refused_resume_names_what_differs(changed, said, tmp_path, capsys):
    args = ["sweep", "--ops", "nearest", "--C", "4", "--size", "4,8", "--device", "cpu", "--min-run-time", "0.001",
            "--warmup", "0", "--quiet", "--formats", "json", "--out", str(tmp_path / "r.csv")]
    assert main(args) == 0
    before = (tmp_path / "r.csv").read_bytes()
    assert main([*args, *changed, "--resume"]) == 2
    assert said in capsys.readouterr().err
    assert (tmp_path / "r.csv").read_bytes() == before


def test_a_log_row_of_an_unknown_status_is_a_corrupted_line(tmp_path):
    from upbench.rowlog import read_log

    log = tmp_path / "r.csv"
    _sweep(log)
    lines = log.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(",ok,", ",banana,", 1)
    log.write_text("".join(lines))
    with pytest.raises(ValueError, match=r"r\.csv, line 2: status 'banana' is none of ok, skipped, oom, error, crash, "
                                         r"timeout: a corrupted line"):
        read_log(log)


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path):
    from upbench.files import write_whole

    report = tmp_path / "run.md"
    report.write_text("the earlier report\n")

    def fails_half_way(temporary: Path) -> None:
        temporary.write_text("half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(ValueError, match=r"cannot write .*run\.md: No space left on device"):
        write_whole(report, fails_half_way)
    assert report.read_text() == "the earlier report\n" and sorted(p.name for p in tmp_path.iterdir()) == ["run.md"]
    link = tmp_path / "link.md"
    link.symlink_to(report)
    write_whole(link, lambda temporary: temporary.write_text("new\n"))
    assert link.is_symlink() and report.read_text() == "new\n"


def test_a_launch_whose_shard_log_a_job_still_writes_says_so_before_submitting(tmp_path):
    out = tmp_path / "l.csv"
    running = RowLog(shard_logs(out, 2)[1], ["key"])  # a job of a launch killed outright, still measuring
    try:
        with pytest.raises(ValueError, match=r"shard1of2\.csv is being written by a sweep .*: a job of an earlier "
                                             r"launch to .*l\.csv is still running"):
            launch_sweep(SPEC, out, 2, Resources(cluster="local"), resume=True)
    finally:
        running.close()
    assert not (out.with_suffix(".shards") / "submitit").exists()


REPO = Path(__file__).resolve().parents[1]


def _bench(args: list[str], stdout, cwd: Path):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(REPO / "bench.py"), *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, cwd=cwd, timeout=120)


def test_out_dev_stdout_writes_into_a_pipe_and_appends_under_a_shells_redirection(tmp_path):
    import subprocess

    args = ["table1", "--ops", "nearest", "--C", "4", "--size", "4", "--format", "csv", "--out", "/dev/stdout"]
    piped = _bench(args, subprocess.PIPE, tmp_path)  # it read the pipe for a log's header, and waited for ever
    assert piped.returncode == 0 and piped.stdout.startswith("operator,stage,C,")
    kept = tmp_path / "kept.txt"
    kept.write_text("PRECIOUS\n")
    with open(kept, "a") as appended:  # a shell's >>
        assert _bench(args, appended, tmp_path).returncode == 0
    assert kept.read_text().startswith("PRECIOUS\noperator,stage,C,")


def test_an_out_link_to_no_file_yet_is_written_through(tmp_path):
    link = tmp_path / "dl.md"
    link.symlink_to(tmp_path / "target.md")
    assert main(["table1", "--ops", "nearest", "--C", "4", "--size", "4", "--out", str(link)]) == 0
    assert link.is_symlink() and (tmp_path / "target.md").read_text().startswith("| operator")


def test_merge_refuses_a_device_as_its_log(tmp_path, capsys):
    shard = tmp_path / "s.csv"
    _sweep(shard)
    assert main(["merge", str(shard), "--out", "/dev/stdout"]) == 2
    assert "--out /dev/stdout is a device or pipe; a row log is a file" in capsys.readouterr().err
    assert not Path("/dev/stdout.csv").exists()


def test_a_reports_csv_of_a_log_is_written_again_and_another_log_is_not(tmp_path, capsys):
    rows, other, rendered = tmp_path / "r.csv", tmp_path / "o.csv", tmp_path / "rep.csv"
    _sweep(rows)
    _sweep(other, size=[16])
    for _ in range(2):
        assert main(["report", str(rows), "--format", "csv", "--out", str(rendered)]) == 0
    assert main(["report", str(other), "--format", "csv", "--out", str(rendered)]) == 2
    assert "is a sweep's row log; writing there would replace its rows" in capsys.readouterr().err


def test_a_replaced_file_keeps_its_permissions_and_hard_links_and_each_writer_its_own_temporary(tmp_path):
    import os
    import threading

    from upbench.files import write_whole

    private, linked = tmp_path / "private.md", tmp_path / "linked.md"
    private.write_text("old\n")
    private.chmod(0o600)
    os.link(private, linked)
    write_whole(private, lambda temporary: temporary.write_text("new\n"))
    assert (private.stat().st_mode & 0o777) == 0o600 and linked.read_text() == "new\n"
    shared, temporaries = tmp_path / "shared.md", []
    barrier = threading.Barrier(2)

    def write(temporary: Path, text: str) -> None:
        temporaries.append(temporary)
        barrier.wait()  # both temporaries exist at once
        temporary.write_text(text)

    threads = [threading.Thread(target=write_whole, args=(shared, lambda t, x=x: write(t, x))) for x in ("a\n", "b\n")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(temporaries)) == 2 and shared.read_text() in ("a\n", "b\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linked.md", "private.md", "shared.md"]


def test_merge_and_a_report_leave_their_earlier_file_whole_when_a_write_fails(tmp_path, monkeypatch, capsys):
    import pandas as pd

    shards = [tmp_path / f"s{index}.csv" for index in range(2)]
    for index, log in enumerate(shards):
        run_sweep(SweepSpec.from_mapping(SPEC), log, shard=(index, 2))
    merged = tmp_path / "m.csv"
    assert main(["merge", *map(str, shards), "--formats", "markdown", "--out", str(merged)]) == 0
    before = {path: path.read_bytes() for path in (merged, merged.with_suffix(".md"))}

    def disk_full(self, path, *args, **kwargs):
        Path(path).write_text("half a fi")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    assert main(["merge", *map(str, shards), "--formats", "markdown", "--out", str(merged)]) == 2
    assert f"cannot write {merged}: No space left on device" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in before} == before
