"""Local refinement of candidate poses by projection matching (coarse to fine).

For each particle the search starts from ``K`` candidate poses and, for each, the hypotheses
the images confuse most often (``R·H`` with ``H`` in :data:`HYPOTHESES`: the mirror view
``Ry(180°)``, whose projection is the mirror image, and the in-plane half-turn ``Rz(180°)``) and,
optionally, extra starts taken as they are (e.g. the best rotations of a global grid search,
:func:`cesped.refinement.global_search.global_candidates`). Which start each answer came from is
returned (:attr:`LocalResult.start`, named by :func:`start_labels`).

1. Every start gets its best origin by an FFT shift search (:func:`score.shift_search`) at the
   coarsest band; the ``keep`` best starts become tracks.
2. Levels of shrinking rotation steps ``δ`` (default 8°, 4°, 2°, 1°, 0.5°): at each, ``iters``
   times, the 27 rotations ``exp(δ·v)·R`` (``v`` in ``{-1, 0, 1}³``) around every track's pose
   are scored at its fixed origin and the best becomes the pose; then the origin is searched
   again by FFT. The band grows with the level (``radius = min(band, c / δ)`` cycles per box):
   coarse steps compare low frequencies only. After the first level the ``survivors`` best tracks
   go on through every level (default 4: at the coarse band the right basin is often not the
   best, session 9); the answer is the track with the highest gain at the finest level.
3. Confidence: a softmax of the gains over the searched poses around the answer (the answer and
   its 6 axis neighbours at the finest and at the coarsest step) and the poses of the dropped tracks
   (e.g. the mirror view), all rescored at the final band and origin; the confidence is the
   probability mass of the finest neighbourhood (written as ``rlnMaxValueProbDistribution``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from cesped.geometry.rotations import axis_angle_to_matrix, euler_to_matrix
from cesped.refinement.score import Band, ImageBatch, Reference, score_poses, shift_search

__all__ = ["HYPOTHESES", "LocalConfig", "LocalResult", "hypothesis_matrices", "refine_batch", "start_labels"]

#: Alternative poses tried for every candidate ``R``: ``R·H``.
HYPOTHESES = {"identity": (0.0, 0.0, 0.0), "mirror": (0.0, 180.0, 0.0), "halfturn": (180.0, 0.0, 0.0)}


@dataclass
class LocalConfig:
    """Parameters of :func:`refine_batch` (all recorded in the output star file).

    Attributes
    ----------
    band_radius : float
        Highest frequency compared, cycles per box (``box · px / resolution_Å``).
    shift_radius_px : float
        Largest ``|origin|`` searched, px (ignored with fixed origins).
    steps_deg : tuple of float
        Rotation steps of the levels, coarse to fine.
    iters_first, iters : int
        Neighbourhood moves at the first level and at each later level.
    keep : int
        Starts kept as tracks through the first level.
    survivors : int
        Tracks that go on after the first level, through every later level; the answer is the
        one with the highest gain at the finest level (its band is the widest). 1: only the
        best track of the first level's band goes on.
    hypotheses : tuple of str
        Keys of :data:`HYPOTHESES` applied to every candidate.
    track_separation_deg : float
        The ``keep`` tracks are the best starts at least this far apart (degrees; greedy,
        :func:`cesped.geometry.selection.distinct_top`, then the best of the others if fewer are
        that far apart), so that neighbouring candidates of one mode do not take every track.
        0: the plain ``keep`` best.
    band_per_step : float
        ``c`` of the band radius ``min(band_radius, c / δ_rad)`` of each level.
    min_band_radius : float
        Smallest band radius of a level (cycles per box).
    symmetry : str
        Point group of the map (``"C1"``, ``"C2"``, ...): the tracks' separation and the global
        search's distinct starts are measured to the nearest symmetry mate (a symmetric map
        scores ``g · R`` exactly as ``R``: two mates are one pose, not two hypotheses).
    """

    band_radius: float
    shift_radius_px: float = 5.0
    steps_deg: tuple = (8.0, 4.0, 2.0, 1.0)
    iters_first: int = 2
    iters: int = 1
    keep: int = 4
    survivors: int = 4
    hypotheses: tuple = ("identity", "mirror", "halfturn")
    track_separation_deg: float = 0.0
    band_per_step: float = 1.5
    min_band_radius: float = 8.0
    symmetry: str = "C1"

    def check(self) -> None:
        if not (self.band_radius > 0 and math.isfinite(self.band_radius)):
            raise ValueError(f"band_radius must be > 0, got {self.band_radius}")
        if not (self.track_separation_deg >= 0 and math.isfinite(self.track_separation_deg)):
            raise ValueError(f"track_separation_deg must be >= 0, got {self.track_separation_deg}")
        if not self.shift_radius_px >= 0:
            raise ValueError(f"shift_radius_px must be >= 0, got {self.shift_radius_px}")
        if not self.steps_deg or any(not s > 0 for s in self.steps_deg):
            raise ValueError(f"steps_deg must be positive, got {self.steps_deg}")
        if min(int(self.iters_first), int(self.iters), int(self.keep), int(self.survivors)) < 1:
            raise ValueError("iters_first, iters, keep and survivors must be >= 1")
        from cesped.geometry.symmetry import normalize_symmetry

        normalize_symmetry(self.symmetry)
        bad = [h for h in self.hypotheses if h not in HYPOTHESES]
        if bad or not self.hypotheses:
            raise ValueError(f"unknown hypotheses {bad}; known: {list(HYPOTHESES)}")

    def radius_of(self, step_deg: float) -> float:
        r = self.band_per_step / math.radians(step_deg)
        return float(min(self.band_radius, max(self.min_band_radius, r)))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class LocalResult:
    """Refined poses of a batch: ``rotmats (N, 3, 3)`` labels, ``origins_px (N, 2)`` RELION
    origins in px, ``confidence (N,)`` in [0, 1], ``gain (N,)`` nats at the answer and
    ``start (N,)`` int64, the start the answer was refined from (:func:`start_labels` order)."""

    rotmats: torch.Tensor
    origins_px: torch.Tensor
    confidence: torch.Tensor
    gain: torch.Tensor
    start: torch.Tensor


def start_labels(k: int, hypotheses, extra: int = 0) -> list[str]:
    """Names of the starts of :func:`refine_batch`, in its order.

    ``candidate<i>`` (1-based) and ``candidate<i>+<hypothesis>`` for each of the ``k`` candidates
    and the non-identity ``hypotheses``, then ``global<j>`` for the ``extra`` starts.
    """
    names = [
        f"candidate{i + 1}" + ("" if h == "identity" else f"+{h}") for i in range(int(k)) for h in hypotheses
    ]
    return names + [f"global{j + 1}" for j in range(int(extra))]


def hypothesis_matrices(names, dtype=torch.float64) -> torch.Tensor:
    """``(H, 3, 3)`` right factors ``H`` of the hypotheses ``R·H``."""
    return euler_to_matrix(torch.tensor([HYPOTHESES[h] for h in names], dtype=torch.float64)).to(dtype)


def _neighbourhood(step_deg: float, dtype=torch.float32, axes_only: bool = False) -> torch.Tensor:
    """``(27, 3, 3)`` rotations ``exp(step · v)``, ``v`` in ``{-1, 0, 1}³`` (index 13 = identity);
    ``axes_only``: the 7 with at most one non-zero component (index 0 = identity)."""
    v = torch.stack(
        torch.meshgrid(*(torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64),) * 3, indexing="ij"), -1
    ).reshape(-1, 3)
    if axes_only:
        v = v[v.abs().sum(1) <= 1]
        v = v[v.abs().sum(1).argsort(stable=True)]
    length = v.norm(dim=1)
    axis = torch.where(length[:, None] > 0, v, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    mats = axis_angle_to_matrix(axis, step_deg * length)
    return mats.to(dtype)


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[i, idx[i, j]]`` for ``t (N, A, ...)`` and ``idx (N, B)``."""
    return t[torch.arange(t.shape[0], device=t.device)[:, None], idx]


def refine_batch(
    ref: Reference,
    batch: ImageBatch,
    candidates: torch.Tensor,
    config: LocalConfig,
    fixed_origins_px: torch.Tensor | None = None,
    extra_starts: torch.Tensor | None = None,
) -> LocalResult:
    """Refine the poses of every particle of a batch from its candidates.

    Parameters
    ----------
    ref : Reference
        The map (its projections).
    batch : ImageBatch
        ``N`` particles.
    candidates : torch.Tensor
        ``(N, K, 3, 3)`` candidate pose labels ``R = Aᵀ``.
    config : LocalConfig
    fixed_origins_px : torch.Tensor, optional
        ``(N, 2)`` RELION origins in px to use as they are (no shift search).
    extra_starts : torch.Tensor, optional
        ``(N, G, 3, 3)`` further starts, searched as they are (no hypotheses), after the
        candidates' (e.g. the ``G`` best rotations of a global grid search).

    Returns
    -------
    LocalResult
    """
    config.check()
    dev = batch.device
    cand = torch.as_tensor(candidates).to(device=dev, dtype=torch.float32)
    n, k = cand.shape[:2]
    if cand.shape != (n, k, 3, 3) or n != len(batch):
        raise ValueError(f"candidates must have shape ({len(batch)}, K, 3, 3), got {tuple(cand.shape)}")
    hyp = hypothesis_matrices(config.hypotheses, torch.float32).to(dev)
    starts = (cand[:, :, None] @ hyp[None, None]).reshape(n, -1, 3, 3)  # (N, K·H, 3, 3)
    if extra_starts is not None:
        extra = torch.as_tensor(extra_starts).to(device=dev, dtype=torch.float32)
        if extra.ndim != 4 or extra.shape[0] != n or extra.shape[2:] != (3, 3):
            raise ValueError(f"extra_starts must have shape ({n}, G, 3, 3), got {tuple(extra.shape)}")
        starts = torch.cat([starts, extra], 1)  # (N, S, 3, 3)
    s = starts.shape[1]
    steps = list(config.steps_deg)
    bands = [Band.make(batch.n, config.radius_of(st), device=dev) for st in steps]
    final_band = Band.make(batch.n, config.band_radius, device=dev)
    rows_all = torch.arange(n, device=dev)
    fixed = None if fixed_origins_px is None else torch.as_tensor(fixed_origins_px).to(dev, torch.float32)

    def origins_of(rows, rots, band, sub_steps):
        if fixed is not None:
            return score_poses(ref, batch, rows, rots[:, None], fixed[rows], band)[:, 0], fixed[rows]
        return shift_search(ref, batch, rows, rots, band, config.shift_radius_px, sub_steps=sub_steps)

    # 1. every start: origin and gain at the coarsest band; keep the best as tracks
    rows = rows_all.repeat_interleave(s)
    g0, o0 = origins_of(rows, starts.reshape(-1, 3, 3), bands[0], 1)
    t = min(int(config.keep), s)
    if config.track_separation_deg > 0:
        from cesped.geometry.selection import distinct_top
        from cesped.geometry.symmetry import symmetry_matrices

        group = symmetry_matrices(config.symmetry, dtype=torch.float32, device=dev)
        top = distinct_top(
            g0.reshape(n, s),
            starts,
            t,
            config.track_separation_deg,
            fill="next",
            group=group,
        )  # (N, T)
    else:
        top = g0.reshape(n, s).topk(t, dim=1).indices  # (N, T)
    track_r = _gather(starts, top)  # (N, T, 3, 3)
    track_o = _gather(o0.reshape(n, s, 2), top)  # (N, T, 2)
    track_s = top  # (N, T) start of each track
    dropped_r, dropped_o = [], []

    # 2. levels
    for li, (step, band) in enumerate(zip(steps, bands)):
        nb = _neighbourhood(step).to(dev)
        tt = track_r.shape[1]
        rows = rows_all.repeat_interleave(tt)
        for _ in range(int(config.iters_first if li == 0 else config.iters)):
            cand_r = nb[None, None] @ track_r[:, :, None]  # (N, T, 27, 3, 3)
            g = score_poses(ref, batch, rows, cand_r.reshape(n * tt, 27, 3, 3), track_o.reshape(-1, 2), band)
            best = g.argmax(1)
            track_r = cand_r.reshape(n * tt, 27, 3, 3)[torch.arange(n * tt, device=dev), best].reshape(
                n, tt, 3, 3
            )
        gt_, ot_ = origins_of(rows, track_r.reshape(-1, 3, 3), band, 4 if li == len(steps) - 1 else 2)
        track_o = ot_.reshape(n, tt, 2)
        go_on = int(config.survivors) if li < len(steps) - 1 else 1
        if (li == 0 or li == len(steps) - 1) and tt > go_on:
            order = gt_.reshape(n, tt).argsort(dim=1, descending=True)
            dropped_r.append(_gather(track_r, order[:, go_on:]))
            dropped_o.append(_gather(track_o, order[:, go_on:]))
            track_r = _gather(track_r, order[:, :go_on])
            track_o = _gather(track_o, order[:, :go_on])
            track_s = _gather(track_s, order[:, :go_on])
    best_r, best_o = track_r[:, 0], track_o[:, 0]

    # 3. confidence: finest and coarsest axis neighbourhoods and the dropped tracks, final band
    fine = _neighbourhood(steps[-1], axes_only=True).to(dev)[None] @ best_r[:, None]  # (N, 7, 3, 3)
    coarse = _neighbourhood(steps[0], axes_only=True).to(dev)[None] @ best_r[:, None]
    around = torch.cat([fine, coarse[:, 1:]], 1)
    g_all = [score_poses(ref, batch, rows_all, around, best_o, final_band)]
    if dropped_r:
        dr, do = torch.cat(dropped_r, 1), torch.cat(dropped_o, 1)
        m = dr.shape[1]
        g_drop = score_poses(
            ref,
            batch,
            rows_all.repeat_interleave(m),
            dr.reshape(-1, 1, 3, 3),
            do.reshape(-1, 2),
            final_band,
        ).reshape(n, m)
        g_all.append(g_drop)
    g = torch.cat(g_all, 1).to(torch.float64)
    # the answer: the best pose of the finest neighbourhood
    fine_best = g[:, :7].argmax(1)
    out_r = fine[torch.arange(n, device=dev), fine_best]
    prob = torch.softmax(g, dim=1)
    conf = prob[:, :7].sum(1).clamp(0.0, 1.0)
    gain = g[torch.arange(n, device=dev), fine_best]
    return LocalResult(
        out_r.cpu().double(), best_o.cpu().double(), conf.cpu(), gain.cpu(), track_s[:, 0].cpu()
    )
