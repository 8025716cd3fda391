"""Shared fixtures for the formula / counting / operator / error / Table 1 tests.

Kept deliberately small: it only makes the repository root importable (so ``pytest`` works from any
directory without an install) and offers a seeded generator. Nothing here changes how other test
files behave.
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
def single_thread():
    """One intra-op thread for the duration of a test (restored after): counting sweeps and small
    forwards are faster that way on a shared 2-core machine. Only the tests that ask for it get it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
