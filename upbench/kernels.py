"""The compiled window ops (C++ / CUDA in csrc/), built with ninja on first use and registered as
``torch.ops.upbench.*``.

The build happens once per process, on the first call to :func:`compiled_available` or to one of the
ops; objects are cached in a persistent build directory so later processes only relink when a source
changed. If the build is impossible (no compiler, a compile error, ``UPBENCH_NO_COMPILE=1``) the module
warns once, :func:`compiled_available` returns False, operators built with ``impl="auto"`` take the
pure-PyTorch reference path, and the op functions here raise with the reason.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from . import _op_registrations

_NAME = "upbench_ops"
# The fused SAPA kernel's cap on K (kept with the op checks it goes with); callers ask kernels for it.
FUSED_MAX_K = _op_registrations.FUSED_MAX_K


def _find_csrc() -> Path:
    """The kernel sources: upbench/csrc in an installed wheel, csrc/ beside the package in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "csrc"
    return installed if (installed / "upbench_ops.cpp").is_file() else package.parent / "csrc"


_CSRC = _find_csrc()
# cpp_extension serialises builds with a `lock` file and waits forever while it exists; a build that
# was killed leaves it behind. No real build of these sources takes this long.
_STALE_LOCK_S = 10 * 60
_ERROR_TAIL_CHARS = 3000

_lock = threading.RLock()
_result: dict[str, Any] | None = None


def _cuda_toolkit() -> str | None:
    """The CUDA toolkit cpp_extension would use, or None when this torch cannot build CUDA code."""
    if not torch.version.cuda:
        return None
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME


def _sources(with_cuda: bool) -> list[str]:
    files = [_CSRC / "upbench_ops.cpp", *sorted((_CSRC / "cpu").glob("*.cpp"))]
    if with_cuda:
        files += sorted((_CSRC / "cuda").glob("*.cu")) + sorted((_CSRC / "cuda").glob("*.cpp"))
    return [str(f) for f in files]


def _build_dir(with_cuda: bool) -> Path:
    env = os.environ.get("UPBENCH_BUILD_DIR")
    if env:
        return Path(env).expanduser()
    flavour = "cuda" if with_cuda else "cpu"
    # One directory per source tree: ninja's build file names the sources by path, so two checkouts (or an
    # installed copy and a checkout) sharing one directory would rebuild each time the other had built.
    tree = hashlib.sha1(str(_CSRC.resolve()).encode()).hexdigest()[:8]
    return Path.home() / ".cache" / "upbench" / "build" / f"{torch.__version__}-{flavour}-{tree}"


def _remove_stale_lock(build_dir: Path) -> str | None:
    lock = build_dir / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    if age < _STALE_LOCK_S:
        return None  # probably a build running in another process: let cpp_extension wait for it
    lock.unlink(missing_ok=True)
    return f"removed a stale build lock ({age / 60:.0f} min old, left by a killed build): {lock}"


def _needs_compiling(build_dir: Path, sources: list[str]) -> bool:
    """Whether the library is missing or older than a source: then the build compiles (tens of seconds)."""
    library = build_dir / f"{_NAME}.so"
    if not library.exists():
        return True
    built = library.stat().st_mtime
    headers = [str(p) for p in _CSRC.rglob("*.h")]
    return any(Path(source).stat().st_mtime > built for source in [*sources, *headers])


def _say(message: str) -> None:
    """A progress line on stderr: a build that takes half a minute must not look like a hang."""
    print(f"upbench: {message}", file=sys.stderr, flush=True)


def _compile_flags() -> tuple[list[str], list[str]]:
    # at::parallel_for only runs in parallel when the extension itself is compiled with OpenMP
    # (ATen/ParallelOpenMP.h is header-only); torch's Linux wheels ship libgomp, which the dynamic
    # loader shares with the extension because the soname matches.
    # -ffp-contract=fast lets the AVX2 / AVX-512 bodies of the kernels (csrc/cpu/simd.h) fuse a * b + c
    # into one FMA; ISO C++ mode, which cpp_extension selects, turns contraction off.
    # --exclude-libs,ALL: a compiler that links its own libstdc++ statically (CXX=/opt/gcc/bin/g++ on the
    # H100 machines) would otherwise export that copy's symbols, some of which the loader then binds to the
    # process's libstdc++ (torch's): the first error message the extension formatted crashed Python
    # (SIGSEGV in std::ostream inside the extension). Hidden, the copy stays whole; with the usual shared
    # libstdc++ there is no static archive and the flag changes nothing.
    if sys.platform.startswith("linux"):
        return ["-O3", "-ffp-contract=fast", "-fopenmp"], ["-fopenmp", "-Wl,--exclude-libs,ALL"]
    return ["-O3", "-ffp-contract=fast"], []


def _refusal(with_cuda: bool) -> str | None:
    """Why the compiled ops must not be built here, if they must not."""
    if os.environ.get("UPBENCH_NO_COMPILE", "") not in ("", "0"):
        return "UPBENCH_NO_COMPILE is set: the compiled ops were not built"
    if not with_cuda and torch.cuda.is_available():
        # A library without the CUDA kernels would load and pass for available, and every operator on
        # the GPU would then fail in its compiled path instead of taking the reference one.
        return ("torch sees a GPU, but no CUDA toolkit was found to build the CUDA kernels with "
                "(install one with nvcc, or set CUDA_HOME to it)")
    return None


def _load(info: dict[str, Any]) -> None:
    """Compile (where a source changed) and load the library into ``info``'s build folder, then register the
    ops' Python parts; ``info`` gets the notes, the time it took, whether it compiled and the library."""
    from torch.utils.cpp_extension import load

    build_dir, with_cuda = Path(info["build_dir"]), info["with_cuda"]
    build_dir.mkdir(parents=True, exist_ok=True)
    note = _remove_stale_lock(build_dir)
    if note:
        info["notes"].append(note)
    cflags, ldflags = _compile_flags()
    compiling = _needs_compiling(build_dir, info["sources"])
    info["compiled"] = compiling
    if (build_dir / "lock").exists():
        _say(f"waiting for another process building the compiled ops in {build_dir} (its lock file exists)")
    elif compiling:
        _say(f"compiling the {'C++/CUDA' if with_cuda else 'C++'} window ops (first use or changed sources; "
             f"about a minute on 2 cores{', more with CUDA' if with_cuda else ''}) in {build_dir} ...")
    start = time.perf_counter()
    library = load(name=_NAME, sources=info["sources"], extra_cflags=cflags, extra_cuda_cflags=["-O3"],
                   extra_ldflags=ldflags, build_directory=str(build_dir), is_python_module=False, verbose=False)
    info["build_seconds"] = round(time.perf_counter() - start, 2)
    if compiling:
        _say(f"compiled ops ready in {info['build_seconds']:.0f} s")
    info["library"] = str(library) if library is not None else None
    _op_registrations.register()


def _build() -> dict[str, Any]:
    toolkit = _cuda_toolkit()
    with_cuda = toolkit is not None
    info: dict[str, Any] = {
        "available": False,
        "build_dir": str(_build_dir(with_cuda)),
        "sources": _sources(with_cuda),
        "with_cuda": with_cuda,
        "cuda_home": toolkit,
        "error": _refusal(with_cuda),
        "notes": [],
        "build_seconds": None,
        "compiled": None,  # True: sources were compiled in this process; False: an up-to-date library was loaded
        "library": None,
    }
    if info["error"] is not None:
        return info
    try:
        _load(info)
    except Exception as exc:  # noqa: BLE001 - any build failure means "fall back", with the reason
        text = f"{type(exc).__name__}: {exc}"
        if len(text) > _ERROR_TAIL_CHARS:
            text = "...\n" + text[-_ERROR_TAIL_CHARS:]
        info["error"] = text
        return info
    info["available"] = True
    return info


def _ensure_built() -> dict[str, Any]:
    global _result
    if _result is not None:  # every op call lands here: skip the lock once the outcome is known
        return _result
    with _lock:
        if _result is None:
            _result = _build()
            if not _result["available"]:
                warnings.warn(
                    f"upbench compiled ops are unavailable; falling back to the pure-PyTorch reference "
                    f"path (build dir {_result['build_dir']}). Reason:\n{_result['error']}",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return _result


def compiled_available() -> bool:
    """Build the ops on first call (cached for the process); True when torch.ops.upbench works."""
    return bool(_ensure_built()["available"])


def require_compiled(operator: str) -> None:
    """Raise RuntimeError naming `operator` and the build error when the compiled ops are missing."""
    info = _ensure_built()
    if not info["available"]:
        raise RuntimeError(f"{operator} needs the compiled upbench ops, which are unavailable: {info['error']}")


def build_info() -> dict[str, Any]:
    """Build directory, sources, whether CUDA sources were included, and the error if any."""
    info = _ensure_built()
    return {**info, "sources": list(info["sources"]), "notes": list(info["notes"])}


# ---- public ops --------------------------------------------------------------------------------------

def local_similarity(query: torch.Tensor, key: torch.Tensor, K: int) -> torch.Tensor:
    """query (N, d, 2H, 2W), key (N, d, H, W) -> logits (N, K*K, 2H, 2W)."""
    require_compiled("upbench.kernels.local_similarity")
    return torch.ops.upbench.local_similarity(query, key, K)


def dynamic_assembly(weights: torch.Tensor, x: torch.Tensor, K: int) -> torch.Tensor:
    """weights (N, K*K, 2H, 2W), x (N, C, H, W) -> (N, C, 2H, 2W)."""
    require_compiled("upbench.kernels.dynamic_assembly")
    return torch.ops.upbench.dynamic_assembly(weights, x, K)


def sapa_fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, K: int) -> torch.Tensor:
    """dynamic_assembly(softmax(local_similarity(query, key, K), dim=1), value, K) without storing the
    (N, K*K, 2H, 2W) kernel."""
    require_compiled("upbench.kernels.sapa_fused")
    return torch.ops.upbench.sapa_fused(query, key, value, K)


def reflect_similarity(query: torch.Tensor, key: torch.Tensor, K: int) -> torch.Tensor:
    """query, key (N, d, h, w) -> logits (N, K*K, h, w): <query at a pixel, key at each tap of its K x K
    window>, the window reflect-padded at the border (FeatUp's JBU range kernel)."""
    require_compiled("upbench.kernels.reflect_similarity")
    return torch.ops.upbench.reflect_similarity(query, key, K)


def reflect_assembly(weights: torch.Tensor, x: torch.Tensor, K: int) -> torch.Tensor:
    """weights (N, K*K, h, w), x (N, C, h, w) -> (N, C, h, w): each pixel the weighted sum of its reflect-padded
    K x K window of x (FeatUp's AdaptiveConv)."""
    require_compiled("upbench.kernels.reflect_assembly")
    return torch.ops.upbench.reflect_assembly(weights, x, K)


def norm_linear(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Linear(LayerNorm(x)) over the channels of each pixel of x (N, C, H, W) -> (N, d, H, W), with the
    LayerNorm's (gamma, beta, eps) and the Linear's (weight (d, C), bias), read as NCHW: no channels-last
    copy. The LayerNorm is folded into the projection (csrc/norm_linear.h)."""
    require_compiled("upbench.kernels.norm_linear")
    return torch.ops.upbench.norm_linear(x, gamma, beta, weight, bias, eps)
