"""A solvent mask made from a reference map itself (no other information), for projection matching.

A reconstruction of a few thousand noisy particles carries as much noise in the solvent around the
particle as inside it; projected along a ray that noise adds to every reference image. RELION
flattens the solvent of its references for that reason (``--flatten_solvent``, with the particle
diameter or a user's mask). :func:`solvent_mask` finds the particle in the map alone: the map
low-passed (Gaussian, to ``lowpass_A``), thresholded at ``median + sigmas · 1.4826 · MAD`` of the
voxels inside the box's inscribed sphere (the solvent is most of them, so median and MAD measure its
noise), small noise islands dropped, the rest extended by ``extend_A`` and given a raised-cosine
edge of ``soft_A`` (the low-pass and the edge are those of the simulated entries' masks,
:mod:`cesped.simulation.masks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SolventMask", "solvent_mask"]

#: The largest fraction of the inscribed sphere a mask may cover before it is judged a failure
#: (a map of noise alone, or a particle that fills the box): the reference is then left unmasked
#: and that is recorded.
MAX_SPHERE_FRACTION = 0.6


@dataclass
class SolventMask:
    """A soft mask and how it was made.

    Attributes
    ----------
    mask : numpy.ndarray or None
        ``(n, n, n)`` float32 in [0, 1]; None when no mask could be made (``note`` says why).
    fraction : float
        Mean of the mask over the box (0 when ``mask`` is None).
    note : str
        One line for the output star file.
    """

    mask: np.ndarray | None
    fraction: float
    note: str


def solvent_mask(
    volume: np.ndarray,
    pixel_size: float,
    lowpass_A: float = 15.0,
    sigmas: float = 4.0,
    extend_A: float = 8.0,
    soft_A: float = 6.0,
    min_island: float = 0.1,
) -> SolventMask:
    """A soft mask of the particle in ``volume``, from the map alone.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(n, n, n)`` map, ``(z, y, x)``.
    pixel_size : float
        Å/voxel.
    lowpass_A : float
        Resolution (Å) of the Gaussian low-pass before thresholding: the Fourier amplitude is
        ``exp(-1/2)`` at ``1 / lowpass_A``.
    sigmas : float
        Threshold above the solvent's median in units of its robust standard deviation
        (``1.4826 · MAD`` of the low-passed voxels inside the inscribed sphere).
    extend_A : float
        Extension of the thresholded region (Å, Euclidean; at least one voxel).
    soft_A : float
        Width of the raised-cosine edge beyond the dilated region (Å; at least one voxel).
    min_island : float
        Connected regions smaller than this fraction of the largest are dropped (noise).

    Returns
    -------
    SolventMask
        ``mask`` None (and ``note`` saying why) when the region covers more than
        :data:`MAX_SPHERE_FRACTION` of the inscribed sphere or nothing at all.

    Raises
    ------
    ValueError
        A map that is not cubic or not finite, or a non-positive size.
    """
    from scipy import ndimage as ndi

    from cesped.simulation.masks import extend_soft, gaussian_lowpass

    vol = np.asarray(volume)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"solvent_mask: the map must be cubic, got shape {vol.shape}")
    if not np.isfinite(vol).all():
        raise ValueError("solvent_mask: the map has non-finite values")
    for name, value in (("pixel_size", pixel_size), ("lowpass_A", lowpass_A), ("soft_A", soft_A)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"solvent_mask: {name} must be positive, got {value}")
    n = vol.shape[0]
    x = np.arange(n) - n // 2
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    sphere = r < n / 2 - 2
    lp = gaussian_lowpass(vol, pixel_size, lowpass_A)
    med = float(np.median(lp[sphere]))
    sd = 1.4826 * float(np.median(np.abs(lp[sphere] - med)))
    what = (
        f"auto (low-pass {lowpass_A:g} Å, median + {sigmas:g} robust sd, +{extend_A:g} Å, "
        f"soft {soft_A:g} Å)"
    )
    region = (lp > med + sigmas * sd) & sphere
    if not region.any() or sd <= 0:
        return SolventMask(None, 0.0, f"{what}: nothing above the threshold; reference unmasked")
    labels, count = ndi.label(region)
    if count > 1:
        sizes = ndi.sum(region, labels, index=np.arange(1, count + 1))
        keep = np.flatnonzero(sizes >= min_island * sizes.max()) + 1
        region = np.isin(labels, keep)
    mask = extend_soft(region, pixel_size, max(extend_A, pixel_size), max(soft_A, pixel_size))
    covered = float((mask[sphere] == 1.0).mean())  # the extended region, edge excluded
    if covered > MAX_SPHERE_FRACTION:
        why = f"covers {covered:.0%} of the sphere (> {MAX_SPHERE_FRACTION:.0%})"
        return SolventMask(None, 0.0, f"{what}: {why}; reference unmasked")
    frac = float(mask.mean())
    return SolventMask(mask, frac, f"{what}: {frac:.1%} of the box")
