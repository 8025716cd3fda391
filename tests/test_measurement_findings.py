"""What an audit of the measuring found: network --measure timed upbench's own checks of every call, which the
sweep leaves out; a cold-cache sweep's reports did not say so; a measured network report in Markdown did not say
how it was measured."""
from __future__ import annotations

import pytest

from upbench.base import Upsampler
from upbench.commands import main
from upbench.network import measure_network
from upbench.presets import get_preset

pytestmark = pytest.mark.usefixtures("single_thread")


def test_network_measure_checks_each_stage_once_and_times_it_without_the_checks(monkeypatch):
    checked = []
    original = Upsampler.check_inputs
    def counted(self, x, guide):
        checked.append(self)
        return original(self, x, guide)

    monkeypatch.setattr(Upsampler, "check_inputs", counted)
    measured = measure_network(get_preset("mask2former-swinb"), "sapa-b", size=(64, 64), channels=8, min_run_time=0.01)
    assert measured.status == "ok" and measured.timing.runs >= 5
    assert len(checked) == 1  # the one stage, checked once; not at every warm-up and timed call


def test_a_measured_network_report_in_markdown_says_how_it_was_measured(capsys):
    assert main(["network", "--preset", "mask2former-swinb", "--ops", "nearest", "--size", "64x64", "--channels", "8",
                 "--measure"]) == 0
    out = capsys.readouterr().out
    assert "- Latency (median) and Memory (peak, above the inputs and weights): an operator's one upsampling stage, " \
           "whole (not added over the baseline)" in out


@pytest.mark.parametrize("flush,words", [(False, "warm cache"), (True, "cold cache (last-level cache flushed before each "
                                                                       "call)")])
def test_a_sweeps_reports_say_whether_the_cache_was_warm_or_cold(flush, words, tmp_path):
    out = tmp_path / "run.csv"
    assert main(["sweep", "--ops", "nearest", "--C", "4", "--size", "4", "--min-run-time", "0.001", "--warmup", "0",
                 "--out", str(out), "--formats", "latex,markdown", "--quiet", *(["--l2-flush"] if flush else [])]) == 0
    assert f"no\\_grad), {words}, " in out.with_suffix(".tex").read_text()
    assert f"seed 0, {words}." in out.with_suffix(".md").read_text()
