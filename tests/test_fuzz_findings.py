"""What a fuzzing of the command line and the Python API found: a refused resume that changed its log, reports
overwritten, flags and file keys silently ignored, and inputs that reached torch unchecked."""
from __future__ import annotations

import pandas as pd
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


def test_a_report_already_beside_a_new_log_is_refused_not_overwritten(tmp_path, capsys):
    notes = tmp_path / "run.md"
    notes.write_text("# my notes\n")
    assert main(["sweep", *TINY, "--out", str(tmp_path / "run.csv")]) == 2
    assert "run.md exists beside the new row log" in capsys.readouterr().err
    assert notes.read_text() == "# my notes\n" and not (tmp_path / "run.csv").exists()
    assert main(["sweep", *TINY, "--out", str(tmp_path / "run.csv"), "--formats", "json"]) == 0  # not asked for


def test_a_yaml_key_given_twice_is_refused(tmp_path):
    from upbench.spec import read_spec_file

    spec_file = tmp_path / "twice.yaml"
    spec_file.write_text("C: [4]\nops: nearest\nC: [8]\n")
    with pytest.raises(ValueError, match="line 3: .*key 'C' is given twice"):
        read_spec_file(spec_file)


def test_a_unicode_digit_in_a_sweep_file_is_named_with_its_axis():
    from upbench.spec import SweepSpec

    with pytest.raises(ValueError, match="C: '²' is not a positive integer"):
        SweepSpec.from_mapping({"ops": "nearest", "C": ["²"]})


def test_warm_up_is_recorded_as_made():
    from upbench.spec import SweepSpec

    assert SweepSpec(ops=("nearest",), warmup=0).settings()["warmup"] == 1
    assert SweepSpec(ops=("nearest",), warmup=4).settings()["warmup"] == 4


@pytest.mark.parametrize("flags", [["--partition", "gpu"], ["--mem-gb", "3"], ["--cluster", "local"],
                                   ["--cluster", "auto"],
                                   ["--slurm-param", "qos=high"], ["--timeout", "5"]])
def test_launch_flags_without_a_launcher_are_refused(tmp_path, capsys, flags):
    assert main(["sweep", *TINY, "--out", str(tmp_path / "x.csv"), *flags]) == 2
    assert f"{flags[0]}: what each job of a launch asks for" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("device", ["cpu:1", "cpu:0"])
def test_a_cpu_with_an_index_is_refused(device):
    from upbench.environment import check_device
    from upbench.spec import SweepSpec

    with pytest.raises(ValueError, match=f"device '{device}': expected cpu, cuda"):
        SweepSpec(ops=("nearest",), devices=(device,))
    with pytest.raises(ValueError, match=f"device '{device}': expected cpu, cuda"):
        check_device(device)


@pytest.mark.parametrize("flag", [["--device", "cuda"], ["--impl", "compiled"]])
def test_network_refuses_measuring_flags_without_measure(capsys, flag):
    assert main(["network", "--preset", "segformer-b1", "--ops", "nearest", *flag]) == 2
    assert f"{flag[0]}: what --measure runs on" in capsys.readouterr().err


def test_a_name_given_twice_is_one(capsys):
    from upbench.cli_args import str_list

    assert str_list("nearest,bilinear,nearest") == ["nearest", "bilinear"]
    assert main(["table1", "--ops", "nearest,nearest", "--C", "4", "--size", "4", "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("nearest,total") == 1


def test_an_empty_shard_says_so(tmp_path, capsys):
    assert main(["sweep", *TINY, "--shard", "1/2", "--out", str(tmp_path / "s.csv"), "--formats", ""]) == 0
    err = capsys.readouterr().err
    assert "shard 1/2 holds none of the sweep's 1 config(s)" in err and "0 rows: nothing was measured" in err


def test_inputs_of_another_dtype_or_device_are_named_before_torch_fails():
    import torch

    import upbench

    op = upbench.make("sapa-b", 8)
    x, guide = op.example_inputs(1, 4, 4)
    with pytest.raises(ValueError, match=r"sapa-b: x is torch.float16 on cpu, its weights torch.float32 on cpu"):
        op(x.half(), guide.half())
    with pytest.raises(ValueError, match=r"sapa-b: guide is torch.float64 on cpu, x torch.float32 on cpu"):
        op(x, guide.double())
    with pytest.raises(ValueError, match=r"nearest: x is torch.int64; expected a floating-point tensor"):
        upbench.make("nearest", 8)(x.long(), None)
    assert upbench.make("nearest", 8)(x.half(), None).dtype == torch.float16  # no weights: any float


# -- what a review of those fixes found ----------------------------------------------------------
def test_an_operator_with_weights_runs_on_the_meta_device():
    """Autocast's own query raises for a device type it does not know: shapes propagate on meta all the same."""
    import upbench

    for name in ("carafe", "deconv", "sapa-b"):
        op = upbench.make(name, 8, impl="reference").to("meta")
        x, guide = op.example_inputs(1, 4, 4, device="meta")
        assert op(x, guide).shape == (1, 8, 8, 8)


def test_an_operator_with_weights_runs_under_autocast():
    """A half-precision x beside float32 weights is what autocast means: only outside it is it refused."""
    import torch

    import upbench

    op = upbench.make("carafe", 8)
    x = torch.randn(1, 8, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert op(x.bfloat16(), None).shape == (1, 8, 8, 8)
    with pytest.raises(ValueError, match="carafe: x is torch.bfloat16 on cpu, its weights torch.float32"):
        op(x.bfloat16(), None)


def test_yaml_merge_keys_still_read_and_an_unhashable_key_is_named(tmp_path):
    from upbench.spec import read_spec_file

    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &base {K: [3]}\nknobs:\n  <<: *base\n  d: [8]\n")
    assert read_spec_file(merged)["knobs"] == {"K": [3], "d": [8]}
    unhashable = tmp_path / "unhashable.yaml"
    unhashable.write_text("? [1, 2]\n: 3\n")
    with pytest.raises(ValueError, match="not valid YAML: found unhashable key"):
        read_spec_file(unhashable)


@pytest.mark.parametrize("argv, expected", [
    (["--plug", "p.py", "table1"], ["--plug", "p.py", "table1"]),
    (["--ver"], ["--ver"]),
    (["--plugin=p.py", "--C", "4"], ["--plugin=p.py", "sweep", "--C", "4"]),
    (["--plugin", "p.py", "--C", "4"], ["--plugin", "p.py", "sweep", "--C", "4"]),
    (["--device", "cpu", "table1"], ["--device", "cpu", "table1"]),  # a command named later: the parser says
    (["--out", "report", "--C", "4"], ["sweep", "--out", "report", "--C", "4"]),  # a file named as a command
    (["--quiet", "diff"], ["--quiet", "diff"]),  # --quiet takes no value: diff is a word of its own
    (["--ou", "merge"], ["sweep", "--ou", "merge"]),  # an abbreviated option takes its value too
    (["-h"], ["-h"]),
    ([], []),
])
def test_the_default_command_goes_before_the_first_sweep_option(argv, expected):
    from upbench.commands import build_parser, with_default_command

    assert with_default_command(argv, build_parser().commands["sweep"]) == expected


def test_a_resume_of_no_log_refuses_a_report_of_the_users_too(tmp_path, capsys):
    (tmp_path / "run.md").write_text("# mine\n")
    assert main(["sweep", *TINY, "--out", str(tmp_path / "run.csv"), "--resume"]) == 2
    assert "run.md exists beside the new row log" in capsys.readouterr().err
    assert (tmp_path / "run.md").read_text() == "# mine\n"


def test_a_unicode_digit_is_no_knob_value_either():
    from upbench.spec import SweepSpec

    with pytest.raises(ValueError, match="carafe: K='\uff15' is not an integer"):
        SweepSpec.from_mapping({"ops": "carafe", "K": ["\uff15"]})


def test_the_lazy_names_are_listed():
    import upbench

    assert {"SweepSpec", "run_sweep", "make"} <= set(dir(upbench))


# -- nits an earlier audit left ----------------------------------------------------------------------
def test_an_empty_log_holds_no_rows_to_every_reader(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert main(["report", str(empty)]) == 2
    assert main(["diff", str(empty), str(empty)]) == 2
    assert main(["merge", str(empty), "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("holds no rows") == 4 and "not an upbench sweep log" not in err  # merge: warning + error
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,value")  # one line, no newline: another program's file, not a torn header
    assert main(["report", str(foreign)]) == 2
    assert "not an upbench sweep log" in capsys.readouterr().err


def test_a_json_table_keeps_the_digits_the_sweep_json_keeps():
    from upbench.cli_args import render_table

    assert "0.123456789012345" in render_table(pd.DataFrame({"v": [0.123456789012345]}), "json")
