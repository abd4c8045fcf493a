"""The image-limited floor of an entry as an evaluation reference (``evaluateEntry --floor``).

Random poses are the no-skill end of the pose metrics (:mod:`cesped.evaluation.references`);
the floor is the other end: the error of every particle's maximum-likelihood pose against the
entry's true map, origins searched as any estimator must, the maximum sought from an exhaustive
SO(3) search and from the true pose (:func:`cesped.refinement.api.image_limited_floor`: the true
pose is a start, never the answer). No estimator can do much better on the entry's images. It
needs the true map (``gt_map.mrc``: simulated entries) and is cached per entry and half-set
(``cesped.settings.cache_dir()/refinement``): only the first evaluation of an entry pays for it.

Example usage::

    from cesped.evaluation.floor import floor_reference
    ref = floor_reference(entry_dir, "C1")   # {"MAnE_deg": ..., "median_angular_error_deg": ...}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["FLOOR", "METHOD", "check_floor_available", "floor_reference"]

#: Name of the floor's reference column (``metrics["references"][FLOOR]``).
FLOOR = "image-limited floor"
#: How the floor is found (recorded beside it).
METHOD = (
    "maximum-likelihood pose against gt_map.mrc, origins searched: the better (by likelihood) of a "
    "global SO(3) search (order 2, 8 starts, 4 survivors) + local refinement and a local refinement "
    "started 5° from the true pose"
)


def check_floor_available(entry_dir) -> Path:
    """The entry's true map ``gt_map.mrc``; ``FileNotFoundError`` naming it when missing."""
    gt_map = Path(entry_dir) / "gt_map.mrc"
    if not gt_map.is_file():
        raise FileNotFoundError(
            f"--floor: entry {Path(entry_dir).name} has no true map {gt_map} (the floor needs one: "
            "simulated entries have it)"
        )
    return gt_map


def floor_reference(entry_dir, device: str = "cpu", use_cache: bool = True, verbose: bool = False) -> dict:
    """The image-limited floor of both half-sets of an entry, pooled as the evaluation pools them.

    Parameters
    ----------
    entry_dir : path
        Entry directory (``particles_{0,1}.star``, their stacks, ``info_{0,1}.json``, ``gt_map.mrc``).
    device : str
        Device of the search ("cpu" or a CUDA device).
    use_cache : bool
        Read and write the per-half cache.

    Returns
    -------
    dict
        ``MAnE_deg`` and ``median_angular_error_deg`` (degrees, symmetry-aware, over all
        particles of both halves), ``frac_above_150``, ``shift_rmse_A`` (Å), ``n_particles``,
        ``seconds`` (0 when both halves came from the cache) and ``per_half`` (each half's
        MAnE and median).
    """
    from cesped.refinement.api import image_limited_floor

    entry_dir = Path(entry_dir)
    check_floor_available(entry_dir)
    errs, errs_search, truth_n, shift_sq, per_half, seconds = [], [], 0.0, [], {}, 0.0
    for h in (0, 1):
        f = image_limited_floor(
            entry_dir.name, h, device=device, benchmark_dir=entry_dir.parent, use_cache=use_cache
        )
        if verbose:
            how = "cache" if f["cached"] else f"{f['seconds']:.0f} s"
            print(f"[cesped] image-limited floor of half {h}: MAnE {f['MAnE_deg']:.2f} deg ({how})")
        errs.append(f["errors_deg"])
        errs_search.append(f["search_only_errors_deg"])
        truth_n += f["truth_basin_fraction"] * f["n"]
        shift_sq.append(f["shift_rmse_A"] ** 2 * f["n"])
        per_half[f"half{h}"] = {"MAnE_deg": f["MAnE_deg"], "median_angular_error_deg": f["median_deg"]}
        seconds += f["seconds"]
    err = np.concatenate(errs)
    err_search = np.concatenate(errs_search)
    return {
        "MAnE_deg": float(err.mean()),
        "median_angular_error_deg": float(np.median(err)),
        "frac_above_150": float((err > 150).mean()),
        "shift_rmse_A": float(np.sqrt(sum(shift_sq) / err.size)),
        "n_particles": int(err.size),
        "seconds": float(seconds),
        "per_half": per_half,
        "search_only_MAnE_deg": float(err_search.mean()),
        "search_only_median_deg": float(np.median(err_search)),
        "truth_basin_fraction": float(truth_n / err.size),
        "method": METHOD,
    }
