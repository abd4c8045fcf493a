"""Reference values that tell a reader what a metric's value means for this entry.

A MAnE of 35° says little by itself: :func:`random_pose_reference` gives the pose metrics that
uniformly random poses would get against the entry's own poses (with its symmetry), the
no-skill end of the scale; the map metrics have their own reference in the evaluation itself
(the ground-truth half-maps, GT0 and GT1, the best a pose predictor can reach).

Example usage::

    from cesped.evaluation.references import random_pose_reference
    ref = random_pose_reference(true_rotmats, "C2")   # {"MAnE_deg": ..., ...}
"""

from __future__ import annotations

import numpy as np

__all__ = ["random_pose_reference"]


def random_pose_reference(gt_rotmats, symmetry: str, seed: int = 0, weights=None, kind: str = "SO3") -> dict:
    """Pose metrics of uniformly random (Haar) poses against the entry's poses.

    Parameters
    ----------
    gt_rotmats : array-like (n, 3, 3)
        The entry's pose labels ``R = Aᵀ`` (both half-sets together).
    symmetry : str
        Point group ("C1", "C2", "D2", ...); errors are symmetry-aware as in the evaluation.
    seed : int
        Seed of the random poses (one uniformly random rotation per particle).
    weights : array-like (n,), optional
        The GT confidence (``rlnMaxValueProbDistribution``) that weights wMAnE; without it
        ``wMAnE_deg`` is not returned.
    kind : {"SO3", "S2"}
        Error between rotations, or between viewing directions (S2 predictions).

    Returns
    -------
    dict
        ``MAnE_deg`` (mean error), ``median_angular_error_deg``, ``wMAnE_deg`` (with
        ``weights``), all in degrees, and ``n_particles``. For C1 and SO3 the expected MAnE is
        ``90° + 360°/π² ≈ 126.5°``; higher symmetry lowers it.
    """
    from scipy.spatial.transform import Rotation

    from cesped.geometry.numpy_ops import (
        mean_angular_error,
        symmetry_aware_error,
        viewing_direction_error,
        weighted_mean_angular_error,
    )

    r = np.asarray(gt_rotmats, dtype=np.float64)
    if r.ndim != 3 or r.shape[1:] != (3, 3) or r.shape[0] == 0:
        raise ValueError(f"gt_rotmats: expected shape (n, 3, 3) with n >= 1, got {r.shape}")
    if kind not in ("SO3", "S2"):
        raise ValueError(f"kind must be 'SO3' or 'S2', got {kind!r}")
    rand = Rotation.random(len(r), random_state=np.random.default_rng(seed)).as_matrix()
    err = (
        symmetry_aware_error(r, rand, symmetry)
        if kind == "SO3"
        else viewing_direction_error(r, rand, symmetry)
    )
    out = {
        "MAnE_deg": mean_angular_error(err),
        "median_angular_error_deg": float(np.median(err)),
        "n_particles": int(len(r)),
    }
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != (len(r),):
            raise ValueError(f"weights: expected shape ({len(r)},), got {w.shape}")
        out["wMAnE_deg"] = weighted_mean_angular_error(err, w)
    return out


def random_reference(halves, symmetry: str, prediction_type: str = "SO3", seed: int = 0) -> dict:
    """:func:`random_pose_reference` of both half-sets of an evaluation (pooled).

    Parameters
    ----------
    halves : sequence of cesped.evaluation.predictions.HalfSet
        The evaluated half-sets (their ground-truth angles and confidences are used).
    symmetry : str
        The entry's point group.
    prediction_type : {"S2", "SO3", "SO3xR2"}
        ``"S2"`` compares viewing directions, otherwise rotations.
    seed : int
        Seed of the random poses (fixed, so the reference is reproducible).
    """
    from cesped.evaluation.predictions import ANGLES
    from cesped.geometry.numpy_ops import euler_to_matrix

    rot = np.concatenate([euler_to_matrix(h.gt.particles[ANGLES].to_numpy(np.float64)) for h in halves])
    conf = np.concatenate([np.asarray(h.gt_conf, dtype=np.float64) for h in halves])
    kind = "S2" if prediction_type == "S2" else "SO3"
    return random_pose_reference(rot, symmetry, seed=seed, weights=conf, kind=kind)
