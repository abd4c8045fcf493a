"""Prediction files of one half-set: validation against the entry and transplant into its table.

The predicted columns (S2: rot, tilt; SO3: rot, tilt, psi; SO3xR2: + origins; plus
``rlnParticleFigureOfMerit`` when the confidence is used) replace the ground-truth values in a
copy of the entry's half-set; everything else (CTF, and shifts unless SO3xR2) stays ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "PREDICTION_TYPES",
    "ANGLES",
    "SHIFTS",
    "FOM",
    "GT_CONF",
    "IMAGE",
    "MAX_ABS_ANGLE_DEG",
    "HalfSet",
    "predicted_keys",
    "prepare_predictions",
    "check_optics",
    "per_particle",
]

PREDICTION_TYPES = ("S2", "SO3", "SO3xR2")
ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
SHIFTS = ["rlnOriginXAngst", "rlnOriginYAngst"]
FOM = "rlnParticleFigureOfMerit"
GT_CONF = "rlnMaxValueProbDistribution"
IMAGE = "rlnImageName"
# largest accepted |predicted angle| (degrees): any angle is equivalent to one in [-180, 180], but
# values this far out are a unit or overflow error (radians*1e6, 1e300), not a prediction
MAX_ABS_ANGLE_DEG = 1e4


@dataclass
class HalfSet:
    """One half-set after validation: ground truth, transplanted predictions, angular errors."""

    gt: object  # StarFile of the entry half
    pred: object  # StarFile as transplanted (GT with predicted columns)
    errors: np.ndarray  # (n,) degrees
    gt_conf: np.ndarray  # (n,)
    shifts_rmse: float | None
    pred_conf: np.ndarray | None = None  # (n,) predicted rlnParticleFigureOfMerit, GT order


def predicted_keys(prediction_type: str, use_conf: bool) -> list[str]:
    if prediction_type == "S2":
        keys = ANGLES[:2]
    elif prediction_type == "SO3":
        keys = list(ANGLES)
    elif prediction_type == "SO3xR2":
        keys = ANGLES + SHIFTS
    else:
        raise ValueError(f"predictionType must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return keys + ([FOM] if use_conf else [])


def examples(values, k: int = 5) -> str:
    vals = list(values)
    more = f" (and {len(vals) - k} more)" if len(vals) > k else ""
    return ", ".join(str(v) for v in vals[:k]) + more


def prepare_predictions(
    gt,
    pred,
    prediction_type: str,
    use_conf: bool,
    symmetry: str,
    half: int,
    other_half_names=None,
    pred_path=None,
) -> HalfSet:
    """Validate one half's predictions and transplant them into the ground-truth table.

    Parameters
    ----------
    gt, pred : StarFile
        Entry half-set and predictions.
    prediction_type : {"S2", "SO3", "SO3xR2"}
    use_conf : bool
        Transplant ``rlnParticleFigureOfMerit`` (1 when the prediction lacks it). The
        confidence is the particle's weight in the predicted-pose reconstruction (RELION's
        ``--fom_weighting``): it must be finite and lie in [0, 1], and not all 0 in a half-set.
        It does not weight MAnE or wMAnE (wMAnE uses the ground-truth
        ``rlnMaxValueProbDistribution``).
    symmetry : str
    half : int
        For messages.
    other_half_names : set of str, optional
        ``rlnImageName`` values of the other half-set (to recognise swapped halves).

    Raises
    ------
    ValueError
        Missing columns, duplicated/missing/extra/other-half particles, non-finite values,
        angles beyond ±:data:`MAX_ABS_ANGLE_DEG` degrees, confidences outside [0, 1] or all 0,
        box or pixel size different from the entry's.
    """
    from cesped.evaluation.metrics import angular_errors, shifts_rmse

    where = f"predictions for half {half} ({pred_path or 'in memory'})"
    keys = predicted_keys(prediction_type, use_conf)
    required = [IMAGE] + [k for k in keys if k != FOM]
    missing_cols = [c for c in required if c not in pred.particles.columns]
    if missing_cols:
        raise ValueError(
            f"{where}: missing column(s) {', '.join(missing_cols)} (needed for {prediction_type})"
        )
    pnames = pred.particles[IMAGE].astype(str)
    gnames = gt.particles[IMAGE].astype(str)
    dup = pnames[pnames.duplicated()].unique()
    if len(dup):
        raise ValueError(f"{where}: {len(dup)} duplicated particle(s) in rlnImageName: {examples(dup)}")
    gset, pset = set(gnames), set(pnames)
    extra = sorted(pset - gset)
    if extra:
        other = [e for e in extra if other_half_names is not None and e in other_half_names]
        if other:
            raise ValueError(
                f"{where}: {len(other)} particle(s) belong to the other half-set ({1 - half}): "
                f"{examples(other)}; were the prediction files swapped?"
            )
        raise ValueError(
            f"{where}: {len(extra)} particle(s) not in the entry's half {half}: {examples(extra)}"
        )
    missing = [g for g in gnames if g not in pset]
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} particle(s) of half {half} have no prediction: {examples(missing)}"
        )
    for col in keys:
        if col not in pred.particles.columns:
            continue
        vals = pd.to_numeric(pred.particles[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{where}: column {col} has {int(bad.sum())} non-finite value(s), first at particle "
                f"{pnames.iloc[i]} ({pred.particles[col].iloc[i]})"
            )
        if col == FOM and ((vals < 0) | (vals > 1)).any():
            i = int(np.flatnonzero((vals < 0) | (vals > 1))[0])
            raise ValueError(
                f"{where}: column {FOM} must lie in [0, 1] (a confidence used as the particle's weight "
                f"in the reconstruction), got {vals[i]} at particle {pnames.iloc[i]}"
            )
        if col == FOM and not (vals > 0).any():
            raise ValueError(
                f"{where}: every {FOM} is 0, so the half-map would be empty; give confidences in "
                "(0, 1] or evaluate without them (usePredConfidence=False, --no-usePredConfidence)"
            )
        if col in ANGLES and (np.abs(vals) > MAX_ABS_ANGLE_DEG).any():
            i = int(np.flatnonzero(np.abs(vals) > MAX_ABS_ANGLE_DEG)[0])
            raise ValueError(
                f"{where}: column {col} has |angle| > {MAX_ABS_ANGLE_DEG:g} degrees at particle "
                f"{pnames.iloc[i]} ({vals[i]}); angles are in degrees"
            )
    check_optics(gt, pred, where)
    # align predictions to the GT order
    p = pred.particles.set_index(pnames.to_numpy())
    aligned = p.loc[gnames.to_numpy()]
    out = gt.copy()
    parts = out.particles
    if FOM not in parts.columns:
        parts[FOM] = 1.0
    for k in keys:
        if k in aligned.columns:
            parts[k] = pd.to_numeric(aligned[k]).to_numpy(dtype=np.float64)
        elif k == FOM:
            parts[k] = 1.0
    gt_ang = gt.particles[ANGLES].to_numpy(dtype=np.float64)
    pred_ang = parts[ANGLES].to_numpy(dtype=np.float64)
    kind = "S2" if prediction_type == "S2" else "SO3"
    err = angular_errors(gt_ang, pred_ang, symmetry, kind=kind)
    conf = (
        gt.particles[GT_CONF].to_numpy(dtype=np.float64)
        if GT_CONF in gt.particles.columns
        else np.ones(len(gt.particles))
    )
    srmse = None
    if prediction_type == "SO3xR2":
        gsh = np.zeros((len(parts), 2))
        for j, c in enumerate(SHIFTS):
            if c in gt.particles.columns:
                gsh[:, j] = gt.particles[c].to_numpy(dtype=np.float64)
        srmse = shifts_rmse(parts[SHIFTS].to_numpy(dtype=np.float64), gsh)
    pred_conf = pd.to_numeric(aligned[FOM]).to_numpy(dtype=np.float64) if FOM in aligned.columns else None
    return HalfSet(gt=gt, pred=out, errors=err, gt_conf=conf, shifts_rmse=srmse, pred_conf=pred_conf)


def check_optics(gt, pred, where: str) -> None:
    for col, tol in (("rlnImageSize", 0.0), ("rlnImagePixelSize", 1e-3)):
        if col not in pred.optics.columns or col not in gt.optics.columns:
            continue
        pv = pd.to_numeric(pred.optics[col], errors="coerce").to_numpy(dtype=np.float64)
        gv = float(pd.to_numeric(gt.optics[col]).iloc[0])
        if not np.all(np.abs(pv - gv) <= tol * max(1.0, abs(gv))):
            what = "box size (px)" if col == "rlnImageSize" else "pixel size (Å/px)"
            raise ValueError(f"{where}: {col} {pv.tolist()} differs from the entry's {what} {gv}")


def per_particle(halves) -> dict:
    """Per-particle arrays of both halves for the report (true/predicted poses, errors, confidence)."""
    from cesped.geometry.numpy_ops import euler_to_matrix

    def rot(star):
        return euler_to_matrix(star.particles[ANGLES].to_numpy(dtype=np.float64))

    conf = None
    if all(h.pred_conf is not None for h in halves):
        conf = np.concatenate([h.pred_conf for h in halves])
    return {
        "true_rotmats": np.concatenate([rot(h.gt) for h in halves]),
        "pred_rotmats": np.concatenate([rot(h.pred) for h in halves]),
        "errors_deg": np.concatenate([h.errors for h in halves]),
        "confidence": conf,
    }
