"""The measurement harness: sweep expansion, the row log (resume, shards, merge), failure rows,
exports and the command line. Tiny shapes throughout; bookkeeping tests fake the measurement."""
from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

import upbench
import upbench.measure as measure_module
import upbench.reports as reports_module
import upbench.sweep as sweep_module
import upbench.views as views_module
from upbench.commands import main
from upbench.export import write_outputs
from upbench.reports import to_markdown
from upbench.rows import merge_frames, missing_configs, read_json_rows, read_rows, write_csv, write_json
from upbench.spec import SweepSpec
from upbench.sweep import parse_shard, run_sweep, shard_configs
from upbench.views import markdown_table, ratio_view

TINY = dict(channels=(4,), sizes=(4,), devices=("cpu",), warmup=0, min_run_time=0.001)


def _first(predicate) -> str:
    for name in upbench.available():
        if predicate(upbench.get(name)):
            return name
    pytest.skip("no registered operator fits this test")


@pytest.fixture(scope="module")
def plain() -> str:
    """An operator with no knobs and no guide: the cheapest to measure."""
    return _first(lambda cls: not cls.knobs and not cls.needs_guide)


@pytest.fixture(scope="module")
def plain_pair(plain) -> tuple[str, str]:
    other = [n for n in upbench.available() if n != plain and not upbench.get(n).knobs and not upbench.get(n).needs_guide]
    return (plain, other[0]) if other else (plain,)


@pytest.fixture(scope="module")
def odd_k() -> str:
    """An operator whose K must be odd."""
    return _first(lambda cls: "K" in cls.knobs and cls.knobs["K"].rule == "odd")


@pytest.fixture(scope="module")
def compiled() -> str:
    return _first(lambda cls: cls.compiled_ops)


def fake_measure(config, spec, row) -> None:
    """Stands in for counting and timing where only the bookkeeping is under test."""
    row.update(latency_median_ms=1.0, runs=1, status="ok")


# -- expansion --------------------------------------------------------------------------------
def test_expansion_skips_knobs_an_operator_lacks(plain, odd_k):
    spec = SweepSpec(ops=(plain, odd_k), knobs={"K": (3, 5, 3)}, sizes=(4, 8, 4), modes=("fwd", "fwd+bwd"),
                     channels=(4, 4), devices=("cpu",))
    configs = spec.expand()
    keys = [c.key for c in configs]
    assert len(keys) == len(set(keys))
    plain_rows = [c for c in configs if c.operator == plain]
    assert len(plain_rows) == 2 * 2 and all(c.hparams == () for c in plain_rows)  # sizes x modes, no K
    knobbed = [c for c in configs if c.operator == odd_k]
    assert len(knobbed) == 2 * 2 * 2  # K x sizes x modes
    assert {dict(c.hparams)["K"] for c in knobbed} == {3, 5}
    defaults = {k: v.default for k, v in upbench.get(odd_k).knobs.items() if k != "K"}
    assert all({k: dict(c.hparams)[k] for k in defaults} == defaults for c in knobbed)
    assert spec.expand() == configs  # deterministic


def test_impl_axis_collapses_for_operators_without_a_compiled_path(plain, compiled, monkeypatch):
    monkeypatch.setattr("upbench.kernels.compiled_available", lambda: False)
    spec = SweepSpec(ops=(plain, compiled), impls=("auto", "reference", "compiled"), **TINY)
    impls = {(c.operator, c.impl) for c in spec.expand()}
    assert impls == {(plain, "reference"), (compiled, "reference"), (compiled, "compiled")}
    with pytest.raises(ValueError, match="empty"):
        SweepSpec(ops=(plain,), impls=("compiled",), **TINY).expand()


@pytest.mark.parametrize("kwargs, message", [
    ({"ops": ("no-such-op",)}, "unknown operator 'no-such-op'; known operators"),
    ({"knobs": {"bogus": (1,)}}, "unknown knob 'bogus'"),
    ({"modes": ("bwd",)}, "mode 'bwd'"),
    ({"dtypes": ("fp8",)}, "dtype 'fp8'"),
    ({"devices": ("tpu",)}, "device 'tpu'"),
    ({"impls": ("fast",)}, "impl 'fast'"),
    ({"sizes": (0,)}, "size: 0"),
    ({"channels": ()}, "empty"),
    ({"min_run_time": 0}, "min_run_time"),
])
def test_bad_specs_are_rejected_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SweepSpec(**{"devices": ("cpu",), **kwargs})


def test_a_knob_value_is_checked_by_each_operator_that_has_it(plain, odd_k):
    with pytest.raises(ValueError, match=f"{odd_k}: K=4 is invalid; expected a positive odd"):
        SweepSpec(ops=(plain, odd_k), knobs={"K": (3, 4)}, devices=("cpu",))
    with pytest.raises(ValueError, match="unknown knob 'K': no selected operator has it"):
        SweepSpec(ops=(plain,), knobs={"K": (3,)}, devices=("cpu",))


def test_guide_channels_sweep_the_operators_whose_guide_may_differ_from_c(tmp_path, capsys):
    """Cg sweeps the guide's width where an operator reads a guide of any width; the others run as before."""
    spec = SweepSpec(ops=("sapa-b", "fade", "nearest"), channels=(64,), guide_channels=(16, 64), sizes=(8,),
                     devices=("cpu",), impls=("reference",), policies=("paper",))
    keys = [c.key for c in spec.expand()]
    assert [k.split("|")[:3] for k in keys] == [["sapa-b", "reference", "C=64"]] * 2 + [
        ["fade", "reference", "C=64"], ["nearest", "reference", "C=64"]]
    assert [k.split("|")[3] for k in keys[:2]] == ["Cg=16", "Cg=64"] and "Cg=" not in "".join(keys[2:])
    # a spec without Cg keeps the id it had before the axis existed: its logs still resume
    assert SweepSpec(ops=("nearest", "sapa-b"), channels=(4,), sizes=(4,), devices=("cpu",)).spec_id == "8c7208d91a36"
    assert spec.spec_id != SweepSpec(**{**spec_kwargs(spec), "guide_channels": (16,)}).spec_id
    with pytest.raises(ValueError, match=r"Cg 8: no selected operator reads a guide of another width than C "
                                         r"\(fade take a guide of C channels only\)"):
        SweepSpec(ops=("fade", "nearest"), guide_channels=(8,), devices=("cpu",))
    out = tmp_path / "cg.csv"
    assert main(["sweep", "--ops", "sapa-b,nearest", "--C", "64", "--Cg", "16,64", "--size", "8", "--device", "cpu",
                 "--impl", "reference", "--policy", "paper", "--warmup", "0", "--min-run-time", "0.001",
                 "--out", str(out), "--formats", "markdown", "--quiet"]) == 0
    rows = read_rows(out)
    assert list(rows["Cg"]) == [16, 64, 0]
    sapa = upbench.get("sapa-b")
    for Cg, macs, params in zip(rows["Cg"][:2], rows["macs_paper"][:2], rows["params"][:2]):
        exact = sapa.formulas.exact_cost("total", upbench.make("sapa-b", 64, guide_channels=int(Cg)).dims(1, 8, 8))
        assert (macs, params) == (exact.macs, exact.params)  # the guide embedding is 4 * Cg * d a pixel
    assert main(["report", str(out), "--pivot", "macs"]) == 0
    table = [line.split("|")[1:3] for line in capsys.readouterr().out.splitlines() if line.startswith("|")][2:]
    assert [[cell.strip() for cell in line] for line in table] == [["sapa-b", "16"], ["sapa-b", "64"], ["nearest", "-"]]
    # a table without a Cg column says in its footnote how wide the guide was
    assert r"C = 64, guide C\_g = 16, batch 1" in reports_module.to_latex(rows[rows["Cg"] != 64])
    # a failed Cg = 64 row: the pivot keeps labelling the Cg = 16 row, and the note names what is missing
    rows.loc[1, ["status", "latency_median_ms"]] = ["error", None]
    write_csv(rows, tmp_path / "failed.csv")
    assert main(["report", str(tmp_path / "failed.csv"), "--pivot", "latency", "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert "sapa-b & 16 &" in latex and "not measured: sapa-b Cg=64 at 8 (error)" in latex
    # without --Cg the guide follows C: no Cg column however C varies
    plain = SweepSpec(ops=("sapa-b",), channels=(8, 16), sizes=(4,), devices=("cpu",), impls=("reference",))
    assert "Cg" not in views_module.varying_axes(pd.DataFrame(
        {"operator": "sapa-b", "impl": "reference", "C": [8, 16], "Cg": [8, 16], "N": 1, "dtype": "fp32",
         "device": "cpu", "mode": "fwd"}))
    assert all("Cg=" not in c.key for c in plain.expand())
    assert main(["sweep", "--ops", "sapa-b", "--Cg", "", "--quiet"]) == 2
    assert "sweep axis 'Cg' is empty" in capsys.readouterr().err


def spec_kwargs(spec: SweepSpec) -> dict:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def test_spec_files_yaml_and_toml(tmp_path, plain, odd_k):
    (tmp_path / "s.yaml").write_text(f"ops: [{plain}, {odd_k}]\nC: 4\nK: [3, 5]\nsize: [4, 6x8]\n"
                                     "device: cpu\nmode: fwd,fwd+bwd\nmin_run_time: 0.01\n")
    (tmp_path / "s.toml").write_text(f'ops = ["{plain}", "{odd_k}"]\nC = [4]\nK = [3, 5]\nsize = [4, [6, 8]]\n'
                                     'device = "cpu"\nmode = ["fwd", "fwd+bwd"]\nmin_run_time = 0.01\n')
    from_yaml, from_toml = SweepSpec.from_file(tmp_path / "s.yaml"), SweepSpec.from_file(tmp_path / "s.toml")
    assert from_yaml == from_toml and from_yaml.spec_id == from_toml.spec_id
    assert from_yaml.sizes == ((4, 4), (6, 8)) and dict(from_yaml.knobs) == {"K": (3, 5)}
    assert from_yaml.spec_id != SweepSpec(ops=(plain, odd_k), knobs={"K": (3,)}, channels=(4,),
                                          devices=("cpu",)).spec_id
    (tmp_path / "bad.yaml").write_text("ops: [x]\nresolution: 4\n")
    with pytest.raises(ValueError, match=r"unknown key 'resolution' in .*bad.yaml"):
        SweepSpec.from_file(tmp_path / "bad.yaml")


def test_shards_partition_the_sweep(plain_pair):
    configs = SweepSpec(ops=plain_pair, sizes=(4, 8, 12), modes=("fwd", "fwd+bwd"), devices=("cpu",)).expand()
    shards = [shard_configs(configs, (i, 3)) for i in range(3)]
    indices = sorted(index for shard in shards for index, _ in shard)
    assert indices == list(range(len(configs)))
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


# -- the row log: resume, shards, merge -------------------------------------------------------
def test_resume_after_a_kill_measures_each_config_once(tmp_path, plain_pair, monkeypatch, capsys):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=plain_pair, modes=("fwd", "fwd+bwd"), **{**TINY, "sizes": (4, 8)})
    everything = [c.key for c in spec.expand()]
    out = tmp_path / "run.csv"

    def killed_after_two(row):
        if len(read_rows(out)) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, on_row=killed_after_two)
    before = list(read_rows(out)["key"])
    assert before == everything[:2]
    with open(out, "a") as handle:  # a kill in the middle of writing a row
        handle.write("torn,row,without,newline")
    with pytest.raises(FileExistsError):
        run_sweep(spec, out)
    torn = out.read_bytes()
    capsys.readouterr()
    # report and merge read what --resume would keep, say what they left out, and change nothing
    assert main(["report", str(out), "--pivot", "latency", "--format", "csv"]) == 0
    reported = capsys.readouterr()
    assert f"report: warning: {out}: line 4 was cut mid-write" in reported.err
    assert main(["merge", str(out), "--out", str(out.with_name("merged.csv")), "--allow-partial",
                 "--formats", "markdown"]) == 0
    assert f"merge: warning: {out}: line 4 was cut mid-write" in capsys.readouterr().err
    assert list(read_rows(out.with_name("merged.csv"))["key"]) == everything[:2]
    assert out.read_bytes() == torn
    empty = out.with_name("empty.csv")  # a shard killed before its first row: nothing to merge, not an error
    empty.write_text("spec_id,config_ind")
    assert main(["merge", str(out), str(empty), "--out", str(out.with_name("merged2.csv")), "--allow-partial",
                 "--formats", "markdown"]) == 0
    assert f"merge: warning: {empty} holds no rows" in capsys.readouterr().err

    measured = []
    real = sweep_module.measure_config
    monkeypatch.setattr(sweep_module, "measure_config", lambda c, *a: measured.append(c.key) or real(c, *a))
    rows = run_sweep(spec, out, resume=True)
    assert measured == everything[2:]
    assert list(rows["key"]) == everything and rows["key"].is_unique

    other = SweepSpec(ops=plain_pair, modes=("fwd", "fwd+bwd"), **TINY)
    with pytest.raises(ValueError, match="refusing to resume"):
        run_sweep(other, out, resume=True)

    # a whole last row that lacks only its newline (an edited file) is a row, not a torn line: neither a
    # refused resume nor an accepted one loses it
    out.write_bytes(out.read_bytes().rstrip(b"\n"))
    with pytest.raises(ValueError, match="refusing to resume"):
        run_sweep(other, out, resume=True)
    assert list(read_rows(out)["key"]) == everything
    measured.clear()
    assert list(run_sweep(spec, out, resume=True)["key"]) == everything and measured == []

    # but a row cut inside its timestamp (2026-11-22 parses as a date) is torn: measured again
    whole = out.read_bytes()
    out.write_bytes(whole[:whole.rstrip(b"\n").rfind(b"T")])
    measured.clear()
    assert list(run_sweep(spec, out, resume=True)["key"]) == everything and measured == everything[-1:]


def test_shards_merge_to_the_whole(tmp_path, plain_pair, monkeypatch):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=plain_pair, modes=("fwd", "fwd+bwd"), **{**TINY, "sizes": (4, 8, 12)})
    whole = run_sweep(spec, tmp_path / "whole.csv")
    shards = [run_sweep(spec, tmp_path / f"shard{i}.csv", shard=(i, 2)) for i in range(2)]
    assert set(shards[0]["key"]).isdisjoint(shards[1]["key"])
    merged = merge_frames([read_rows(tmp_path / "shard1.csv"), read_rows(tmp_path / "shard0.csv")])
    config_columns = ["spec_id", "config_index", "config_total", "key", "operator", "impl", "C", "N", "H", "W",
                      "dtype", "device", "mode", "status"]
    pd.testing.assert_frame_equal(merged[config_columns], whole[config_columns])
    assert missing_configs(merged) == [] and missing_configs(shards[0]) == list(shards[1]["config_index"])

    other = run_sweep(SweepSpec(ops=plain_pair, **{**TINY, "sizes": (4,)}), tmp_path / "other.csv")
    with pytest.raises(ValueError, match="different sweep specs"):
        merge_frames([whole, other])


# -- failures become rows ---------------------------------------------------------------------
def test_oom_and_error_rows_keep_the_sweep_going(plain_pair, monkeypatch):
    spec = SweepSpec(ops=plain_pair, **{**TINY, "sizes": (4, 8, 12)})
    failures = iter([torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"),
                     RuntimeError("boom: first line\nsecond line"),
                     RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")])
    real = measure_module.time_call

    def failing_time_call(*args, **kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args, **kwargs)

    monkeypatch.setattr(measure_module, "time_call", failing_time_call)
    rows = run_sweep(spec)
    assert list(rows["status"]) == ["oom", "error", "oom"] + ["ok"] * (len(rows) - 3)
    assert rows["message"][1] == "RuntimeError: boom: first line"
    assert rows["message"][0].startswith("OutOfMemoryError: CUDA out of memory")
    assert rows["macs_fvcore"].notna().all()  # what was measured before the failure stays
    ok = rows[rows["status"] == "ok"]
    assert (ok["latency_median_ms"] > 0).all() and (ok["peak_mem_bytes"] > 0).all() and (ok["runs"] >= 1).all()


def test_a_row_over_its_budget_is_skipped_with_the_reason(plain):
    rows = run_sweep(SweepSpec(ops=(plain,), row_budget_s=1e-9, **TINY))
    assert list(rows["status"]) == ["skipped"]
    assert "row budget" in rows["message"][0] and rows["runs"][0] == 1 and rows["latency_median_ms"][0] > 0


def test_compiled_rows_are_skipped_when_the_kernels_are_not_built(compiled, monkeypatch):
    monkeypatch.setattr("upbench.kernels.compiled_available", lambda: False)
    rows = run_sweep(SweepSpec(ops=(compiled,), impls=("compiled",), **TINY))
    assert list(rows["status"]) == ["skipped"]
    assert "compiled_available() is False" in rows["message"][0]
    assert rows["macs_paper"][0] > 0  # counts do not depend on the implementation


# -- exports and the command line -------------------------------------------------------------
def test_rows_round_trip_through_csv_and_json(tmp_path, plain_pair):
    spec = SweepSpec(ops=plain_pair, modes=("fwd", "fwd+bwd"), **{**TINY, "sizes": (4, 6)})
    rows = run_sweep(spec, tmp_path / "r.csv")
    assert list(rows.columns) == spec.columns()
    assert set(rows["status"]) == {"ok"} and rows["threads"].iloc[0] == torch.get_num_threads()
    fwd = rows[rows["mode"] == "fwd"]
    assert (fwd["gbytes_per_s"] > 0).all() and rows[rows["mode"] == "fwd+bwd"]["gbytes_per_s"].isna().all()
    assert (rows["flops_fvcore"] == 2 * rows["macs_fvcore"]).all()
    pd.testing.assert_frame_equal(read_rows(write_csv(rows, tmp_path / "copy.csv")), rows)
    write_json(rows, tmp_path / "r.json")
    pd.testing.assert_frame_equal(read_json_rows(tmp_path / "r.json"), rows, check_dtype=False)

    written = write_outputs(rows, tmp_path / "r.csv")
    assert sorted(p.suffix for p in written) == [".json", ".md", ".png", ".tex"]
    report = (tmp_path / "r.md").read_text()
    assert "Latency median (ms) by operator x resolution" in report
    assert "Peak memory (MiB, above the inputs and weights)" in report
    assert all(name in report for name in plain_pair)


def test_counts_stay_integers_in_every_file_beside_a_failed_row(tmp_path, plain, monkeypatch, capsys):
    # A failed row's empty count cells made pandas read those columns as float: a merged log, the JSON beside a
    # sweep and report --format csv|json wrote 4096.0 MACs, 64.0 params and 3.0 runs.
    failures = iter([None, RuntimeError("boom")])

    def measure(config, spec, row) -> None:
        failure = next(failures)
        if failure is not None:
            raise failure
        row.update(macs_paper=4096, flops_paper=8192, params=64, runs=3, latency_median_ms=1.5, status="ok")

    monkeypatch.setattr(measure_module, "_measure", measure)
    out = tmp_path / "r.csv"
    run_sweep(SweepSpec(ops=(plain,), policies=("paper",), **{**TINY, "sizes": (4, 6)}), out)
    rows = read_rows(out)
    assert list(rows["status"]) == ["ok", "error"]
    merged = tmp_path / "merged.csv"
    assert main(["merge", str(out), "--out", str(merged), "--formats", "json"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    for records in (reported, json.loads(merged.with_suffix(".json").read_text())):
        assert [(r["macs_paper"], r["params"], r["runs"]) for r in records] == [(4096, 64, 3), (None, None, None)]
        assert all(type(r[c]) is int for c in ("macs_paper", "params", "runs", "C", "H") for r in records[:1])
    assert main(["report", str(out), "--format", "csv"]) == 0
    for text in (capsys.readouterr().out, merged.read_text()):
        first = dict(zip(text.splitlines()[0].split(","), text.splitlines()[1].split(",")))
        assert (first["macs_paper"], first["flops_paper"], first["params"], first["runs"]) == ("4096", "8192", "64", "3")
    pd.testing.assert_frame_equal(read_rows(merged), rows)  # the merged log reads back as the log


def test_ratio_view_pairs_reference_and_compiled(plain_pair, monkeypatch):
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    rows = run_sweep(SweepSpec(ops=plain_pair, modes=("fwd", "fwd+bwd"), **TINY))
    compiled = rows.assign(impl="compiled", latency_median_ms=0.5)
    view = ratio_view(pd.concat([rows, compiled], ignore_index=True))
    assert len(view) == len(plain_pair) * 2 and (view["ms ref/compiled"] == 2.0).all()
    assert "ms ref/compiled" in markdown_table(view) and "## extra" in to_markdown(rows, [("extra", view)])
    assert math.isnan(ratio_view(rows)["ms ref/compiled"].iloc[0])
    assert ratio_view(rows)["note"].iloc[0] == "no compiled row (the operator has no compiled path)"
    assert not view["note"].str.contains("suspect").any()
    doubted = compiled.assign(timing_suspect=["unsteady: p80/p20 = 2.0"] + [None] * (len(compiled) - 1))
    notes = ratio_view(pd.concat([rows, doubted], ignore_index=True))["note"]
    assert notes.tolist() == ["compiled timing suspect"] + [""] * (len(notes) - 1)


def test_cli_sweep_resume_merge_and_errors(tmp_path, plain, capsys):
    out = tmp_path / "cli.csv"
    flags = ["--ops", plain, "--C", "4", "--size", "4,6x8", "--device", "cpu", "--min-run-time", "0.001",
             "--warmup", "0", "--quiet"]
    assert main(["sweep", *flags, "--out", str(out), "--formats", "markdown"]) == 0
    assert out.exists() and out.with_suffix(".md").exists() and len(read_rows(out)) == 2
    assert main(["sweep", *flags, "--out", str(out), "--resume", "--formats", "json"]) == 0
    assert len(read_rows(out)) == 2 and out.with_suffix(".json").exists()
    for i in range(2):
        assert main(["sweep", *flags, "--out", str(tmp_path / f"s{i}.csv"), "--shard", f"{i}/2", "--formats", ""]) == 0
    merged = tmp_path / "merged.csv"
    assert main(["merge", str(tmp_path / "s0.csv"), str(tmp_path / "s1.csv"), "--out", str(merged)]) == 0
    assert list(read_rows(merged)["key"]) == list(read_rows(out)["key"])
    (tmp_path / "spec.yaml").write_text(f"ops: {plain}\nC: 4\nsize: [4, 6x8]\ndevice: cpu\n")
    from_file = tmp_path / "from_file.csv"
    assert main(["sweep", "--spec", str(tmp_path / "spec.yaml"), "--min-run-time", "0.001", "--warmup", "0",
                 "--quiet", "--formats", "", "--out", str(from_file)]) == 0
    assert read_rows(from_file)["spec_id"][0] == read_rows(out)["spec_id"][0]
    capsys.readouterr()
    assert main(["sweep", "--ops", "no-such-op", "--device", "cpu", "--quiet", "--out", str(tmp_path / "x.csv")]) == 2
    assert "unknown operator 'no-such-op'" in capsys.readouterr().err
    assert main(["sweep", *flags, "--out", str(out)]) == 2  # exists, no --resume
    assert main(["merge", str(out), str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m2.csv")]) == 2


def test_a_resume_of_a_log_that_does_not_exist_says_so_and_starts_afresh(tmp_path, plain, capsys, monkeypatch):
    """--resume with a mistyped --out started a fresh sweep without a word. It still starts (a sweep stopped before
    its log was written printed a resume command, which must work), and says so before measuring."""
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    quick = ["--C", "4", "--size", "4", "--device", "cpu", "--quiet", "--formats", "", "--resume"]
    out = tmp_path / "typo.csv"
    for _ in range(2):  # the second run finds the log the first wrote, and resumes it without the note
        assert main(["sweep", "--ops", plain, *quick, "--out", str(out)]) == 0
        assert len(read_rows(out)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sweep: --resume: {out} does not exist; starting a fresh sweep\n")
    assert err.count("does not exist") == 1
    compared = tmp_path / "cmp.md"  # the log is cmp.csv, beside the report named
    assert main(["compare", "--ops", "carafe", *quick, "--out", str(compared)]) == 0
    assert capsys.readouterr().err.startswith(f"compare: --resume: {tmp_path / 'cmp.csv'} does not exist; starting "
                                              f"a fresh sweep\n")

    def launched(*args, **kwargs):
        raise RuntimeError("no shard wrote its log")  # what the launch says, without submitting jobs

    monkeypatch.setattr("upbench.commands.sweep.launch_sweep", launched)
    launch = ["sweep", "--ops", plain, *quick, "--launcher", "submitit", "--shards", "2", "--out",
              str(tmp_path / "l.csv")]
    assert main(launch) == 1
    assert capsys.readouterr().err == (f"sweep: --resume: {tmp_path / 'l.csv'} does not exist, nor do its shard logs "
                                       f"in {tmp_path / 'l.shards'}; starting a fresh sweep\n"
                                       f"sweep: no shard wrote its log\n")
    shard = tmp_path / "l.shards" / "shard1of2.csv"  # one killed shard's log: a resume
    shard.parent.mkdir()
    shard.write_text("")
    assert main(launch) == 1
    assert capsys.readouterr().err == "sweep: no shard wrote its log\n"


def test_every_axis_and_setting_of_a_sweep_file_has_its_flag():
    """The sweep command maps its flags onto the sweep-file names it derives from the spec's own lists, so
    a setting the spec gains must gain a flag too, or it could only be set from a file."""
    import argparse

    from upbench.commands import compare, sweep
    from upbench.commands.measuring import AXIS_FLAGS

    for command, fixed in ((sweep, ()), (compare, ("mode", "impl"))):  # compare runs both modes and impls
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        dests = vars(parser.parse_args([]))
        assert [flag for flag in AXIS_FLAGS if flag not in dests] == list(fixed), command.__name__


def test_the_environment_a_row_records_is_the_declared_one():
    """The row layout, the setup checks and the views take the environment's fields from one tuple; a key
    environment() gains without it would make every row's write raise."""
    from upbench.environment import environment
    from upbench.vocabulary import ENVIRONMENT_FIELDS

    assert tuple(environment("cpu")) == ENVIRONMENT_FIELDS


@pytest.mark.parametrize("text, size", [("16", (16, 16)), ("32x48", (32, 48)), ("32X48", (32, 48))])
def test_one_size_grammar_for_files_flags_and_presets(text, size):
    from upbench.cli_args import size_list
    from upbench.cli_args import image_size
    from upbench.checks import parse_size

    assert parse_size(text) == size and size_list(f"{text},8") == [size, (8, 8)] and image_size(text) == size
    assert image_size(text.replace("x", ",").replace("X", ",")) == size


@pytest.mark.parametrize("text", ["0", "32x", "x5", "a", "3x4x5", "-2"])
def test_bad_sizes_are_refused_alike(text):
    import argparse

    from upbench.cli_args import size_list
    from upbench.cli_args import image_size
    from upbench.checks import parse_size

    with pytest.raises(ValueError):
        parse_size(text)
    for parse in (size_list, image_size):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize("earlier_deaths, status", [(0, "ok"), (1, "crash")])
def test_a_resume_measures_once_more_the_row_one_run_died_on_and_records_a_second_death(
        tmp_path, plain_pair, monkeypatch, earlier_deaths, status):
    """<log>.measuring names the row a run died measuring: a first death may be a preempted job's kill (the
    row is measured again), a second in a row is the row's doing (recorded as a crash, not measured)."""
    monkeypatch.setattr(measure_module, "_measure", fake_measure)
    spec = SweepSpec(ops=plain_pair, **TINY)
    keys = [c.key for c in spec.expand()]
    out = tmp_path / "run.csv"
    write_csv(run_sweep(spec, out).iloc[:1], out)
    marker = out.with_name(out.name + ".measuring")
    marker.write_text(f"{keys[1]}\t{earlier_deaths}\n")
    with pytest.raises(ValueError, match="refusing to resume"):  # a refused resume keeps the count of deaths
        run_sweep(SweepSpec(ops=plain_pair, **{**TINY, "sizes": (4, 6)}), out, resume=True)
    assert marker.read_text() == f"{keys[1]}\t{earlier_deaths}\n"
    measured = []
    real = sweep_module.measure_config
    monkeypatch.setattr(sweep_module, "measure_config", lambda c, *a: measured.append(c.key) or real(c, *a))
    rows = run_sweep(spec, out, resume=True)
    assert list(rows["key"]) == keys
    assert rows.loc[1, "status"] == status
    assert measured == (keys[1:] if status == "ok" else keys[2:])
    assert not out.with_name(out.name + ".measuring").exists()
