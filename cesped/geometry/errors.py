"""Angular errors between poses: geodesic distance, symmetry-aware error, MAnE and wMAnE.

Poses are label matrices ``R = Aᵀ`` (see :mod:`cesped.geometry.rotations`). Symmetry acts by
left multiplication, so the symmetry-aware error is ``min_g d(g · R_true, R_pred)`` (CESPED
paper, eq. 5).
"""

from __future__ import annotations

import torch

from cesped.geometry._formulas import rotation_angle_parts
from cesped.geometry.numpy_ops import mean_angular_error, weighted_mean_angular_error
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
    sx, sy, sz, two_cos = rotation_angle_parts(M)
    two_sin = torch.linalg.vector_norm(torch.stack([sx, sy, sz], dim=-1), dim=-1)  # subgradient 0 at 0
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
