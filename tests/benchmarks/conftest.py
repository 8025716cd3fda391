"""pytest-benchmark suite of the upsamplers: collected only when asked for.

Run it with::

    python -m pytest tests/benchmarks --benchmark-only --benchmark-autosave

(``UPBENCH_DEVICE=cuda:1`` picks a device; the default is the best present.) Saved runs go to
``.benchmarks/`` and compare with ``pytest-benchmark compare`` or ``--benchmark-compare``. A plain
``python -m pytest`` does not even import this folder's tests, so the normal run stays fast and
never triggers a kernel build.
"""
from __future__ import annotations

from pathlib import Path

from upbench.environment import device_from_environment, environment

HERE = Path(__file__).resolve().parent


def _benchmarks_requested(config) -> bool:
    try:
        return bool(config.getoption("benchmark_only"))
    except ValueError:  # pytest-benchmark is not installed
        return False


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if collection_path.is_file() and HERE in collection_path.resolve().parents and not _benchmarks_requested(config):
        return True
    return None


def pytest_benchmark_update_machine_info(config, machine_info: dict) -> None:
    """pytest-benchmark records the CPU and Python; add the device and the torch / CUDA versions."""
    device = device_from_environment()
    info = environment(device)
    info.pop("timestamp")
    machine_info["upbench"] = {"device": device, **info}
