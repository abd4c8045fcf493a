"""Angular errors between poses: geodesic distance, symmetry-aware error, MAnE and wMAnE.

Poses are label matrices ``R = Aᵀ`` (see :mod:`cesped.geometry.rotations`). Symmetry acts by
left multiplication, so the symmetry-aware error is ``min_g d(g · R_true, R_pred)`` (CESPED
paper, eq. 5).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cesped.geometry.rotations import as_float_tensor
from cesped.geometry.symmetry import symmetry_matrices

__all__ = [
    "angular_distance",
    "symmetry_aware_error",
    "viewing_direction_error",
    "mean_angular_error",
    "weighted_mean_angular_error",
]


def _check_rot(t: torch.Tensor, name: str) -> None:
    if t.dim() < 2 or tuple(t.shape[-2:]) != (3, 3):
        raise ValueError(f"{name}: expected shape (..., 3, 3), got {tuple(t.shape)}")


def _pair(R1, R2, n1: str, n2: str) -> tuple[torch.Tensor, torch.Tensor]:
    a = as_float_tensor(R1, n1)
    b = as_float_tensor(R2, n2)
    _check_rot(a, n1)
    _check_rot(b, n2)
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def _angle_of_relative(M: torch.Tensor) -> torch.Tensor:
    """Rotation angle (radians) of ``M`` from ``atan2(sin, cos)``; exact 0 for symmetric ``M``."""
    sx = M[..., 2, 1] - M[..., 1, 2]
    sy = M[..., 0, 2] - M[..., 2, 0]
    sz = M[..., 1, 0] - M[..., 0, 1]
    two_sin = torch.linalg.vector_norm(torch.stack([sx, sy, sz], dim=-1), dim=-1)  # subgradient 0 at 0
    two_cos = M[..., 0, 0] + M[..., 1, 1] + M[..., 2, 2] - 1.0
    return torch.atan2(two_sin, two_cos)


def angular_distance(R1, R2) -> torch.Tensor:
    """Geodesic distance between rotations, in degrees.

    Parameters
    ----------
    R1, R2 : array-like (..., 3, 3)
        Rotation matrices (broadcast against each other).

    Returns
    -------
    torch.Tensor (...)
        Angle of ``R1ᵀ R2`` in [0, 180] degrees, computed as ``atan2(2 sin θ, 2 cos θ)`` from the
        antisymmetric part and the trace, so it is accurate near 0 and 180 degrees (identical
        inputs give exactly 0), unlike ``arccos((tr - 1)/2)``.
    """
    a, b = _pair(R1, R2, "R1", "R2")
    return torch.rad2deg(_angle_of_relative(a.transpose(-1, -2) @ b))


def symmetry_aware_error(R_true, R_pred, symmetry: str = "C1") -> torch.Tensor:
    """Symmetry-aware angular error ``min_g d(g · R_true, R_pred)`` in degrees.

    Parameters
    ----------
    R_true, R_pred : array-like (..., 3, 3)
        Ground-truth and predicted label matrices ``R = Aᵀ`` (broadcast).
    symmetry : str
        Point group (``"C1"``, ``"D2"``, ``"I"``, ...; see :mod:`cesped.geometry.symmetry`).

    Returns
    -------
    torch.Tensor (...)
        Degrees. The minimum is taken with one pass per group element (G <= 60), so memory
        stays O(n).
    """
    a, b = _pair(R_true, R_pred, "R_true", "R_pred")
    group = symmetry_matrices(symmetry, dtype=a.dtype, device=a.device)
    # d(g R_t, R_p) = angle(R_tᵀ gᵀ R_p)
    best = None
    for g in group:
        ang = _angle_of_relative(a.transpose(-1, -2) @ (g.T @ b))
        best = ang if best is None else torch.minimum(best, ang)
    return torch.rad2deg(best)


def viewing_direction_error(R_true, R_pred, symmetry: str = "C1") -> torch.Tensor:
    """Symmetry-aware angle between projection directions, in degrees (predictionType ``S2``).

    The projection (viewing) direction of a pose is the volume-frame direction along which it
    projects: ``Aᵀ e_z = R e_z``, the third column of ``R``,
    ``(cos rot sin tilt, sin rot sin tilt, cos tilt)``; it does not depend on ``psi``.

    Parameters
    ----------
    R_true, R_pred : array-like (..., 3, 3)
        Label matrices ``R = Aᵀ``.
    symmetry : str
        Point group; the error is ``min_g angle(g R_true e_z, R_pred e_z)``.

    Returns
    -------
    torch.Tensor (...)
        Degrees in [0, 180].
    """
    a, b = _pair(R_true, R_pred, "R_true", "R_pred")
    group = symmetry_matrices(symmetry, dtype=a.dtype, device=a.device)
    vt = a[..., :, 2]
    vp = b[..., :, 2]
    best = None
    for g in group:
        u = vt @ g.T  # g · v_true for row vectors
        cross = torch.linalg.vector_norm(torch.cross(*torch.broadcast_tensors(u, vp), dim=-1), dim=-1)
        ang = torch.atan2(cross, (u * vp).sum(-1))
        best = ang if best is None else torch.minimum(best, ang)
    return torch.rad2deg(best)


def _as_1d_float64(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    return arr


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
