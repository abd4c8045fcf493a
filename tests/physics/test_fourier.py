"""Fourier helpers: grids against numpy, shifts against integer rolls, round trips."""

import numpy as np
import pytest
import torch

from cesped.physics.fourier import centered_irfft2, centered_rfft2, fftfreq_grid_2d, shift_images


@pytest.mark.parametrize("n", [7, 8])
def test_grid_matches_numpy(n):
    ky, kx = fftfreq_grid_2d(n, dtype=torch.float64)
    assert ky.shape == (n, n // 2 + 1)
    np.testing.assert_allclose(ky[:, 0].numpy(), np.fft.fftfreq(n))
    np.testing.assert_allclose(kx[0].numpy(), np.fft.rfftfreq(n))
    ky_full, kx_full = fftfreq_grid_2d(n, rfft=False, dtype=torch.float64)
    assert kx_full.shape == (n, n)
    np.testing.assert_allclose(kx_full[0].numpy(), np.fft.fftfreq(n))


def test_bad_size():
    with pytest.raises(ValueError, match="n must be"):
        fftfreq_grid_2d(0)


@pytest.mark.parametrize("n", [16, 15])
def test_integer_shift_equals_roll(n):
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, n, n, generator=g, dtype=torch.float64)
    shifts = torch.tensor([[2, -3], [0, 5], [-1, 1]], dtype=torch.float64)  # [x, y]
    out = centered_irfft2(shift_images(centered_rfft2(img), shifts), n)
    for i in range(3):
        expected = torch.roll(img[i], shifts=(int(shifts[i, 1]), int(shifts[i, 0])), dims=(0, 1))
        torch.testing.assert_close(out[i], expected)


def test_centered_transform_of_symmetric_image_is_real():
    n = 16
    y, x = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    img = torch.exp(-(x**2 + y**2) / 8.0).double()
    ft = centered_rfft2(img)
    assert ft.imag.abs().max() < 1e-12
    torch.testing.assert_close(centered_irfft2(ft, n), img)


def test_subpixel_shift_moves_centroid():
    n = 32
    y, x = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    img = torch.exp(-(x**2 + y**2) / 8.0).double()
    out = centered_irfft2(shift_images(centered_rfft2(img), torch.tensor([0.4, -1.3])), n)
    cx = (out * x).sum() / out.sum()
    cy = (out * y).sum() / out.sum()
    assert abs(float(cx) - 0.4) < 1e-6 and abs(float(cy) + 1.3) < 1e-6
