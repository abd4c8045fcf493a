"""Summary metrics of per-particle angular errors: MAnE, wMAnE, median, threshold fractions.

One definition for :class:`cesped.Evaluator` (benchmark protocol) and the Image2Sphere
baseline's validation (training), which must not import the benchmark: both give the same
numbers on the same errors.

Example usage::

    from cesped.geometry.angular_metrics import angular_metrics
    m = angular_metrics(err_deg, gt_confidence)    # err (n,) degrees, weights (n,)
    m["MAnE"], m["median"], m["frac_below_10deg"]
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["angular_metrics", "ANGULAR_KEYS", "THRESHOLDS_DEG", "LARGE_ERROR_DEG"]

THRESHOLDS_DEG = (5.0, 10.0, 30.0)
"""The fraction of particles with an error strictly below each of these angles is reported."""
LARGE_ERROR_DEG = 150.0
"""The fraction of particles with an error strictly above this angle (flips) is reported."""

ANGULAR_KEYS = (
    "MAnE",
    "wMAnE",
    "median",
    "frac_below_5deg",
    "frac_below_10deg",
    "frac_below_30deg",
    "frac_above_150deg",
)
"""The metric keys every :func:`angular_metrics` result holds (degrees or fractions in [0, 1])."""


def angular_metrics(err, gt_weights, confidence=None) -> dict:
    """Summary of per-particle symmetry-aware angular errors.

    Parameters
    ----------
    err : array-like (n,)
        Errors in degrees (e.g. :func:`cesped.geometry.numpy_ops.symmetry_aware_error`), finite.
    gt_weights : array-like (n,)
        Non-negative ground-truth confidences (``rlnMaxValueProbDistribution``), the weights of wMAnE.
    confidence : array-like (n,), optional
        Non-negative predicted confidences; adds ``predconf_weighted_MAnE = Σ c·err / Σ c``.

    Returns
    -------
    dict
        :data:`ANGULAR_KEYS` (``MAnE``, ``wMAnE`` (NaN when the weights sum to 0), ``median``
        in degrees; fractions of the n errors strictly below 5°, 10°, 30° and above 150°), ``n``,
        ``gt_weight_sum`` (to pool wMAnE over half-sets), and ``predconf_weighted_MAnE`` when
        ``confidence`` is given.

    Raises
    ------
    ValueError
        Empty or non-finite errors, weights of another length, negative or non-finite
        (from :func:`cesped.geometry.numpy_ops.mean_angular_error` and its weighted namesake).
    """
    from cesped.geometry.numpy_ops import mean_angular_error, weighted_mean_angular_error

    e = np.asarray(err, dtype=np.float64).reshape(-1)
    w = np.asarray(gt_weights, dtype=np.float64).reshape(-1)
    out = {
        "MAnE": mean_angular_error(e),
        "wMAnE": weighted_mean_angular_error(e, w) if w.sum() > 0 else math.nan,
        "median": float(np.median(e)),
    }
    for t in THRESHOLDS_DEG:
        out[f"frac_below_{t:g}deg"] = float(np.count_nonzero(e < t) / e.size)
    out[f"frac_above_{LARGE_ERROR_DEG:g}deg"] = float(np.count_nonzero(e > LARGE_ERROR_DEG) / e.size)
    out["n"] = int(e.size)
    out["gt_weight_sum"] = float(w.sum())
    if confidence is not None:
        c = np.asarray(confidence, dtype=np.float64).reshape(-1)
        out["predconf_weighted_MAnE"] = weighted_mean_angular_error(e, c) if c.sum() > 0 else math.nan
    return out
