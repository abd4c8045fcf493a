"""RELION's iterative gridding weights: the blob transform and the fixed point of the iteration,
checked against independent computations (scipy's Bessel functions, a direct convolution)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

from cesped.reconstruction.gridding import BLOB_ALPHA, BLOB_RADIUS, blob_transform, pipe_menon_weights


def test_blob_transform_is_the_kaiser_bessel_transform():
    w = np.linspace(0.0, 0.49, 50)
    s = np.sqrt(BLOB_ALPHA**2 - (2 * np.pi * BLOB_RADIUS * w) ** 2)
    ref = scipy.special.iv(1.5, s) / s**1.5 / (scipy.special.iv(1.5, BLOB_ALPHA) / BLOB_ALPHA**1.5)
    np.testing.assert_allclose(blob_transform(w), ref, rtol=1e-10)
    assert blob_transform(0.0) == pytest.approx(1.0) and blob_transform(0.5) == 0.0  # table ends at 0.5
    # the transform of a blob is that of a positive bump: its integral is the value at 0
    x = np.linspace(0, 3.0, 3001)
    blob = scipy.special.iv(0, BLOB_ALPHA * np.sqrt(np.clip(1 - (x / BLOB_RADIUS) ** 2, 0, None)))
    blob[x > BLOB_RADIUS] = 0.0
    # 3-D Fourier transform of the radial blob at w: 4π ∫ b(r) r sin(2π w r)/(2π w) dr
    r = np.linspace(1e-9, BLOB_RADIUS, 20001)
    b = scipy.special.iv(0, BLOB_ALPHA * np.sqrt(1 - (r / BLOB_RADIUS) ** 2))
    ft = [
        np.trapezoid(b * r**2, r)
        if wi == 0
        else np.trapezoid(b * r * np.sin(2 * np.pi * wi * r) / (2 * np.pi * wi), r)
        for wi in (0.0, 0.1, 0.2)
    ]
    np.testing.assert_allclose(blob_transform([0.0, 0.1, 0.2]), np.array(ft) / ft[0], rtol=1e-4)


def _centred_grid(box, pad, rng):
    m = box * pad
    p = m + 3
    h = p // 2
    k = np.arange(-h, h + 1)
    kx = np.arange(h + 1)
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    # a smooth, radially falling weight with a random modulation, symmetric on the x = 0 plane
    w = (1.0 + 0.3 * np.cos(r / 3.0)) * np.exp(-r / 10.0) * rng.uniform(0.8, 1.2, r.shape)
    w[:, :, 0] = 0.5 * (w[:, :, 0] + w[::-1, ::-1, 0])
    return w, r, m, p


def test_iteration_reaches_its_fixed_point():
    """((W·w) ⊛ blob)(k) ≈ 1 inside the sphere, with the convolution summed directly."""
    w, r, m, p = _centred_grid(8, 2, np.random.default_rng(0))
    inv = pipe_menon_weights(w, box=8, pad=2, workers=1)
    inside = r < m / 2
    assert np.all(inv[~inside] == 0) and np.all(inv[inside] > 0)
    # full (Hermitian) grid of W·w, then a direct sum with the blob kernel blob(|d|·m/P)
    h = p // 2
    half = inv * w
    full = np.zeros((p, p, p))
    full[:, :, h:] = half
    full[:, :, : h + 1] = half[::-1, ::-1, ::-1]
    d = np.arange(-4, 5)
    dd = np.sqrt(d[:, None, None] ** 2 + d[None, :, None] ** 2 + d[None, None, :] ** 2) * m / p
    kern = np.where(
        dd <= BLOB_RADIUS,
        scipy.special.iv(0, BLOB_ALPHA * np.sqrt(np.clip(1 - (dd / BLOB_RADIUS) ** 2, 0, None))),
        0.0,
    )
    kern /= kern.sum()
    padded = np.pad(full, 4)
    conv = np.zeros_like(full)
    for i, a in enumerate(d):
        for j, b in enumerate(d):
            for q, c in enumerate(d):
                if kern[i, j, q]:
                    conv += kern[i, j, q] * padded[4 + a : 4 + a + p, 4 + b : 4 + b + p, 4 + c : 4 + c + p]
    core = conv[:, :, h:][inside & (r < m / 2 - 4)]  # away from the sphere's edge
    np.testing.assert_allclose(core, 1.0, atol=0.03)
    # a constant weight c gives W = 1/c away from the sphere's edge
    _, r2, m2, _ = _centred_grid(24, 2, np.random.default_rng(1))
    inv_c = pipe_menon_weights(np.where(r2 < m2 / 2, 4.0, 0.0), box=24, pad=2, workers=1)
    rel = np.abs(inv_c[r2 < m2 / 2 - 10] / 0.25 - 1.0)  # the sphere's edge leaves ripples
    assert np.median(rel) < 0.005 and np.quantile(rel, 0.95) < 0.02


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match="P odd"):
        pipe_menon_weights(np.ones((18, 18, 10)), box=8, pad=2)
    with pytest.raises(ValueError, match="smaller than"):
        pipe_menon_weights(np.ones((11, 11, 6)), box=8, pad=2)


def test_sparse_weights_stay_finite():
    """Few particles leave blob neighbourhoods without data: W must stay finite there (it grew
    1e6-fold per iteration past float32's range and turned the whole map into NaN)."""
    from cesped.reconstruction.gridding import pipe_menon_weights

    rng = np.random.default_rng(0)
    p = 33  # box 16, pad 2
    w = np.zeros((p, p, p // 2 + 1))
    idx = rng.integers(0, [p, p, p // 2 + 1], size=(40, 3))
    w[idx[:, 0], idx[:, 1], idx[:, 2]] = rng.uniform(0.5, 2.0, 40)
    W = pipe_menon_weights(w, box=16, pad=2)
    assert np.isfinite(W).all()
    assert np.isfinite(W * w).all() and (W >= 0).all()
