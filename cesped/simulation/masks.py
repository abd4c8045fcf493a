"""Soft solvent masks for simulated entries."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["soft_mask_from_map", "gaussian_lowpass", "extend_soft"]


def gaussian_lowpass(volume: np.ndarray, pixel_size: float, lowpass_a: float) -> np.ndarray:
    """``volume`` (float64) low-passed by a Gaussian of standard deviation ``lowpass_a / (2 pi)``
    Å, whose transfer function is ``exp(-1/2)`` at ``1 / lowpass_a``; 0: unchanged."""
    from scipy import ndimage

    vol = np.asarray(volume, dtype=np.float64)
    sigma_px = lowpass_a / (2 * math.pi * pixel_size)
    return ndimage.gaussian_filter(vol, sigma=sigma_px, mode="constant") if sigma_px > 0 else vol


def extend_soft(inside: np.ndarray, pixel_size: float, extend_a: float, soft_edge_a: float) -> np.ndarray:
    """A binary region extended by ``extend_a`` Å (Euclidean) and given a raised-cosine edge of
    width ``soft_edge_a`` Å: ``(n, n, n)`` float32 in ``[0, 1]``."""
    from scipy import ndimage

    # distance (Å) of every voxel outside the binary mask to the nearest voxel inside
    dist = ndimage.distance_transform_edt(~inside) * pixel_size
    mask = np.zeros(inside.shape, dtype=np.float64)
    mask[dist <= extend_a] = 1.0
    edge = (dist > extend_a) & (dist < extend_a + soft_edge_a)
    if soft_edge_a > 0:
        mask[edge] = 0.5 * (1.0 + np.cos(math.pi * (dist[edge] - extend_a) / soft_edge_a))
    return mask.astype(np.float32)


def soft_mask_from_map(
    volume: np.ndarray,
    pixel_size: float,
    threshold: float = 0.02,
    lowpass_a: float = 8.0,
    extend_a: float = 4.0,
    soft_edge_a: float = 6.0,
) -> np.ndarray:
    """Soft mask around a noiseless map, as ``relion_mask_create`` would make it.

    The map is low-pass filtered with a Gaussian of standard deviation
    ``lowpass_a / (2 pi)`` Å (its transfer function is ``exp(-1/2)`` at ``1 / lowpass_a``),
    binarised at ``threshold * max``, extended by ``extend_a`` Å, and given a raised-cosine
    edge of width ``soft_edge_a`` Å.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(n, n, n)`` map ``(z, y, x)``.
    pixel_size : float
        Å/px.
    threshold : float
        Fraction of the low-passed map's maximum used to binarise.
    lowpass_a, extend_a, soft_edge_a : float
        In Å.

    Returns
    -------
    numpy.ndarray
        ``(n, n, n)`` float32 in ``[0, 1]``: 1 inside, cosine fall-off to 0 over the soft edge.
    """
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"soft_mask_from_map: volume must be 3-D, got shape {vol.shape}")
    smooth = gaussian_lowpass(vol, pixel_size, lowpass_a)
    peak = smooth.max()
    if not peak > 0:
        raise ValueError("soft_mask_from_map: the map has no positive density")
    return extend_soft(smooth > threshold * peak, pixel_size, extend_a, soft_edge_a)
