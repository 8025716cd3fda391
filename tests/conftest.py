"""Shared fixtures for the formula / counting / operator / error / Table 1 tests.

It makes the repository root importable (so ``pytest`` works from any directory without an install),
offers a seeded generator and a registry that forgets what a test registered. Nothing here changes how
other test files behave unless they ask for a fixture.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator with a fixed seed: every test that draws random inputs draws the same ones."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def compiled_ops() -> None:
    """Skips a test of an operator's compiled path where the kernels did not build (the reason is the build's)."""
    from upbench import kernels

    if not kernels.compiled_available():
        pytest.skip(f"compiled ops unavailable: {kernels.build_info()['error']}")


@pytest.fixture
def single_thread():
    """One intra-op thread for the duration of a test (restored after): counting sweeps and small
    forwards are faster that way on a shared 2-core machine. Only the tests that ask for it get it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def plain_pair() -> tuple[str, str]:
    """Two operators without knobs or guide: the cheapest to measure (test_sweep has its own, of one or two)."""
    import upbench

    names = [n for n in upbench.available() if not upbench.get(n).knobs and not upbench.get(n).needs_guide]
    if len(names) < 2:
        pytest.skip("needs two operators without knobs or guide")
    return names[0], names[1]


@pytest.fixture
def isolated_registry(monkeypatch):
    """Whatever a test registers (operators, plugin sources, counting rules) is gone after it, so the other
    test files see the built-ins only. Yields the built-in operator names."""
    from upbench import registry, rules
    from upbench.counting import _count_operator

    available = registry.available()  # the built-ins load before the snapshot
    for name in ("_REGISTRY", "_ORIGINS", "_loaded_sources", "_REPLAY", "_SOURCE_DIGESTS"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    monkeypatch.setattr(rules, "_RULES", dict(rules._RULES))
    yield available
    _count_operator.cache_clear()


@pytest.fixture
def counted_not_timed(monkeypatch):
    """Sweep rows counted for real but not timed (1.5 ms, 1 MiB, 5 runs): a report's input in a second."""
    import upbench.measure as measure_module

    def fake(config, spec, row) -> None:
        row.update(measure_module.count_config(config, spec.policies), latency_median_ms=1.5, peak_mem_bytes=2**20,
                   runs=5, status="ok")

    monkeypatch.setattr(measure_module, "_measure", fake)
