"""Data module: seeded 70/30 split and batched augmentation whose labels follow the images."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cesped.geometry.rotations import random_rotations, rotation_z
from cesped.training.datamodule import ParticlesDataModule


def test_split_is_seeded_disjoint_and_70_30():
    dm = ParticlesDataModule("unused", 0, train_fraction=0.7, split_seed=113)
    tr, va = dm.split_indices(1000)
    assert (
        len(tr) == 700 and len(va) == 300 and not set(tr) & set(va) and set(tr) | set(va) == set(range(1000))
    )
    assert (tr, va) == ParticlesDataModule("unused", 1, split_seed=113).split_indices(1000)
    assert tr != ParticlesDataModule("unused", 0, split_seed=114).split_indices(1000)[0]
    with pytest.raises(ValueError, match="halfset"):
        ParticlesDataModule("unused", 2)


def test_training_batches_are_repeated_and_augmented_consistently():
    only_rot90 = dict(
        p_rot90=1.0,
        p_rotation=0.0,
        p_shift=0.0,
        p_zoom=0.0,
        p_gauss_noise=0.0,
        p_unif_noise=0.0,
        p_blur=0.0,
        p_erasing=0.0,
    )
    dm = ParticlesDataModule("unused", 0, n_augmented_copies=2, augmentation=only_rot90, seed=3)
    dm.trainer = SimpleNamespace(training=True, global_rank=0)
    dm._dataset = SimpleNamespace(sampling_rate=1.0)
    imgs = torch.randn(4, 1, 17, 17)  # odd side: the centred quarter turn is torch.rot90
    rot = random_rotations(4, torch.Generator().manual_seed(0)).float()
    batch = (["a", "b", "c", "d"], imgs, rot, torch.zeros(4, 2), torch.ones(4))
    ids, out, r, sh, conf = dm.on_after_batch_transfer(batch, 0)
    assert (
        ids == ["a", "a", "b", "b", "c", "c", "d", "d"] and out.shape == (8, 1, 17, 17) and conf.shape == (8,)
    )
    for j in range(8):
        src = imgs[j // 2]
        ks = [k for k in range(4) if torch.equal(out[j], torch.rot90(src, k, dims=(-2, -1)))]
        assert len(ks) == 1
        # rot90(k) turns the content by -90k degrees: label R -> R·Rz(90k) (cesped.data.augment)
        expected = rot[j // 2] @ rotation_z(torch.tensor(90.0 * ks[0])).float()
        torch.testing.assert_close(r[j], expected, atol=1e-5, rtol=0)
    dm.trainer = SimpleNamespace(training=False, global_rank=0)
    assert dm.on_after_batch_transfer(batch, 0) is batch  # validation and prediction: untouched


def test_star_file_registration_is_reused_not_accumulated(tmp_path):
    """open_particles(star=...) registers the file once per version under the cache, atomically."""
    import os
    from pathlib import Path

    from cesped.settings import cache_dir
    from cesped.simulation.entry import simulate_entry
    from cesped.training.datamodule import open_particles

    simulate_entry(
        tmp_path / "tiny", "4e43", n_particles=8, pixel_size=4.0, box=32, snr=1.0, seed=0, progress=False
    )
    star = tmp_path / "tiny" / "particles_0.star"
    root = Path(cache_dir()) / "star_entries"
    before = set(root.iterdir()) if root.is_dir() else set()
    a = open_particles(star=star)
    b = open_particles(star=star)
    new = set(root.iterdir()) - before
    assert len(new) == 1 and not any(p.name.startswith(".") for p in new)  # no temp dir left over
    assert len(a) == len(b) == 4 and a[0][0] == b[0][0]
    torch.testing.assert_close(a[1][1], b[1][1])
    st = star.stat()
    os.utime(star, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an edited file: a new registration
    open_particles(star=star)
    assert len(set(root.iterdir()) - before) == 2
    with pytest.raises(FileNotFoundError, match="missing.star"):
        open_particles(star=tmp_path / "missing.star")
