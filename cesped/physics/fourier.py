"""Fourier-space helpers shared by the physics, dataset and reconstruction code.

Conventions
-----------
* Images are real ``(..., n, n)`` arrays indexed ``(y=row, x=col)`` with the real-space centre
  at index ``n // 2``.
* Fourier transforms use the layout of :func:`torch.fft.rfft2` (unshifted, DC at ``[0, 0]``,
  shape ``(..., n, n // 2 + 1)``) after moving the real-space centre to the array origin with
  :func:`torch.fft.ifftshift`. :func:`centered_rfft2` / :func:`centered_irfft2` do exactly that.
* Frequencies are in cycles per pixel; divide by the pixel size (Å) to get Å⁻¹.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "fftfreq_grid_2d",
    "radial_frequency_2d",
    "centered_rfft2",
    "centered_irfft2",
    "shift_images",
]


def fftfreq_grid_2d(
    n: int,
    rfft: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequency grids of a square ``n x n`` image.

    Parameters
    ----------
    n : int
        Image side in pixels (even or odd).
    rfft : bool
        ``True``: the :func:`torch.fft.rfft2` layout ``(n, n // 2 + 1)``; ``False``: the full,
        unshifted :func:`torch.fft.fft2` layout ``(n, n)``.
    device, dtype
        Of the returned tensors.

    Returns
    -------
    (ky, kx) : tuple of torch.Tensor
        Row (y) and column (x) frequencies in cycles per pixel, each of shape ``(n, n // 2 + 1)``
        (or ``(n, n)``), in ``[-0.5, 0.5)``.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"fftfreq_grid_2d: n must be a positive integer, got {n!r}")
    n = int(n)
    ky = torch.fft.fftfreq(n, device=device, dtype=dtype)
    kx = torch.fft.rfftfreq(n, device=device, dtype=dtype) if rfft else ky.clone()
    ky_grid, kx_grid = torch.meshgrid(ky, kx, indexing="ij")
    return ky_grid, kx_grid


def radial_frequency_2d(
    n: int,
    rfft: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Modulus of the spatial frequency, cycles per pixel, same layout as :func:`fftfreq_grid_2d`."""
    ky, kx = fftfreq_grid_2d(n, rfft=rfft, device=device, dtype=dtype)
    return torch.sqrt(ky**2 + kx**2)


def centered_rfft2(images: torch.Tensor) -> torch.Tensor:
    """``rfft2`` of real images whose centre is at pixel ``n // 2``.

    Parameters
    ----------
    images : torch.Tensor
        ``(..., n, n)`` real.

    Returns
    -------
    torch.Tensor
        ``(..., n, n // 2 + 1)`` complex, unshifted (DC at ``[0, 0]``); the phase is zero for an
        image symmetric about the centre pixel.
    """
    return torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))


def centered_irfft2(images_ft: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`centered_rfft2`: ``(..., n, n // 2 + 1)`` complex -> ``(..., n, n)`` real."""
    return torch.fft.fftshift(torch.fft.irfft2(images_ft, s=(n, n)), dim=(-2, -1))


def shift_images(images_ft: torch.Tensor, shifts_px: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Translate images given as rfft2 transforms (Fourier shift theorem).

    Parameters
    ----------
    images_ft : torch.Tensor
        ``(..., n, n // 2 + 1)`` complex, :func:`torch.fft.rfft2` layout.
    shifts_px : torch.Tensor
        ``(..., 2)`` shifts ``[x, y]`` in pixels (x = column, y = row); leading dimensions
        broadcast against those of ``images_ft``. Sub-pixel values are allowed.
    n : int, optional
        Real-space side; defaults to ``images_ft.shape[-2]`` (square images).

    Returns
    -------
    torch.Tensor
        Same shape as ``images_ft``. The content moves by ``+shift``:
        ``shifted(x) = image(x - shift)``, i.e. the transform is multiplied by
        ``exp(-2 pi i (kx sx + ky sy))``. (RELION's ``rlnOriginX/Y`` uses the opposite sign:
        ``image(x) = projection(x + origin)``; to centre a particle shift it by ``+origin/px``.)
    """
    shifts_px = torch.as_tensor(shifts_px)
    if shifts_px.shape[-1:] != (2,):
        raise ValueError(f"shift_images: shifts_px must have shape (..., 2), got {tuple(shifts_px.shape)}")
    if n is None:
        n = images_ft.shape[-2]
    real_dtype = torch.float64 if images_ft.dtype == torch.complex128 else torch.float32
    shifts_px = shifts_px.to(device=images_ft.device, dtype=real_dtype)
    ky, kx = fftfreq_grid_2d(n, rfft=True, device=images_ft.device, dtype=real_dtype)
    if ky.shape != images_ft.shape[-2:]:
        raise ValueError(
            f"shift_images: images_ft has shape {tuple(images_ft.shape)}, expected (..., {n}, {n // 2 + 1})"
        )
    sx = shifts_px[..., 0, None, None]
    sy = shifts_px[..., 1, None, None]
    phase = (-2.0 * math.pi) * (kx * sx + ky * sy)
    return images_ft * torch.polar(torch.ones_like(phase), phase)
