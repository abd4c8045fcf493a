"""Frame-free evaluation: align predicted poses to the truth by one global rotation (and hand).

Methods without pose labels (ab-initio reconstruction, orientation recovery from pairwise
distances) return poses in the frame of *their own* map, which is the true map turned by an
unknown rotation and, possibly, of the other hand. Angular errors against the ground truth mean
nothing until that frame is found. This module finds it, robustly, and reports the angular
metrics after alignment. numpy only (no torch), so that the evaluation stays fast to import.

Conventions (as everywhere in cesped, see :mod:`cesped.geometry.numpy_ops`)
-------------------------------------------------------------------------
A pose label is ``R = Aᵀ``; the projection of a map ``V`` at ``R`` is
``image(x, y) = ∫ V(R·(x, y, z)) dz``. Symmetry acts by **left** multiplication,
``R ~ S·R`` for ``S`` in the point group (``V(S p) = V(p)``).

*Turned frame.* If the predicted map is the true one turned by ``G``,
``V_pred(G p) = V_true(p)``, then the pose that gives the same image is
``R_pred = G · S · R_true`` for some symmetry element ``S``: the frame rotation acts on the
**left**, on the same side as the symmetry, outside it. ``G`` is defined only up to the map's
own symmetry, ``G ~ G·S`` (both give the same aligned errors); one representative is returned.

*Other hand.* Any map of the other hand is the true map inverted through the origin and turned:
``V_pred(-G p) = V_true(p)``. Projecting an inverted map gives the original projection turned
in-plane by 180°, so the poses are ``R_pred = G · S · R_true · Rz(180°)``: the hand shows on the
**right** side (a half-turn about the viewing axis), never as an improper matrix.
(Equivalently, for the mirror ``J = diag(1, 1, -1)``: ``R_pred = J·R_true·J`` up to ``G``.)

The aligned poses are ``R_aligned = Gᵀ · R_pred · F`` with ``F = Rz(180°)`` when ``mirrored``
and ``F = I`` otherwise; they are compared with the truth by the symmetry-aware error of
:func:`cesped.geometry.numpy_ops.symmetry_aware_error`.

Not undone: a rotation on the right other than the half-turn. Orientations recovered from
pairwise angular distances alone (Banjac et al. 2021) are defined only up to ``G·R·H`` (and
``R -> Rᵀ``): the distance ``2 arccos|q_i·q_j|`` is invariant under all of O(4). ``H`` is not a
change of the map's frame (the poses would not reconstruct the map), so this module does not
remove it; ``benchmarks/probe_recovery_ambiguity.py`` shows the gap.

Estimator
---------
Each particle votes for ``G`` up to symmetry: ``Q_i = R_pred,i · F · R_true,iᵀ = G · S_i``.
The cost of a candidate ``G`` is a least-trimmed-squares objective: the sum, over the fraction
``keep`` of particles that fit it best, of the chordal distance ``min_S ‖G·S − Q_i‖²_F``
(= ``8 sin²(θ_i/2)`` for an angular error ``θ_i``). Candidates are the ``Q_i`` of ``n_seeds``
random particles, scored on a random subsample; the best few are refined on all particles by
concentration steps (Rousseeuw & Van Driessen's C-steps: keep the best-fitting fraction, assign
each its symmetry element, take the chordal L2 mean rotation of ``Q_i·S_iᵀ`` by SVD; each step
lowers the trimmed cost). With ``keep = 0.5`` up to half of the particles may be arbitrary
outliers. Both hands are tried when ``allow_mirror``; the lower trimmed cost wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cesped._numpy import as_float64
from cesped.geometry.numpy_ops import (
    mean_angular_error,
    symmetry_aware_error,
    weighted_mean_angular_error,
)
from cesped.geometry.symmetry import normalize_symmetry, symmetry_matrices_np

__all__ = ["FrameAlignment", "HALF_TURN_Z", "align_frames", "apply_frame", "frame_free_metrics"]

#: ``Rz(180°)``: the right-hand factor of poses in a map of the other hand.
HALF_TURN_Z = np.diag([-1.0, -1.0, 1.0])

MIN_PARTICLES = 3


@dataclass(frozen=True)
class FrameAlignment:
    """Result of :func:`align_frames`.

    Attributes
    ----------
    rotation : np.ndarray (3, 3)
        ``G``: the predicted map is the true one turned by ``G`` (``V_pred(G p) = V_true(p)``,
        or ``V_pred(-G p) = V_true(p)`` when ``mirrored``); ``R_pred ≈ G·S·R_true·F``.
    mirrored : bool
        The predicted map is of the other hand (``F = Rz(180°)``).
    aligned_rotmats : np.ndarray (n, 3, 3)
        ``Gᵀ · R_pred · F``: the predicted poses in the true map's frame.
    errors_deg : np.ndarray (n,)
        Symmetry-aware angular errors of the aligned poses, degrees.
    trimmed_error_deg : float
        Root-mean-square angular error over the ``keep`` fraction of best-fitting particles
        (the minimised objective, expressed in degrees).
    keep : float
        Fraction of particles in the trimmed objective.
    symmetry : str
        Point group used.
    cost_other_hand : float or None
        Trimmed RMS error (degrees) of the best alignment of the rejected hand
        (None without ``allow_mirror``).
    """

    rotation: np.ndarray
    mirrored: bool
    aligned_rotmats: np.ndarray
    errors_deg: np.ndarray
    trimmed_error_deg: float
    keep: float
    symmetry: str
    cost_other_hand: float | None = None

    @property
    def rotation_angle_deg(self) -> float:
        """Rotation angle of ``G`` in degrees."""
        return float(np.rad2deg(np.arccos(np.clip((np.trace(self.rotation) - 1.0) / 2.0, -1.0, 1.0))))

    def aligned_angles_deg(self) -> np.ndarray:
        """Aligned poses as RELION Euler angles ``[rot, tilt, psi]`` (n, 3), degrees."""
        from scipy.spatial.transform import Rotation

        return Rotation.from_matrix(self.aligned_rotmats).as_euler("ZYZ", degrees=True)

    def summary(self) -> dict:
        """JSON-friendly description of the frame (for metrics.json)."""
        return {
            "frame_rotation": self.rotation.tolist(),
            "frame_rotation_angle_deg": self.rotation_angle_deg,
            "frame_mirrored": bool(self.mirrored),
            "frame_trimmed_rms_error_deg": float(self.trimmed_error_deg),
            "frame_keep": float(self.keep),
            "frame_other_hand_trimmed_rms_error_deg": self.cost_other_hand,
        }


def _rotmats(x, name: str) -> np.ndarray:
    a = as_float64(x, name)
    if a.ndim != 3 or a.shape[1:] != (3, 3):
        raise ValueError(f"{name}: expected shape (n, 3, 3), got {a.shape}")
    if not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a).all(axis=(1, 2)))
        raise ValueError(f"{name}: non-finite matrices at rows {bad[:5].tolist()}")
    ortho = np.abs(np.swapaxes(a, 1, 2) @ a - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(a)
    bad = np.flatnonzero((ortho > 1e-4) | (det < 0))
    if bad.size:
        raise ValueError(
            f"{name}: rows {bad[:5].tolist()} are not rotations (orthonormal with det +1); "
            "a map of the other hand is handled by allow_mirror, not by improper matrices"
        )
    return a


def _project_so3(M: np.ndarray) -> np.ndarray:
    """Nearest rotation (Frobenius) to a 3x3 matrix: the chordal L2 mean of summed rotations."""
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    return U @ np.diag([1.0, 1.0, d]) @ Vt


def _fit(cands: np.ndarray, Q: np.ndarray, sym: np.ndarray):
    """Best symmetry-equivalent agreement of candidates with the votes.

    cands (c, 3, 3), Q (n, 3, 3), sym (g, 3, 3) -> (trace (c, n), symmetry index (c, n)),
    ``trace = max_k tr((G S_k)ᵀ Q_i)`` (``= 1 + 2 cos θ``).
    """
    GS = np.einsum("cab,kbd->ckad", cands, sym).reshape(-1, 9)  # (c*g, 9)
    tr = (GS @ Q.reshape(-1, 9).T).reshape(len(cands), len(sym), len(Q))
    k = tr.argmax(axis=1)
    return np.take_along_axis(tr, k[:, None, :], axis=1)[:, 0, :], k


def _trimmed_cost(tr: np.ndarray, h: int) -> np.ndarray:
    """Sum of the h smallest chordal distances ``6 − 2·tr`` (last axis), per candidate."""
    d = 6.0 - 2.0 * tr
    return np.partition(d, h - 1, axis=-1)[..., :h].sum(axis=-1)


def _rms_deg(cost: float, h: int) -> float:
    """Trimmed chordal cost -> RMS angle in degrees (chordal ``8 sin²(θ/2)``)."""
    s = math.sqrt(max(cost, 0.0) / (8.0 * h))
    return math.degrees(2.0 * math.asin(min(s, 1.0)))


def _c_steps(G, Qf, sym, h, max_iter):
    """Concentration steps from ``G`` until the trimmed cost stops decreasing -> (G, cost).

    Qf (n, 9) flattened votes, sym (g, 3, 3) symmetry matrices.
    """
    cost, kept_G = np.inf, G
    symT = np.swapaxes(sym, 1, 2)
    rows = np.arange(len(Qf))
    for _ in range(max_iter):
        tr = Qf @ np.einsum("ab,kbd->kad", G, sym).reshape(-1, 9).T  # (n, g)
        k = tr.argmax(axis=1)
        d = 6.0 - 2.0 * tr[rows, k]
        idx = np.argpartition(d, h - 1)[:h]
        new_cost = float(d[idx].sum())
        if new_cost >= cost * (1.0 - 1e-9):
            break
        cost, kept_G = new_cost, G
        # C-step: chordal L2 mean of Q_i S_iᵀ over the kept particles
        M = np.matmul(Qf[idx].reshape(-1, 3, 3), symT[k[idx]]).sum(axis=0)
        G = _project_so3(M)
    return kept_G, cost


def _align_one_hand(Q, sym, h, rng, n_seeds, n_score, max_iter, n_refine):
    n = len(Q)
    Qf = Q.reshape(n, 9)
    seeds = Q[rng.choice(n, size=min(n_seeds, n), replace=False)]
    sub = Qf if n <= n_score else Qf[rng.choice(n, size=n_score, replace=False)]
    h_sub = max(1, int(round(h * len(sub) / n)))
    tr, _ = _fit(seeds, sub.reshape(-1, 3, 3), sym)
    order = np.argsort(_trimmed_cost(tr, h_sub))
    # refine the best candidates on the subsample, then the best of them on all particles
    refined = [_c_steps(G, sub, sym, h_sub, max_iter) for G in seeds[order[:n_refine]]]
    G0 = min(refined, key=lambda r: r[1])[0]
    return _c_steps(G0, Qf, sym, h, max_iter)


def apply_frame(pred_rotmats, rotation, mirrored: bool = False) -> np.ndarray:
    """Predicted poses in the true map's frame: ``Gᵀ · R_pred · F`` (n, 3, 3).

    Parameters
    ----------
    pred_rotmats : array-like (n, 3, 3)
        Predicted label matrices (frame of the predicted map).
    rotation : array-like (3, 3)
        ``G`` of :class:`FrameAlignment`.
    mirrored : bool
        ``F = Rz(180°)`` if True, else identity.
    """
    R = as_float64(pred_rotmats, "pred_rotmats")
    G = as_float64(rotation, "rotation")
    out = np.einsum("ba,nbc->nac", G, R)
    return out @ HALF_TURN_Z if mirrored else out


def align_frames(
    pred_rotmats,
    gt_rotmats,
    symmetry: str = "C1",
    allow_mirror: bool = False,
    keep: float = 0.5,
    n_seeds: int = 48,
    n_score: int = 2000,
    n_refine: int = 3,
    max_iter: int = 100,
    seed: int = 0,
) -> FrameAlignment:
    """Find the global rotation (and hand) that best aligns predicted poses to the truth.

    Parameters
    ----------
    pred_rotmats, gt_rotmats : array-like (n, 3, 3)
        Predicted and true label matrices of the same particles (same order), ``n >= 3``.
    symmetry : str
        Point group of the true map (``"C1"``, ``"C2"``, ``"D7"``, ``"I"`` ...).
    allow_mirror : bool
        Also try the other hand (``R_pred ≈ G·S·R_true·Rz(180°)``) and keep the better one.
    keep : float in (0, 1]
        Fraction of particles in the trimmed objective; ``1 − keep`` is the tolerated fraction
        of outliers (default 0.5: up to half).
    n_seeds, n_score, n_refine, max_iter : int
        Candidate rotations (from random particles), particles subsampled to score them,
        candidates refined on all particles, and the cap on concentration steps.
    seed : int
        Seed of the random choice of candidates and subsample (the result is deterministic).

    Returns
    -------
    FrameAlignment

    Raises
    ------
    ValueError
        Fewer than 3 particles, shapes that differ, matrices that are not rotations, ``keep``
        outside (0, 1].
    """
    P = _rotmats(pred_rotmats, "pred_rotmats")
    T = _rotmats(gt_rotmats, "gt_rotmats")
    if len(P) != len(T):
        raise ValueError(f"pred_rotmats has {len(P)} rotations, gt_rotmats {len(T)}")
    if len(P) < MIN_PARTICLES:
        raise ValueError(
            f"frame-free alignment needs at least {MIN_PARTICLES} particles, got {len(P)} (pred_rotmats)"
        )
    if not (0.0 < float(keep) <= 1.0):
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    counts = {"n_seeds": n_seeds, "n_score": n_score, "n_refine": n_refine, "max_iter": max_iter}
    for name, v in counts.items():
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    symmetry = normalize_symmetry(symmetry)
    sym = symmetry_matrices_np(symmetry)
    n = len(P)
    h = max(1, min(n, int(math.ceil(float(keep) * n))))
    hands = (False, True) if allow_mirror else (False,)
    results = []
    for mirrored in hands:
        rng = np.random.default_rng(seed)
        PF = P @ HALF_TURN_Z if mirrored else P
        Q = PF @ np.swapaxes(T, 1, 2)  # Q_i = R_pred,i F R_true,iᵀ = G S_i
        G, cost = _align_one_hand(Q, sym, h, rng, int(n_seeds), int(n_score), int(max_iter), int(n_refine))
        results.append((cost, mirrored, G))
    results.sort(key=lambda r: r[0])
    cost, mirrored, G = results[0]
    aligned = apply_frame(P, G, mirrored)
    return FrameAlignment(
        rotation=G,
        mirrored=bool(mirrored),
        aligned_rotmats=aligned,
        errors_deg=symmetry_aware_error(T, aligned, symmetry),
        trimmed_error_deg=_rms_deg(cost, h),
        keep=float(keep),
        symmetry=symmetry,
        cost_other_hand=_rms_deg(results[1][0], h) if len(results) > 1 else None,
    )


def frame_free_metrics(
    pred_rotmats,
    gt_rotmats,
    symmetry: str = "C1",
    weights=None,
    allow_mirror: bool = False,
    **align_kw,
) -> tuple[dict, FrameAlignment]:
    """Every angular metric of the evaluation, after frame alignment (and before, for reference).

    Parameters
    ----------
    pred_rotmats, gt_rotmats : array-like (n, 3, 3)
        Predicted and true label matrices.
    symmetry : str
        Point group.
    weights : array-like (n,), optional
        Ground-truth confidences for wMAnE (as in :func:`cesped.evaluation.evaluate.evaluate`).
    allow_mirror : bool
        Accept a map of the other hand.
    **align_kw
        Passed to :func:`align_frames` (``keep``, ``seed`` ...).

    Returns
    -------
    metrics : dict
        ``MAnE_deg``, ``median_angular_error_deg``, ``wMAnE_deg`` (if weights), all after
        alignment; ``MAnE_unaligned_deg``; ``frame="free"``; and the frame
        (:meth:`FrameAlignment.summary`).
    alignment : FrameAlignment
        With the aligned poses (to write a star or reconstruct the predicted map in the true frame).
    """
    al = align_frames(pred_rotmats, gt_rotmats, symmetry, allow_mirror=allow_mirror, **align_kw)
    unaligned = symmetry_aware_error(gt_rotmats, pred_rotmats, al.symmetry)
    out = {
        "frame": "free",
        "MAnE_deg": mean_angular_error(al.errors_deg),
        "median_angular_error_deg": float(np.median(al.errors_deg)),
        "MAnE_unaligned_deg": mean_angular_error(unaligned),
    }
    if weights is not None:
        out["wMAnE_deg"] = weighted_mean_angular_error(al.errors_deg, weights)
    out.update(al.summary())
    return out, al


def align_half_sets(halves, symmetry: str, allow_mirror: bool = False, sources=None) -> dict:
    """Frame-free evaluation of both half-sets: align each to its ground truth, in place.

    Each half-set is aligned on its own (ab-initio methods run the halves independently). The
    predicted Euler angles of ``halves[h].pred`` are replaced by the aligned ones (so the
    predicted maps are reconstructed in the true frame) and ``halves[h].errors`` by the errors
    after alignment. Shifts are unchanged.

    Parameters
    ----------
    halves : sequence of cesped.evaluation.predictions.HalfSet
        The validated half-sets (rotations predicted: ``predictionType`` SO3 or SO3xR2).
    symmetry : str
        The entry's point group.
    allow_mirror : bool
        Also try the other hand.
    sources : sequence of 2 path-like, optional
        The prediction files of the half-sets, named in errors (e.g. too few particles).

    Returns
    -------
    dict
        ``"frame": "free"``, ``"frame_allow_mirror"`` and, per half-set ``h``, the
        :meth:`FrameAlignment.summary` fields suffixed ``_half{h}`` plus
        ``"MAnE_unaligned_half{h}_deg"``.
    """
    from cesped.evaluation.predictions import ANGLES
    from cesped.geometry.numpy_ops import euler_to_matrix, mean_angular_error

    out: dict = {"frame": "free", "frame_allow_mirror": bool(allow_mirror)}
    for h, half in enumerate(halves):
        pred = euler_to_matrix(half.pred.particles[ANGLES].to_numpy(np.float64))
        gt = euler_to_matrix(half.gt.particles[ANGLES].to_numpy(np.float64))
        try:
            al = align_frames(pred, gt, symmetry, allow_mirror=allow_mirror)
        except ValueError as exc:
            where = f" ({sources[h]})" if sources is not None else ""
            raise ValueError(f"frame='free', half-set {h}{where}: {exc}") from exc
        out[f"MAnE_unaligned_half{h}_deg"] = float(mean_angular_error(half.errors))
        half.pred.particles[ANGLES] = al.aligned_angles_deg()
        half.errors = al.errors_deg
        out.update({f"{k}_half{h}": v for k, v in al.summary().items()})
    return out
