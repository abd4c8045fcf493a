"""Shared test configuration.

* Tests marked ``relion`` are skipped when RELION's binaries are not on PATH.
* Tests marked ``gpu`` are skipped without CUDA.
* Every test session gets its own benchmark and cache directories, so tests never read or
  write a user's data (``CESPED_BENCHMARK_DIR``, ``CESPED_CACHE_DIR``).
"""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_collection_modifyitems(config, items):
    have_relion = shutil.which("relion_reconstruct") is not None
    try:
        import torch

        have_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        have_cuda = False
    skip_relion = pytest.mark.skip(reason="RELION binaries (relion_reconstruct) not on PATH")
    skip_gpu = pytest.mark.skip(reason="CUDA not available")
    for item in items:
        if "relion" in item.keywords and not have_relion:
            item.add_marker(skip_relion)
        if "gpu" in item.keywords and not have_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cesped_dirs(tmp_path_factory):
    """Point the default benchmark and cache directories at session-private folders."""
    old = {k: os.environ.get(k) for k in ("CESPED_BENCHMARK_DIR", "CESPED_CACHE_DIR", "CESPED_ZENODO_URL")}
    os.environ["CESPED_BENCHMARK_DIR"] = str(tmp_path_factory.mktemp("benchmark"))
    os.environ["CESPED_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    # Never reach the real Zenodo from tests: an unroutable local port fails fast.
    os.environ["CESPED_ZENODO_URL"] = "http://127.0.0.1:9/api/records/"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_entry(tmp_path_factory):
    """``(benchmark_dir, name)`` of a 6MSM entry: 2 x 150 particles, 64 px, 3 Å/px, SNR 2 (the
    refinement tests and the CUDA refinement test)."""
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
