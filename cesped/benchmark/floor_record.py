"""The image-limited floor of a simulated entry as a leaderboard reference record.

The floor (:func:`cesped.refinement.api.image_limited_floor`) is the error of every particle's
maximum-likelihood pose against the entry's true map ``gt_map.mrc`` (sought from an exhaustive
SO(3) search and from the true pose, which is a start, never the answer), with origins searched
as any estimator must. Its poses are written as prediction files (confidence 1:
the floor's cache keeps no posterior) and evaluated exactly like a method's (the protocol's
:func:`cesped.benchmark.protocol.evaluate_pair`), so that its row in the leaderboard has every
column: no estimator can do much better than it on the entry's images. Only simulated entries
have a true map; real entries get no floor record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cesped.benchmark import records as rec
from cesped.evaluation.floor import METHOD

__all__ = ["FLOOR_METHOD", "has_true_map", "floor_poses_record"]

#: Method name of the floor's records and leaderboard rows.
FLOOR_METHOD = "image-limited floor"


def has_true_map(entry_dir) -> bool:
    """Whether the entry directory holds a true map (``gt_map.mrc``: simulated entries)."""
    return (Path(entry_dir) / "gt_map.mrc").is_file()


def floor_poses_record(
    entry: str,
    benchmark_dir=None,
    workdir: Path | None = None,
    n_cpus: int = 2,
    device: str = "cpu",
    checksum: str | None = None,
    command: list[str] | None = None,
) -> dict:
    """The floor's record of a simulated entry: its poses of both half-sets evaluated like a method.

    Parameters
    ----------
    entry : str
        A simulated entry (its directory holds ``gt_map.mrc``).
    benchmark_dir : path, optional
        Directory holding the entries.
    workdir : path, optional
        Where the floor's prediction files ``predictions_{0,1}.star`` are kept (default: a
        temporary directory, removed).
    n_cpus, device
        Evaluation threads and device of the search and the evaluation.
    checksum : str, optional
        The entry's manifest checksum (computed when not given).
    command : list of str, optional
        Command line recorded.

    Returns
    -------
    dict
        A record (:func:`cesped.benchmark.records.new_record`) of kind ``floor``, seed 0 (the
        floor is deterministic); ``timings_s["predict"]`` is the search time (0 for halves read
        from the floor's cache), ``method.config`` names the search.

    Raises
    ------
    FileNotFoundError
        The entry has no true map.
    """
    import torch

    from cesped.benchmark.protocol import evaluate_poses
    from cesped.data.local import ensure_entry
    from cesped.evaluation.floor import check_floor_available
    from cesped.geometry.rotations import matrix_to_euler
    from cesped.refinement.api import image_limited_floor

    entry_dir = ensure_entry(entry, 0, benchmark_dir)
    ensure_entry(entry, 1, benchmark_dir)
    check_floor_available(entry_dir)
    checksum = checksum or rec.entry_checksum(entry_dir)
    search_s, per_half, poses = 0.0, {}, {}
    for h in (0, 1):
        f = image_limited_floor(entry, h, device=device, benchmark_dir=entry_dir.parent)
        search_s += float(f["seconds"])
        per_half[f"half{h}"] = {
            "MAnE_deg": f["MAnE_deg"],
            "median_deg": f["median_deg"],
            "shift_rmse_A": f["shift_rmse_A"],
            "cached": bool(f["cached"]),
        }
        angles = matrix_to_euler(torch.from_numpy(np.asarray(f["rotmats"]))).numpy()
        poses[h] = (angles, np.asarray(f["origins_A"]))
    metrics, angular, eval_s, preds = evaluate_poses(entry, poses, benchmark_dir, workdir, n_cpus, device)
    return rec.new_record(
        entry,
        0,
        FLOOR_METHOD,
        "floor",
        {
            "search": f"{METHOD} (cesped.refinement.api.image_limited_floor)",
            "confidence": 1.0,
            "per_half": per_half,
        },
        checksum,
        metrics,
        angular,
        {"train": None, "predict": search_s, "evaluate": eval_s},
        preds,
        command,
    )
