"""HEALPix grids on SO(3) and the nearest-grid-rotation lookup (geometry: no model, no table).

Conventions
-----------
Rotations on the grid use e3nn's Euler convention ``R(α, β, γ) = Ry(α) · Rx(β) · Ry(γ)``
(``e3nn.o3.angles_to_matrix``), whose pole axis is **y**. The grid of order ``o`` has
``nside = 2**o``; ``(β, α) = healpy.pix2ang(nside, p)`` (RING scheme) for the ``Npix = 12·nside²``
pixels and ``γ_k = 2πk / (6·nside)`` for ``k < 6·nside``. The flat index of rotation
``(p, k)`` is ``n = k·Npix + p`` (pixel fastest). The grid has ``72·8**o`` rotations.

Used by the models' output grids (:mod:`cesped.models.so3_grid`, which re-exports these
functions) and by the global search of :mod:`cesped.refinement.global_search`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "grid_size",
    "healpix_s2_angles",
    "healpix_so3_angles",
    "euler_yxy_to_matrix",
    "so3_grid_matrices",
    "nearest_rotation_index",
]


def _check_order(order: int, name: str = "order") -> int:
    if int(order) != order or order < 0 or order > 7:
        raise ValueError(f"{name} must be an integer in [0, 7], got {order!r}")
    return int(order)


def grid_size(order: int) -> int:
    """Number of rotations of the HEALPix SO(3) grid of ``order``: ``72 · 8**order``."""
    order = _check_order(order)
    nside = 2**order
    return 12 * nside**2 * 6 * nside


def healpix_s2_angles(order: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of the HEALPix pixels of ``order`` as e3nn angles ``(α, β)``, RING order.

    Returns
    -------
    alpha, beta : torch.Tensor (12·4**order,)
        Azimuth ``α = φ`` and polar angle ``β = θ`` (radians); the point is
        ``(sinβ sinα, cosβ, sinβ cosα)`` in e3nn's frame (HEALPix north = e3nn +y).
    """
    import healpy as hp

    order = _check_order(order)
    nside = 2**order
    theta, phi = hp.pix2ang(nside, np.arange(12 * nside**2))
    return torch.as_tensor(phi, dtype=dtype), torch.as_tensor(theta, dtype=dtype)


def healpix_so3_angles(order: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Euler angles ``(α, β, γ)`` (radians) of the SO(3) grid, flat index ``n = k·Npix + p``.

    Returns
    -------
    alpha, beta, gamma : torch.Tensor (72·8**order,)
    """
    alpha, beta = healpix_s2_angles(order, dtype)
    npix = alpha.numel()
    ngamma = 6 * 2**order
    gamma = torch.arange(ngamma, dtype=dtype) * (2 * math.pi / ngamma)
    return alpha.repeat(ngamma), beta.repeat(ngamma), gamma.repeat_interleave(npix)


def _rx(t: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(t), torch.sin(t)
    o, z = torch.ones_like(t), torch.zeros_like(t)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(t.shape + (3, 3))


def _ry(t: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(t), torch.sin(t)
    o, z = torch.ones_like(t), torch.zeros_like(t)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(t.shape + (3, 3))


def euler_yxy_to_matrix(alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``Ry(α) · Rx(β) · Ry(γ)`` (e3nn's ``angles_to_matrix``), angles in radians, shape ``(..., 3, 3)``."""
    return _ry(alpha) @ _rx(beta) @ _ry(gamma)


def so3_grid_matrices(order: int, dtype=torch.float64) -> torch.Tensor:
    """Rotation matrices of the SO(3) grid, ``(72·8**order, 3, 3)``, flat index ``n = k·Npix + p``."""
    return euler_yxy_to_matrix(*healpix_so3_angles(order, dtype))


def nearest_rotation_index(
    rotmats: torch.Tensor, grid: torch.Tensor, chunk_size: int = 65536
) -> torch.Tensor:
    """Index of the grid rotation closest (geodesic distance) to each rotation.

    The geodesic distance is monotone in ``tr(Gᵀ R) = ⟨vec G, vec R⟩``, so the lookup is a
    ``(M, 9) @ (9, chunk)`` matmul with a running maximum: memory ``M × chunk_size`` floats, never
    ``(M, N, 3, 3)``.

    Parameters
    ----------
    rotmats : torch.Tensor (..., 3, 3)
    grid : torch.Tensor (N, 3, 3) or (N, 9)
        Grid rotations (row-major flattened when 2-D).
    chunk_size : int
        Grid rotations per matmul.

    Returns
    -------
    torch.Tensor (...,) int64
    """
    if rotmats.shape[-2:] != (3, 3):
        raise ValueError(f"rotmats must have shape (..., 3, 3), got {tuple(rotmats.shape)}")
    lead = rotmats.shape[:-2]
    q = rotmats.reshape(-1, 9)
    g = grid.reshape(-1, 9).to(device=q.device, dtype=q.dtype)
    best_val = torch.full((q.shape[0],), -math.inf, dtype=q.dtype, device=q.device)
    best_idx = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    for start in range(0, g.shape[0], chunk_size):
        val, idx = (q @ g[start : start + chunk_size].T).max(dim=1)
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + start, best_idx)
    return best_idx.reshape(lead)
