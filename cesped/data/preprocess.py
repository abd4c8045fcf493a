"""Batched preprocessing of particle images, as cryo-EM does it (pure torch functions).

All functions take ``(..., n, n)`` real images (leading dims are batch dims), with the image centre
at pixel ``n // 2`` (row = y, column = x), and return new tensors of the same dtype.

Pipeline used by :class:`cesped.data.dataset.ParticlesDataset` (each step optional)::

    normalize_background -> phase_flip | wiener_filter -> crop_center -> fourier_resize

Example usage
-------------
>>> import torch
>>> from cesped.data.preprocess import crop_center, fourier_resize, normalize_background
>>> imgs = torch.randn(4, 64, 64)
>>> out = fourier_resize(crop_center(normalize_background(imgs), 0.25), 32)
>>> tuple(out.shape)
(4, 32, 32)
"""

from __future__ import annotations

import torch

__all__ = [
    "background_mask",
    "normalize_background",
    "phase_flip",
    "wiener_filter",
    "cropped_size",
    "crop_center",
    "fourier_resize",
    "preprocess_images",
]


def background_mask(n: int, radius_px: float | None = None, device=None) -> torch.Tensor:
    """Boolean ``(n, n)`` mask of the background: pixels farther than ``radius_px`` from the centre.

    Parameters
    ----------
    n : int
        Image side in pixels.
    radius_px : float, optional
        Radius of the particle disc in pixels; default ``n / 2`` (the inscribed circle), so the
        background is the four corners (about 21 % of the pixels), as in RELION's
        ``--bg_radius`` default and the original CESPED.
    """
    if radius_px is None:
        radius_px = n / 2
    if not 0 <= radius_px < n / 2 * 2**0.5:
        raise ValueError(f"background_mask: radius_px={radius_px} leaves no background in a {n}px image")
    c = torch.arange(n, device=device, dtype=torch.float32) - n // 2
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    return r2 > radius_px**2


def normalize_background(
    images: torch.Tensor, radius_px: float | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Per-image normalisation with the noise statistics of the background.

    ``out = (img - mean_bg) / std_bg`` where mean and std (with Bessel's correction, as
    :meth:`torch.Tensor.std`) are taken over the pixels of :func:`background_mask`; after it the
    background of every image has mean 0 and std 1.

    Parameters
    ----------
    images : torch.Tensor
        ``(..., n, n)`` real.
    radius_px : float, optional
        See :func:`background_mask` (default ``n / 2``).
    eps : float
        Added to the std (a constant image stays finite).
    """
    n = images.shape[-1]
    w = background_mask(n, radius_px, device=images.device).flatten().to(images.dtype)
    n_bg = float(w.sum())
    if n_bg < 2:
        raise ValueError(f"normalize_background: fewer than 2 background pixels in a {n}px image")
    flat = images.reshape(*images.shape[:-2], n * n)
    mean = (flat @ w) / n_bg  # (...,)
    centred = flat - mean[..., None]
    var = ((centred * centred) @ w) / (n_bg - 1)  # two passes: no cancellation for large offsets
    centred /= torch.sqrt(var)[..., None] + eps
    return centred.reshape(images.shape)


def _check_ctf(images: torch.Tensor, ctf: torch.Tensor, name: str) -> None:
    n = images.shape[-1]
    if images.shape[-2] != n:
        raise ValueError(f"{name}: images must be square (..., n, n), got {tuple(images.shape)}")
    if ctf.shape[-2:] != (n, n // 2 + 1):
        raise ValueError(
            f"{name}: ctf must have the rfft2 shape (..., {n}, {n // 2 + 1}) of the images, "
            f"got {tuple(ctf.shape)}"
        )


def _rfft(images):
    return torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))


def _irfft(ft, n):
    return torch.fft.fftshift(torch.fft.irfft2(ft, s=(n, n)), dim=(-2, -1))


def phase_flip(images: torch.Tensor, ctf: torch.Tensor) -> torch.Tensor:
    """Multiply the images' Fourier transforms by ``sign(CTF)``.

    Parameters
    ----------
    images : torch.Tensor
        ``(..., n, n)`` real.
    ctf : torch.Tensor
        ``(..., n, n // 2 + 1)`` CTF in the :func:`torch.fft.rfft2` layout (unshifted), e.g. from
        :func:`cesped.physics.ctf.ctf_from_particles` (RELION sign convention, per particle and
        optics group, with astigmatism angle and phase shift).

    Returns
    -------
    torch.Tensor
        ``(..., n, n)``: an image ``ifft(CTF·F)`` becomes ``ifft(|CTF|·F)``.
    """
    _check_ctf(images, ctf, "phase_flip")
    n = images.shape[-1]
    sign = torch.sign(ctf).to(images.dtype)
    # a real, even filter commutes with the circular shift that centres the image: no (i)fftshift
    return torch.fft.irfft2(torch.fft.rfft2(images) * sign, s=(n, n)).to(images.dtype)


def wiener_filter(images: torch.Tensor, ctf: torch.Tensor, wiener_constant: float = 0.1) -> torch.Tensor:
    """Wiener-filter CTF correction ``F · CTF / (CTF² + k)``.

    Parameters
    ----------
    images, ctf
        As in :func:`phase_flip`.
    wiener_constant : float
        ``k > 0``, the inverse of an assumed flat signal-to-noise ratio.
    """
    _check_ctf(images, ctf, "wiener_filter")
    if not wiener_constant > 0:
        raise ValueError(f"wiener_filter: wiener_constant must be > 0, got {wiener_constant}")
    n = images.shape[-1]
    ctf = ctf.to(images.dtype)
    filt = ctf / (ctf * ctf + wiener_constant)
    return torch.fft.irfft2(torch.fft.rfft2(images) * filt, s=(n, n)).to(images.dtype)


def cropped_size(n: int, factor: float) -> int:
    """Side after :func:`crop_center`: ``int(n * (1 - factor))`` (the original CESPED's rule)."""
    if not 0 <= factor < 1:
        raise ValueError(f"image_size_factor_for_crop must be in [0, 1), got {factor}")
    m = int(n * (1 - factor))
    if m < 1:
        raise ValueError(f"image_size_factor_for_crop={factor} crops a {n}px image to nothing")
    return m


def crop_center(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Keep the central ``int(n * (1 - factor))`` pixels of each side.

    ``factor`` is the fraction of the side removed (0.25 keeps the central 75 %), the meaning of
    the original CESPED's ``image_size_factor_for_crop``. The centre pixel ``n // 2`` maps to
    ``m // 2``, so the particle centre is preserved.

    Parameters
    ----------
    images : torch.Tensor
        ``(..., n, n)``.
    factor : float
        In ``[0, 1)``.

    Returns
    -------
    torch.Tensor
        ``(..., m, m)`` view of the input.
    """
    n = images.shape[-1]
    m = cropped_size(n, factor)
    start = n // 2 - m // 2
    return images[..., start : start + m, start : start + m]


def fourier_resize(images: torch.Tensor, new_size: int) -> torch.Tensor:
    """Resample images to ``new_size`` pixels by cropping or zero-padding their Fourier transform.

    The field of view is kept: the pixel size becomes ``pixel_size * n / new_size``. Values are
    scaled so that a band-limited image (no power at or above the smaller Nyquist frequency) is
    sampled exactly: ``out[j] = f((j - new_size//2) * n / new_size)`` where ``img[i] = f(i - n//2)``.

    Parameters
    ----------
    images : torch.Tensor
        ``(..., n, n)`` real.
    new_size : int
        Output side in pixels (>= 1).

    Returns
    -------
    torch.Tensor
        ``(..., new_size, new_size)``.
    """
    n = images.shape[-1]
    m = int(new_size)
    if m < 1:
        raise ValueError(f"fourier_resize: new_size must be >= 1, got {new_size}")
    if m == n:
        return images
    rows_in, rows_out, ncol, factor = _resize_plan(n, m, images.device, images.dtype)
    ft = torch.fft.rfft2(images)  # uncentred: the centring shifts are folded into ``factor``
    out = ft.new_zeros(*ft.shape[:-2], m, m // 2 + 1)
    out[..., rows_out, :ncol] = ft[..., rows_in, :ncol] * factor
    return torch.fft.irfft2(out, s=(m, m)).to(images.dtype)


_PLANS: dict = {}


def _resize_plan(n: int, m: int, device, dtype):
    """Row indices (input, output), number of columns and phase/scale factor of :func:`fourier_resize`.

    Frequencies ``f`` in ``[-(k//2), (k-1)//2]`` with ``k = min(n, m)`` are kept (the centred crop
    or zero-pad of the spectrum), ``f mod n`` -> ``f mod m``. Centring (``ifftshift`` before the
    forward and ``fftshift`` after the inverse transform) multiplies coefficient ``(fy, fx)`` by
    ``exp(2πi (fy + fx) ((n//2)/n - (m//2)/m))`` (1 when both sizes are even); the scale
    ``m² / n²`` keeps the sampled values of a band-limited image.
    """
    key = (n, m, str(device), dtype)
    plan = _PLANS.get(key)
    if plan is None:
        k = min(n, m)
        f = torch.arange(-(k // 2), (k - 1) // 2 + 1)
        ncol = min(n // 2, m // 2) + 1
        fx = torch.arange(ncol)
        shift = (n // 2) / n - (m // 2) / m
        phase = 2 * torch.pi * shift * (f[:, None] + fx[None, :]).to(torch.float64)
        factor = torch.polar(torch.full_like(phase, m * m / (n * n)), phase)
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        plan = ((f % n).to(device), (f % m).to(device), ncol, factor.to(device=device, dtype=cdtype))
        if len(_PLANS) > 64:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def preprocess_images(
    images: torch.Tensor,
    ctf: torch.Tensor | None = None,
    normalize: bool = True,
    ctf_correction: str = "phase_flip",
    crop_factor: float = 0.0,
    image_size: int | None = None,
    wiener_constant: float = 0.1,
    background_radius_px: float | None = None,
) -> torch.Tensor:
    """The dataset pipeline on a batch: normalise, CTF-correct, crop, resize.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, n, n)`` raw images.
    ctf : torch.Tensor, optional
        ``(B, n, n // 2 + 1)`` rfft2-layout CTFs; required unless ``ctf_correction == "none"``.
    normalize : bool
        Apply :func:`normalize_background` (on the full, uncropped image).
    ctf_correction : {"none", "phase_flip", "wiener"}
    crop_factor : float
        :func:`crop_center` factor.
    image_size : int, optional
        Final side (:func:`fourier_resize`); None keeps the cropped size.

    Returns
    -------
    torch.Tensor
        ``(B, image_size, image_size)`` float.
    """
    if ctf_correction not in ("none", "phase_flip", "wiener"):
        raise ValueError(f"ctf_correction must be 'none', 'phase_flip' or 'wiener', got {ctf_correction!r}")
    if normalize:
        images = normalize_background(images, background_radius_px)
    if ctf_correction != "none":
        if ctf is None:
            raise ValueError(f"ctf_correction={ctf_correction!r} needs the CTF of the images")
        images = (
            phase_flip(images, ctf)
            if ctf_correction == "phase_flip"
            else wiener_filter(images, ctf, wiener_constant)
        )
    if crop_factor:
        images = crop_center(images, crop_factor)
    if image_size is not None:
        images = fourier_resize(images, image_size)
    return images.contiguous()
