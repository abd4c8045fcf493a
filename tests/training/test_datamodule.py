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
