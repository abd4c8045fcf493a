"""Tiny entries and a tiny training configuration for the protocol tests (one torch thread)."""

from __future__ import annotations

import pytest

# tests/training's tiny network, a few batches, and a cheap prediction (order-1 grid, no quarter turns)
TINY_TRAIN = [
    "model.net.lmax=3",
    "model.net.s2_fdim=8",
    "model.net.so3_fdim=4",
    "model.net.hp_order_projector=1",
    "model.net.hp_order_s2=1",
    "model.net.hp_order_so3=1",
    "model.net.so3_act_resolution=4",
    "data.batch_size=8",
    "data.n_augmented_copies=1",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "prediction.batch_size=32",
    "prediction.order=null",
    "prediction.rot90_average=false",
]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory):
    """A benchmark directory with two tiny simulated entries: ``tinyA`` (C1) and ``tinyB`` (C2)."""
    from cesped.simulation.entry import simulate_entry

    bench = tmp_path_factory.mktemp("bench")
    for name, sym, seed in (("tinyA", "C1", 0), ("tinyB", "C2", 1)):
        simulate_entry(
            bench / name,
            "4e43",
            n_particles=48,
            pixel_size=4.0,
            box=32,
            snr=1.0,
            symmetry=sym,
            seed=seed,
            progress=False,
        )
    return bench
