"""Rotations in RELION's convention: ZYZ Euler angles, matrices and unit quaternions.

Conventions
-----------
RELION's ``Euler_angles2matrix(rot, tilt, psi)`` (``src/euler.cpp``) builds the matrix ``A``
that maps volume coordinates to image coordinates. The pose label used throughout cesped is
its transpose::

    R = Aᵀ = Rz(rot) · Ry(tilt) · Rz(psi)

with the active right-handed rotations ``Rz(a) = [[cos a, -sin a, 0], [sin a, cos a, 0], [0, 0, 1]]``
and ``Ry(b) = [[cos b, 0, sin b], [0, 1, 0], [-sin b, 0, cos b]]``. This equals
``scipy.spatial.transform.Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix()``.

Euler angles are in degrees and ordered ``[rot, tilt, psi]`` (star columns ``rlnAngleRot``,
``rlnAngleTilt``, ``rlnAnglePsi``). Quaternions are ``[w, x, y, z]`` (scalar first) of the
label ``R``, returned with ``w >= 0``.

All functions are batched over arbitrary leading dimensions and keep the floating dtype of
their input (float32 or float64; integer input is promoted to float64).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cesped.geometry._formulas import relion_matrix_rows

__all__ = [
    "euler_to_matrix",
    "relion_matrix",
    "matrix_to_euler",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "euler_to_quaternion",
    "quaternion_to_euler",
    "random_rotations",
    "axis_angle_to_matrix",
    "rotation_z",
    "as_float_tensor",
]


def as_float_tensor(x, name: str = "input") -> torch.Tensor:
    """Convert ``x`` to a floating torch tensor, keeping float32/float64 (others become float64).

    Parameters
    ----------
    x : array-like or torch.Tensor
        Input values.
    name : str
        Argument name used in error messages.
    """
    if isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64):
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        t = torch.as_tensor(x)
    if t.dtype not in (torch.float32, torch.float64):
        if t.is_complex():
            raise ValueError(f"{name}: complex values are not rotations")
        t = t.to(torch.float64)
    return t


def _check_last(t: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(t.shape[t.dim() - len(shape) :]) != shape or t.dim() < len(shape):
        raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, shape))}), got {tuple(t.shape)}")


def euler_to_matrix(angles) -> torch.Tensor:
    """Pose label ``R = Aᵀ`` from RELION Euler angles.

    Parameters
    ----------
    angles : array-like (..., 3)
        ``[rot, tilt, psi]`` in degrees (RELION ZYZ).

    Returns
    -------
    torch.Tensor (..., 3, 3)
        ``R = Rz(rot) Ry(tilt) Rz(psi)``, the transpose of RELION's ``Euler_angles2matrix``.
    """
    return relion_matrix(angles).transpose(-1, -2)


def relion_matrix(angles) -> torch.Tensor:
    """RELION's ``Euler_angles2matrix(rot, tilt, psi)``: the matrix ``A`` (volume -> image).

    Parameters
    ----------
    angles : array-like (..., 3)
        ``[rot, tilt, psi]`` in degrees.

    Returns
    -------
    torch.Tensor (..., 3, 3)
        ``A``, element for element as in RELION ``src/euler.cpp``.
    """
    a = as_float_tensor(angles, "angles")
    _check_last(a, (3,), "angles")
    rad = torch.deg2rad(a.to(torch.float64))  # float64 internally: float32 results are correctly rounded
    ca, cb, cg = torch.cos(rad).unbind(-1)
    sa, sb, sg = torch.sin(rad).unbind(-1)
    rows = [torch.stack(r, dim=-1) for r in relion_matrix_rows(ca, cb, cg, sa, sb, sg)]
    return torch.stack(rows, dim=-2).to(a.dtype)


def _wrap_deg(x: torch.Tensor) -> torch.Tensor:
    """Wrap degrees into (-180, 180]."""
    y = torch.remainder(x + 180.0, 360.0) - 180.0
    return torch.where(y == -180.0, torch.full_like(y, 180.0), y)


def matrix_to_quaternion(R) -> torch.Tensor:
    """Unit quaternion ``[w, x, y, z]`` of rotation matrices (Shepperd's method, ``w >= 0``).

    Parameters
    ----------
    R : array-like (..., 3, 3)
        Rotation matrices (the label convention ``R = Aᵀ`` or any other).

    Returns
    -------
    torch.Tensor (..., 4)
        Normalised quaternion with non-negative scalar part (at ``w == 0``, rotations by 180
        degrees, ``q`` and ``-q`` are both possible).
    """
    m_in = as_float_tensor(R, "R")
    _check_last(m_in, (3, 3), "R")
    m = m_in.to(torch.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # four candidates, each computed from the largest of 4w², 4x², 4y², 4z²
    t_w = 1.0 + m00 + m11 + m22
    t_x = 1.0 + m00 - m11 - m22
    t_y = 1.0 - m00 + m11 - m22
    t_z = 1.0 - m00 - m11 + m22
    cand = torch.stack(
        [
            torch.stack([t_w, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, t_x, m01 + m10, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m01 + m10, t_y, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, t_z], dim=-1),
        ],
        dim=-2,
    )  # (..., 4 candidates, 4 components)
    best = torch.stack([t_w, t_x, t_y, t_z], dim=-1).argmax(dim=-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q).to(m_in.dtype)


def quaternion_to_matrix(q) -> torch.Tensor:
    """Rotation matrices from quaternions ``[w, x, y, z]`` (normalised first).

    Parameters
    ----------
    q : array-like (..., 4)
        Quaternions, any non-zero norm.

    Returns
    -------
    torch.Tensor (..., 3, 3)
    """
    q_in = as_float_tensor(q, "q")
    _check_last(q_in, (4,), "q")
    q = q_in.to(torch.float64)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = [
        torch.stack([1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)], dim=-1),
        torch.stack([2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)], dim=-1),
        torch.stack([2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)], dim=-1),
    ]
    return torch.stack(rows, dim=-2).to(q_in.dtype)


def quaternion_to_euler(q) -> torch.Tensor:
    """RELION Euler angles ``[rot, tilt, psi]`` (degrees) from quaternions of the label ``R``.

    Uses the direct half-angle method (Bernardes & Viollet 2022): with
    ``q = [w, x, y, z]``, ``tilt = 2 atan2(|(x, y)|, |(w, z)|)``, ``(rot + psi)/2 = atan2(z, w)``
    and ``(rot - psi)/2 = atan2(-x, y)``. In gimbal lock (``sin(tilt/2)`` or ``cos(tilt/2)``
    below the input dtype's machine epsilon) tilt is set to exactly 0 or 180, ``psi`` to 0,
    and the whole in-plane angle goes to ``rot``.

    Parameters
    ----------
    q : array-like (..., 4)

    Returns
    -------
    torch.Tensor (..., 3)
        ``rot`` and ``psi`` in (-180, 180], ``tilt`` in [0, 180].
    """
    q_in = as_float_tensor(q, "q")
    _check_last(q_in, (4,), "q")
    q = q_in.to(torch.float64)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    n_wz = torch.hypot(w, z)
    n_xy = torch.hypot(x, y)
    tilt = 2.0 * torch.atan2(n_xy, n_wz)
    plus = torch.atan2(z, w)
    minus = torch.atan2(-x, y)
    eps = torch.finfo(q_in.dtype).eps  # gimbal-lock tolerance: the caller's precision
    lock0 = n_xy <= eps  # tilt ~ 0: only rot + psi is defined
    lock180 = n_wz <= eps  # tilt ~ 180: only rot - psi is defined
    rot = torch.where(lock0, 2.0 * plus, torch.where(lock180, 2.0 * minus, plus + minus))
    psi = torch.where(lock0 | lock180, torch.zeros_like(plus), plus - minus)
    tilt = torch.where(
        lock0, torch.zeros_like(tilt), torch.where(lock180, torch.full_like(tilt, math.pi), tilt)
    )
    out = torch.stack([torch.rad2deg(rot), torch.rad2deg(tilt), torch.rad2deg(psi)], dim=-1)
    out = torch.stack([_wrap_deg(out[..., 0]), out[..., 1], _wrap_deg(out[..., 2])], dim=-1)
    out = out.to(q_in.dtype)
    return torch.where(out == -180.0, torch.full_like(out, 180.0), out)  # rounding may reach -180


def matrix_to_euler(R) -> torch.Tensor:
    """RELION Euler angles of label matrices ``R = Aᵀ`` (inverse of :func:`euler_to_matrix`).

    Parameters
    ----------
    R : array-like (..., 3, 3)

    Returns
    -------
    torch.Tensor (..., 3)
        ``[rot, tilt, psi]`` in degrees; ``rot, psi`` in (-180, 180], ``tilt`` in [0, 180];
        at tilt 0 or 180 ``psi = 0``.
    """
    return quaternion_to_euler(matrix_to_quaternion(R))


def euler_to_quaternion(angles) -> torch.Tensor:
    """Quaternion ``[w, x, y, z]`` (``w >= 0``) of the label ``R`` for RELION Euler angles (degrees).

    Parameters
    ----------
    angles : array-like (..., 3)

    Returns
    -------
    torch.Tensor (..., 4)
    """
    a = as_float_tensor(angles, "angles")
    _check_last(a, (3,), "angles")
    half = torch.deg2rad(a) / 2
    rot, tilt, psi = half.unbind(-1)
    ct, st = torch.cos(tilt), torch.sin(tilt)
    plus, minus = rot + psi, rot - psi
    q = torch.stack(
        [ct * torch.cos(plus), -st * torch.sin(minus), st * torch.cos(minus), ct * torch.sin(plus)], -1
    )
    return torch.where(q[..., :1] < 0, -q, q)


def random_rotations(n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """Haar-uniform random rotation matrices.

    Parameters
    ----------
    n : int
        Number of rotations.
    generator : torch.Generator, optional
        Source of randomness (CPU generator).
    dtype : torch.dtype
        float32 or float64.

    Returns
    -------
    torch.Tensor (n, 3, 3)
        Normalised 4-D Gaussian vectors are uniform on S³, hence Haar-uniform rotations.
    """
    if int(n) < 0:
        raise ValueError(f"random_rotations: n must be >= 0, got {n}")
    q = torch.randn(int(n), 4, generator=generator, dtype=torch.float64)
    return quaternion_to_matrix(q).to(dtype)


def axis_angle_to_matrix(axis, angle_deg) -> torch.Tensor:
    """Active rotation by ``angle_deg`` (degrees, right-handed) about ``axis`` (Rodrigues).

    Parameters
    ----------
    axis : array-like (..., 3)
        Rotation axis, any non-zero length (normalised here).
    angle_deg : array-like (...)
        Angle in degrees; broadcast against ``axis[..., 0]``.

    Returns
    -------
    torch.Tensor (..., 3, 3)
    """
    ax = as_float_tensor(axis, "axis")
    _check_last(ax, (3,), "axis")
    ang = as_float_tensor(angle_deg, "angle_deg").to(ax.dtype)
    norm = torch.linalg.vector_norm(ax, dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("axis_angle_to_matrix: axis has zero length")
    ax = ax / norm
    half = torch.deg2rad(ang) / 2
    ax, half = torch.broadcast_tensors(ax, half[..., None])
    q = torch.cat([torch.cos(half[..., :1]), torch.sin(half) * ax], dim=-1)
    return quaternion_to_matrix(q)


def rotation_z(angle_deg) -> torch.Tensor:
    """Active rotation about z: ``[[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]``.

    Parameters
    ----------
    angle_deg : array-like (...)
        Degrees.

    Returns
    -------
    torch.Tensor (..., 3, 3)
    """
    a = torch.deg2rad(as_float_tensor(angle_deg, "angle_deg"))
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack(
        [torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], dim=-2
    )
