"""Preprocessing: normalisation, CTF correction, crop and Fourier resize against analytic references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cesped.data import preprocess as pp
from cesped.physics.ctf import compute_ctf


def _np_background(n, radius):
    i, j = np.mgrid[:n, :n]
    return np.hypot(i - n // 2, j - n // 2) > radius


@pytest.mark.parametrize("n", [32, 33])
def test_normalize_background_mean0_std1(n):
    g = torch.Generator().manual_seed(0)
    imgs = 5.0 + 3.0 * torch.randn(6, n, n, generator=g, dtype=torch.float64)
    imgs[:, n // 2 - 4 : n // 2 + 4, n // 2 - 4 : n // 2 + 4] += 100.0  # a "particle" in the middle
    out = pp.normalize_background(imgs)
    bg = _np_background(n, n / 2)
    vals = out.numpy()[:, bg]
    np.testing.assert_allclose(vals.mean(-1), 0.0, atol=1e-10)
    np.testing.assert_allclose(vals.std(-1, ddof=1), 1.0, atol=1e-6)
    # an affine map of the input gives the same output (independent of offset and gain)
    np.testing.assert_allclose(pp.normalize_background(7 * imgs - 2).numpy(), out.numpy(), atol=1e-8)


def test_background_mask_bad_radius():
    with pytest.raises(ValueError, match="no background"):
        pp.background_mask(32, 30)


def _band_limited(n, rng):
    """Random band-limited spectrum -> image (centre n//2)."""
    spec = np.zeros((n, n // 2 + 1), complex)
    spec[: n // 4, : n // 4] = rng.normal(size=(n // 4, n // 4)) + 1j * rng.normal(size=(n // 4, n // 4))
    spec[-n // 4 :, : n // 4] = rng.normal(size=(n // 4, n // 4)) + 1j * rng.normal(size=(n // 4, n // 4))
    return np.fft.rfft2(np.fft.irfft2(spec, s=(n, n)))  # Hermitian (spectrum of a real image)


def test_phase_flip_gives_abs_ctf_modulation():
    n = 64
    rng = np.random.default_rng(1)
    ctf = compute_ctf(
        defocus_u=[15000.0, 9000.0],
        defocus_v=[12000.0, 8000.0],
        defocus_angle=[33.0, -70.0],
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        pixel_size=1.5,
        image_size=n,
        phase_shift=[0.0, 40.0],
        dtype=torch.float64,
    )
    spec = torch.from_numpy(np.stack([_band_limited(n, rng) for _ in range(2)]))
    modulated = torch.fft.fftshift(torch.fft.irfft2(spec * ctf, s=(n, n)), dim=(-2, -1))
    expected = torch.fft.fftshift(torch.fft.irfft2(spec * ctf.abs(), s=(n, n)), dim=(-2, -1))
    got = pp.phase_flip(modulated, ctf)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-10)
    # the corrected spectrum has the sign of the signal everywhere the CTF is non-zero
    ft = torch.fft.rfft2(torch.fft.ifftshift(got, dim=(-2, -1)))
    keep = (spec.abs() > 1e-6) & (ctf.abs() > 1e-6)
    ratio = (ft / spec)[keep]
    assert (ratio.real >= -1e-9).all()


def test_wiener_filter_inverts_ctf_for_small_constant():
    n = 32
    rng = np.random.default_rng(2)
    ctf = compute_ctf(
        defocus_u=10000.0,
        defocus_v=10000.0,
        defocus_angle=0.0,
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        pixel_size=3.0,
        image_size=n,
        dtype=torch.float64,
    )
    spec = torch.from_numpy(_band_limited(n, rng))[None]
    img = torch.fft.fftshift(torch.fft.irfft2(spec * ctf, s=(n, n)), dim=(-2, -1))
    k = 1e-3
    got = torch.fft.rfft2(torch.fft.ifftshift(pp.wiener_filter(img, ctf, k), dim=(-2, -1)))
    np.testing.assert_allclose(got.numpy(), (spec * ctf**2 / (ctf**2 + k)).numpy(), atol=1e-9)
    with pytest.raises(ValueError, match="wiener_constant"):
        pp.wiener_filter(img, ctf, 0.0)


def test_phase_flip_shape_check():
    with pytest.raises(ValueError, match="rfft2 shape"):
        pp.phase_flip(torch.zeros(2, 16, 16), torch.zeros(2, 16, 16))


@pytest.mark.parametrize("n,factor", [(64, 0.25), (65, 0.25), (100, 0.15), (32, 0.0)])
def test_crop_center_keeps_centre(n, factor):
    img = torch.zeros(1, n, n)
    img[0, n // 2, n // 2] = 1.0
    img[0, n // 2 + 3, n // 2 - 2] = 2.0
    out = pp.crop_center(img, factor)
    m = int(n * (1 - factor))
    assert out.shape == (1, m, m)
    assert out[0, m // 2, m // 2] == 1.0 and out[0, m // 2 + 3, m // 2 - 2] == 2.0
    with pytest.raises(ValueError, match="image_size_factor_for_crop"):
        pp.crop_center(img, 1.0)


def _cosines(n, m_grid, terms):
    """f(u, v) = Σ A cos(2π (kx u + ky v)/n + φ) sampled on an m-pixel grid spanning the same box."""
    c = np.arange(m_grid) - m_grid // 2
    v, u = np.meshgrid(c * n / m_grid, c * n / m_grid, indexing="ij")  # u = x (col), v = y (row), in input px
    out = np.zeros((m_grid, m_grid))
    for amp, kx, ky, ph in terms:
        out += amp * np.cos(2 * np.pi * (kx * u + ky * v) / n + ph)
    return out


@pytest.mark.parametrize("n,m", [(64, 40), (64, 41), (63, 96), (48, 128), (50, 50)])
def test_fourier_resize_band_limited_is_exact(n, m):
    terms = [(1.0, 0, 0, 0.0), (0.7, 3, -5, 0.3), (0.4, -7, 2, 1.1), (0.25, 9, 9, -0.5)]
    img = torch.from_numpy(_cosines(n, n, terms))[None]
    out = pp.fourier_resize(img, m)
    assert out.shape == (1, m, m)
    np.testing.assert_allclose(out[0].numpy(), _cosines(n, m, terms), atol=1e-10)


def test_preprocess_pipeline_shapes_and_errors():
    imgs = torch.randn(3, 40, 40)
    out = pp.preprocess_images(imgs, None, ctf_correction="none", crop_factor=0.25, image_size=24)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="needs the CTF"):
        pp.preprocess_images(imgs, None, ctf_correction="phase_flip")
    with pytest.raises(ValueError, match="ctf_correction"):
        pp.preprocess_images(imgs, None, ctf_correction="flip")


def test_normalize_background_float32_large_offset():
    """Raw detector counts: a large offset must not cost precision (two-pass statistics)."""
    g = torch.Generator().manual_seed(1)
    imgs = 1.0e4 + torch.randn(3, 64, 64, generator=g)
    out = pp.normalize_background(imgs)
    vals = out[:, torch.from_numpy(_np_background(64, 32))].double()
    # float32 resolves 1e4 to ~1e-3: the mean is good to that; a one-pass variance would be off by ~1
    np.testing.assert_allclose(vals.mean(1).numpy(), 0.0, atol=1e-2)
    np.testing.assert_allclose(vals.std(1).numpy(), 1.0, atol=1e-3)
