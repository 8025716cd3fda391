"""The C allocator settled before anything is timed (upbench.allocator): a CPU latency must not depend on which
operator the process ran first, and every row says in what state the allocator was."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from upbench.allocator import ALLOCATOR_VARIABLE, _glibc, settle_allocator
from upbench.commands import main
from upbench.rows import read_rows, write_csv
from upbench.spec import SweepSpec
from upbench.sweep import run_sweep

REPO = Path(__file__).resolve().parents[1]
TINY = dict(ops=["nearest"], channels=(4,), sizes=(4,), devices=("cpu",), warmup=0, min_run_time=0.001)
# Three blocks of 6 MiB from the C library's malloc, touched, freed together, twenty times over: the minor page
# faults of a time, as the last line. (malloc itself, not torch: the Python objects torch allocates between the
# blocks land on the heap's top or not, from run to run, and decide whether glibc can trim it.)
FAULTS = """
import ctypes, resource
from upbench.allocator import settle_allocator
print(settle_allocator())
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
SIZE = 6 * 2**20
def step():
    blocks = [libc.malloc(SIZE) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, SIZE)
    for block in blocks:
        libc.free(block)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 20)
"""


def faults_per_step(allocator: str) -> tuple[str, int]:
    env = {**os.environ, ALLOCATOR_VARIABLE: allocator, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    said, faults = done.stdout.split("\n")[:2]
    return said, int(faults)


@pytest.mark.skipif(_glibc() is None, reason="glibc's thresholds only")
def test_a_settled_allocator_keeps_freed_buffers_where_glibc_as_found_faults_them_in_at_every_step():
    settled, settled_faults = faults_per_step("settled")
    found, found_faults = faults_per_step("as-found")
    assert "mmap threshold 32 MiB, trim threshold 1024 MiB" in settled and found.endswith(" as found")
    # 18 MiB is 4,608 pages: as found, glibc trims the heap's free top and each step faults them back in
    assert found_faults > 4000 and settled_faults < 100


def test_every_row_records_the_allocator_and_an_unknown_setting_is_refused_before_the_log(tmp_path, monkeypatch):
    rows = run_sweep(SweepSpec(**TINY), tmp_path / "s.csv")
    assert set(rows["allocator"]) == {settle_allocator()}
    monkeypatch.setenv(ALLOCATOR_VARIABLE, "jemalloc")
    settle_allocator.cache_clear()
    try:
        with pytest.raises(ValueError, match="UPBENCH_ALLOCATOR='jemalloc': expected settled .* or as-found"):
            run_sweep(SweepSpec(**TINY), tmp_path / "new.csv")
        assert not (tmp_path / "new.csv").exists()
    finally:
        monkeypatch.delenv(ALLOCATOR_VARIABLE)
        settle_allocator.cache_clear()
        settle_allocator()


def test_a_log_measured_with_the_allocator_in_another_state_is_not_resumed_unless_mixing_is_allowed(tmp_path, capsys):
    log = tmp_path / "s.csv"
    spec = SweepSpec(**{**TINY, "sizes": (4, 8)})
    run_sweep(spec, log)
    rows = read_rows(log)
    write_csv(rows.iloc[:1].assign(allocator="glibc 2.36 as found"), log)  # the first row, as found; cut short
    with pytest.raises(ValueError, match="allocator"):
        run_sweep(spec, log, resume=True)
    assert len(run_sweep(spec, log, resume=True, allow_mixed=True)) == 2
    base = tmp_path / "base.csv"
    run_sweep(spec, base)
    assert main(["diff", str(base), str(log)]) == 0
    printed = capsys.readouterr().out
    assert any(line.startswith("| allocator") and "as found" in line for line in printed.splitlines())


def test_rows_of_an_upbench_before_the_allocator_column_render_without_it_and_say_why_they_do_not_resume(tmp_path,
                                                                                                       capsys):
    from upbench.reports import to_markdown

    log, new = tmp_path / "old.csv", tmp_path / "new.csv"
    spec = SweepSpec(**{**TINY, "sizes": (4, 8)})
    run_sweep(spec, log)
    assert main(["report", str(log)]) == 0
    assert "| allocator" in capsys.readouterr().out
    write_csv(read_rows(log).drop(columns=["allocator"]).iloc[:1], log)
    assert main(["report", str(log)]) == 0
    assert "| allocator" not in capsys.readouterr().out
    assert "| allocator" not in to_markdown(read_rows(log))  # from Python too, without check_viewable
    with pytest.raises(ValueError, match="written by an upbench before the allocator column: finish it with that "
                                         "upbench, or start a new log"):
        run_sweep(spec, log, resume=True, allow_mixed=True)
    run_sweep(spec, new)
    assert main(["merge", str(log), str(new), "--out", str(tmp_path / "m.csv"), "--allow-mixed"]) == 2
    assert "one was written by an upbench before the allocator column" in capsys.readouterr().err


def test_gpu_rows_of_nodes_with_other_c_libraries_are_no_mixed_setup():
    import pandas as pd

    from upbench.rows import mixed_environments

    rows = pd.DataFrame({"device": ["cuda", "cuda", "cpu", "cpu"], "device_name": ["H100"] * 2 + ["EPYC"] * 2,
                         "allocator": ["glibc 2.35 a", "glibc 2.36 a", "glibc 2.35 a", "glibc 2.36 a"]})
    assert mixed_environments(rows) == ["cpu: allocator glibc 2.35 a / glibc 2.36 a"]
