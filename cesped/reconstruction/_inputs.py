"""Torch-free pieces of the reconstruction: star-file inputs, the image Fourier points, the
z-slabs of the compiled splat and the windowed inverse FFT.

Shared by the CPU path (:mod:`cesped.reconstruction.numba_grid`, which never imports torch, so
that ``python -m cesped.evaluateEntry`` stays fast) and the torch path
(:mod:`cesped.reconstruction.accumulator`).
"""

from __future__ import annotations

import os

import numpy as np

#: image Fourier points inserted per chunk (times the symmetry operators): the chunk size rule
AUTO_POINTS_PER_CHUNK = 1 << 20


def image_points(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Fourier points of an ``n x n`` image that are inserted into the 3-D grid.

    The ``rfft2`` layout ``(n, n//2+1)`` within radius ``n/2``; of column ``kx = 0`` only one of
    each Friedel pair (``ky > 0``, and the DC point with multiplicity 1/2), likewise the
    self-conjugate Nyquist point ``(n/2, 0)`` of even boxes. Ordered by radius, then azimuth: a
    block of consecutive points is a ring segment, which lands on the same band of the grid for
    images of similar slice normal (cache locality).

    Returns
    -------
    flat : (P,) int64
        Indices into the flattened ``(n, n//2+1)`` transform.
    kx, ky : (P,) float64
        Frequencies in cycles per box (``kx`` along columns/x, ``ky`` along rows/y).
    mult : (P,) float64
        Multiplicity weights (1, or 1/2 for the self-conjugate points).
    """
    ky = np.fft.fftfreq(n, d=1.0 / n)
    kx = np.fft.rfftfreq(n, d=1.0 / n)
    kyy, kxx = np.meshgrid(ky, kx, indexing="ij")
    r2 = kxx**2 + kyy**2
    keep = r2 <= (n / 2) ** 2
    keep &= ~((kxx == 0) & (kyy < 0))
    if n % 2 == 0:
        keep &= ~((kxx == n / 2) & (kyy < 0))
    mult = np.ones_like(r2)
    mult[(kxx == 0) & (kyy == 0)] = 0.5
    if n % 2 == 0:
        mult[(kxx == n / 2) & (kyy == 0)] = 0.5
    flat = np.flatnonzero(keep.reshape(-1))
    kxs, kys = kxx.reshape(-1)[flat], kyy.reshape(-1)[flat]
    ring_order = np.lexsort((np.arctan2(kys, kxs), np.rint(np.hypot(kxs, kys))))
    flat = flat[ring_order].astype(np.int64)
    return flat, kxx.reshape(-1)[flat], kyy.reshape(-1)[flat], mult.reshape(-1)[flat]


def load_star(star):
    """A :class:`cesped.io.star.StarFile` from itself or a path; ``ValueError`` otherwise."""
    from cesped.io.star import StarFile, read_star

    if isinstance(star, StarFile):
        return star
    if isinstance(star, str | os.PathLike):
        return read_star(star)
    raise ValueError(f"star must be a StarFile or a path, got {type(star).__name__}")


def particle_weights(particles, weights) -> np.ndarray | None:
    """Per-particle weights (N,) float64 from an array or a column name; None stays None.

    Raises ``ValueError`` for a missing column, a wrong length, negative or non-finite values.
    """
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights not in particles.columns:
            raise ValueError(f"weights: column {weights} not in the particles table")
        w = particles[weights].to_numpy(dtype=np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != len(particles):
        raise ValueError(f"weights has {w.shape[0]} values for {len(particles)} particles")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    return w


def slice_plane_order(rot: np.ndarray, bins: int = 24) -> np.ndarray:
    """Particle order that groups similar central-slice planes (normal ``R[:, :, 2]``, sign-free).

    ``rot`` : (N, 3, 3) pose labels ``R = Aᵀ``; returns (N,) int64 indices.

    Images whose slices overlap touch the same parts of the grid, so inserting them one after
    the other keeps the grid in cache (about 2x faster on CPU). Deterministic, stable sort.
    """
    nrm = np.asarray(rot, dtype=np.float64)[:, :, 2]
    nrm = nrm * np.where(nrm[:, 2:3] < 0, -1.0, 1.0)
    theta = np.arccos(np.clip(nrm[:, 2], -1.0, 1.0))
    phi = np.arctan2(nrm[:, 1], nrm[:, 0])
    tb = np.minimum(np.floor(theta / (np.pi / 2) * bins), bins - 1)
    pb = np.floor((phi + np.pi) / (2 * np.pi) * 2 * bins)
    pb = np.where(tb % 2 == 1, 2 * bins - pb, pb)  # serpentine: neighbouring bands join smoothly
    return np.lexsort((pb, tb)).astype(np.int64)


def read_chunk(src, rows) -> np.ndarray:
    """Images ``rows`` as float32, by plain file reads where the source offers them (an
    :class:`cesped.io.stack.ImageSource`: no mapped pages in the RSS); other sources' memory maps
    are dropped after each chunk so that mapped pages do not accumulate with the particles."""
    from cesped.io.stack import ImageSource

    if isinstance(src, ImageSource):
        return src.read(rows, via_maps=False)
    out = np.asarray(src.read(rows), dtype=np.float32)
    close = getattr(src, "close", None)
    if close is not None:
        close()
    return out


def ctf_params(parts) -> dict:
    """Per-particle CTF constants (float64 arrays) in RELION's ``ctf.h`` form."""
    from cesped.physics.ctf_params import ctf_parameters, electron_wavelength

    try:
        prm = ctf_parameters(parts)
    except ValueError as e:
        raise ValueError(f"reconstruct: {e}") from e
    u, v = prm["defocus_u"], prm["defocus_v"]
    lam = electron_wavelength(prm["voltage"])
    q0 = prm["amplitude_contrast"]
    ang = np.deg2rad(prm["defocus_angle"])
    return {
        "dfavg": -0.5 * (u + v),
        "dfdev": -0.5 * (u - v),
        "cos2ang": np.cos(2 * ang),
        "sin2ang": np.sin(2 * ang),
        "k1": np.pi * lam,
        "k2c": 0.5 * np.pi * prm["spherical_aberration"] * 1e7 * lam**3,
        "kconst": np.deg2rad(prm["phase_shift"]) + np.arctan(q0 / np.sqrt(1.0 - q0**2)),
        "bfac": prm["bfactor"],
    }


def same_weights(a, b) -> bool:
    """Whether two optional weight arrays are the same (both None, or equal values)."""
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)


class Variant:
    """Poses of one map: rotations (N, 3, 3), shifts (N, 2) px, optional weights (N,)."""

    def __init__(self, rotmats, shifts_px, weights):
        self.rotmats = rotmats
        self.shifts_px = shifts_px
        self.weights = weights


def pose_arrays(parts, angles=None, shifts_A=None, where="reconstruct"):
    """Euler angles (N, 3) degrees and origin shifts (N, 2) Å, from arguments or the table."""
    n_part = len(parts)
    if angles is None:
        for col in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"):
            if col not in parts.columns:
                raise ValueError(f"{where}: particles table lacks column {col}")
        angles = parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape != (n_part, 3):
        raise ValueError(f"{where}: angles must be ({n_part}, 3), got {angles.shape}")
    if not np.all(np.isfinite(angles)):
        raise ValueError(f"{where}: non-finite Euler angles")
    if shifts_A is None:
        shifts_A = np.zeros((n_part, 2))
        for j, col in enumerate(("rlnOriginXAngst", "rlnOriginYAngst")):
            if col in parts.columns:
                shifts_A[:, j] = parts[col].to_numpy(dtype=np.float64)
    shifts_A = np.asarray(shifts_A, dtype=np.float64)
    if shifts_A.shape != (n_part, 2):
        raise ValueError(f"{where}: shifts must be ({n_part}, 2), got {shifts_A.shape}")
    if not np.all(np.isfinite(shifts_A)):
        raise ValueError(f"{where}: non-finite origin shifts")
    return angles, shifts_A


def windowed_irfftn(vol_ft: np.ndarray, n: int, workers: int) -> np.ndarray:
    """Centred ``n³`` window of ``irfftn(vol_ft)``, computed axis by axis with pruned outputs.

    Parameters
    ----------
    vol_ft : np.ndarray complex (m, m, m//2+1)
        Half spectrum in unshifted FFT order (overwritten).
    n : int
        Window side (<= m).
    workers : int
        FFT threads.

    Returns
    -------
    np.ndarray float32 (n, n, n)
        ``out[i, j, k] = irfftn(vol_ft)[(i - n//2) % m, (j - n//2) % m, (k - n//2) % m]``. Only the
        ``n`` needed outputs of each axis are kept before the next axis is transformed: the
        work is about 60 % of the full ``m³`` inverse for ``m = 2n``.
    """
    import scipy.fft

    m = vol_ft.shape[0]
    keep = (np.arange(n) - n // 2) % m
    a = scipy.fft.ifft(vol_ft, axis=0, workers=workers, overwrite_x=True)[keep]
    a = scipy.fft.ifft(a, axis=1, workers=workers, overwrite_x=True)[:, keep]
    return scipy.fft.irfft(a, n=m, axis=2, workers=workers)[:, :, keep]


def z_slabs(n_threads: int, c: int, m: int, dz: int) -> np.ndarray:
    """Bounds (n_threads + 1,) int64 of the z-plane slabs of the numba splat, cutting the
    sphere of radius m/2 (centre plane ``c``) into parts of equal volume; first 0, last ``dz``."""
    r = m / 2.0 + 1.0
    q = np.arange(1, n_threads) / n_threads
    # fraction of a ball's volume below height h·r: (h + 1)²(2 − h) / 4; solve for h by bisection
    lo, hi = -np.ones_like(q), np.ones_like(q)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = (mid + 1) ** 2 * (2 - mid) / 4 < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    inner = np.rint(c + 0.5 * (lo + hi) * r).astype(np.int64)
    return np.concatenate([[0], np.clip(inner, 0, dz), [dz]]).astype(np.int64)
