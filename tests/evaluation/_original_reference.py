"""The original CESPED package's (25.12.0) map metrics, re-implemented from reading its code
(``cesped/utils/volumeStats.py``, ``cesped/utils/fsc.py``, ``evaluateEntry.runEvaluate``) as an
independent reference for the parity tests. Not a copy: written for the tests only."""

from __future__ import annotations

import numpy as np


def ref_pcc(a, b, mask=None):
    """scipy.stats.pearsonr over all voxels; with a mask, of the mask-multiplied maps."""
    from scipy.stats import pearsonr

    if mask is not None:
        a, b = a * mask, b * mask
    return float(pearsonr(a.ravel(), b.ravel()).statistic)


def ref_fsc(a, b, mask=None):
    """Full ``fftshift(fftn)``; shell k holds the voxels with ``k <= |r| < k+1``, k = 0..N/2."""
    if mask is not None:
        a, b = a * mask, b * mask
    fa, fb = np.fft.fftshift(np.fft.fftn(a)), np.fft.fftshift(np.fft.fftn(b))
    n = a.shape[0]
    x = np.arange(n) - n // 2
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    out = []
    for k in range(n // 2 + 1):
        s = (r >= k) & (r < k + 1)
        out.append(
            np.real(fa[s] * fb[s].conj()).sum()
            / np.sqrt((np.abs(fa[s]) ** 2).sum() * (np.abs(fb[s]) ** 2).sum())
        )
    return np.array(out)


def ref_resolution(curve, thr, n, px):
    """First shell below thr, linear interpolation in 1/resolution with the previous shell."""
    inv = np.arange(len(curve)) / (n * px)
    below = np.where(curve < thr)[0]
    if below.size == 0:
        return 1.0 / inv[-1]
    i = below[0]
    f = inv[i - 1] + (inv[i] - inv[i - 1]) * (thr - curve[i - 1]) / (curve[i] - curve[i - 1])
    return 1.0 / f


def original_run_evaluate(gt0, gt1, v0, v1, mask, px, mane=None, wmane=None):
    """The map entries of the original's ``metrics.json`` (and its printed ``res_diff``) for
    the four half-maps, as ``runEvaluate`` computes them (``use_gt_mask`` = mask is not None)."""
    n = gt0.shape[0]
    gt, v = 0.5 * (gt0 + gt1), 0.5 * (v0 + v1)

    def stats(a, b, thr):
        corr = ref_pcc(a, b)
        m_corr = ref_pcc(a, b, mask) if mask is not None else float("nan")
        res_u = ref_resolution(ref_fsc(a, b), thr, n, px)
        res_m = ref_resolution(ref_fsc(a, b, mask), thr, n, px) if mask is not None else None
        return corr, m_corr, res_u, res_m

    def avg_map_stats(a, b):  # computeAvgMap: masked values replace the unmasked ones with a mask
        corr, m_corr, r143, m_r143 = stats(a, b, 0.143)
        _, _, r05, m_r05 = stats(a, b, 0.5)
        if mask is not None:
            return m_corr, m_r143, m_r05
        return corr, r143, r05

    gt_cor, gt_r143, gt_r05 = avg_map_stats(gt0, gt1)
    pred_cor, pred_r143, pred_r05 = avg_map_stats(v0, v1)
    mv_cor, mv_mcor, mv_r143, _ = stats(gt, v, 0.143)
    _, _, mv_r05, _ = stats(gt, v, 0.5)
    out = {
        "GT_correlation": gt_cor,
        "GT_resolution0143": gt_r143,
        "GT_resolution05": gt_r05,
        "half2half_resolution": pred_r143,
        "half2half_resolution05": pred_r05,
        "half2half_correlation": pred_cor,
        "mapVsGT_correlaton_masked": mv_mcor,
        "mapVsGT_correlaton_unmasked": mv_cor,
        "mapVsGT_resolution": mv_r143,
        "mapVsGT_resolution05": mv_r05,
        "mapVsGT_correlaton_diff_masked": gt_cor - mv_mcor,
        "mapVsGT_correlaton_diff": gt_cor - mv_cor,
        "res_diff (printed, th=0.143)": mv_r143 - gt_r143,
        "res_diff (printed, th=0.5)": mv_r05 - gt_r05,
    }
    if mane is not None:
        out["meanAngularError"] = mane
    if wmane is not None:
        out["wMeanAngularError"] = wmane
    return out


def cesped_map_metrics(gt0, gt1, v0, v1, mask, px) -> dict:
    """The map metrics under the keys cesped's evaluate() writes (``PCC(pair)_{flavour}``,
    ``FSCR{thr}(pair)_{flavour}_A``), computed with cesped.evaluation.metrics."""
    from cesped.evaluation.metrics import fsc, pcc, resolution_at

    pairs = {"GT0,GT1": (gt0, gt1), "V0,V1": (v0, v1), "GT,V": (0.5 * (gt0 + gt1), 0.5 * (v0 + v1))}
    out = {}
    for label, (a, b) in pairs.items():
        for flavour, m in (("unmasked", None), ("masked", mask)):
            if flavour == "masked" and mask is None:
                continue
            out[f"PCC({label})_{flavour}"] = pcc(a, b, mask=m)
            r143, r05 = resolution_at(fsc(a, b, mask=m), [0.143, 0.5], px)
            out[f"FSCR0.143({label})_{flavour}_A"] = r143
            out[f"FSCR0.5({label})_{flavour}_A"] = r05
    return out
