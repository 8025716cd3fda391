"""Where a measurement was taken: device, software versions, CPU, threads, git commit, time."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import re
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

from .allocator import settle_allocator
from .files import digest_files
from .vocabulary import DIRTY

REPO_ROOT = Path(__file__).resolve().parents[1]


def best_device() -> str:
    """The device a default run measures on: the GPU when one is present."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_from_environment(variable: str = "UPBENCH_DEVICE") -> str:
    """The device the environment variable names, else the best present (for tools without flags)."""
    return os.environ.get(variable) or best_device()


def check_device(device: str) -> None:
    """Raise ValueError unless ``device`` can run here (a spec may be written on another machine)."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"device {device!r}: expected cpu, cuda or cuda:<index>") from None
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested, but torch.cuda.is_available() is False here")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested, but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif kind != "cpu" or torch.device(device).index is not None:
        raise ValueError(f"device {device!r}: expected cpu, cuda or cuda:<index>")


@lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=None)
def device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def device_slug(device: str) -> str:
    """A folder name for a device's results: ``cpu``, or the GPU's name (``nvidia-h100-80gb-hbm3``)."""
    if torch.device(device).type == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-") or "cuda"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def upbench_version() -> str:
    try:
        return metadata.version("upbench")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def installed_code() -> str:
    """``upbench <version> files <hash>`` of an installed upbench: the version alone is the same for every
    commit, the hash of its Python and kernel sources is not."""
    package = Path(__file__).resolve().parent
    sources = [*sorted(package.rglob("*.py")), *sorted(package.rglob("*.cpp")), *sorted(package.rglob("*.cu")),
               *sorted(package.rglob("*.h"))]
    return f"upbench {upbench_version()} files {digest_files(sources)}"


@lru_cache(maxsize=None)
def git_commit() -> str:
    """HEAD's hash of the upbench checkout, with ``+dirty.<hash of the edits>`` when tracked files differ from
    it (two runs on the same uncommitted edits agree, runs on different ones do not). Outside a
    checkout of upbench, :func:`installed_code`: an installed upbench may sit in a virtual environment inside
    the user's own repository, whose commit says nothing of upbench's code."""
    top = _git("rev-parse", "--show-toplevel")
    commit = _git("rev-parse", "HEAD")
    if not top or not commit or Path(top).resolve() != REPO_ROOT:
        return installed_code()
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    if not dirty:
        return commit
    edits = _git("diff", "HEAD", "--binary") or ""
    return f"{commit}{DIRTY}.{hashlib.sha256(edits.encode()).hexdigest()[:8]}"


def utc_timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def file_timestamp() -> str:
    """A UTC timestamp usable as a file name: 20250101T120000Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def load_average() -> float:
    """The 1-minute load average: above the core count, other work competes with the CPU timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return float("nan")


def environment(device: str) -> dict[str, object]:
    """The environment columns of a row measured on ``device`` now (:data:`upbench.vocabulary.ENVIRONMENT_FIELDS`)."""
    return {
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "allocator": settle_allocator(),
        "load_1min": load_average(),
        "git_commit": git_commit(),
        "timestamp": utc_timestamp(),
    }
