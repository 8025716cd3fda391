"""Sweeps beyond one process: rows isolated in a worker process (--isolate) and shards launched as
submitit jobs on the local executor (--launcher submitit). Real measurements at tiny shapes; the
planted operators that crash or hang a worker live in planted_operators.py."""
from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from upbench import registry
from upbench.commands import main
from upbench.rows import read_rows
from upbench.launch import Resources, _device_resolved_by_jobs, job_error, launch_sweep, shard_logs
from upbench.measure import count_config
from upbench.spec import SweepSpec
from upbench.sweep import run_sweep

TINY = dict(channels=(4,), sizes=(4,), devices=("cpu",), warmup=0, min_run_time=0.01)
REPO = Path(__file__).resolve().parents[1]
# A tiny row takes a few hundred ms, but a fresh worker's first row (lazy imports, the first trace) took over
# 6 s with eight test processes on the machine, and the planted hang waits this long in any case.
ROW_TIMEOUT_S = 15.0


@pytest.fixture
def planted():
    """The planted operators, registered for one test only (a worker registers them by importing
    their module, which the sweep names to it)."""
    module = importlib.import_module("planted_operators")
    for cls in module.PLANTED:
        registry.register(cls)
    yield {cls.name: cls for cls in module.PLANTED}
    for cls in module.PLANTED:
        registry._REGISTRY.pop(cls.name)


# -- --isolate --------------------------------------------------------------------------------
def test_isolated_rows_survive_a_segfault_a_cuda_error_and_a_hang(tmp_path, planted, plain_pair):
    ops = ("planted-segfault", "planted-cuda-error", "planted-hang", plain_pair[0])
    spec = SweepSpec(ops=ops, **TINY)
    out = tmp_path / "isolated.csv"
    rows = run_sweep(spec, out, isolate=True, row_timeout=ROW_TIMEOUT_S)
    assert list(rows["operator"]) == list(ops)
    assert list(rows["status"]) == ["crash", "crash", "timeout", "ok"]
    assert rows["message"][0] == "the worker process died of SIGSEGV (signal 11)"
    assert rows["message"][1] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert f"outlived the {ROW_TIMEOUT_S:g} s row timeout" in rows["message"][2]
    assert list(read_rows(out)["status"]) == list(rows["status"])  # every row is in the log
    last = rows.iloc[-1]  # measured by a fresh worker, with the counts an in-process row has
    assert last["latency_median_ms"] > 0 and last["runs"] >= 1
    assert last["macs_fvcore"] == count_config(spec.expand()[-1], spec.policies)["macs_fvcore"]


def test_a_row_timeout_needs_isolation_and_a_positive_value(tmp_path, plain_pair):
    spec = SweepSpec(ops=plain_pair[:1], **TINY)
    with pytest.raises(ValueError, match="needs isolation"):
        run_sweep(spec, row_timeout=1.0)
    with pytest.raises(ValueError, match="row_timeout=0: expected a positive number of seconds"):
        run_sweep(spec, tmp_path / "never.csv", isolate=True, row_timeout=0)
    assert not (tmp_path / "never.csv").exists()
    # not above the time a row spends timing: every row timed out, each after its full timeout
    with pytest.raises(ValueError, match="row timeout 2 s: every row times its calls for 5 s"):
        run_sweep(dataclasses.replace(spec, min_run_time=5.0), tmp_path / "never.csv", isolate=True, row_timeout=2)
    assert not (tmp_path / "never.csv").exists()
    with pytest.raises(ValueError, match="needs isolation"):  # refused before any job is submitted
        launch_sweep(dict(ops=plain_pair[0], device="cpu"), tmp_path / "l.csv", 2, Resources(cluster="local"),
                     row_timeout=5.0)
    assert not (tmp_path / "l.shards").exists()


# -- --launcher submitit ----------------------------------------------------------------------
def test_local_shards_resume_a_killed_shard_and_merge_to_the_one_process_rows(tmp_path, plain_pair):
    flags = ["--ops", ",".join(plain_pair), "--C", "4", "--size", "4,6,8", "--device", "cpu", "--warmup", "0",
             "--min-run-time", "0.01", "--quiet"]
    single = tmp_path / "single.csv"
    assert main(["sweep", *flags, "--out", str(single), "--formats", ""]) == 0
    expected = read_rows(single)

    # Shard 0 of a launch was killed after its first row, in the middle of writing the second.
    out = tmp_path / "launched.csv"
    killed = shard_logs(out, 2)[0]
    spec = SweepSpec.from_mapping(dict(ops=list(plain_pair), C=4, size=[4, 6, 8], device="cpu", warmup=0,
                                       min_run_time=0.01))

    def killed_after_one(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, killed, shard=(0, 2), on_row=killed_after_one)
    with open(killed, "a") as handle:
        handle.write("torn,row")
    first_row = read_rows(killed.open()).iloc[0]

    launch = ["sweep", *flags, "--launcher", "submitit", "--shards", "2", "--cluster", "local", "--out", str(out),
              "--formats", "markdown"]
    assert main(launch) == 2  # the killed shard's log is there: only --resume continues it
    assert main([*launch, "--resume"]) == 0

    merged = read_rows(out)
    same = ["spec_id", "config_index", "config_total", "key", "status"]
    assert merged[same].equals(expected[same])
    assert out.with_suffix(".md").exists()
    shard0 = read_rows(killed)
    assert shard0["key"].is_unique and len(shard0) == len(expected[::2])
    assert shard0.iloc[0]["timestamp"] == first_row["timestamp"]  # resumed, not measured again


def test_a_resumed_launch_of_another_spec_is_refused_before_any_job_is_submitted(tmp_path, plain_pair):
    """Each job started (on Slurm, after queueing), refused its log and failed, and the launch then wrote a
    partial merge; a sweep in one process refuses at once."""
    out = tmp_path / "l.csv"
    first = dict(ops=list(plain_pair[:1]), C=4, size=[4], device="cpu", warmup=0, min_run_time=0.01)
    run_sweep(SweepSpec.from_mapping(first), shard_logs(out, 2)[0], shard=(0, 2))
    with pytest.raises(ValueError, match=r"holds rows of spec .* \(min_run_time \(--min-run-time\) 0\.01 in the log, 0\.02 now\)"):
        launch_sweep({**first, "min_run_time": 0.02}, out, 2, Resources(cluster="local"), resume=True)
    assert not (out.with_suffix(".shards") / "submitit").exists() and not out.exists()
    # device auto is each job's to resolve: this node's spec may differ from the logs' (cpu here, cuda there)
    assert _device_resolved_by_jobs({**first, "device": "auto"}) and _device_resolved_by_jobs({"ops": ["x"]})
    assert not _device_resolved_by_jobs(first) and not _device_resolved_by_jobs(SweepSpec.from_mapping(first))


def test_a_shard_that_dies_is_reported_and_a_resumed_launch_completes_it(tmp_path, planted, plain_pair, monkeypatch,
                                                                        capsys):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "launched.csv"
    launch = ["sweep", "--ops", f"{plain_pair[0]},planted-segfault", "--C", "4", "--size", "4,6", "--device", "cpu",
              "--warmup", "0", "--min-run-time", "0.01", "--quiet", "--formats", "", "--launcher", "submitit",
              "--shards", "2", "--cluster", "local", "--out", str(out)]
    # Each shard measures one plain row, then its planted row kills the job.
    assert main(launch) == 1
    err = capsys.readouterr().err
    assert "shard 0/2 (job" in err and "shard 1/2 (job" in err
    assert "failed: the job has not produced any output (state:" in err and "_log.err" in err
    assert "2 of 4 configs have no row: config indices 2-3" in err
    assert list(read_rows(out)["operator"]) == [plain_pair[0]] * 2  # what the shards measured is merged

    assert main([*launch, "--resume", "--isolate"]) == 1  # the rows are there now, and they are crashes
    assert "2 row(s) failed (2 crash)" in capsys.readouterr().err
    rows = read_rows(out)
    assert list(rows["status"]) == ["ok", "ok", "crash", "crash"]
    assert (rows["message"][2:] == "the worker process died of SIGSEGV (signal 11)").all()
    for log in shard_logs(out, 2):
        assert read_rows(log)["key"].is_unique  # the plain rows were not measured again


def test_a_launch_merges_the_shard_logs_that_hold_rows_and_leaves_out_a_header_a_kill_tore(tmp_path, plain_pair):
    from upbench.launch import merge_logs

    logs = shard_logs(tmp_path / "l.csv", 3)
    spec = SweepSpec(ops=plain_pair, **TINY)
    run_sweep(spec, logs[0], shard=(0, 3))
    logs[1].write_text(logs[0].read_text()[:20])  # a job killed while writing the header
    merged = merge_logs(logs, tmp_path / "l.csv")  # logs[2]: a job that never started
    assert list(merged["key"]) == list(read_rows(logs[0])["key"])


def test_a_launchs_progress_counts_a_config_measured_again_once(tmp_path, plain_pair):
    from upbench.launch import _logged

    log = tmp_path / "s.csv"
    run_sweep(SweepSpec(ops=plain_pair, **TINY), log)
    header, *rows = log.read_text().splitlines(keepends=True)
    log.write_text(header + "".join(rows) + rows[0])  # a resume's --retry appended the first config again
    assert _logged(log) == (len(rows), len(rows))


def test_an_isolated_sweep_stopped_by_an_error_or_ctrl_c_kills_its_worker_at_once(plain_pair, monkeypatch):
    """A hung row's worker never reads the request to leave: Ctrl-C waited out the 5 s grace before killing it."""
    from upbench.isolate import IsolatedMeasurer

    asked: list[bool] = []
    monkeypatch.setattr(IsolatedMeasurer, "stop", lambda self, kill=False: asked.append(kill))
    for stopped_by in (KeyboardInterrupt, RuntimeError, None):
        try:
            with IsolatedMeasurer(SweepSpec(ops=plain_pair, **TINY)):
                if stopped_by is not None:
                    raise stopped_by()
        except (KeyboardInterrupt, RuntimeError):
            pass
    assert asked == [True, True, False]  # killed at once when stopped; asked to leave after the last row


def test_a_failed_job_is_told_by_the_last_line_of_its_traceback():
    # The layout of submitit's FailedJobError message (submitit/core/core.py).
    text = ("Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent call "
            "last):\n  File \"x.py\", line 1, in <module>\nValueError: device 'cuda' requested, but "
            "torch.cuda.is_available() is False here\n----------------------\nYou can check full logs with "
            "'job.stderr(0)'")
    assert job_error(RuntimeError(text)) == ("ValueError: device 'cuda' requested, but torch.cuda.is_available() "
                                             "is False here")
    # submitit 1.5.4 as run: a blank line before the closing dashes gave an empty reason
    assert job_error(RuntimeError(text.replace("False here\n---", "False here\n\n---"))) == (
        "ValueError: device 'cuda' requested, but torch.cuda.is_available() is False here")
    assert job_error(RuntimeError("plain\nsecond")) == "RuntimeError: plain"


def test_local_shards_need_a_gpu_each(tmp_path, plain_pair, monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    with pytest.raises(ValueError, match="2 local shards x 1 GPU.* need 2 GPUs; this machine has 1"):
        launch_sweep(dict(ops=plain_pair[0], device="cpu"), tmp_path / "x.csv", 2, Resources(cluster="local", gpus=1))


def test_a_cluster_launch_needs_the_device_said(tmp_path, plain_pair):
    """device auto resolves on the measuring node: the submitting one cannot size the jobs' GPUs."""
    with pytest.raises(ValueError, match="device auto on slurm: .* give --device cuda"):
        launch_sweep(dict(ops=plain_pair[0]), tmp_path / "x.csv", 2, Resources(cluster="slurm"))
    assert not (tmp_path / "x.shards").exists()  # refused before anything was submitted


def test_an_isolated_worker_loads_the_plugin_files_of_the_swept_operators(tmp_path, isolated_registry):
    """An operator from a --plugin file is known in the worker process, which never saw the command line."""
    plugin = Path(__file__).resolve().parent.parent / "examples" / "my_upsampler.py"
    registered = registry.load_plugin(plugin)
    assert registry.replay_sources(registered) == [str(plugin)]
    out = tmp_path / "rows.csv"
    assert main(["--plugin", str(plugin), "sweep", "--ops", registered[0], "--C", "4", "--size", "4", "--device",
                 "cpu", "--warmup", "0", "--min-run-time", "0.01", "--quiet", "--formats", "", "--isolate",
                 "--out", str(out)]) == 0
    assert list(read_rows(out)["status"]) == ["ok"]


def test_compare_isolates_rows_too(tmp_path, planted, capsys):
    """bench.py compare --isolate: a compiled kernel that faults costs its own row, not the comparison."""
    out = tmp_path / "compare.csv"
    assert main(["compare", "--ops", "planted-segfault,carafe", "--C", "4", "--size", "4", "--device", "cpu",
                 "--warmup", "1", "--min-run-time", "0.01", "--isolate", "--out", str(out), "--formats", "",
                 "--quiet"]) == 1  # the comparison is written; the crashed rows make it exit 1
    assert "compare: 2 row(s) failed (2 crash)" in capsys.readouterr().err
    rows = read_rows(out)
    planted_rows = rows[rows["operator"] == "planted-segfault"]  # reference only: it has no compiled path
    assert list(planted_rows["status"]) == ["crash", "crash"]
    carafe = rows[rows["operator"] == "carafe"]  # measured after the crashes, by a fresh worker
    assert len(carafe) == 4 and (carafe["status"] == "ok").all() and set(carafe["impl"]) == {"reference", "compiled"}


def _children(pid: int, marker: str) -> list[int]:
    """Processes whose parent is ``pid`` and whose command line holds ``marker`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and marker in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except (ValueError, OSError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_isolated_sweep_takes_its_worker_with_it(tmp_path, signum):
    """A batch system's kill (SIGTERM, then SIGKILL) must not leave a worker holding a core or a GPU."""
    out, hanging = tmp_path / "hang.csv", tmp_path / "hanging"
    planted = str(Path(__file__).parent / "planted_operators.py")
    sweep = subprocess.Popen([sys.executable, "bench.py", "--plugin", planted,
                              "sweep", "--ops", "planted-hang", "--C", "4", "--size", "4", "--device", "cpu",
                              "--isolate", "--out", str(out), "--quiet"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "UPBENCH_PLANTED_HANG_MARK": str(hanging)})
    deadline = time.monotonic() + 300
    while not hanging.exists() and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.5)
    workers = _children(sweep.pid, "spawn_main")
    assert hanging.exists() and workers, "the worker never reached the hanging row"
    sweep.send_signal(signum)
    _, err = sweep.communicate(timeout=60)  # the worker holds stderr too: it must be gone for this to end
    if signum == signal.SIGTERM:
        assert sweep.returncode == 128 + signal.SIGTERM
        assert f"sweep: terminated; finished rows are in {out}; resume with:" in err
    deadline = time.monotonic() + 20
    while any(_alive(worker) for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(_alive(worker) for worker in workers), f"worker {workers} outlived its sweep"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_while_the_worker_starts_is_the_parents_one_line(tmp_path):
    """A terminal's Ctrl-C reaches its whole foreground process group: a worker in it, still importing torch,
    would die with a KeyboardInterrupt traceback over the parent's answer, and the key must never be lost."""
    out = tmp_path / "starting.csv"
    sweep = subprocess.Popen([sys.executable, "bench.py", "sweep", "--ops", "nearest", "--C", "4", "--size", "4",
                              "--device", "cpu", "--isolate", "--out", str(out), "--quiet"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    while not _children(sweep.pid, "spawn_main") and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.01)
    workers = _children(sweep.pid, "spawn_main")
    assert workers, "no worker was started"
    os.killpg(sweep.pid, signal.SIGINT)  # as the terminal sends it: to every process of the group
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 128 + signal.SIGINT, err
    assert f"sweep: interrupted; finished rows are in {out}; resume with:" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert not any(_alive(worker) for worker in workers)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_between_the_spawn_and_its_start_up_data_waits_for_the_worker_to_be_recorded(
        signum, monkeypatch, capfd):
    """The race the Ctrl-C test above could lose: the child exists but has not read its start-up data. A stop
    raised there left it a truncated pipe (an EOFError traceback on the shared stderr) and unknown to the
    measurer; held, it comes once the worker is recorded, and stopping the measurer ends the worker quietly."""
    from upbench import isolate
    from upbench.commands import _sigterm_as_interrupt

    spawned = isolate._spawn_in_own_process_group

    def spawn_then_stop(*args):
        pid = spawned(*args)
        signal.raise_signal(signum)  # as if the key were pressed the moment the child was created
        return pid

    monkeypatch.setattr(isolate, "_spawn_in_own_process_group", spawn_then_stop)
    spec = SweepSpec(ops=("nearest",), channels=(4,), sizes=(4,))
    measurer = isolate.IsolatedMeasurer(spec)
    with _sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
        measurer.start()
    assert measurer.process is not None and measurer.starts == 1, "the interrupted start lost its worker"
    # it read its whole start-up data: it gets ready (importing torch under load can take seconds) and leaves
    assert measurer.connection.poll(isolate.STARTUP_TIMEOUT_S) and measurer.connection.recv() == "ready"
    assert measurer.stop() == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert "Traceback" not in capfd.readouterr().err


def test_an_isolated_sweep_from_a_fresh_process_measures_its_rows(tmp_path):
    """A fresh process's first spawn starts multiprocessing's resource tracker, whose passed fds include
    stderr: starting it in a process group of our own must leave fd 2 inheritable, or every worker after it
    starts without a stderr and each row fails in the CPU memory probe (it flushes stderr)."""
    out = tmp_path / "isolated.csv"
    run = subprocess.run([sys.executable, "bench.py", "sweep", "--ops", "nearest,carafe", "--C", "4", "--size", "4",
                          "--device", "cpu", "--warmup", "0", "--min-run-time", "0.001", "--policy", "paper",
                          "--isolate", "--out", str(out), "--formats", "", "--quiet"],
                         cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = read_rows(out)
    assert list(rows["status"]) == ["ok"] * len(rows) and len(rows) >= 2, rows["message"].tolist()


def test_a_row_that_kills_an_unisolated_sweep_is_recorded_as_a_crash_on_resume(tmp_path):
    """Without --isolate a segfault takes the sweep down; resuming must not die on the same row forever:
    a row that killed two runs in a row is recorded as a crash and the sweep goes on."""
    out = tmp_path / "died.csv"
    planted = str(Path(__file__).parent / "planted_operators.py")
    sweep = [sys.executable, "bench.py", "--plugin", planted, "sweep", "--ops", "nearest,planted-segfault,bilinear",
             "--C", "4", "--size", "4", "--device", "cpu", "--warmup", "0", "--min-run-time", "0.001",
             "--policy", "paper", "--out", str(out), "--formats", "markdown", "--quiet"]
    died = subprocess.run(sweep, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert died.returncode == -signal.SIGSEGV
    assert list(read_rows(out)["operator"]) == ["nearest"]
    # once may be a preempted job's kill: the first resume measures the row again (and dies again)
    died = subprocess.run([*sweep, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert died.returncode == -signal.SIGSEGV
    assert list(read_rows(out)["operator"]) == ["nearest"]
    resumed = subprocess.run([*sweep, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 1, resumed.stderr  # a failed row, reported; not a second segfault
    rows = read_rows(out)
    assert list(rows["operator"]) == ["nearest", "planted-segfault", "bilinear"]
    crashed = rows.iloc[1]
    assert crashed["status"] == "crash" and "died 2 times while measuring this row" in crashed["message"]
    assert list(rows["status"]) == ["ok", "crash", "ok"]
    assert not out.with_name(out.name + ".measuring").exists()
    again = subprocess.run([*sweep, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and len(read_rows(out)) == 3  # nothing left to measure, nothing re-run
