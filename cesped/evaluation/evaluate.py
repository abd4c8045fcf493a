"""Evaluation of predicted poses of a benchmark entry: the paper's per-entry metrics.

Pipeline (everything is validated before anything is written), one module per step:

1. :mod:`~cesped.evaluation.entry` -- which entry: its directory, star files, symmetry, mask;
2. :mod:`~cesped.evaluation.predictions` -- read the entry's two half-sets (ground truth) and
   the two prediction star files; check that each prediction holds exactly the particles of
   its half, finite values, and the entry's box and pixel size; transplant the predicted
   columns into the ground-truth tables as the original package does (S2: rot, tilt; SO3:
   rot, tilt, psi; SO3xR2: + origins; plus ``rlnParticleFigureOfMerit`` when
   ``usePredConfidence``); angular errors (symmetry-aware);
3. :mod:`~cesped.evaluation.masks` -- the mask, checked against the entry's box and pixel size;
4. :mod:`~cesped.evaluation.reconstruct` -- ground-truth half-maps GT0, GT1 (cached by
   :mod:`~cesped.evaluation.gt_cache`) and predicted half-maps V0, V1, averages GT = (GT0+GT1)/2
   and V = (V0+V1)/2; meanwhile :mod:`~cesped.evaluation.plot_thread` renders the
   per-particle figures;
5. :mod:`~cesped.evaluation.scores` -- MAnE (mean of the two halves), wMAnE (weighted by GT
   ``rlnMaxValueProbDistribution``, pooled over halves), PCC and FSC resolutions (0.143, 0.5)
   of (GT0,GT1), (V0,V1), (GT,V), both masked and unmasked, and the differences
   dPCC = PCC(GT0,GT1) − PCC(GT,V), dFSCR = FSCR(GT,V) − FSCR(GT0,GT1);
6. :mod:`~cesped.evaluation.heterogeneity` -- for an entry declared heterogeneous (its info
   files): the angular metrics per conformational state (or morph-coordinate bin) and per-state
   maps compared with each state's true map (``metrics["heterogeneity"]``);
7. :mod:`~cesped.evaluation.outputs` -- maps, curves, plots, report and metrics in ``outdir``.

Every metric key says what it is, e.g. ``PCC(GT,V)_masked`` or ``FSCR0.143(V0,V1)_unmasked_A``.
The paper's columns (``metrics.csv``) take the masked values when a mask is used.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pandas as pd

from cesped.evaluation import reconstruct
from cesped.evaluation.entry import resolve_entry
from cesped.evaluation.ground_truth import read_ground_truth, stack_pixel_size_warnings
from cesped.evaluation.heterogeneity import evaluate_heterogeneity, read_heterogeneity, write_group_outputs
from cesped.evaluation.masks import select_mask
from cesped.evaluation.outputs import summary_table, write_outputs
from cesped.evaluation.paper_compat import paper_compatible
from cesped.evaluation.plot_thread import BackgroundPlots
from cesped.evaluation.predictions import (  # noqa: F401  (ANGLES, FOM, IMAGE: re-exported)
    ANGLES,
    FOM,
    IMAGE,
    PREDICTION_TYPES,
    per_particle,
    prepare_predictions,
)
from cesped.evaluation.references import random_reference
from cesped.evaluation.scores import (
    PAPER_COLUMNS,
    add_differences,
    all_map_metrics,
    jsonable,
    paper_columns,
    pose_metrics,
)
from cesped.evaluation.staging import StagedOutdir

__all__ = ["evaluate", "summary_table", "PAPER_COLUMNS", "prepare_predictions", "PREDICTION_TYPES"]


def evaluate(
    targetName: str,
    half0PredsFname,
    half1PredsFname,
    predictionType: str = "SO3",
    usePredConfidence: bool = True,
    n_cpus: int = 1,
    outdir=None,
    benchmarkDir=None,
    backend: str = "native",
    device: str = "cpu",
    mask=None,
    relion_bin=None,
    singularityImgFile=None,
    use_cache: bool = True,
    plots: bool = True,
    verbose: bool = False,
    symmetry: str | None = None,
    frame: str = "fixed",
    allow_mirror: bool = False,
    ctf: bool | None = None,
    floor: bool = False,
) -> dict:
    """Evaluate predicted poses of both half-sets of an entry; return the metrics.

    Parameters
    ----------
    targetName : str
        Entry name (e.g. "10280", "TEST"), or the path of an entry directory holding
        ``particles_{0,1}.star``, ``info_{0,1}.json`` (the symmetry; without them ``symmetry``
        is required) and optionally ``mask.mrc``.
    half0PredsFname, half1PredsFname : path
        RELION star files with the predictions for half-set 0 and 1.
    predictionType : {"S2", "SO3", "SO3xR2"}
        What was predicted: viewing direction (rot, tilt), rotation, or rotation and shifts.
    usePredConfidence : bool
        Weight particles by the predicted ``rlnParticleFigureOfMerit`` when reconstructing the
        predicted-pose maps (values in [0, 1], not all 0; absent: weight 1). MAnE and wMAnE do
        not use it.
    n_cpus : int
        Threads (native) or MPI ranks (relion).
    outdir : path, optional
        Receives metrics.json, metrics.csv, fsc_curves.csv, maps and plots. None: nothing written.
        Checked before any work; the outputs are built beside it and replace it as a whole at the
        end (an existing ``outdir`` may hold only outputs of an evaluation), see
        :mod:`cesped.evaluation.staging`.
    benchmarkDir : path, optional
        Root of the entries (default :func:`cesped.settings.benchmark_dir`).
    backend : {"native", "relion"}
    device : str
        Torch device of the native backend ("cpu", "cuda").
    mask : path, "none" or None
        None: the entry's mask (``mask.mrc``; downloaded for a registered entry, and a failed
        download is an error); "none": no mask; a path: that mask. See
        :mod:`cesped.evaluation.masks`.
    relion_bin, singularityImgFile
        Where RELION comes from for ``backend="relion"``.
    use_cache : bool
        Reuse / store the ground-truth half-maps in ``cesped.settings.cache_dir()/gt_maps``.
    plots : bool
        Write the PNG plots into ``outdir``.
    verbose : bool
        Print the summary table.
    symmetry : str, optional
        Point group; required for an entry without ``info_{0,1}.json``, otherwise it must agree
        with them.
    frame : {"fixed", "free"}
        "fixed": the predictions are in the entry's frame (supervised methods). "free": each
        half-set's poses are first aligned to the truth by one global rotation (found robustly,
        see :mod:`cesped.evaluation.frames`), for methods whose poses live in the frame of their
        own map (ab initio); every metric is then computed after alignment and the frame is
        recorded (``frame_*`` keys). Needs rotations (not ``S2``).
    allow_mirror : bool
        With ``frame="free"``: also try the map of the other hand.
    ctf : bool, optional
        Whether the images carry a CTF. None: as the entry's info files declare (``"ctf"``; a
        CTF when they say nothing), and then a ground truth without CTF columns is refused
        (file and columns named) rather than evaluated without a CTF. False: no CTF is applied.
        Recorded in ``metrics.json`` (``"ctf"``).
    floor : bool
        Also report the entry's image-limited floor (:mod:`cesped.evaluation.floor`; needs the
        true map ``gt_map.mrc``, cached per entry) as ``references["image-limited floor"]``,
        beside the random-pose reference.

    Returns
    -------
    dict
        Float metrics (degrees, Å, correlations); keys name the maps compared and whether a mask
        was applied, e.g. ``"PCC(GT,V)_masked"``, ``"FSCR0.143(GT0,GT1)_unmasked_A"``; also
        ``"mask"`` (file name or None), ``"mask_md5"``, ``"paper_columns_masked"`` (paper
        column -> whether its value is masked), ``"warnings"`` (list of str) and the paper's
        column names (``"PCC(GT,V)"`` ...) holding the masked values when a mask is used and the
        unmasked ones otherwise.
    """
    if predictionType not in PREDICTION_TYPES:
        raise ValueError(f"predictionType must be one of {PREDICTION_TYPES}, got {predictionType!r}")
    if frame not in ("fixed", "free"):
        raise ValueError(f"frame must be 'fixed' or 'free', got {frame!r}")
    if frame == "free" and predictionType == "S2":
        raise ValueError("frame='free' needs predicted rotations (predictionType SO3 or SO3xR2), not S2")
    if floor and predictionType == "S2":
        raise ValueError("floor=True (--floor) compares rotations: predictionType must be SO3 or SO3xR2")
    if allow_mirror and frame != "free":
        raise ValueError("allow_mirror=True needs frame='free'")
    if backend not in ("native", "relion"):
        raise ValueError(f"backend must be 'native' or 'relion', got {backend!r}")
    if int(n_cpus) != n_cpus or n_cpus < 1:
        raise ValueError(f"n_cpus must be a positive integer, got {n_cpus!r}")
    n_cpus = int(n_cpus)
    pred_paths = []
    for name, f in (("half0PredsFname", half0PredsFname), ("half1PredsFname", half1PredsFname)):
        p = Path(os.path.expanduser(str(f)))
        if not p.is_file():
            raise FileNotFoundError(f"{name}: prediction file {p} not found")
        pred_paths.append(p)
    if backend == "relion" and singularityImgFile is None:
        from cesped.reconstruction.relion import find_relion_binary

        find_relion_binary("relion_reconstruct_mpi" if n_cpus > 1 else "relion_reconstruct", relion_bin)
    # the output directory is checked (and its staging directory made) before any work
    stage = StagedOutdir(outdir) if outdir is not None else contextlib.nullcontext()
    with stage:
        metrics = _run(
            stage if outdir is not None else None,
            pred_paths,
            targetName=targetName,
            predictionType=predictionType,
            usePredConfidence=usePredConfidence,
            n_cpus=n_cpus,
            benchmarkDir=benchmarkDir,
            backend=backend,
            device=device,
            mask=mask,
            relion_bin=relion_bin,
            singularityImgFile=singularityImgFile,
            use_cache=use_cache,
            plots=plots,
            verbose=verbose,
            symmetry=symmetry,
            frame=frame,
            allow_mirror=allow_mirror,
            ctf=ctf,
            floor=floor,
        )
    if verbose:
        print(summary_table(metrics))
    return metrics


def _run(
    stage,
    pred_paths,
    *,
    targetName,
    predictionType,
    usePredConfidence,
    n_cpus,
    benchmarkDir,
    backend,
    device,
    mask,
    relion_bin,
    singularityImgFile,
    use_cache,
    plots,
    verbose,
    symmetry,
    frame="fixed",
    allow_mirror=False,
    ctf=None,
    floor=False,
) -> dict:
    """The pipeline of :func:`evaluate` after the argument checks; writes into ``stage``."""
    from cesped.io.star import read_star

    entry = resolve_entry(targetName, benchmarkDir, symmetry, ctf=ctf)
    if floor:
        from cesped.evaluation.floor import check_floor_available

        check_floor_available(entry.directory)  # before any work
    gts = [read_ground_truth(s, ctf=entry.ctf) for s in entry.stars]
    het = read_heterogeneity(entry.directory, gts)
    preds = [read_star(p) for p in pred_paths]
    box = int(pd.to_numeric(gts[0].optics["rlnImageSize"]).iloc[0])
    voxel_size = float(pd.to_numeric(gts[0].optics["rlnImagePixelSize"]).iloc[0])
    names = [set(g.particles[IMAGE].astype(str)) for g in gts]
    halves = [
        prepare_predictions(
            gts[h],
            preds[h],
            predictionType,
            usePredConfidence,
            entry.symmetry,
            h,
            other_half_names=names[1 - h],
            pred_path=pred_paths[h],
        )
        for h in (0, 1)
    ]
    frame_info = {"frame": "fixed"}
    if frame == "free":
        from cesped.evaluation.frames import align_half_sets

        frame_info = align_half_sets(halves, entry.symmetry, allow_mirror=allow_mirror, sources=pred_paths)
    the_mask = select_mask(mask, entry, box, voxel_size)
    mask_arr = the_mask.array if the_mask is not None else None
    warnings = [w for g in gts for w in stack_pixel_size_warnings(g)]
    for w in warnings:
        print(f"[cesped] warning: {w}")

    # the per-particle figures need no map: render them (in memory) while the maps are built
    early_plots = BackgroundPlots(per_particle(halves)) if (plots and stage is not None) else None
    try:
        gt_maps, pred_maps = reconstruct.half_maps(
            entry.stars,
            gts,
            halves,
            entry.symmetry,
            backend,
            device,
            n_cpus,
            usePredConfidence,
            use_cache,
            relion_bin=relion_bin,
            singularity_img=singularityImgFile,
            verbose=verbose,
            ctf=entry.ctf,
        )
        gt_avg = 0.5 * (gt_maps[0] + gt_maps[1])
        pred_avg = 0.5 * (pred_maps[0] + pred_maps[1])
        metrics: dict = {
            "target": entry.label,
            "predictionType": predictionType,
            "symmetry": entry.symmetry,
            "usePredConfidence": bool(usePredConfidence),
            "backend": backend,
            "ctf": entry.ctf,
            "mask": the_mask.path.name if the_mask is not None else None,
            "mask_md5": the_mask.md5 if the_mask is not None else None,
            "voxel_size_A": voxel_size,
            "box_px": box,
            **pose_metrics(halves, predictionType),
            **frame_info,
        }
        curves: dict = {}
        all_map_metrics(gt_maps, pred_maps, gt_avg, pred_avg, mask_arr, voxel_size, metrics, curves, n_cpus)
        add_differences(metrics)
        paper = paper_columns(metrics, masked=mask_arr is not None)
        metrics["paper_columns_use"] = "masked" if mask_arr is not None else "unmasked"
        metrics["paper_columns_masked"] = {
            col: mask_arr is not None and key.endswith(("_{m}", "_{m}_A"))
            for col, key in PAPER_COLUMNS.items()
        }
        metrics["warnings"] = warnings
        metrics.update(paper)
        metrics["paper_compatible"] = {k: jsonable(v) for k, v in paper_compatible(metrics).items()}
        metrics["references"] = {"random poses": random_reference(halves, entry.symmetry, predictionType)}
        het_maps, extra_plots = {}, []
        if het is not None:
            maps_kw = dict(
                symmetry=entry.symmetry,
                backend=backend,
                device=device,
                n_cpus=n_cpus,
                use_pred_conf=usePredConfidence,
                relion_bin=relion_bin,
                singularity_img=singularityImgFile,
                verbose=verbose,
                ctf=entry.ctf,
            )
            block, het_maps = evaluate_heterogeneity(het, gts, halves, maps_kw, mask_arr, voxel_size, n_cpus)
            metrics["heterogeneity"] = {k: jsonable(v) for k, v in block.items()}
        if floor:
            from cesped.evaluation.floor import FLOOR, floor_reference

            metrics["references"][FLOOR] = floor_reference(
                entry.directory, device=device, use_cache=use_cache, verbose=verbose
            )
        metrics = {k: jsonable(v) for k, v in metrics.items()}
        if stage is not None:
            if het is not None:
                stage.path.mkdir(parents=True, exist_ok=True)
                extra_plots = write_group_outputs(
                    stage.path, het, halves, metrics["heterogeneity"], het_maps, voxel_size, plots
                )
            write_outputs(
                stage.path,
                metrics,
                paper,
                curves,
                voxel_size,
                box,
                gt_maps,
                pred_maps,
                gt_avg,
                pred_avg,
                mask_arr,
                early_plots,
                f"{entry.label}: {predictionType} predictions",
                extra_plots=extra_plots,
            )
    finally:
        if early_plots is not None:
            early_plots.join()  # no thread outlives the call, on success or error
    if stage is not None:
        stage.commit()
    return metrics
