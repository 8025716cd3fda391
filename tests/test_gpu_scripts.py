"""The GPU session kit (scripts/gpu/) as far as it runs without a GPU: its usage errors, its imports, and
its byte counts agreeing with bench.py roofline's."""
from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from upbench.commands import build_parser
from upbench.selfcheck import CHECKED_OPS, DTYPES

REPO = Path(__file__).resolve().parents[1]
SESSION = REPO / "scripts" / "gpu" / "session.sh"
RELEASED = REPO / "scripts" / "gpu" / "released_kernels.py"
PROFILE = REPO / "scripts" / "gpu" / "profile_kernels.py"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not found")
@pytest.mark.parametrize("parts, message", [([], "Parts, in the order to run them"),
                                            (["check", "benchmark"], "unknown part 'benchmark'")])
def test_session_refuses_unknown_parts_before_installing_anything(tmp_path, parts, message):
    done = subprocess.run(["bash", str(SESSION), *parts], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path), "PY": "false"})
    assert done.returncode == 2
    assert message in done.stdout + done.stderr
    assert not (tmp_path / "session.log").exists()


def test_released_kernels_script_imports_and_explains_itself():
    done = subprocess.run([sys.executable, str(RELEASED), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(flag in done.stdout for flag in ("--sapa-src", "--mmcv-src", "--featup-src", "--resfu-src"))


def load_script(monkeypatch, path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_failing_implementation_is_a_row_and_the_run_goes_on(monkeypatch, capsys):
    """A released kernel that cannot run a dtype (or runs out of memory) must not end the device session's
    comparison: its rows say why, and the implementations after it are still measured."""
    module = load_script(monkeypatch, RELEASED)

    def refuses(inputs):
        raise RuntimeError("\"atn_forward\" not implemented for 'BFloat16'\nmore lines of the C++ trace")

    p = module.Problem(N=1, C=4, H=2, W=2, K=3, d=4)
    x = p.inputs(torch.float32, "cpu")
    rows = module.measured_rows("released SAPA", "sapa", refuses, x, x, p, "cpu", 1e9, 0.01)
    assert [row["mode"] for row in rows] == ["fwd", "fwd+bwd"]
    assert all(row["error"] == "RuntimeError: \"atn_forward\" not implemented for 'BFloat16'" for row in rows)
    assert all("ms" not in row for row in rows) and rows[0]["dtype"] == "float32"
    assert "released SAPA: FAILED RuntimeError" in capsys.readouterr().out


def test_a_dtype_unsupported_as_released_is_said_and_not_counted_as_a_failure(monkeypatch, capsys):
    """The released ReSFU cannot run float16 as released: the session's exit status must not fail on it every
    time, while a real failure beside it still does."""
    module = load_script(monkeypatch, RELEASED)

    def unsupported(inputs):
        raise module.UnsupportedAsReleased("its Gaussian is float32")

    def broken(inputs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    p = module.Problem(N=1, C=4, H=2, W=2, K=3, d=4)
    x = p.inputs(torch.float16, "cpu")
    rows = [*module.measured_rows("released ReSFU", "resfu operator", unsupported, x, x, p, "cpu", 1e9, 0.01),
            *module.measured_rows("released SAPA", "sapa", broken, x, x, p, "cpu", 1e9, 0.01)]
    assert rows[0]["error"] == rows[1]["error"] == "unsupported as released: its Gaussian is float32"
    assert "released ReSFU: not run, unsupported as released" in capsys.readouterr().out
    assert module.failed_implementations(rows) == ["float16 released SAPA"]


def test_compulsory_bytes_agree_with_the_roofline_floor(monkeypatch):
    module = load_script(monkeypatch, RELEASED)
    p = module.Problem(N=1, C=256, H=64, W=32, K=5, d=32)
    hi, lo = 4 * p.H * p.W, p.H * p.W
    # bench.py roofline's sapa_fused floor: q, k and v read once, the output written once
    floor = (p.d * hi + p.d * lo + p.C * lo + p.C * hi) * 4
    assert module.compulsory_bytes("sapa", p, 4)["fwd"] == floor
    assert module.compulsory_bytes("carafe", p, 2)["fwd"] == (p.K * p.K * hi + p.C * lo + p.C * hi) * 2
    # JBU's adaptive convolution: the weights and the source map at 2H x 2W read once, the output written once
    assert module.compulsory_bytes("adaptive conv", p, 4)["fwd"] == (p.K * p.K * hi + p.C * hi + p.C * hi) * 4


def test_every_bench_command_of_the_session_parses():
    """A renamed flag must fail here, not in the middle of a GPU session's few minutes."""
    script = SESSION.read_text()
    defaults = dict(re.findall(r"^([A-Z_]+)=\$\{\1:-([^}]*)\}", script, flags=re.M))
    assert {"SANITIZE_OPS", "SANITIZE_DTYPES"} <= defaults.keys()
    commands = [shlex.split(re.sub(r'"\$([A-Z_]+)(/[^"]*)?"', lambda m: defaults.get(m[1], "/tmp") + (m[2] or ""),
                                   line))
                for line in re.findall(r"\$PY bench\.py([^|>\n]*)", script)]
    assert len(commands) >= 4 and [] in commands  # the default sweep, the selfchecks and compare at least
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # exits 2 on an unknown flag or a value its parser refuses
    checked = [argv for argv in commands if argv[:1] == ["selfcheck"] and "--ops" in argv]
    assert checked, "the sanitizer's selfcheck"
    for argv in checked:
        assert set(argv[argv.index("--ops") + 1].split(",")) <= {op.name for op in CHECKED_OPS}
        assert set(argv[argv.index("--dtypes") + 1].split(",")) <= set(DTYPES)


def test_the_profiled_call_of_each_op_and_dtype_comes_after_all_warm_ups(monkeypatch, capsys):
    """ncu starts at the first profiler.start(): every build, lazy initialisation and first allocation must
    lie before it, and each (op, dtype) must be profiled exactly once."""
    module = load_script(monkeypatch, PROFILE)
    calls = []
    monkeypatch.setattr(module, "prepared", lambda op, dtype, device: ([dtype], None))
    monkeypatch.setattr(module, "forward_and_backward", lambda op, inputs, grad: calls.append((op.name, *inputs)))
    monkeypatch.setattr(module.kernels, "require_compiled", lambda operator: None)
    assert module.main(["--device", "cpu", "--dtypes", "float32,float16", "--ops", "sapa_fused,norm_linear"]) == 0
    each = [(op, dtype) for dtype in (torch.float32, torch.float16) for op in ("sapa_fused", "norm_linear")]
    assert calls == each + each
    assert capsys.readouterr().out.count("profiling ") == len(each)


@pytest.mark.parametrize("flags, message", [(["--ops", "sapa_fused,carafe"], "--ops: unknown carafe"),
                                            (["--dtypes", "half"], "--dtypes: unknown half")])
def test_the_profile_script_names_what_it_does_not_know(monkeypatch, capsys, flags, message):
    module = load_script(monkeypatch, PROFILE)
    with pytest.raises(SystemExit) as stopped:
        module.main(["--device", "cpu", *flags])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_profiled_shape_runs_forward_and_backward(monkeypatch, compiled_ops):
    module = load_script(monkeypatch, PROFILE)
    op = next(op for op in CHECKED_OPS if op.name == "dynamic_assembly")
    (weights, x), grad = module.prepared(op, torch.float32, "cpu")
    assert x.shape == (1, 256, 128, 128) and weights.shape == (1, 25, 256, 256)  # issue 8's shape
    assert grad.shape == (1, 256, 256, 256) and weights.grad is None and x.grad is None
    module.forward_and_backward(op, [weights, x], grad)
    assert weights.grad.shape == weights.shape and x.grad.shape == x.shape
