"""Evaluation of predicted poses of a benchmark entry: the paper's per-entry metrics.

Pipeline (validated before anything is written):

1. read the entry's two half-sets (ground truth) and the two prediction star files; check that
   each prediction holds exactly the particles of its half (no missing, extra, duplicated or
   other-half particles), finite values, and the entry's box and pixel size;
2. transplant the predicted columns into the ground-truth tables as the original package does
   (S2: rot, tilt; SO3: rot, tilt, psi; SO3xR2: + origins; plus ``rlnParticleFigureOfMerit``
   when ``usePredConfidence``); everything else (CTF, and shifts unless SO3xR2) stays GT;
3. angular errors (symmetry-aware), MAnE (mean of the two halves) and wMAnE (weighted by GT
   ``rlnMaxValueProbDistribution``, pooled over halves);
4. ground-truth half-maps GT0, GT1 (cached, keyed by a hash of their inputs), predicted
   half-maps V0, V1, averages GT = (GT0+GT1)/2 and V = (V0+V1)/2;
5. PCC and FSC resolutions (0.143, 0.5) of (GT0,GT1), (V0,V1), (GT,V), all both masked (with
   the entry's mask) and unmasked, and the differences dPCC = PCC(GT0,GT1) − PCC(GT,V) and
   dFSCR = FSCR(GT,V) − FSCR(GT0,GT1), computed masked−masked and unmasked−unmasked.

Every metric key says what it is, e.g. ``PCC(GT,V)_masked`` or ``FSCR0.143(V0,V1)_unmasked_A``.
The paper's columns (``metrics.csv``) take the masked values when a mask is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["evaluate", "PAPER_COLUMNS", "prepare_predictions", "PREDICTION_TYPES"]

PREDICTION_TYPES = ("S2", "SO3", "SO3xR2")
ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
SHIFTS = ["rlnOriginXAngst", "rlnOriginYAngst"]
FOM = "rlnParticleFigureOfMerit"
GT_CONF = "rlnMaxValueProbDistribution"
IMAGE = "rlnImageName"
THRESHOLDS = (0.143, 0.5)
_GT_CACHE_VERSION = "native-dfi-1"

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


@dataclass
class _Half:
    gt: object  # StarFile of the entry half
    pred: object  # StarFile as transplanted (GT with predicted columns)
    errors: np.ndarray  # (n,) degrees
    gt_conf: np.ndarray  # (n,)
    shifts_rmse: float | None
    pred_conf: np.ndarray | None = None  # (n,) predicted rlnParticleFigureOfMerit, GT order


# ------------------------------------------------------------------------------------- entry access


def _resolve_entry(target: str, benchmark_dir):
    """Return (entry_dir, star paths [2], symmetry, mask path or None, target label)."""
    p = Path(os.path.expanduser(str(target)))
    if p.is_dir() and (p / "particles_0.star").is_file():
        stars = [p / "particles_0.star", p / "particles_1.star"]
        for s in stars:
            if not s.is_file():
                raise FileNotFoundError(f"entry directory {p} lacks {s.name}")
        sym = None
        for h in (0, 1):
            info = p / f"info_{h}.json"
            if info.is_file():
                sym = str(json.loads(info.read_text()).get("symmetry", "C1")).upper()
                break
        return p, stars, sym or "C1", (p / "mask.mrc") if (p / "mask.mrc").is_file() else None, p.name
    from cesped.data.local import ensure_entry, entry_paths, read_info

    dirs = [ensure_entry(str(target), h, benchmark_dir) for h in (0, 1)]
    stars = [entry_paths(str(target), h, benchmark_dir)["star"] for h in (0, 1)]
    sym = read_info(str(target), 0, benchmark_dir)["symmetry"]
    mask = entry_paths(str(target), 0, benchmark_dir)["mask"]
    if not mask.is_file():
        mask = _try_download_mask(str(target), mask)
    return dirs[0], stars, sym, mask, str(target)


def _try_download_mask(name: str, dest: Path):
    try:
        from cesped.data.entries import get_entry
        from cesped.data.zenodo import download_mask

        info = get_entry(name)
        if info.mask_file is None:
            return None
        download_mask(name, dest)
        return dest if dest.is_file() else None
    except Exception as e:  # offline or unknown: evaluate without a mask, and say so
        print(f"[cesped] no mask for {name} ({type(e).__name__}: {e}); metrics are computed unmasked")
        return None


# ------------------------------------------------------------------------------------ predictions


def _predicted_keys(prediction_type: str, use_conf: bool) -> list[str]:
    if prediction_type == "S2":
        keys = ANGLES[:2]
    elif prediction_type == "SO3":
        keys = list(ANGLES)
    elif prediction_type == "SO3xR2":
        keys = ANGLES + SHIFTS
    else:
        raise ValueError(f"predictionType must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return keys + ([FOM] if use_conf else [])


def _examples(values, k: int = 5) -> str:
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
) -> _Half:
    """Validate one half's predictions and transplant them into the ground-truth table.

    Parameters
    ----------
    gt, pred : StarFile
        Entry half-set and predictions.
    prediction_type : {"S2", "SO3", "SO3xR2"}
    use_conf : bool
        Transplant ``rlnParticleFigureOfMerit`` (1 when the prediction lacks it).
    symmetry : str
    half : int
        For messages.
    other_half_names : set of str, optional
        ``rlnImageName`` values of the other half-set (to recognise swapped halves).

    Raises
    ------
    ValueError
        Missing columns, duplicated/missing/extra/other-half particles, non-finite values,
        negative confidences, box or pixel size different from the entry's.
    """
    from cesped.evaluation.metrics import angular_errors, shifts_rmse

    where = f"predictions for half {half} ({pred_path or 'in memory'})"
    keys = _predicted_keys(prediction_type, use_conf)
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
        raise ValueError(f"{where}: {len(dup)} duplicated particle(s) in rlnImageName: {_examples(dup)}")
    gset, pset = set(gnames), set(pnames)
    extra = sorted(pset - gset)
    if extra:
        other = [e for e in extra if other_half_names is not None and e in other_half_names]
        if other:
            raise ValueError(
                f"{where}: {len(other)} particle(s) belong to the other half-set ({1 - half}): "
                f"{_examples(other)}; were the prediction files swapped?"
            )
        raise ValueError(
            f"{where}: {len(extra)} particle(s) not in the entry's half {half}: {_examples(extra)}"
        )
    missing = [g for g in gnames if g not in pset]
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} particle(s) of half {half} have no prediction: {_examples(missing)}"
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
        if col == FOM and (vals < 0).any():
            raise ValueError(f"{where}: column {FOM} has negative values")
    _check_optics(gt, pred, where)
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
    return _Half(gt=gt, pred=out, errors=err, gt_conf=conf, shifts_rmse=srmse, pred_conf=pred_conf)


def _check_optics(gt, pred, where: str) -> None:
    for col, tol in (("rlnImageSize", 0.0), ("rlnImagePixelSize", 1e-3)):
        if col not in pred.optics.columns or col not in gt.optics.columns:
            continue
        pv = pd.to_numeric(pred.optics[col], errors="coerce").to_numpy(dtype=np.float64)
        gv = float(pd.to_numeric(gt.optics[col]).iloc[0])
        if not np.all(np.abs(pv - gv) <= tol * max(1.0, abs(gv))):
            what = "box size (px)" if col == "rlnImageSize" else "pixel size (Å/px)"
            raise ValueError(f"{where}: {col} {pv.tolist()} differs from the entry's {what} {gv}")


# ---------------------------------------------------------------------------------- reconstruction


def _stack_identity(star) -> list:
    from cesped.io.stack import parse_image_name

    root = Path(star.path).parent if star.path is not None else Path(".")
    files = sorted({parse_image_name(str(n))[1] for n in star.particles[IMAGE].astype(str)})
    ident = []
    for f in files:
        fp = (root / f).resolve()
        st = fp.stat() if fp.exists() else None
        ident.append([str(fp), st.st_size if st else None, st.st_mtime_ns if st else None])
    return ident


def _gt_cache_key(star_path: Path, star, symmetry: str, backend: str, pad: int, weights: bool) -> str:
    h = hashlib.sha256()
    h.update(Path(star_path).read_bytes())
    h.update(
        json.dumps(
            {
                "stacks": _stack_identity(star),
                "symmetry": symmetry,
                "backend": backend,
                "pad": pad,
                "fom": weights,
                "version": _GT_CACHE_VERSION,
            }
        ).encode()
    )
    return h.hexdigest()[:32]


def _reconstruct(
    star,
    symmetry: str,
    backend: str,
    device: str,
    n_cpus: int,
    weights: bool,
    relion_bin=None,
    singularity_img=None,
    verbose=False,
):
    """One half-map from an in-memory StarFile (whose ``path`` resolves the image names)."""
    if backend == "native":
        from cesped.reconstruction.fourier import reconstruct

        return reconstruct(
            star, symmetry=symmetry, weights=FOM if weights else None, device=device, n_threads=n_cpus
        )
    from cesped.io.stack import parse_image_name
    from cesped.io.star import write_star
    from cesped.reconstruction.relion import reconstruct_relion

    st = star.copy()
    root = Path(star.path).parent if star.path is not None else Path(".")
    names = []
    for n in st.particles[IMAGE].astype(str):
        idx, f = parse_image_name(n)
        names.append(f"{idx + 1:06d}@{(root / f).resolve()}")
    st.particles[IMAGE] = names
    with tempfile.TemporaryDirectory(prefix="cesped_eval_") as tmp:
        sp = Path(tmp) / "particles.star"
        write_star(sp, st)
        return reconstruct_relion(
            sp,
            symmetry,
            None,
            n_cpus=n_cpus,
            fom_weighting=weights,
            relion_bin=relion_bin,
            singularity_img=singularity_img,
            verbose=verbose,
        )


def _gt_half_map(star_path: Path, star, symmetry, backend, device, n_cpus, weights, use_cache, **kw):
    from cesped import settings
    from cesped.io.mrc import read_map, write_map

    key = _gt_cache_key(star_path, star, symmetry, backend, 2, weights)
    cpath = settings.cache_dir() / "gt_maps" / f"{key}.mrc"
    if use_cache and cpath.is_file():
        try:
            return read_map(cpath)
        except (ValueError, OSError):
            pass  # corrupt cache entry: rebuild
    vol, px = _reconstruct(star, symmetry, backend, device, n_cpus, weights, **kw)
    if use_cache:
        try:
            write_map(cpath, vol, px)
        except OSError as e:
            print(f"[cesped] could not cache the GT map in {cpath}: {e}")
    return vol, px


def _native_gt_and_pred(star_path, gt, pred, symmetry, device, n_cpus, gt_fom, pred_fom, use_cache):
    """Ground-truth and predicted-pose half-maps of one half-set with the native backend.

    Both come from the same images and CTFs (``pred`` is ``gt`` with the predicted poses), so
    when the GT map is not cached they are reconstructed together, reading and transforming
    each image once (:func:`cesped.reconstruction.fourier.reconstruct_many`). Returns the two
    (n, n, n) float32 maps.
    """
    from cesped import settings
    from cesped.io.mrc import read_map, write_map
    from cesped.reconstruction.fourier import reconstruct_many

    key = _gt_cache_key(star_path, gt, symmetry, "native", 2, gt_fom)
    cpath = settings.cache_dir() / "gt_maps" / f"{key}.mrc"
    if use_cache and cpath.is_file():
        try:
            gt_vol, _ = read_map(cpath)
        except (ValueError, OSError):
            pass  # corrupt cache entry: rebuild below
        else:
            pred_vol, _ = _reconstruct(pred, symmetry, "native", device, n_cpus, pred_fom)
            return gt_vol, pred_vol
    pp = pred.particles
    poses = [
        {
            "angles": gt.particles[ANGLES].to_numpy(dtype=np.float64),
            "shifts_A": _origin_shifts(gt.particles),
            "weights": gt.particles[FOM].to_numpy(dtype=np.float64) if gt_fom else None,
        },
        {
            "angles": pp[ANGLES].to_numpy(dtype=np.float64),
            "shifts_A": _origin_shifts(pp),
            "weights": pp[FOM].to_numpy(dtype=np.float64) if pred_fom else None,
        },
    ]
    (gt_vol, pred_vol), px = reconstruct_many(gt, poses, symmetry=symmetry, device=device, n_threads=n_cpus)
    if use_cache:
        try:
            write_map(cpath, gt_vol, px)
        except OSError as e:
            print(f"[cesped] could not cache the GT map in {cpath}: {e}")
    return gt_vol, pred_vol


def _origin_shifts(particles) -> np.ndarray:
    """``rlnOriginXAngst/YAngst`` as (N, 2) float64 Å (zeros where a column is absent)."""
    out = np.zeros((len(particles), 2))
    for j, c in enumerate(("rlnOriginXAngst", "rlnOriginYAngst")):
        if c in particles.columns:
            out[:, j] = pd.to_numeric(particles[c]).to_numpy(dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------------- metrics


def _pair_from_transforms(a, b, transforms, mask, voxel_size, label, out, curves) -> None:
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


def _all_map_metrics(gt_maps, pred_maps, gt_avg, pred_avg, mask, voxel_size, out, curves, workers=None):
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
        _pair_from_transforms(a, b, tr[label], mask, voxel_size, label, out, curves)


def _load_mask(mask, box: int, voxel_size: float):
    from cesped.io.mrc import read_map

    path = Path(os.path.expanduser(str(mask)))
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} not found")
    m, mpx = read_map(path)
    if m.shape != (box,) * 3:
        raise ValueError(f"mask {path} has shape {m.shape}, the entry's maps are {(box,) * 3}")
    if abs(float(mpx) - voxel_size) > 1e-3 * voxel_size:
        raise ValueError(f"mask {path} has voxel size {mpx} Å, the entry's is {voxel_size} Å")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"mask {path} has non-finite values")
    return m.astype(np.float64), path


def _jsonable(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    return v


# --------------------------------------------------------------------------------------- evaluate


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
) -> dict:
    """Evaluate predicted poses of both half-sets of an entry; return the metrics.

    Parameters
    ----------
    targetName : str
        Entry name (e.g. "10280", "TEST"), or the path of an entry directory holding
        ``particles_{0,1}.star`` (and optionally ``info_0.json``, ``mask.mrc``).
    half0PredsFname, half1PredsFname : path
        RELION star files with the predictions for half-set 0 and 1.
    predictionType : {"S2", "SO3", "SO3xR2"}
        What was predicted: viewing direction (rot, tilt), rotation, or rotation and shifts.
    usePredConfidence : bool
        Weight particles by the predicted ``rlnParticleFigureOfMerit`` when reconstructing.
    n_cpus : int
        Threads (native) or MPI ranks (relion).
    outdir : path, optional
        Receives metrics.json, metrics.csv, fsc_curves.csv, maps and plots. None: nothing written.
    benchmarkDir : path, optional
        Root of the entries (default :func:`cesped.settings.benchmark_dir`).
    backend : {"native", "relion"}
    device : str
        Torch device of the native backend ("cpu", "cuda").
    mask : path, "none" or None
        None: the entry's mask (``mask.mrc``, downloaded when registered); "none": no mask;
        a path: that mask.
    relion_bin, singularityImgFile
        Where RELION comes from for ``backend="relion"``.
    use_cache : bool
        Reuse / store the ground-truth half-maps in ``cesped.settings.cache_dir()/gt_maps``.
    plots : bool
        Write the PNG plots into ``outdir``.
    verbose : bool
        Print the summary table.

    Returns
    -------
    dict
        Float metrics (degrees, Å, correlations); keys name the maps compared and whether a mask
        was applied, e.g. ``"PCC(GT,V)_masked"``, ``"FSCR0.143(GT0,GT1)_unmasked_A"``; also
        ``"mask"`` (path or None) and the paper's column names (``"PCC(GT,V)"`` ...) holding the
        masked values when a mask is used and the unmasked ones otherwise.
    """
    from cesped.io.star import read_star

    if predictionType not in PREDICTION_TYPES:
        raise ValueError(f"predictionType must be one of {PREDICTION_TYPES}, got {predictionType!r}")
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

    entry_dir, star_paths, symmetry, entry_mask, label = _resolve_entry(targetName, benchmarkDir)
    from cesped.geometry.symmetry import normalize_symmetry

    symmetry = normalize_symmetry(symmetry)
    gts = [read_star(s) for s in star_paths]
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
            symmetry,
            h,
            other_half_names=names[1 - h],
            pred_path=pred_paths[h],
        )
        for h in (0, 1)
    ]
    mask_arr, mask_path = None, None
    if mask is None:
        if entry_mask is not None:
            mask_arr, mask_path = _load_mask(entry_mask, box, voxel_size)
    elif str(mask).lower() != "none":
        mask_arr, mask_path = _load_mask(mask, box, voxel_size)

    per_particle = _per_particle(halves)
    # the per-particle figures need no map: render them (in memory) while the maps are built
    early_plots = _BackgroundPlots(per_particle) if (plots and outdir is not None) else None
    try:
        kw = dict(relion_bin=relion_bin, singularity_img=singularityImgFile, verbose=verbose)
        gt_maps, pred_maps = [], []
        for h in (0, 1):
            use_fom = usePredConfidence and FOM in gts[h].particles.columns
            if backend == "native":
                gt_vol, pred_vol = _native_gt_and_pred(
                    star_paths[h],
                    gts[h],
                    halves[h].pred,
                    symmetry,
                    device,
                    n_cpus,
                    use_fom,
                    usePredConfidence,
                    use_cache,
                )
            else:
                gt_vol, _ = _gt_half_map(
                    star_paths[h], gts[h], symmetry, backend, device, n_cpus, use_fom, use_cache, **kw
                )
                pred_vol, _ = _reconstruct(
                    halves[h].pred, symmetry, backend, device, n_cpus, usePredConfidence, **kw
                )
            gt_maps.append(np.asarray(gt_vol, dtype=np.float64))
            pred_maps.append(np.asarray(pred_vol, dtype=np.float64))
        gt_avg = 0.5 * (gt_maps[0] + gt_maps[1])
        pred_avg = 0.5 * (pred_maps[0] + pred_maps[1])

        metrics: dict = {
            "target": label,
            "predictionType": predictionType,
            "symmetry": symmetry,
            "usePredConfidence": bool(usePredConfidence),
            "backend": backend,
            "mask": str(mask_path) if mask_path is not None else None,
            "voxel_size_A": voxel_size,
            "box_px": box,
        }
        err0, err1 = halves[0].errors, halves[1].errors
        from cesped.geometry.numpy_ops import mean_angular_error, weighted_mean_angular_error

        metrics["MAnE_deg"] = 0.5 * (mean_angular_error(err0) + mean_angular_error(err1))
        c0, c1 = halves[0].gt_conf, halves[1].gt_conf
        metrics["wMAnE_deg"] = weighted_mean_angular_error(
            np.concatenate([err0, err1]), np.concatenate([c0, c1])
        )
        metrics["MAnE_half0_deg"] = mean_angular_error(err0)
        metrics["MAnE_half1_deg"] = mean_angular_error(err1)
        metrics["median_angular_error_deg"] = float(np.median(np.concatenate([err0, err1])))
        metrics["shiftsRMSE_A"] = (
            0.5 * (halves[0].shifts_rmse + halves[1].shifts_rmse) if predictionType == "SO3xR2" else None
        )
        curves: dict = {}
        _all_map_metrics(gt_maps, pred_maps, gt_avg, pred_avg, mask_arr, voxel_size, metrics, curves, n_cpus)
        for flavour in ("unmasked", "masked"):
            if f"PCC(GT,V)_{flavour}" not in metrics:
                continue
            metrics[f"dPCC_{flavour}"] = metrics[f"PCC(GT0,GT1)_{flavour}"] - metrics[f"PCC(GT,V)_{flavour}"]
            for t in ("0.143", "0.5"):
                metrics[f"dFSCR{t}_{flavour}_A"] = (
                    metrics[f"FSCR{t}(GT,V)_{flavour}_A"] - metrics[f"FSCR{t}(GT0,GT1)_{flavour}_A"]
                )
        flavour = "masked" if mask_arr is not None else "unmasked"
        paper = {col: metrics[key.format(m=flavour)] for col, key in PAPER_COLUMNS.items()}
        metrics["paper_columns_use"] = flavour
        metrics.update(paper)
        metrics = {k: _jsonable(v) for k, v in metrics.items()}

        if outdir is not None:
            _write_outputs(
                Path(os.path.expanduser(str(outdir))),
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
                f"{label}: {predictionType} predictions",
            )
    finally:
        if early_plots is not None:
            early_plots.join()  # no thread outlives the call, on success or error
    if verbose:
        print(summary_table(metrics))
    return metrics


def _per_particle(halves) -> dict:
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


class _BackgroundPlots:
    """Renders the per-particle figures to PNG bytes in a thread (nothing is written to disk).

    Started before the reconstruction, whose compiled and torch kernels release the GIL, so
    the figures cost little extra time. :meth:`result` waits and re-raises any error; nothing
    else may use matplotlib until it has returned (matplotlib is not thread-safe).

    Parameters
    ----------
    per_particle : dict
        As returned by :func:`_per_particle`.
    """

    def __init__(self, per_particle: dict):
        import threading

        self._figures = None
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(per_particle,), name="cesped-plots", daemon=True
        )
        self._thread.start()

    def _run(self, per_particle: dict) -> None:
        try:
            self._figures = _render_particle_figures(per_particle)
        except BaseException as e:  # handed to the caller by result()
            self._error = e

    def join(self) -> None:
        """Wait for the thread (errors stay with :meth:`result`)."""
        self._thread.join()

    def result(self) -> list[tuple[str, str, bytes]]:
        """(caption, file name, PNG bytes) of each figure, in the report's order."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._figures


def _render_particle_figures(per_particle: dict) -> list[tuple[str, str, bytes]]:
    """Angular-error histogram, orientation coverage and confidence-vs-error plots, in memory."""
    import io

    from cesped.evaluation import plots as pl
    from cesped.evaluation.report import render_particle_plots

    buf = io.BytesIO()
    pl.plot_angular_errors(buf, per_particle["errors_deg"])
    hist = ("Histogram of symmetry-aware angular errors (both half-sets).", "angular_errors.png")
    return [(*hist, buf.getvalue()), *render_particle_plots(per_particle)]


def _write_plots(outdir, metrics, freqs, curves, gt_avg, pred_avg, early_plots, title) -> None:
    """Map plots (FSC curves, central slices), the per-particle figures and report.html."""
    from cesped.evaluation import plots as pl
    from cesped.evaluation.report import write_report

    # matplotlib is not thread-safe (shared font objects): the thread ends before we plot here
    figures = {name: (cap, data) for cap, name, data in early_plots.result()}
    pl.plot_fsc_curves(outdir / "fsc.png", freqs, curves, THRESHOLDS)
    pl.plot_central_slices(outdir / "central_slices.png", gt_avg, pred_avg)
    for name, (_, data) in figures.items():
        pl.write_png(outdir / name, data)
    hist = figures.pop("angular_errors.png")[0]
    order = [
        (
            "Fourier shell correlation of GT0-GT1, V0-V1 and GT-V, thresholds 0.143 and 0.5.",
            outdir / "fsc.png",
        ),
        (hist, outdir / "angular_errors.png"),
        (
            "Central slices of the ground-truth map GT and the predicted-pose map V.",
            outdir / "central_slices.png",
        ),
        *[(cap, outdir / name) for name, (cap, _) in figures.items()],
    ]
    write_report(outdir, metrics, None, plots=order, title=title)


def _write_outputs(
    outdir: Path,
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
    title: str = "cesped evaluation",
) -> None:
    """Write maps, curves, plots, report and (last) the metrics into ``outdir``, each atomically.

    ``early_plots`` is the :class:`_BackgroundPlots` job of the per-particle figures, or None
    for no plots at all.
    """
    from cesped.evaluation.metrics import fsc_frequencies
    from cesped.io.atomic import atomic_open
    from cesped.io.mrc import write_map

    outdir.mkdir(parents=True, exist_ok=True)
    # an old result must not sit next to new maps if this run dies half-way
    for stale in ("metrics.json", "metrics.csv"):
        (outdir / stale).unlink(missing_ok=True)
    maps = {
        "gt_0": gt_maps[0],
        "gt_1": gt_maps[1],
        "gt": gt_avg,
        "pred_0": pred_maps[0],
        "pred_1": pred_maps[1],
        "pred": pred_avg,
    }
    for name, vol in maps.items():
        write_map(outdir / f"{name}.mrc", vol.astype(np.float32), voxel_size)
    freqs = fsc_frequencies(box, voxel_size)
    table = pd.DataFrame({"frequency_1/A": freqs, **{k: v for k, v in curves.items()}})
    with atomic_open(outdir / "fsc_curves.csv") as fh:
        table.to_csv(fh, index=False, float_format="%.8g")
    if early_plots is not None:
        _write_plots(outdir, metrics, freqs, curves, gt_avg, pred_avg, early_plots, title)
    row = {k: _jsonable(v) for k, v in paper.items()}
    with atomic_open(outdir / "metrics.csv") as fh:
        pd.DataFrame([row]).to_csv(fh, index=False, float_format="%.6g")
    with atomic_open(outdir / "metrics.json") as fh:
        json.dump(metrics, fh, indent=2)


def summary_table(metrics: dict) -> str:
    """Human-readable summary of :func:`evaluate`'s result (one metric per line)."""

    def f(v, nd=4):
        return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    lines = [
        f"> EVALUATION of {metrics.get('target')} ({metrics.get('predictionType')}, symmetry "
        f"{metrics.get('symmetry')}, backend {metrics.get('backend')}, "
        f"mask: {metrics.get('mask') or 'none'})",
        f"{'MAnE (deg)':<34}{f(metrics.get('MAnE_deg'), 3)}",
        f"{'wMAnE (deg)':<34}{f(metrics.get('wMAnE_deg'), 3)}",
        f"{'shifts RMSE (A)':<34}{f(metrics.get('shiftsRMSE_A'), 3)}",
        f"{'':<34}{'masked':>12}{'unmasked':>12}",
    ]
    rows = [
        "PCC(GT0,GT1)",
        "PCC(V0,V1)",
        "PCC(GT,V)",
        "dPCC",
        "FSCR0.143(GT0,GT1)",
        "FSCR0.143(V0,V1)",
        "FSCR0.143(GT,V)",
        "dFSCR0.143",
        "FSCR0.5(GT0,GT1)",
        "FSCR0.5(V0,V1)",
        "FSCR0.5(GT,V)",
        "dFSCR0.5",
    ]
    for r in rows:
        is_res = r.startswith(("FSCR", "dFSCR"))
        unit = " (A)" if is_res else ""
        vals = []
        for fl in ("masked", "unmasked"):
            if is_res:
                base = r if r.startswith("d") else r
                key = f"{base}_{fl}_A"
            else:
                key = f"{r}_{fl}"
            vals.append(f(metrics.get(key), 3 if is_res else 4))
        lines.append(f"{r + unit:<34}{vals[0]:>12}{vals[1]:>12}")
    return "\n".join(lines)
