"""Fixtures of the data tests: a fake Zenodo records API on 127.0.0.1, tiny local entries."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import FakeZenodo, tiny_tables, write_entry


@pytest.fixture
def fake_zenodo():
    """Factory: ``with fake_zenodo(records) as srv: ...`` (see :class:`FakeZenodo`)."""
    return FakeZenodo


@pytest.fixture
def tiny_entry(tmp_path):
    """A 24-particle, 32 px entry 'tiny' (half 0 and 1) in tmp_path/bench with random images."""
    root = tmp_path / "bench"
    for h in (0, 1):
        parts, optics = tiny_tables(24, 32, seed=h)
        imgs = np.random.default_rng(10 + h).normal(size=(24, 32, 32)).astype(np.float32)
        write_entry(root, "tiny", h, imgs, parts, optics)
    return root


@pytest.fixture(autouse=True)
def _no_original_package_folder(monkeypatch):
    """Tests never look at the original package's data folder in the real home directory."""
    monkeypatch.setenv("CESPED_ORIGINAL_BENCHMARK_DIR", "")
