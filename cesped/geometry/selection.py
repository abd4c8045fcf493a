"""Distinct choices on SO(3): greedy non-maximum suppression of scored rotations.

Used by the global search of the refinement (grid rotations two grid steps apart) and by the
network's top-K prediction (distinct modes instead of neighbouring grid cells).
"""

from __future__ import annotations

import math

import torch


def distinct_top(
    scores: torch.Tensor,
    rotmats: torch.Tensor,
    k: int,
    min_deg: float,
    fill: str = "best",
    group: torch.Tensor | None = None,
) -> torch.Tensor:
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
    fill : {"best", "next"}
        A row with fewer than ``k`` rotations that far apart fills its remaining places with its
        best one again (``"best"``) or with its best rotations not chosen yet, in decreasing
        score, however close (``"next"``; needs ``k <= M``).
    group : torch.Tensor, optional
        ``(G, 3, 3)`` the point group acting on the labels from the left
        (:func:`cesped.geometry.symmetry.symmetry_matrices`): distances are then taken to the
        nearest symmetry mate, ``min_g d(g · S, R)``, so that two mates (one pose of a symmetric
        particle) are never both chosen. None, or C1's one-element group: plain distances.

    Returns
    -------
    torch.Tensor
        ``(N, k)`` int64 positions into ``M``: the distinct choices in decreasing score, then the
        fill.
    """
    if scores.ndim != 2 or rotmats.shape != (*scores.shape, 3, 3):
        raise ValueError(
            f"distinct_top: scores (N, M) and rotmats (N, M, 3, 3) expected, got "
            f"{tuple(scores.shape)} and {tuple(rotmats.shape)}"
        )
    k = int(k)
    if k < 1:
        raise ValueError(f"distinct_top: k must be >= 1, got {k}")
    if fill not in ("best", "next"):
        raise ValueError(f"distinct_top: fill must be 'best' or 'next', got {fill!r}")
    n, m = scores.shape
    if fill == "next" and k > m:
        raise ValueError(f"distinct_top: fill='next' needs k <= M, got k={k}, M={m}")
    dev = scores.device
    order = scores.argsort(1, descending=True)
    rots = torch.gather(rotmats, 1, order[:, :, None, None].expand(-1, -1, 3, 3))
    cos_min = math.cos(math.radians(float(min_deg)))
    if group is not None:
        group = torch.as_tensor(group).to(device=dev, dtype=rotmats.dtype)
        if group.ndim != 3 or group.shape[1:] != (3, 3):
            raise ValueError(f"distinct_top: group must be (G, 3, 3), got {tuple(group.shape)}")
        if len(group) == 1:  # C1: the identity alone, the plain distance
            group = None
    chosen = torch.zeros((n, k), dtype=torch.long, device=dev)  # positions into the sorted order
    count = torch.zeros(n, dtype=torch.long, device=dev)
    slots = torch.arange(k, device=dev)[None]
    rows = torch.arange(n, device=dev)
    for j in range(m):
        r = rots[:, j]  # (N, 3, 3)
        sel = rots[rows[:, None], chosen]  # (N, k, 3, 3)
        if group is None:
            tr = (sel * r[:, None]).sum((-2, -1))  # trace(Sᵀ R)
        else:  # the nearest mate: max_g trace((g S)ᵀ R)
            tr = ((group[None, None] @ sel[:, :, None]) * r[:, None, None]).sum((-2, -1)).amax(-1)
        close = ((tr - 1) / 2 > cos_min) & (slots < count[:, None])
        ok = ~close.any(1) & (count < k)
        chosen[ok, count[ok]] = j
        count += ok.long()
        if bool((count >= k).all()):
            break
    if fill == "best":
        chosen = torch.where(slots >= count[:, None], chosen[:, :1], chosen)
    else:
        taken = torch.zeros((n, m), dtype=torch.bool, device=dev)
        for slot in range(k):
            v = slot < count
            taken[rows[v], chosen[v, slot]] = True
        rank = torch.cumsum(~taken, 1) - 1  # rank of each untaken sorted position
        for slot in range(k):
            need = slot - count  # the need-th untaken position goes to this slot
            want = (~taken) & (rank == need[:, None])
            pick = want.float().argmax(1)
            chosen[:, slot] = torch.where(need >= 0, pick, chosen[:, slot])
    return torch.gather(order, 1, chosen)
