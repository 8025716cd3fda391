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
    run_sweep(SweepSpec.from_mapping({**SPEC, **more}), out, **({"shard": more.pop("shard")} if "shard" in more else {}))


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


def test_ctrl_c_while_bench_py_imports_is_one_line(tmp_path):
    """A Ctrl-C in the second or two torch takes to import, made certain: the import of upbench.commands raises it."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    runner = tmp_path / "interrupted_import.py"
    runner.write_text(
        "import runpy, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'upbench.commands':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        f"sys.argv = [{str(repo / 'bench.py')!r}, 'table1']\n"
        f"runpy.run_path({str(repo / 'bench.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, str(runner)], cwd=repo, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (130, "bench.py: interrupted\n")


@pytest.mark.parametrize("changed,said", [
    (["--l2-flush"], "l2_flush (--l2-flush) off in the log, on now"),
    (["--size", "8,4"], "the same configs in another order (--ops, --size or another list given in another order)"),
    (["--threads", "1"],  # the rows record the one thread single_thread gives
     "nothing the rows record: a flag given now and not then, or the other way round"),
    (["--policy", "paper"], "count columns come from --policy"),
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
