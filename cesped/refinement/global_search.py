"""Exhaustive search over an SO(3) grid (and a grid of origins): the start of the floor.

Every particle is compared with the projections of the map at every rotation of the HEALPix
SO(3) grid of ``order`` (:func:`cesped.geometry.so3_grid.so3_grid_matrices`: 4,608 rotations,
15°, at order 2; 36,864, 7.5°, at order 3) at a low band (``radius = c / step``), as two real
matrix products per chunk: ``cross = Re(A) Re(P)ᵀ + Im(A) Im(P)ᵀ`` over all (particle x origin)
rows and ``norm = B |P|²ᵀ`` (:mod:`cesped.refinement.score`). The best gain over the origins is
kept per rotation and the ``top`` best rotations at least two grid steps apart are returned as
candidates of the local refinement.
"""

from __future__ import annotations

import math

import torch

from cesped.refinement.score import Band, ImageBatch, Reference, gains_from

__all__ = ["grid_step_deg", "origin_grid", "global_candidates"]


def grid_step_deg(order: int) -> float:
    """Approximate spacing of the SO(3) grid of ``order`` (degrees): 15° at order 2."""
    return 60.0 / 2**order


def origin_grid(radius_px: float, step_px: float) -> torch.Tensor:
    """``(S, 2)`` origins ``[x, y]`` (px) on a square grid of ``step_px`` within ``radius_px``."""
    if radius_px <= 0:
        return torch.zeros((1, 2))
    m = int(math.floor(radius_px / step_px))
    v = torch.arange(-m, m + 1, dtype=torch.float32) * step_px
    g = torch.stack(torch.meshgrid(v, v, indexing="xy"), -1).reshape(-1, 2)
    return g[(g**2).sum(1) <= radius_px**2 + 1e-6]


def global_candidates(
    ref: Reference,
    batch: ImageBatch,
    band: Band,
    order: int = 2,
    origins_px: torch.Tensor | None = None,
    shift_radius_px: float = 5.0,
    shift_step_px: float = 1.5,
    top: int = 4,
    chunk: int = 64,
    grid_chunk: int = 8192,
    symmetry: str = "C1",
) -> torch.Tensor:
    """Best ``top`` grid rotations of every particle of a batch.

    Parameters
    ----------
    ref, batch, band
        Map, particles and the (low) band compared.
    order : int
        HEALPix SO(3) grid order (2: 4,608 rotations).
    origins_px : torch.Tensor, optional
        ``(N, 2)`` fixed RELION origins (px); default: the best of :func:`origin_grid`
        ``(shift_radius_px, shift_step_px)`` per rotation.
    top : int
        Candidates per particle, at least two grid steps apart (from each other's symmetry
        mates too: a symmetric map scores ``g · R`` as ``R``, so the mates of one basin would
        otherwise take several of the ``top`` places).
    symmetry : str
        Point group of the map (``"C1"``, ``"C2"``, ...).

    Returns
    -------
    torch.Tensor
        ``(N, top, 3, 3)`` float32 rotation labels.
    """
    from cesped.geometry.selection import distinct_top
    from cesped.geometry.so3_grid import so3_grid_matrices
    from cesped.geometry.symmetry import symmetry_matrices

    dev = batch.device
    grid = so3_grid_matrices(order).to(torch.float32)
    slices = torch.cat(
        [ref.slices(grid[i : i + grid_chunk], band).to(dev) for i in range(0, len(grid), grid_chunk)]
    )
    pr, pi, p2 = slices.real.T.contiguous(), slices.imag.T.contiguous(), (slices.abs() ** 2).T.contiguous()
    grid = grid.to(dev)
    shifts = None if origins_px is not None else origin_grid(shift_radius_px, shift_step_px).to(dev)
    group = symmetry_matrices(symmetry, dtype=torch.float32, device=dev)
    # the choice is made among the best ``keep`` grid rotations: 16 per start (and per mate), so
    # that rows whose best rotations crowd one sharp basin still find ``top`` distinct ones
    keep = min(max(16 * top, 64) * len(group), len(grid))
    out = []
    for s in range(0, len(batch), chunk):
        rows = torch.arange(s, min(s + chunk, len(batch)), device=dev)
        if shifts is None:
            a, b = batch.terms(rows, torch.as_tensor(origins_px)[rows.cpu()].to(dev), band)
            cross = a.real @ pr + a.imag @ pi
        else:
            ns = len(shifts)
            rr = rows.repeat_interleave(ns)
            a, _ = batch.terms(rr, shifts.repeat(len(rows), 1), band)
            cross = (a.real @ pr + a.imag @ pi).reshape(len(rows), ns, -1).amax(1)
            _, b = batch.terms(rows, torch.zeros((len(rows), 2), device=dev), band)
        g = gains_from(cross, b @ p2)
        val, idx = g.topk(min(keep, g.shape[1]), dim=1)
        pos = distinct_top(val, grid[idx], top, 2 * grid_step_deg(order), group=group)
        out.append(grid[torch.gather(idx, 1, pos)])
    return torch.cat(out)
