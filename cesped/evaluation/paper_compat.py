"""The CESPED paper's table columns exactly as the original package defined them.

cesped's own columns are consistent: with a mask every map metric is masked (``*_masked``),
without one every metric is unmasked. The original package (cesped 25.12.0,
``evaluateEntry.Evaluator.runEvaluate``), whose numbers fill the paper's table, mixes the two
when a mask is used (its default, ``use_gt_mask=True``):

================== ==================================== ===================================================
paper column       original ``metrics.json`` key         definition with a mask (without: all unmasked)
================== ==================================== ===================================================
MAnE               ``meanAngularError``                  mean angular error (°), mean of the two halves
wMAnE              ``wMeanAngularError``                 mean error weighted by the GT confidence (°)
PCC(V0,V1)         ``half2half_correlation``             **masked** PCC of the predicted half-maps
FSCR0.143(V0,V1)   ``half2half_resolution``              **masked** FSC resolution (Å), threshold 0.143
FSCR0.5(V0,V1)     ``half2half_resolution05``            **masked** FSC resolution (Å), threshold 0.5
PCC(GT,V)          ``mapVsGT_correlaton_masked``         **masked** PCC of the GT and predicted average maps
PCC(GT,V) unm.     ``mapVsGT_correlaton_unmasked``       unmasked PCC of the same maps
FSCR0.143(GT,V)    ``mapVsGT_resolution``                **unmasked** FSC resolution (Å), even with a mask
FSCR0.5(GT,V)      ``mapVsGT_resolution05``              **unmasked** FSC resolution (Å), even with a mask
PCC(GT0,GT1)       ``GT_correlation``                    **masked** PCC of the GT half-maps
FSCR0.143(GT0,GT1) ``GT_resolution0143``                 **masked** FSC resolution (Å)
FSCR0.5(GT0,GT1)   ``GT_resolution05``                   **masked** FSC resolution (Å)
dPCC               ``mapVsGT_correlaton_diff_masked``    PCC(GT0,GT1) masked − PCC(GT,V) masked
dPCC (unm. V)      ``mapVsGT_correlaton_diff``           PCC(GT0,GT1) **masked** − PCC(GT,V) **unmasked**
dFSCR0.143         printed ``res_diff``                  FSCR0.143(GT,V) **unmasked** − FSCR0.143(GT0,GT1)
                                                         **masked**
dFSCR0.5           printed ``res_diff`` (0.5)            the same at threshold 0.5
================== ==================================== ===================================================

Without a mask the original writes NaN for ``mapVsGT_correlaton_masked`` and
``mapVsGT_correlaton_diff_masked``; here PCC(GT,V) and dPCC then take the unmasked values.

So the paper's ΔFSCR subtracts a masked resolution from an unmasked one, and its two ΔPCC
variants are printed by the original under swapped labels ("cor_diff (masked, unmasked)" prints
the unmasked-V one first). :func:`paper_compatible` rebuilds every column above from the values
cesped's :func:`cesped.evaluation.evaluate.evaluate` computes, so that a row can be compared
with the paper's table like for like.

Definitions that agree between the two (checked against ``relion_reconstruct`` maps in
``tests/evaluation/test_paper_parity.py``): PCC is Pearson's r over all voxels, with a mask the
r of the mask-multiplied maps (zeros outside included); FSC uses hard shells ``k <= |r| < k+1``;
the resolution interpolates linearly in 1/Å between the last shell above and the first shell
below the threshold, Nyquist when the curve never drops below it. One difference remains in
the resolutions: when already shell 0 is below the threshold the original interpolated with
shell index −1 (a meaningless value), cesped reports the box size.

Example usage::

    from cesped.evaluation.paper_compat import paper_compatible
    row = paper_compatible(metrics)          # metrics: the dict evaluate() returns
    row["dFSCR0.143"]                        # unmasked FSCR(GT,V) − masked FSCR(GT0,GT1), Å
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["paper_compatible", "ORIGINAL_KEYS", "REQUIRED_KEYS"]

# paper column -> (the original's metrics.json key or printed label, cesped metric key, flavour)
# flavour: "m" = masked when a mask is used, "u" = always unmasked
_COLUMNS = {
    "MAnE": ("meanAngularError", "MAnE_deg", None),
    "wMAnE": ("wMeanAngularError", "wMAnE_deg", None),
    "PCC(V0,V1)": ("half2half_correlation", "PCC(V0,V1)_{f}", "m"),
    "FSCR0.143(V0,V1)": ("half2half_resolution", "FSCR0.143(V0,V1)_{f}_A", "m"),
    "FSCR0.5(V0,V1)": ("half2half_resolution05", "FSCR0.5(V0,V1)_{f}_A", "m"),
    "PCC(GT,V)": ("mapVsGT_correlaton_masked", "PCC(GT,V)_{f}", "m"),
    "PCC(GT,V)_unmasked": ("mapVsGT_correlaton_unmasked", "PCC(GT,V)_{f}", "u"),
    "FSCR0.143(GT,V)": ("mapVsGT_resolution", "FSCR0.143(GT,V)_{f}_A", "u"),
    "FSCR0.5(GT,V)": ("mapVsGT_resolution05", "FSCR0.5(GT,V)_{f}_A", "u"),
    "PCC(GT0,GT1)": ("GT_correlation", "PCC(GT0,GT1)_{f}", "m"),
    "FSCR0.143(GT0,GT1)": ("GT_resolution0143", "FSCR0.143(GT0,GT1)_{f}_A", "m"),
    "FSCR0.5(GT0,GT1)": ("GT_resolution05", "FSCR0.5(GT0,GT1)_{f}_A", "m"),
}
_DIFFERENCES = {
    # column: (original key / label, minuend column, subtrahend column)
    "dPCC": ("mapVsGT_correlaton_diff_masked", "PCC(GT0,GT1)", "PCC(GT,V)"),
    "dPCC_unmaskedV": ("mapVsGT_correlaton_diff", "PCC(GT0,GT1)", "PCC(GT,V)_unmasked"),
    "dFSCR0.143": ("res_diff (printed, th=0.143)", "FSCR0.143(GT,V)", "FSCR0.143(GT0,GT1)"),
    "dFSCR0.5": ("res_diff (printed, th=0.5)", "FSCR0.5(GT,V)", "FSCR0.5(GT0,GT1)"),
}

#: paper column -> the original package's ``metrics.json`` key (or printed label)
ORIGINAL_KEYS = {col: spec[0] for col, spec in {**_COLUMNS, **_DIFFERENCES}.items()}

#: the cesped metric keys :func:`paper_compatible` reads (``{f}``: ``unmasked``, and also
#: ``masked`` when a mask was used)
REQUIRED_KEYS = tuple(dict.fromkeys(spec[1] for spec in _COLUMNS.values()))


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(float(v))


def paper_compatible(metrics: Mapping[str, object]) -> dict:
    """The paper's columns with the original package's definitions (see the module docstring).

    Parameters
    ----------
    metrics : mapping
        What :func:`cesped.evaluation.evaluate.evaluate` computes: ``MAnE_deg``, ``wMAnE_deg``
        and, for each pair ``GT0,GT1`` / ``V0,V1`` / ``GT,V``, ``PCC(pair)_unmasked``,
        ``FSCR0.143(pair)_unmasked_A`` and ``FSCR0.5(pair)_unmasked_A``; with a mask also the
        same keys with ``_masked``. A mask counts as used when ``PCC(GT0,GT1)_masked`` holds a
        finite value.

    Returns
    -------
    dict
        ``mask_used`` (bool) and one float per column: ``MAnE``, ``wMAnE`` (degrees),
        ``PCC(V0,V1)``, ``FSCR0.143(V0,V1)``, ``FSCR0.5(V0,V1)``, ``PCC(GT,V)``,
        ``PCC(GT,V)_unmasked``, ``FSCR0.143(GT,V)``, ``FSCR0.5(GT,V)``, ``PCC(GT0,GT1)``,
        ``FSCR0.143(GT0,GT1)``, ``FSCR0.5(GT0,GT1)`` (resolutions in Å), ``dPCC``,
        ``dPCC_unmaskedV``, ``dFSCR0.143``, ``dFSCR0.5``.

    Raises
    ------
    ValueError
        A required key is missing (the message names it).
    """
    mask_used = _finite(metrics.get("PCC(GT0,GT1)_masked"))
    out: dict = {"mask_used": mask_used}
    for col, (_, key, flavour) in _COLUMNS.items():
        f = "masked" if (flavour == "m" and mask_used) else "unmasked"
        k = key.format(f=f)
        if k not in metrics:
            raise ValueError(f"paper_compatible: metrics lack {k!r} (needed for the column {col})")
        v = metrics[k]
        out[col] = float(v) if _finite(v) else float("nan")
    for col, (_, a, b) in _DIFFERENCES.items():
        out[col] = out[a] - out[b]
    return out
