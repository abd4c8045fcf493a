"""Quaternion helpers of orientation recovery (torch, ``[w, x, y, z]``, Hamilton product).

``quaternion_to_matrix(qmul(a, b)) == quaternion_to_matrix(a) @ quaternion_to_matrix(b)``
(:mod:`cesped.geometry.rotations`), so the pose ``R·Rz(90°·k)`` of a quarter-turned image is
``qmul(q, quarter_turns(k))``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["qmul", "quat_distance", "quarter_turns", "o4_align"]


def qmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of ``(..., 4)`` quaternions ``[w, x, y, z]`` (broadcasting)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Angle (radians, in ``[0, π]``) of the rotation between unit quaternions: ``2·arccos|a·b|``.

    ``eps`` keeps the gradient finite at distance 0.
    """
    return 2.0 * torch.arccos(torch.clamp((a * b).sum(-1).abs(), max=1.0 - eps))


def quarter_turns(k: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Quaternions of ``Rz(90°·k)`` for integer ``k`` ``(...)`` -> ``(..., 4)``."""
    a = (torch.as_tensor(k) % 4).to(dtype) * (math.pi / 4.0)  # half angle
    z = torch.zeros_like(a)
    return torch.stack([torch.cos(a), z, z, torch.sin(a)], dim=-1)


def o4_align(q_pred, q_true, n_iter: int = 50, n_starts: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Best orthogonal map of R⁴ from predicted to true quaternions (Banjac et al.'s alignment).

    This undoes EVERY ambiguity of distances (left and right products, transpose), including
    the image-side one that no change of the map's frame explains: the errors it leaves measure
    the internal consistency of a recovery, not pose accuracy.

    Parameters
    ----------
    q_pred, q_true : array-like (n, 4)
        Unit quaternions (sign arbitrary).

    Returns
    -------
    M : np.ndarray (4, 4)
        Orthogonal matrix, ``q_true ≈ ± M @ q_pred``.
    errors_deg : np.ndarray (n,)
        ``2·arccos|q_true · M q_pred|`` in degrees.
    """
    qp = np.asarray(q_pred, dtype=np.float64)
    qt = np.asarray(q_true, dtype=np.float64)
    if qp.ndim != 2 or qp.shape[1] != 4 or qp.shape != qt.shape:
        raise ValueError(f"o4_align: q_pred and q_true must both be (n, 4), got {qp.shape} and {qt.shape}")
    best_M, best_err = np.eye(4), None
    rng = np.random.default_rng(0)
    # the per-particle signs make the problem non-convex: alternate (signs, Procrustes) from
    # several starts and keep the best
    for start in range(n_starts):
        M = np.eye(4) if start == 0 else np.linalg.qr(rng.standard_normal((4, 4)))[0]
        for _ in range(n_iter):
            s = np.sign((qp @ M.T * qt).sum(1))
            s[s == 0] = 1.0
            u, _, vt = np.linalg.svd((qt * s[:, None]).T @ qp)
            M_new = u @ vt
            if np.allclose(M_new, M, atol=1e-12):
                break
            M = M_new
        err = np.degrees(2.0 * np.arccos(np.clip(np.abs((qp @ M.T * qt).sum(1)), 0.0, 1.0)))
        if best_err is None or err.mean() < best_err.mean():
            best_M, best_err = M, err
    return best_M, best_err
