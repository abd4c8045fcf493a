"""The numbers of one evaluation: pose errors, PCC and FSC resolutions, the paper's columns.

Every metric key says what it is, e.g. ``PCC(GT,V)_masked`` or ``FSCR0.143(V0,V1)_unmasked_A``;
the paper's columns take the masked values when a mask is used.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "PAPER_COLUMNS",
    "THRESHOLDS",
    "pose_metrics",
    "all_map_metrics",
    "add_differences",
    "paper_columns",
    "jsonable",
]

THRESHOLDS = (0.143, 0.5)

# paper's table columns -> metric keys (masked flavour; "{m}" is replaced by masked/unmasked)
PAPER_COLUMNS = {
    "MAnE": "MAnE_deg",
    "wMAnE": "wMAnE_deg",
    "PCC(V0,V1)": "PCC(V0,V1)_{m}",
    "PCC(GT,V)": "PCC(GT,V)_{m}",
    "FSCR0.143(V0,V1)": "FSCR0.143(V0,V1)_{m}_A",
    "FSCR0.5(V0,V1)": "FSCR0.5(V0,V1)_{m}_A",
    "FSCR0.143(GT,V)": "FSCR0.143(GT,V)_{m}_A",
    "FSCR0.5(GT,V)": "FSCR0.5(GT,V)_{m}_A",
    "PCC(GT0,GT1)": "PCC(GT0,GT1)_{m}",
    "FSCR0.143(GT0,GT1)": "FSCR0.143(GT0,GT1)_{m}_A",
    "FSCR0.5(GT0,GT1)": "FSCR0.5(GT0,GT1)_{m}_A",
    "dPCC": "dPCC_{m}",
    "dFSCR0.143": "dFSCR0.143_{m}_A",
    "dFSCR0.5": "dFSCR0.5_{m}_A",
}


def pair_from_transforms(a, b, transforms, mask, voxel_size, label, out, curves) -> None:
    """Metrics of the pair ``(a, b)`` given their transforms ``{flavour: (Fa, Fb)}``."""
    from cesped.evaluation.metrics import fsc_from_transforms, pcc, resolution_at

    n = a.shape[0]
    for flavour, (fa, fb) in transforms.items():
        out[f"PCC({label})_{flavour}"] = pcc(a, b, mask=mask if flavour == "masked" else None)
        curve = fsc_from_transforms(fa, fb, n)
        curves[f"FSC({label})_{flavour}"] = curve
        r143, r05 = resolution_at(curve, THRESHOLDS, voxel_size, box=n)
        out[f"FSCR0.143({label})_{flavour}_A"] = r143
        out[f"FSCR0.5({label})_{flavour}_A"] = r05


def all_map_metrics(gt_maps, pred_maps, gt_avg, pred_avg, mask, voxel_size, out, curves, workers=None):
    """PCC and FSC of (GT0,GT1), (V0,V1) and (GT,V), each half-map transformed once per flavour.

    The averages' transforms are the averages of the half-maps' transforms (linearity), so
    four transforms per flavour serve the three pairs.
    """
    from cesped.evaluation.metrics import map_transform

    tr = {"GT0,GT1": {}, "V0,V1": {}, "GT,V": {}}
    for flavour, m in (("unmasked", None), ("masked", mask)):
        if flavour == "masked" and mask is None:
            continue
        g0, g1 = (map_transform(v, m, workers=workers) for v in gt_maps)
        v0, v1 = (map_transform(v, m, workers=workers) for v in pred_maps)
        tr["GT0,GT1"][flavour] = (g0, g1)
        tr["V0,V1"][flavour] = (v0, v1)
        tr["GT,V"][flavour] = (0.5 * (g0 + g1), 0.5 * (v0 + v1))
    pairs = {"GT0,GT1": gt_maps, "V0,V1": pred_maps, "GT,V": (gt_avg, pred_avg)}
    for label, (a, b) in pairs.items():
        pair_from_transforms(a, b, tr[label], mask, voxel_size, label, out, curves)


def jsonable(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    return v


def pose_metrics(halves, prediction_type: str) -> dict:
    """MAnE (mean of the two halves), wMAnE (pooled, weighted by the GT confidence), per-half
    MAnE, the median error (degrees) and the shifts' RMSE (Å, SO3xR2 only, else None)."""
    from cesped.geometry.numpy_ops import mean_angular_error, weighted_mean_angular_error

    err0, err1 = halves[0].errors, halves[1].errors
    c0, c1 = halves[0].gt_conf, halves[1].gt_conf
    return {
        "MAnE_deg": 0.5 * (mean_angular_error(err0) + mean_angular_error(err1)),
        "wMAnE_deg": weighted_mean_angular_error(np.concatenate([err0, err1]), np.concatenate([c0, c1])),
        "MAnE_half0_deg": mean_angular_error(err0),
        "MAnE_half1_deg": mean_angular_error(err1),
        "median_angular_error_deg": float(np.median(np.concatenate([err0, err1]))),
        "shiftsRMSE_A": (
            0.5 * (halves[0].shifts_rmse + halves[1].shifts_rmse) if prediction_type == "SO3xR2" else None
        ),
    }


def add_differences(metrics: dict) -> None:
    """dPCC = PCC(GT0,GT1) − PCC(GT,V) and dFSCR = FSCR(GT,V) − FSCR(GT0,GT1), per flavour, in place."""
    for flavour in ("unmasked", "masked"):
        if f"PCC(GT,V)_{flavour}" not in metrics:
            continue
        metrics[f"dPCC_{flavour}"] = metrics[f"PCC(GT0,GT1)_{flavour}"] - metrics[f"PCC(GT,V)_{flavour}"]
        for t in ("0.143", "0.5"):
            metrics[f"dFSCR{t}_{flavour}_A"] = (
                metrics[f"FSCR{t}(GT,V)_{flavour}_A"] - metrics[f"FSCR{t}(GT0,GT1)_{flavour}_A"]
            )


def paper_columns(metrics: dict, masked: bool) -> dict:
    """The paper's table columns (:data:`PAPER_COLUMNS`) of the masked or unmasked flavour."""
    flavour = "masked" if masked else "unmasked"
    return {col: metrics[key.format(m=flavour)] for col, key in PAPER_COLUMNS.items()}
