"""A tiny, high-SNR simulated entry shared by the refinement tests (built once per session)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_entry(tmp_path_factory):
    """``(benchmark_dir, name)`` of a 6MSM entry: 2 x 150 particles, 64 px, 3 Å/px, SNR 2."""
    from cesped.simulation import simulate_entry

    root = tmp_path_factory.mktemp("refine_bench")
    simulate_entry(
        root / "tiny6msm",
        structure="6msm",
        n_particles=300,
        pixel_size=3.0,
        box=64,
        snr=2.0,
        seed=3,
        progress=False,
    )
    return root, "tiny6msm"
