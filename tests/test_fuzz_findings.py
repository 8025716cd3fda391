"""What a fuzzing of the command line and the Python API found: a refused resume that changed its log, reports
overwritten, flags and file keys silently ignored, and inputs that reached torch unchecked."""
from __future__ import annotations

import pytest

from upbench.commands import main

TINY = ["--ops", "nearest", "--C", "4", "--size", "4", "--min-run-time", "0.01", "--warmup", "1", "--quiet",
        "--device", "cpu"]


def test_a_refused_resume_leaves_a_torn_log_byte_for_byte(tmp_path, capsys):
    log = tmp_path / "torn.csv"
    assert main(["sweep", *TINY, "--out", str(log), "--formats", ""]) == 0
    log.write_bytes(log.read_bytes() + b"x,1,1,nearest|ha")  # a kill mid-line
    before = log.read_bytes()
    assert main(["sweep", *TINY[:-2], "--device", "cpu", "--C", "8", "--resume", "--out", str(log),
                 "--formats", ""]) == 2
    assert "refusing to resume" in capsys.readouterr().err
    assert log.read_bytes() == before
    assert main(["sweep", *TINY, "--resume", "--out", str(log), "--formats", ""]) == 0  # accepted: cut, then go on
    assert log.read_bytes() == before[:before.rindex(b"\n") + 1]
