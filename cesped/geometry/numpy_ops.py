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

import math

import numpy as np

from cesped._numpy import as_float64
from cesped.geometry._formulas import relion_matrix_rows, rotation_angle_parts
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


def _angle_deg(M: np.ndarray) -> np.ndarray:
    sx, sy, sz, two_cos = rotation_angle_parts(M)
    return np.rad2deg(np.arctan2(np.sqrt(sx * sx + sy * sy + sz * sz), two_cos))


def symmetry_aware_error(R_true, R_pred, symmetry: str = "C1") -> np.ndarray:
    """``min_g d(g · R_true, R_pred)`` in degrees (CESPED paper, eq. 5).

    Parameters
    ----------
    R_true, R_pred : array-like (..., 3, 3)
        Ground-truth and predicted label matrices (broadcast).
    symmetry : str
        Point group, e.g. ``"C1"``, ``"D2"``.

    Returns
    -------
    np.ndarray (...) float64
        Degrees in [0, 180]; one pass per group element, memory O(n).
    """
    a = _float64(R_true, "R_true", (3, 3))
    b = _float64(R_pred, "R_pred", (3, 3))
    at = np.swapaxes(a, -1, -2)
    best = None
    for g in symmetry_matrices_np(symmetry):
        ang = _angle_deg(at @ (g.T @ b))
        best = ang if best is None else np.minimum(best, ang)
    return best


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
