"""Usage errors are one line on stderr naming the command and the argument, exit 2, no usage block;
--help is unchanged (usage on stdout, exit 0)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from upbench.commands import COMMANDS, main

BENCH = Path(__file__).resolve().parents[1] / "bench.py"

BAD = [
    (["sweep", "--C", "8,,16"], "bench.py sweep", "argument --C", "empty item"),
    (["sweep", "--size", "32x"], "bench.py sweep", "argument --size", "32x"),
    (["sweep", "--launcher", "slurmish"], "bench.py sweep", "argument --launcher", "invalid choice"),
    (["compare", "--size", "32x"], "bench.py compare", "argument --size", "32x"),
    (["compare", "--budget", "-1"], "bench.py compare", "argument --budget", "-1"),
    (["table1", "--format", "html"], "bench.py table1", "argument --format", "invalid choice"),
    (["table1", "--C", "x"], "bench.py table1", "argument --C", "'x'"),
    (["report", "rows.csv", "--pivot", "nope"], "bench.py report", "argument --pivot", "invalid choice"),
    (["merge", "a.csv", "--out", "m.csv", "--formats", "md,,csv"], "bench.py merge", "argument --formats", "empty"),
    (["network", "--preset", "no-such-model"], "bench.py network", "argument --preset", "invalid choice"),
    (["network", "--preset", "mask2former-swinb", "--size", "64,x"], "bench.py network", "argument --size", "64,x"),
    (["network", "--batch", "1.5"], "bench.py network", "argument --batch", "expected an integer >= 1, got '1.5'"),
    (["network", "--channels", "0"], "bench.py network", "argument --channels", "expected an integer >= 1, got '0'"),
    (["roofline", "--rounds", "0"], "bench.py roofline", "argument --rounds", "'0'"),
    (["roofline", "--format", "latex"], "bench.py roofline", "argument --format", "invalid choice"),
    (["selfcheck", "--seed", "x"], "bench.py selfcheck", "argument --seed", "'x'"),
    (["selfcheck", "--format", "yaml"], "bench.py selfcheck", "argument --format", "invalid choice"),
    # found by fuzzing: empty, huge, twice
    (["selfcheck", "--devices", ""], "bench.py selfcheck", "argument --devices", "expected at least one name"),
    (["table1", "--C", "99999999999999999999"], "bench.py table1", "argument --C", "more than torch's 64 bits"),
    (["table1", "--C", "0"], "bench.py table1", "argument --C", "expected an integer >= 1, got '0'"),
    (["sweep", "--seed", "-99999999999999999999"], "bench.py sweep", "argument --seed", "64 bits"),
    (["sweep", "--C", "\uff14"], "bench.py sweep", "argument --C", "expected an integer >= 1"),
    (["sweep", "--out", ""], "bench.py sweep", "argument --out", "empty; expected a file name"),
    (["sweep", "--spec", " "], "bench.py sweep", "argument --spec", "empty; expected a file name"),
    (["sweep", "--spec", "a.yaml", "--spec", "b.yaml"], "bench.py sweep", "argument --spec", "given twice"),
    (["report", "x.csv", "--out", ""], "bench.py report", "argument --out", "empty"),
    (["diff", "a.csv", "b.csv", "--across", ""], "bench.py diff", "argument --across", "at least one name"),
    (["--plugin", "", "table1"], "bench.py", "argument --plugin", "empty"),
    # unknown flags are named with the command they were given to
    (["sweep", "--bogus"], "bench.py sweep", "unrecognized arguments: --bogus", ""),
    (["roofline", "--C", "8", "--bogus", "1"], "bench.py roofline", "unrecognized arguments: --bogus 1", ""),
    # missing required arguments
    (["merge"], "bench.py merge", "required", "--out"),
    (["report"], "bench.py report", "required", "rows"),
    # the top-level parser
    (["no-such-command"], "bench.py", "argument COMMAND", "invalid choice"),
    (["--bogus"], "bench.py sweep", "unrecognized arguments: --bogus", ""),  # the default command's
]


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code


@pytest.mark.parametrize("argv, prog, argument, detail", BAD, ids=[" ".join(case[0]) for case in BAD])
def test_a_usage_error_is_one_line_naming_the_command_and_the_argument(capsys, argv, prog, argument, detail):
    assert exit_code(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith(f"{prog}: "), line
    assert argument in line and detail in line
    assert "usage:" not in line and "Traceback" not in line
    assert line.endswith(f"(see {prog} --help)")


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in COMMANDS)])
def test_help_still_prints_usage_and_exits_0(capsys, argv):
    assert exit_code(argv) == 0
    captured = capsys.readouterr()
    prog = " ".join(["bench.py", *argv[:-1]])
    assert captured.out.startswith(f"usage: {prog}")
    assert "options:" in captured.out and captured.err == ""


def test_the_real_command_line_prints_one_line_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH), "sweep", "--C", "8,,16"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("bench.py sweep: argument --C: empty item in the comma list '8,,16' "
                           "(see bench.py sweep --help)\n")


def test_compare_help_says_its_default_operators_once_and_truly(capsys):
    assert exit_code(["compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "all registered" not in text and "default: all operators" not in text
    assert text.count("with a compiled path") == 1
    assert "--ops OPS operators; default: those with a compiled path" in text
