"""Map and pose metrics of the CESPED benchmark (float64 throughout).

Fourier shell correlation uses the original package's hard shells: shell ``k`` holds the
Fourier voxels with ``k <= |r| < k + 1`` (``|r|`` in voxels of the DFT grid), for
``k = 0 .. N//2``; the frequency of shell ``k`` is ``k / (N * voxel_size)`` in 1/Å. The
resolution at a threshold is found as in the original: the first shell whose FSC is below the
threshold, linear interpolation in inverse resolution between that shell and the previous one,
and Nyquist (``2 * voxel_size``) when the curve never drops below the threshold.

Example usage::

    from cesped.evaluation.metrics import fsc, resolution_at, pcc
    curve = fsc(map_a, map_b)                      # (N//2 + 1,)
    res = resolution_at(curve, [0.143, 0.5], voxel_size=1.5)   # Å
    r = pcc(map_a, map_b, mask=mask)               # masked Pearson correlation
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from cesped._numpy import as_float64 as _as_f64
from cesped.settings import default_threads

__all__ = [
    "fsc",
    "fsc_from_transforms",
    "map_transform",
    "fsc_frequencies",
    "resolution_at",
    "pcc",
    "shifts_rmse",
    "angular_errors",
]


def _check_cube(a: np.ndarray, b: np.ndarray) -> int:
    if a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"maps must be cubic 3-D arrays (n, n, n), got shape {tuple(a.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"maps have different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    return int(a.shape[0])


def _rfftn(a: np.ndarray, workers: int | None) -> np.ndarray:
    import scipy.fft

    n = default_threads() if workers is None else max(1, int(workers))
    return scipy.fft.rfftn(a, workers=n).reshape(-1)


@functools.lru_cache(maxsize=4)
def _shell_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hard-shell index of every rfftn voxel and its multiplicity in the full transform.

    Returns
    -------
    shell : (n, n, n//2+1) int64, ``floor(|r|)`` (voxels), ``-1`` beyond shell ``n//2``
    mult : (n//2+1,) float64 multiplicity of each rfft column (1 for the self-conjugate
        columns 0 and n/2, 2 for the others), so that sums over the rfft equal full-grid sums.
    """
    k = np.fft.fftfreq(n, d=1.0 / n)
    kx = np.fft.rfftfreq(n, d=1.0 / n)
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    shell = np.floor(r).astype(np.int64)
    shell[shell > n // 2] = -1
    mult = np.full((n // 2 + 1,), 2.0)
    mult[0] = 1.0
    if n % 2 == 0:
        mult[-1] = 1.0
    shell.flags.writeable = False
    mult.flags.writeable = False
    return shell, mult


def fsc(a, b, mask=None, workers: int | None = None) -> np.ndarray:
    """Fourier shell correlation with hard shells ``k <= |r| < k+1`` (the original's binning).

    Parameters
    ----------
    a, b : array-like (n, n, n)
        Real maps on the same grid.
    mask : array-like (n, n, n), optional
        When given, both maps are multiplied by it before the transform (masked FSC).
    workers : int, optional
        FFT threads (default: :func:`cesped.settings.default_threads`).

    Returns
    -------
    np.ndarray float64 (n//2 + 1,)
        ``FSC_k = Σ Re(F_a F_b*) / sqrt(Σ|F_a|² Σ|F_b|²)`` over shell ``k``; NaN for a shell
        where a map has no power.
    """
    ta, tb = _as_f64(a, "a"), _as_f64(b, "b")
    n = _check_cube(ta, tb)
    if mask is not None:
        tm = _as_f64(mask, "mask")
        _check_cube(ta, tm)
        ta, tb = ta * tm, tb * tm
    return fsc_from_transforms(_rfftn(ta, workers), _rfftn(tb, workers), n)


def map_transform(vol, mask=None, workers: int | None = None) -> np.ndarray:
    """Flat float64 ``rfftn`` of a (masked) cubic map, the input of :func:`fsc_from_transforms`.

    The transform is linear, so the transform of an average map is the average of the
    transforms: e.g. ``FSC(GT, V)`` of ``GT = (GT0 + GT1) / 2`` needs no transform of its own.

    Parameters
    ----------
    vol : array-like (n, n, n)
        Real map.
    mask : array-like (n, n, n), optional
        Multiplies the map before the transform.
    workers : int, optional
        FFT threads (default: :func:`cesped.settings.default_threads`).

    Returns
    -------
    np.ndarray complex128 (n * n * (n//2 + 1),)
    """
    t = _as_f64(vol, "vol")
    _check_cube(t, t)
    if mask is not None:
        tm = _as_f64(mask, "mask")
        _check_cube(t, tm)
        t = t * tm
    return _rfftn(t, workers)


def fsc_from_transforms(fa: np.ndarray, fb: np.ndarray, n: int) -> np.ndarray:
    """FSC from two flat ``rfftn`` transforms (complex128, ``n·n·(n//2+1)``), hard shells.

    Parameters
    ----------
    fa, fb : np.ndarray complex (n * n * (n//2 + 1),)
        As returned by :func:`map_transform`.
    n : int
        Box side (voxels).

    Returns
    -------
    np.ndarray float64 (n//2 + 1,), as :func:`fsc`.
    """
    fa, fb = np.asarray(fa).reshape(-1), np.asarray(fb).reshape(-1)
    size = n * n * (n // 2 + 1)
    if fa.shape != (size,) or fb.shape != (size,):
        raise ValueError(f"transforms must have {size} values for n={n}, got {fa.size} and {fb.size}")
    idx, w = _flat_shells(n)
    nsh = n // 2 + 1
    cross = np.bincount(idx, weights=w * (fa.real * fb.real + fa.imag * fb.imag), minlength=nsh + 1)
    pa = np.bincount(idx, weights=w * (fa.real**2 + fa.imag**2), minlength=nsh + 1)
    pb = np.bincount(idx, weights=w * (fb.real**2 + fb.imag**2), minlength=nsh + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cross[:nsh] / np.sqrt(pa[:nsh] * pb[:nsh])
    return out


@functools.lru_cache(maxsize=4)
def _flat_shells(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat shell index of every rfftn voxel (``n//2 + 1`` for voxels beyond shell ``n//2``: a
    dump bin) and its float64 multiplicity weight (read-only arrays)."""
    shell, mult = _shell_index(n)
    idx = shell.copy()
    idx[idx < 0] = n // 2 + 1
    idx = idx.reshape(-1)
    w = np.broadcast_to(mult, shell.shape).reshape(-1).copy()
    idx.flags.writeable = False
    w.flags.writeable = False
    return idx, w


def fsc_frequencies(n: int, voxel_size: float) -> np.ndarray:
    """Spatial frequency of each hard shell, ``k / (n * voxel_size)`` in 1/Å, shape (n//2 + 1,)."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    return np.arange(n // 2 + 1, dtype=np.float64) / (n * float(voxel_size))


def resolution_at(curve, thresholds: float | Sequence[float], voxel_size: float, box: int | None = None):
    """Resolution (Å) where an FSC curve first drops below each threshold.

    Parameters
    ----------
    curve : array-like (n//2 + 1,)
        FSC per hard shell, as returned by :func:`fsc`.
    thresholds : float or sequence of float
        e.g. 0.143 and 0.5.
    voxel_size : float
        Å/voxel.
    box : int, optional
        Box size ``n``; the curve must then have ``n // 2 + 1`` shells (else ``ValueError``).
        Default ``2 * (len(curve) - 1)``, i.e. an even box: a curve of ``L`` shells comes from
        a box of ``2L - 2`` or ``2L - 1`` voxels, so pass ``box`` for odd boxes.

    Returns
    -------
    float or list of float
        For each threshold: find the first shell ``i`` with ``FSC_i < thr`` (NaN counts as below);
        the inverse resolution is interpolated linearly between shells ``i-1`` and ``i``, and the
        resolution is its inverse. The frequency of the last shell when the curve never drops
        below: Nyquist, ``2 * voxel_size``, for even boxes; for an odd box the last shell is
        ``(n - 1) / 2``, i.e. ``2 * voxel_size * n / (n - 1)``. When already shell 0 (the DC
        term) is below the threshold, no shell is resolved and the box size ``n * voxel_size``
        (the coarsest measurable resolution) is returned; the original package interpolated with
        index -1 there.
    """
    c = np.asarray(curve, dtype=np.float64).ravel()
    if c.size < 2:
        raise ValueError(f"FSC curve needs at least 2 shells, got {c.size}")
    if box is None:
        n = 2 * (c.size - 1)
    else:
        if int(box) != box or box < 2:
            raise ValueError(f"resolution_at: box must be an integer >= 2, got {box!r}")
        n = int(box)
        if c.size != n // 2 + 1:
            raise ValueError(
                f"resolution_at: an FSC curve of a box of {n} voxels has {n // 2 + 1} shells, got {c.size}"
            )
    freqs = fsc_frequencies(n, voxel_size)[: c.size]
    scalar = np.isscalar(thresholds)
    ths = [float(thresholds)] if scalar else [float(t) for t in thresholds]
    out = []
    for thr in ths:
        below = np.flatnonzero(~(c >= thr))  # NaN counts as below
        if below.size == 0:
            inv = freqs[-1]
        elif below[0] == 0:
            inv = 1.0 / (n * float(voxel_size))
        else:
            i = int(below[0])
            f0, f1 = c[i - 1], c[i]
            if not np.isfinite(f1):
                inv = freqs[i - 1]
            else:
                inv = freqs[i - 1] + (freqs[i] - freqs[i - 1]) * (thr - f0) / (f1 - f0)
        out.append(float(1.0 / inv))
    return out[0] if scalar else out


def pcc(a, b, mask=None) -> float:
    """Pearson correlation coefficient of two maps over all voxels (float64).

    Parameters
    ----------
    a, b : array-like, same shape
    mask : array-like, same shape, optional
        When given, the correlation of ``a * mask`` and ``b * mask`` over **all** voxels
        (zeros outside the mask included), as in the original package.
    """
    ta, tb = _as_f64(a, "a").reshape(-1), _as_f64(b, "b").reshape(-1)
    if ta.shape != tb.shape:
        raise ValueError(f"maps have different sizes: {ta.size} and {tb.size}")
    if mask is not None:
        tm = _as_f64(mask, "mask").reshape(-1)
        if tm.shape != ta.shape:
            raise ValueError(f"mask has {tm.size} voxels, maps have {ta.size}")
        ta, tb = ta * tm, tb * tm
    da, db = ta - ta.mean(), tb - tb.mean()
    den = np.sqrt(np.dot(da, da) * np.dot(db, db))
    if den == 0:
        return float("nan")
    return float(np.dot(da, db) / den)


def shifts_rmse(pred_shifts, true_shifts) -> float:
    """Root mean square shift error ``||Δ||_F / sqrt(n)`` in Å (as the original).

    Parameters
    ----------
    pred_shifts, true_shifts : array-like (n, 2)
        ``[rlnOriginXAngst, rlnOriginYAngst]`` in Å.
    """
    p = np.asarray(pred_shifts, dtype=np.float64)
    t = np.asarray(true_shifts, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"shift arrays must both be (n, 2), got {p.shape} and {t.shape}")
    if p.shape[0] == 0:
        raise ValueError("shifts_rmse: no particles")
    return float(np.linalg.norm(p - t) / np.sqrt(p.shape[0]))


def angular_errors(true_angles, pred_angles, symmetry: str = "C1", kind: str = "SO3") -> np.ndarray:
    """Symmetry-aware angular error per particle, degrees (float64).

    Parameters
    ----------
    true_angles, pred_angles : array-like (n, 3)
        RELION Euler angles ``[rot, tilt, psi]`` in degrees.
    symmetry : str
        Point group ("C1", "C2", "D2", ...).
    kind : {"SO3", "S2"}
        "SO3": geodesic distance ``min_g d(g·R_true, R_pred)`` between rotations.
        "S2": angle between viewing directions (only rot and tilt matter), symmetry-aware.
    """
    from cesped.geometry.numpy_ops import euler_to_matrix, symmetry_aware_error, viewing_direction_error

    t = np.asarray(true_angles, dtype=np.float64)
    p = np.asarray(pred_angles, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"angle arrays must both be (n, 3), got {t.shape} and {p.shape}")
    rt, rp = euler_to_matrix(t), euler_to_matrix(p)
    if kind == "SO3":
        err = symmetry_aware_error(rt, rp, symmetry)
    elif kind == "S2":
        err = viewing_direction_error(rt, rp, symmetry)
    else:
        raise ValueError(f"kind must be 'SO3' or 'S2', got {kind!r}")
    return np.asarray(err, dtype=np.float64)
