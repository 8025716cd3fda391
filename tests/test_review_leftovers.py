"""Leftovers of the last review: integer pivots printed as floats, unwritable --out paths told as raw
[Errno ...] lines, and a distributed sweep's row timeout checked only once its shards ran."""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

import upbench
import upbench.launch
import upbench.measure as measure_module
from upbench.commands import main


@pytest.fixture
def run_csv(tmp_path, counted_not_timed) -> str:
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
    header, *body = [line.split(",") for line in text.strip().splitlines()]
    sizes = [header.index(size) for size in ("4", "8")]  # the macs pivot names its counting policy before them
    assert all(line[i].isdigit() for line in body for i in sizes), text
    assert main(["report", run_csv, "--pivot", quantity, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert all(isinstance(record[size], int) for record in records for size in ("4", "8")), records
    assert main(["report", run_csv, "--pivot", quantity, "--format", "markdown"]) == 0
    assert ".0 " not in capsys.readouterr().out


@pytest.mark.parametrize("quantity", ["macs", "latency"])
def test_csv_and_json_pivots_give_knobs_guide_widths_and_batches_as_numbers(tmp_path, counted_not_timed, capsys,
                                                                            quantity):
    """The pivot's labels were the text the Markdown shows: K "5" in the json, "-" for an operator without one,
    a guide of "1,024" channels."""
    out = tmp_path / "labels.csv"
    spec = upbench.SweepSpec(ops=("nearest", "sapa-b"), channels=(8,), guide_channels=(8, 1024), knobs={"K": (3, 5)},
                             batches=(1, 2), sizes=((4, 4),), devices=("cpu",), policies=("paper",))
    upbench.run_sweep(spec, out)
    assert main(["report", str(out), "--pivot", quantity, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sorted((r["operator"], r["Cg"], r["K"], r["N"]) for r in records if r["operator"] == "nearest") == \
        [("nearest", None, None, 1), ("nearest", None, None, 2)]
    assert sorted((r["Cg"], r["K"], r["N"]) for r in records if r["operator"] == "sapa-b") == \
        [(cg, k, n) for cg in (8, 1024) for k in (3, 5) for n in (1, 2)]
    assert main(["report", str(out), "--pivot", quantity, "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table.loc[table["operator"] == "sapa-b", "Cg"].max() == 1024
    assert table.loc[table["operator"] == "nearest", ["Cg", "K"]].isna().all().all()


def test_latency_pivots_keep_their_fractions(run_csv, capsys):
    assert main(["report", run_csv, "--pivot", "latency", "--format", "csv"]) == 0
    assert "1.5" in capsys.readouterr().out


# -- 1b: unwritable --out ----------------------------------------------------------------------
def one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "Errno" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def commands(run_csv: str) -> dict[str, list[str]]:
    quick = ["--ops", "nearest", "--C", "8", "--size", "4", "--device", "cpu", "--quiet"]
    return {"sweep": ["sweep", *quick], "compare": ["compare", *quick], "table1": ["table1", "--ops", "nearest"],
            "network": ["network", "--preset", "segformer-b1", "--ops", "nearest"],
            "report": ["report", run_csv], "merge": ["merge", run_csv], "diff": ["diff", run_csv, run_csv],
            "roofline": ["roofline"], "selfcheck": ["selfcheck"]}


@pytest.mark.parametrize("command", ["sweep", "compare", "table1", "network", "report", "merge", "diff", "roofline",
                                     "selfcheck"])
def test_an_out_the_file_system_refuses_is_one_line_naming_the_flag_before_any_work(run_csv, capsys, monkeypatch,
                                                                                     command):
    """/proc takes no new files whoever asks (root ignores permission bits): the open fails, not the mkdir."""
    def never(*args, **kwargs):
        raise AssertionError("measured or computed before the output was checked")

    for module, name in [("upbench.commands.table1", "validation_table"), ("upbench.commands.network", "network_report"),
                         ("upbench.commands.roofline", "roofline_table"), ("upbench.commands.selfcheck", "run_checks"),
                         ("upbench.measure", "_measure")]:
        monkeypatch.setattr(f"{module}.{name}", never)
    capsys.readouterr()
    assert main([*commands(run_csv)[command], "--out", "/proc/upbench-x.csv"]) == 2
    one_error_line(capsys, f"{command}: --out /proc/upbench-x.csv: cannot write /proc/upbench-x.csv")


@pytest.mark.parametrize("command", ["report", "diff"])
def test_a_full_disk_is_one_line_naming_the_flag(run_csv, capsys, command):
    """/dev/full opens but fails every write (ENOSPC), as a full disk does."""
    capsys.readouterr()
    assert main([*commands(run_csv)[command], "--out", "/dev/full"]) == 2
    one_error_line(capsys, "--out /dev/full: cannot write /dev/full: No space left on device")


def test_a_sweep_checks_the_reports_beside_its_log_before_measuring(tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("measured before the reports' paths were checked")

    monkeypatch.setattr(measure_module, "_measure", never)
    (tmp_path / "run.md").mkdir()  # where the markdown report goes
    out = tmp_path / "run.csv"
    assert main([*commands("")["sweep"], "--formats", "markdown", "--out", str(out)]) == 2
    one_error_line(capsys, f"--out {out}: cannot write {tmp_path / 'run.md'}: it is a directory")
    assert not out.exists()


# -- 1c: a launch's row timeout ----------------------------------------------------------------
def test_a_launch_refuses_a_row_timeout_below_the_timing_time_before_submitting(tmp_path, monkeypatch, capsys):
    """Each shard checked it when its job started: every job failed, and the launch said no shard wrote a log."""
    def submitted(*args, **kwargs):
        raise AssertionError("jobs were submitted")

    monkeypatch.setattr("upbench.launch.submit_shards", submitted)
    with pytest.raises(ValueError, match=r"row timeout 2 s: every row times its calls for 5 s \(--min-run-time\)"):
        upbench.launch.launch_sweep(dict(ops="nearest", device="cpu", min_run_time=5.0), tmp_path / "l.csv", 2,
                                    upbench.launch.Resources(cluster="local"), isolate=True, row_timeout=2.0)
    assert not (tmp_path / "l.shards").exists()
    assert main(["sweep", "--ops", "nearest", "--device", "cpu", "--min-run-time", "5", "--isolate", "--row-timeout",
                 "2", "--launcher", "submitit", "--shards", "2", "--cluster", "local", "--quiet",
                 "--out", str(tmp_path / "l.csv")]) == 2
    one_error_line(capsys, "sweep: row timeout 2 s: every row times its calls for 5 s")


@pytest.mark.parametrize("quantity, unit", [("latency", "ms (median)"), ("memory", "MiB (peak)"), ("macs", "MACs"),
                                            ("params", "params")])
def test_csv_and_json_pivots_say_their_unit_and_warn_of_suspect_latencies(run_csv, capsys, quantity, unit):
    """A csv pivot of memory was MiB under bare size headers, and its suspect latencies carried no mark."""
    rows = pd.read_csv(run_csv)
    suspect = rows.assign(timing_suspect="descheduled: own CPU time was 40% of wall time")
    suspect.to_csv(run_csv, index=False)
    for fmt in ("csv", "json"):
        assert main(["report", run_csv, "--pivot", quantity, "--format", fmt]) == 0
        out, err = capsys.readouterr()
        table = pd.read_csv(io.StringIO(out)) if fmt == "csv" else pd.DataFrame(json.loads(out))
        assert set(table["unit"]) == {unit}
        warned = f"{len(rows)} latencies rest on timing that cannot be trusted" in err
        assert warned == (quantity == "latency")
