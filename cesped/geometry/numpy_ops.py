"""Float64 numpy versions of the geometry the evaluation needs, without importing torch.

``python -m cesped.evaluateEntry`` runs in a few seconds, and importing torch alone takes about
1.6 s on a 2-core machine; these functions give the same numbers as their torch namesakes in
:mod:`cesped.geometry.rotations` and :mod:`cesped.geometry.errors` (the formulas are shared, see
:mod:`cesped.geometry._formulas`; the tests compare both).

Conventions as in :mod:`cesped.geometry.rotations`: Euler angles ``[rot, tilt, psi]`` in degrees
(RELION ZYZ), label matrices ``R = Aᵀ = Rz(rot) Ry(tilt) Rz(psi)``, symmetry acting by left
multiplication.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from cesped._numpy import as_float64
from cesped.geometry._formulas import relion_matrix_rows
from cesped.geometry.symmetry import symmetry_matrices_np

__all__ = [
    "relion_matrix",
    "euler_to_matrix",
    "symmetry_aware_error",
    "viewing_direction_error",
    "mean_angular_error",
    "weighted_mean_angular_error",
]


def _float64(x, name: str, tail: tuple[int, ...]) -> np.ndarray:
    a = as_float64(x, name)
    if a.ndim < len(tail) or a.shape[a.ndim - len(tail) :] != tail:
        want = ", ".join(map(str, tail))
        raise ValueError(f"{name}: expected shape (..., {want}), got {a.shape}")
    return a


def relion_matrix(angles) -> np.ndarray:
    """RELION's ``Euler_angles2matrix``: ``A`` (..., 3, 3) float64 from ``[rot, tilt, psi]`` degrees."""
    rad = np.deg2rad(_float64(angles, "angles", (3,)))
    c, s = np.cos(rad), np.sin(rad)
    rows = relion_matrix_rows(c[..., 0], c[..., 1], c[..., 2], s[..., 0], s[..., 1], s[..., 2])
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_to_matrix(angles) -> np.ndarray:
    """Pose label ``R = Aᵀ`` (..., 3, 3) float64 from RELION Euler angles (..., 3) in degrees."""
    return np.swapaxes(relion_matrix(angles), -1, -2)


_CHUNK = 1 << 16
"""Particles per block of :func:`symmetry_aware_error` (its temporaries: a few MB per group element)."""


@functools.lru_cache(maxsize=64)
def _error_map(symmetry: str) -> np.ndarray:
    """``W`` (4G, 9): ``W @ vec(N)`` gives, for each group element ``g``, the parts of
    :func:`cesped.geometry._formulas.rotation_angle_parts` of ``gᵀ N`` (``sx, sy, sz`` and the
    trace), ``vec`` row-major. Read-only, cached per symmetry."""
    group = symmetry_matrices_np(symmetry)
    w = np.zeros((len(group), 4, 3, 3))
    for k, g in enumerate(group):
        # (gᵀ N)_ij = Σ_l g_li N_lj: the coefficient of N_lj is g_li, in column j
        def entry(i, j, g=g):
            e = np.zeros((3, 3))
            e[:, j] = g[:, i]
            return e

        w[k, 0] = entry(2, 1) - entry(1, 2)
        w[k, 1] = entry(0, 2) - entry(2, 0)
        w[k, 2] = entry(1, 0) - entry(0, 1)
        w[k, 3] = entry(0, 0) + entry(1, 1) + entry(2, 2)
    w = w.reshape(-1, 9)
    w.setflags(write=False)
    return w


def symmetry_aware_error(R_true, R_pred, symmetry: str = "C1") -> np.ndarray:
    """``min_g d(g · R_true, R_pred)`` in degrees (CESPED paper, eq. 5).

    Parameters
    ----------
    R_true, R_pred : array-like (..., 3, 3)
        Ground-truth and predicted label matrices (broadcast). ``R_true`` must be a rotation (to
        rounding, e.g. from Euler angles): the angle of ``R_trueᵀ gᵀ R_pred`` is computed as
        that of its conjugate ``gᵀ N`` with ``N = R_pred R_trueᵀ``, so that one product per
        particle and one linear map (``(4G, 9) @ (9, n)``) give every group element's angle.

    symmetry : str
        Point group, e.g. ``"C1"``, ``"D2"``.

    Returns
    -------
    np.ndarray (...) float64
        Degrees in [0, 180]: ``atan2(|skew part|, tr − 1)`` of the relative rotation (accurate
        near 0° and 180°), minimised over the group; memory O(G · 65536) per block of particles.
    """
    a = _float64(R_true, "R_true", (3, 3))
    b = _float64(R_pred, "R_pred", (3, 3))
    a, b = np.broadcast_arrays(a, b)
    shape = a.shape[:-2]
    a = a.reshape(-1, 3, 3)
    b = b.reshape(-1, 3, 3)
    w = _error_map(symmetry)
    n_g = w.shape[0] // 4
    out = np.empty(a.shape[0])
    step = max(1024, _CHUNK // n_g)
    for s in range(0, a.shape[0], step):
        blk = slice(s, s + step)
        n_rel = (b[blk] @ np.swapaxes(a[blk], 1, 2)).reshape(-1, 9)  # (m, 9) R_pred R_trueᵀ
        # einsum, not BLAS: OpenBLAS threads this thin product and spins, slower on a busy machine
        p = np.einsum("kj,jm->km", w, np.ascontiguousarray(n_rel.T)).reshape(n_g, 4, -1)  # (G, 4, m)
        sin2 = np.sqrt(p[:, 0] * p[:, 0] + p[:, 1] * p[:, 1] + p[:, 2] * p[:, 2])
        out[blk] = np.arctan2(sin2, p[:, 3] - 1.0).min(axis=0)
    return np.rad2deg(out).reshape(shape)


def viewing_direction_error(R_true, R_pred, symmetry: str = "C1") -> np.ndarray:
    """Symmetry-aware angle (degrees) between projection directions ``R e_z`` (predictionType S2).

    Parameters
    ----------
    R_true, R_pred : array-like (..., 3, 3)
        Label matrices; only their third columns matter.
    symmetry : str
        Point group; the error is ``min_g angle(g R_true e_z, R_pred e_z)``.

    Returns
    -------
    np.ndarray (...) float64
        Degrees in [0, 180].
    """
    a = _float64(R_true, "R_true", (3, 3))
    b = _float64(R_pred, "R_pred", (3, 3))
    vt, vp = a[..., :, 2], b[..., :, 2]
    best = None
    for g in symmetry_matrices_np(symmetry):
        u, v = np.broadcast_arrays(vt @ g.T, vp)
        ang = np.rad2deg(np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), (u * v).sum(-1)))
        best = ang if best is None else np.minimum(best, ang)
    return best


def _as_1d_float64(x, name: str) -> np.ndarray:
    return as_float64(x, name).reshape(-1)


def mean_angular_error(err) -> float:
    """Mean angular error (MAnE), degrees.

    Parameters
    ----------
    err : array-like (n,)
        Per-particle errors in degrees.

    Raises
    ------
    ValueError
        Empty input or non-finite errors.
    """
    e = _as_1d_float64(err, "err")
    if e.size == 0:
        raise ValueError("mean_angular_error: err is empty")
    if not np.isfinite(e).all():
        raise ValueError(
            f"mean_angular_error: err has non-finite values at {np.flatnonzero(~np.isfinite(e))[:5]}"
        )
    return float(e.mean())


def weighted_mean_angular_error(err, weights) -> float:
    """Confidence-weighted mean angular error (wMAnE) ``Σ w·err / Σ w``, degrees.

    Parameters
    ----------
    err : array-like (n,)
        Per-particle errors in degrees.
    weights : array-like (n,)
        Non-negative finite weights (e.g. ``rlnMaxValueProbDistribution``).

    Raises
    ------
    ValueError
        Shapes differ, weights negative or non-finite, or weights sum to 0.
    """
    e = _as_1d_float64(err, "err")
    w = _as_1d_float64(weights, "weights")
    if e.shape != w.shape:
        raise ValueError(f"weighted_mean_angular_error: err has {e.size} values, weights {w.size}")
    if not np.isfinite(e).all():
        raise ValueError("weighted_mean_angular_error: err has non-finite values")
    if not np.isfinite(w).all():
        raise ValueError(
            f"weighted_mean_angular_error: weights non-finite at {np.flatnonzero(~np.isfinite(w))[:5]}"
        )
    if (w < 0).any():
        raise ValueError(f"weighted_mean_angular_error: negative weights at {np.flatnonzero(w < 0)[:5]}")
    total = w.sum()
    if not total > 0 or not math.isfinite(total):
        raise ValueError("weighted_mean_angular_error: weights sum to 0")
    return float((w * e).sum() / total)
