"""Leftovers of the last review: integer pivots printed as floats, unwritable --out paths told as raw
[Errno ...] lines, and a distributed sweep's row timeout checked only once its shards ran."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import upbench
import upbench.measure as measure_module
from upbench.commands import main


@pytest.fixture
def fake_measure(monkeypatch):
    """Rows counted for real but not timed: a report's input in a second."""
    def fake(config, spec, row) -> None:
        row.update(measure_module.count_config(config, spec.policies), latency_median_ms=1.5, peak_mem_bytes=2**20,
                   runs=5, status="ok")

    monkeypatch.setattr(measure_module, "_measure", fake)


@pytest.fixture
def run_csv(tmp_path, fake_measure) -> str:
    out = tmp_path / "run.csv"
    spec = upbench.SweepSpec(ops=("nearest", "carafe"), channels=(8,), sizes=((4, 4), (8, 8)), knobs={"K": (3, 5)},
                             devices=("cpu",), policies=("paper",))
    upbench.run_sweep(spec, out)
    return str(out)


# -- 1a: integer pivots ------------------------------------------------------------------------
@pytest.mark.parametrize("quantity", ["macs", "params"])
def test_integer_pivots_print_integers_in_csv_and_json(run_csv, capsys, quantity):
    assert main(["report", run_csv, "--pivot", quantity, "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert ".0" not in text, text
    body = [line.split(",") for line in text.strip().splitlines()[1:]]
    assert all(cell.isdigit() for line in body for cell in line[2:]), text
    assert main(["report", run_csv, "--pivot", quantity, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert all(isinstance(record[size], int) for record in records for size in ("4", "8")), records
    assert main(["report", run_csv, "--pivot", quantity, "--format", "markdown"]) == 0
    assert ".0 " not in capsys.readouterr().out


def test_latency_pivots_keep_their_fractions(run_csv, capsys):
    assert main(["report", run_csv, "--pivot", "latency", "--format", "csv"]) == 0
    assert "1.5" in capsys.readouterr().out
