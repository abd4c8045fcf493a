"""The reference's solvent mask, made from the map alone (cesped.refinement.mask)."""

from __future__ import annotations

import numpy as np
import pytest

from cesped.io.mrc import read_map
from cesped.refinement.mask import MAX_SPHERE_FRACTION, solvent_mask


def _corr(a, b) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_mask_from_a_noisy_map_covers_the_particle_and_removes_its_noise(tiny_entry):
    """Independent reference: the true map. A noisy copy's mask holds the true map's density,
    covers a small part of the box, and the masked copy correlates better with the truth."""
    root, name = tiny_entry
    truth, px = read_map(root / name / "gt_map.mrc")
    truth = truth.astype(np.float64)
    rng = np.random.default_rng(0)
    noisy = truth + rng.normal(scale=0.5 * truth.std(), size=truth.shape)
    m = solvent_mask(noisy, px)
    assert m.mask is not None and m.mask.shape == truth.shape
    assert m.mask.min() >= 0.0 and m.mask.max() <= 1.0
    dense = truth > 0.05 * truth.max()
    assert (m.mask[dense] >= 0.99).mean() > 0.99  # the particle is inside
    assert np.clip(truth, 0, None)[m.mask >= 0.5].sum() > 0.98 * np.clip(truth, 0, None).sum()
    assert m.fraction < 0.25 and f"{m.fraction:.1%}" in m.note
    # the noise outside the mask is gone: the error energy falls to about the masked fraction
    assert ((noisy * m.mask - truth) ** 2).sum() < 0.3 * ((noisy - truth) ** 2).sum()
    assert _corr(noisy * m.mask, truth) > _corr(noisy, truth) + 0.05


@pytest.mark.parametrize(
    "radius, extend_A, why",
    [(0.2, 16.0, f"{MAX_SPHERE_FRACTION:.0%}"), (0.45, 8.0, "nothing above the threshold")],
)
def test_a_mask_that_fills_the_sphere_or_finds_nothing_is_refused_and_said(radius, extend_A, why):
    """A particle that, dilated, fills the box's sphere (a ball of radius 0.2 n grown by 8 voxels),
    or one so large that the 'solvent' statistics are its own (0.45 n): no mask, and the note says
    the reference stays unmasked."""
    n = 32
    x = np.arange(n) - n // 2
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    rng = np.random.default_rng(1)
    ball = (r < radius * n).astype(np.float64) + rng.normal(scale=0.05, size=(n, n, n))
    m = solvent_mask(ball, 2.0, extend_A=extend_A)
    assert m.mask is None and m.fraction == 0.0
    assert "unmasked" in m.note and why in m.note


@pytest.mark.parametrize(
    "vol, px, text",
    [
        (np.zeros((8, 8, 9)), 1.0, "cubic"),
        (np.full((8, 8, 8), np.nan), 1.0, "non-finite"),
        (np.zeros((8, 8, 8)), 0.0, "pixel_size"),
    ],
)
def test_bad_maps_are_refused(vol, px, text):
    with pytest.raises(ValueError, match=text):
        solvent_mask(vol, px)
