"""Distinct choices on SO(3): greedy non-maximum suppression of scored rotations.

Used by the global search of the refinement (grid rotations two grid steps apart) and by the
network's top-K prediction (distinct modes instead of neighbouring grid cells).
"""

from __future__ import annotations

import math

import torch


def distinct_top(scores: torch.Tensor, rotmats: torch.Tensor, k: int, min_deg: float) -> torch.Tensor:
    """Positions of the ``k`` best rotations of each row that are at least ``min_deg`` apart.

    Greedy: the rotations are visited in decreasing score; one is taken when its geodesic
    distance to every rotation already taken in that row exceeds ``min_deg``.

    Parameters
    ----------
    scores : torch.Tensor
        ``(N, M)`` scores (higher is better).
    rotmats : torch.Tensor
        ``(N, M, 3, 3)`` the rotation of each score (any fixed frame: distances are frame-free).
    k : int
        Choices per row (>= 1).
    min_deg : float
        Smallest geodesic distance between two choices, degrees (0: plain top-k).

    Returns
    -------
    torch.Tensor
        ``(N, k)`` int64 positions into ``M``, in decreasing score. A row with fewer than ``k``
        rotations that far apart repeats its best one in the remaining places.
    """
    if scores.ndim != 2 or rotmats.shape != (*scores.shape, 3, 3):
        raise ValueError(
            f"distinct_top: scores (N, M) and rotmats (N, M, 3, 3) expected, got "
            f"{tuple(scores.shape)} and {tuple(rotmats.shape)}"
        )
    k = int(k)
    if k < 1:
        raise ValueError(f"distinct_top: k must be >= 1, got {k}")
    n, m = scores.shape
    dev = scores.device
    order = scores.argsort(1, descending=True)
    rots = torch.gather(rotmats, 1, order[:, :, None, None].expand(-1, -1, 3, 3))
    cos_min = math.cos(math.radians(float(min_deg)))
    chosen = torch.zeros((n, k), dtype=torch.long, device=dev)  # positions into the sorted order
    count = torch.zeros(n, dtype=torch.long, device=dev)
    slots = torch.arange(k, device=dev)[None]
    rows = torch.arange(n, device=dev)
    for j in range(m):
        r = rots[:, j]  # (N, 3, 3)
        sel = rots[rows[:, None], chosen]  # (N, k, 3, 3)
        tr = (sel * r[:, None]).sum((-2, -1))  # trace(Sᵀ R)
        close = ((tr - 1) / 2 > cos_min) & (slots < count[:, None])
        ok = ~close.any(1) & (count < k)
        chosen[ok, count[ok]] = j
        count += ok.long()
        if bool((count >= k).all()):
            break
    chosen = torch.where(slots >= count[:, None], chosen[:, :1], chosen)
    return torch.gather(order, 1, chosen)
