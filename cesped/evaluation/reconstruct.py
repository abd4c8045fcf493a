"""Half-maps of the evaluation: ground truth (cached) and predicted poses, native or RELION."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cesped.evaluation import gt_cache
from cesped.evaluation.predictions import ANGLES, FOM, IMAGE

__all__ = [
    "half_maps",
    "reconstruct_half",
    "gt_half_map",
    "native_gt_and_pred",
    "gt_and_pred_maps",
    "pose_sets",
    "origin_shifts",
]


def reconstruct_half(
    star,
    symmetry: str,
    backend: str,
    device: str,
    n_cpus: int,
    weights: bool,
    relion_bin=None,
    singularity_img=None,
    verbose=False,
    ctf: bool = True,
):
    """One half-map from an in-memory StarFile (whose ``path`` resolves the image names);
    ``ctf``: apply the images' CTF (False: the entry declares none)."""
    if backend == "native":
        from cesped.reconstruction.fourier import reconstruct

        return reconstruct(
            star,
            symmetry=symmetry,
            weights=FOM if weights else None,
            device=device,
            n_threads=n_cpus,
            ctf=ctf,
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
            ctf=ctf,
        )


def gt_half_map(star_path: Path, star, symmetry, backend, device, n_cpus, weights, use_cache, **kw):
    """Ground-truth half-map ``(volume, voxel_size)`` of one half-set, from the cache when there.

    ``kw``: ``relion_bin``, ``singularity_img``, ``verbose``, ``ctf`` of :func:`reconstruct_half`."""
    kernel = gt_cache.reconstruction_kernel(backend, device, kw.get("relion_bin"), kw.get("singularity_img"))
    key = gt_cache.gt_cache_key(star_path, star, symmetry, kernel, 2, weights, ctf=kw.get("ctf", True))
    if use_cache:
        hit = gt_cache.load_cached(key)
        if hit is not None:
            return hit
    vol, px = reconstruct_half(star, symmetry, backend, device, n_cpus, weights, **kw)
    if use_cache:
        gt_cache.store(key, vol, px)
    return vol, px


def native_gt_and_pred(star_path, gt, pred, symmetry, device, n_cpus, gt_fom, pred_fom, use_cache, ctf=True):
    """Ground-truth and predicted-pose half-maps of one half-set with the native backend.

    Both come from the same images and CTFs (``pred`` is ``gt`` with the predicted poses), so
    when the GT map is not cached they are reconstructed together, reading and transforming
    each image once (:func:`cesped.reconstruction.fourier.reconstruct_many`). Returns the two
    (n, n, n) float32 maps.
    """
    from cesped.reconstruction.fourier import reconstruct_many

    key = gt_cache.gt_cache_key(
        star_path, gt, symmetry, gt_cache.reconstruction_kernel("native", device), 2, gt_fom, ctf=ctf
    )
    hit = gt_cache.load_cached(key) if use_cache else None
    if hit is not None:
        pred_vol, _ = reconstruct_half(pred, symmetry, "native", device, n_cpus, pred_fom, ctf=ctf)
        return hit[0], pred_vol
    poses = pose_sets(gt, pred, gt_fom, pred_fom)
    (gt_vol, pred_vol), px = reconstruct_many(
        gt, poses, symmetry=symmetry, device=device, n_threads=n_cpus, ctf=ctf
    )
    if use_cache:
        gt_cache.store(key, gt_vol, px)
    return gt_vol, pred_vol


def pose_sets(gt, pred, gt_fom: bool, pred_fom: bool) -> list[dict]:
    """The ground-truth and the predicted poses of the same particles, as
    :func:`cesped.reconstruction.fourier.reconstruct_many` takes them (``rlnParticleFigureOfMerit``
    weights where asked)."""
    return [
        {
            "angles": st.particles[ANGLES].to_numpy(dtype=np.float64),
            "shifts_A": origin_shifts(st.particles),
            "weights": st.particles[FOM].to_numpy(dtype=np.float64) if fom else None,
        }
        for st, fom in ((gt, gt_fom), (pred, pred_fom))
    ]


def gt_and_pred_maps(gt, pred, symmetry, backend, device, n_cpus, gt_fom, pred_fom, **kw):
    """Ground-truth-pose and predicted-pose maps of the same particles (not cached).

    ``gt`` and ``pred`` are StarFiles of the same rows (``pred``: ``gt`` with the predicted
    columns). Native: one pass over the images for both maps; RELION: two runs. Returns two
    float64 (n, n, n) maps.
    """
    if backend == "native":
        from cesped.reconstruction.fourier import reconstruct_many

        poses = pose_sets(gt, pred, gt_fom, pred_fom)
        (gv, pv), _ = reconstruct_many(
            gt, poses, symmetry=symmetry, device=device, n_threads=n_cpus, ctf=kw.get("ctf", True)
        )
    else:
        gv, _ = reconstruct_half(gt, symmetry, backend, device, n_cpus, gt_fom, **kw)
        pv, _ = reconstruct_half(pred, symmetry, backend, device, n_cpus, pred_fom, **kw)
    return np.asarray(gv, dtype=np.float64), np.asarray(pv, dtype=np.float64)


def origin_shifts(particles) -> np.ndarray:
    """``rlnOriginXAngst/YAngst`` as (N, 2) float64 Å (zeros where a column is absent)."""
    out = np.zeros((len(particles), 2))
    for j, c in enumerate(("rlnOriginXAngst", "rlnOriginYAngst")):
        if c in particles.columns:
            out[:, j] = pd.to_numeric(particles[c]).to_numpy(dtype=np.float64)
    return out


def half_maps(
    star_paths,
    gts,
    halves,
    symmetry: str,
    backend: str,
    device: str,
    n_cpus: int,
    use_pred_conf: bool,
    use_cache: bool,
    relion_bin=None,
    singularity_img=None,
    verbose: bool = False,
    ctf: bool = True,
):
    """Ground-truth and predicted-pose half-maps of both half-sets.

    Parameters
    ----------
    star_paths : list of 2 paths
        The entry's star files (part of the ground-truth cache key).
    gts : list of 2 StarFile
        The entry's half-sets.
    halves : list of 2 HalfSet
        Validated predictions (:func:`cesped.evaluation.predictions.prepare_predictions`).
    symmetry, backend, device, n_cpus, use_pred_conf, use_cache, relion_bin, singularity_img, verbose
        As in :func:`cesped.evaluation.evaluate.evaluate`.
    ctf : bool
        Apply the images' CTF (False: the entry declares that its images carry none).

    Returns
    -------
    gt_maps, pred_maps : list of 2 np.ndarray float64 (n, n, n)
    """
    kw = dict(relion_bin=relion_bin, singularity_img=singularity_img, verbose=verbose, ctf=ctf)
    gt_maps, pred_maps = [], []
    for h in (0, 1):
        use_fom = use_pred_conf and FOM in gts[h].particles.columns
        if backend == "native":
            gt_vol, pred_vol = native_gt_and_pred(
                star_paths[h],
                gts[h],
                halves[h].pred,
                symmetry,
                device,
                n_cpus,
                use_fom,
                use_pred_conf,
                use_cache,
                ctf=ctf,
            )
        else:
            gt_vol, _ = gt_half_map(
                star_paths[h], gts[h], symmetry, backend, device, n_cpus, use_fom, use_cache, **kw
            )
            pred_vol, _ = reconstruct_half(
                halves[h].pred, symmetry, backend, device, n_cpus, use_pred_conf, **kw
            )
        gt_maps.append(np.asarray(gt_vol, dtype=np.float64))
        pred_maps.append(np.asarray(pred_vol, dtype=np.float64))
    return gt_maps, pred_maps
