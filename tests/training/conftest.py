"""Keep the tests of this folder on one thread (the CI machines are small and shared); the tiny entry."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_entry(tmp_path_factory):
    """A benchmark folder with the simulated entry ``tiny`` (64 particles of 32 px, C2)."""
    from cesped.simulation.entry import simulate_entry

    bench = tmp_path_factory.mktemp("bench")
    simulate_entry(
        bench / "tiny",
        "4e43",
        n_particles=64,
        pixel_size=4.0,
        box=32,
        snr=1.0,
        symmetry="C2",
        seed=0,
        progress=False,
    )
    return bench
