"""Refinement of whole half-sets and the image-limited floor of an entry.

* :func:`refine_star`: the command's work -- read a predictions star (and its top-K candidates),
  build or load the reference, refine every particle, write the refined star atomically.
* :func:`refine_particles`: the same on arrays (images, CTF rows, candidates, a map).
* :func:`image_limited_floor`: global search + local refinement of one half-set against the
  entry's true map (``gt_map.mrc``), the error that no estimator can beat by much; cached.

Inputs are checked before any work; every error names the file or argument at fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = [
    "read_particles",
    "read_candidates",
    "estimate_noise",
    "refine_particles",
    "floor_particles",
    "refine_star",
    "image_limited_floor",
    "cpu_threads",
]

IMAGE = "rlnImageName"
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
ORIGINS = ("rlnOriginXAngst", "rlnOriginYAngst")
CONFIDENCE = ("rlnMaxValueProbDistribution", "rlnParticleFigureOfMerit")
#: Per-particle column of a refined star: the start its answer was refined from
#: (:func:`cesped.refinement.local.start_labels`: ``candidate<i>[+mirror|+halfturn]`` or ``global<j>``).
START = "cespedRefinementStart"
#: Global-search starts added to every particle's candidates by default (``--global-top``);
#: 8 since session 12 (4 before): with the symmetry-aware search, on the demo stand-ins of
#: synth_4e43 8 starts and 8 survivors took the fraction above 150° from 0.75 % to 0.40 % for
#: 1.3x the CPU time (``benchmarks/bench_refinement.py --pipeline --more-search``).
DEFAULT_GLOBAL_TOP = 8
#: Rounds of a refinement against the default reference (``--rounds``; 2: the second round's
#: reference also holds the refined half's particles at their first-round poses).
DEFAULT_ROUNDS = 2
#: Tracks of the local search that go through every level (``--survivors``; :class:`LocalConfig`);
#: 8 since session 12 (4 before), with :data:`DEFAULT_GLOBAL_TOP`.
DEFAULT_SURVIVORS = 8
#: Smallest distance between the first level's tracks, degrees (``--track-separation``;
#: :class:`LocalConfig`; 0: the plain best starts): twice the first level's step, so that the
#: neighbouring top-K cells of one mode do not take every track (session 10).
DEFAULT_TRACK_SEPARATION = 16.0
#: Solvent mask of the reference (``--reference-mask``): "auto", made from the map itself
#: (:func:`cesped.refinement.mask.solvent_mask`), or "none".
DEFAULT_REFERENCE_MASK = "auto"
_FLOOR_VERSION = 3  # 3: the grid search knows the entry's symmetry and chooses among more rotations
_FLOOR_TOP = 8  # global-search starts of the floor (floor_particles' default top)
_FLOOR_SURVIVORS = 4  # of which go through every level of the local search
_TRUTH_START_DEG = 5.0  # distance of the floor's second start from the true pose


def _entry_dir(entry: str, benchmark_dir=None) -> Path:
    from cesped import settings

    d = settings.benchmark_dir(benchmark_dir) / str(entry)
    if not d.is_dir():
        raise FileNotFoundError(
            f"--entry {entry}: entry directory {d} not found (download or simulate it first, e.g. "
            f"python -m cesped.particlesDataset download_entry -t {entry})"
        )
    return d


def _symmetry(entry_dir: Path, half: int) -> str:
    path = entry_dir / f"info_{half}.json"
    try:
        return str(json.loads(path.read_text())["symmetry"]).upper()
    except FileNotFoundError:
        raise FileNotFoundError(f"entry info file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: expected a JSON object with a 'symmetry' field ({e})") from e


def read_particles(star_path, image_root=None):
    """Read a particles star file for refinement and check it.

    Parameters
    ----------
    star_path : path
    image_root : path, optional
        Directory the ``rlnImageName`` paths are relative to (default: the star's directory;
        the entry directory for entry predictions).

    Returns
    -------
    star : StarFile ; parts : DataFrame (optics joined per row) ; images : ImageSource ;
    pixel_size : float (Å/px) ; box : int

    Raises
    ------
    FileNotFoundError
        Missing star file or image stack.
    ValueError
        No particles, no ``rlnImageName`` or CTF columns, non-finite CTF values, several pixel
        sizes, images that are not square or not of ``rlnImageSize``.
    """
    from cesped.io.stack import ImageSource
    from cesped.io.star import particle_optics, read_star

    star_path = Path(star_path)
    if not star_path.is_file():
        raise FileNotFoundError(f"--star: file not found: {star_path}")
    star = read_star(star_path)
    if len(star.particles) == 0:
        raise ValueError(f"--star {star_path}: no particles")
    missing = [c for c in (IMAGE,) + CTF_COLUMNS if c not in star.particles.columns]
    if missing:
        raise ValueError(
            f"--star {star_path}: missing column(s) {', '.join(missing)} (refinement needs the images "
            "and their CTF parameters)"
        )
    parts = particle_optics(star)
    for c in CTF_COLUMNS:
        v = pd.to_numeric(parts[c], errors="coerce").to_numpy(np.float64)
        if not np.isfinite(v).all():
            raise ValueError(f"--star {star_path}: column {c} has non-finite values")
    px = np.unique(parts["rlnImagePixelSize"].to_numpy(np.float64))
    if px.size != 1:
        raise ValueError(f"--star {star_path}: particles have several pixel sizes {px.tolist()}")
    root = Path(image_root) if image_root is not None else star_path.parent
    images = ImageSource.from_star(star, root=root)
    ny, nx = images.image_shape
    box = int(parts["rlnImageSize"].iloc[0])
    if ny != nx or nx != box:
        raise ValueError(f"--star {star_path}: images are {ny}x{nx} px, rlnImageSize says {box}")
    return star, parts, images, float(px[0]), box


def read_candidates(star, star_path, top_k: int = 1, candidates_path=None) -> torch.Tensor:
    """Candidate poses ``(N, K, 3, 3)`` (labels ``R = Aᵀ``, float64) of a predictions star.

    ``top_k == 1`` without ``candidates_path``: the star's angles. Otherwise the ``_topk.npz``
    that ``cesped.infer top_k=K`` writes beside the star (``<stem>_topk.npz``: ``ids``,
    ``rotmats (N, K, 3, 3)``), matched to the particles by ``rlnImageName``.

    Raises
    ------
    ValueError
        ``top_k`` < 1 or larger than the candidates held; non-finite angles or matrices;
        particles without candidates.
    FileNotFoundError
        ``top_k > 1`` and no candidates file.
    """
    from cesped.geometry.rotations import euler_to_matrix

    star_path = Path(star_path)
    if int(top_k) != top_k or top_k < 1:
        raise ValueError(f"--top-k must be a positive integer, got {top_k!r}")
    top_k = int(top_k)
    if candidates_path is None and top_k == 1:
        missing = [c for c in ANGLES if c not in star.particles.columns]
        if missing:
            raise ValueError(f"--star {star_path}: missing column(s) {', '.join(missing)}")
        ang = star.particles[list(ANGLES)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(ang).all(1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"--star {star_path}: {int(bad.sum())} particle(s) with non-finite angles, first "
                f"{star.particles[IMAGE].iloc[i]}"
            )
        return euler_to_matrix(torch.from_numpy(ang.copy()))[:, None]
    path = (
        Path(candidates_path)
        if candidates_path is not None
        else star_path.with_name(star_path.stem + "_topk.npz")
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"--top-k {top_k}: the star {star_path} holds 1 candidate per particle and the candidates "
            f"file {path} does not exist (write it with cesped.infer top_k={top_k})"
        )
    with np.load(path, allow_pickle=False) as z:
        if "ids" not in z or "rotmats" not in z:
            raise ValueError(f"candidates file {path}: needs arrays 'ids' and 'rotmats'")
        ids, rot = z["ids"].astype(str), z["rotmats"].astype(np.float64)
    if rot.ndim != 4 or rot.shape[2:] != (3, 3) or rot.shape[0] != len(ids):
        raise ValueError(f"candidates file {path}: rotmats must be (N, K, 3, 3), got {rot.shape}")
    if top_k > rot.shape[1]:
        raise ValueError(
            f"--top-k {top_k}: the candidates file {path} holds only {rot.shape[1]} per particle"
        )
    if not np.isfinite(rot).all():
        raise ValueError(f"candidates file {path}: non-finite rotation matrices")
    pos = pd.Series(np.arange(len(ids)), index=ids)
    if pos.index.duplicated().any():
        raise ValueError(f"candidates file {path}: duplicated ids")
    names = star.particles[IMAGE].astype(str)
    missing = names[~names.isin(pos.index)]
    if len(missing):
        raise ValueError(
            f"candidates file {path}: {len(missing)} particle(s) of {star_path} have no candidates, "
            f"first {missing.iloc[0]}"
        )
    return torch.from_numpy(rot[pos.loc[names].to_numpy(), :top_k])


def estimate_noise(images, rows=None, max_images: int = 2000, box: int | None = None) -> torch.Tensor:
    """Noise power per shell from (up to ``max_images``, evenly spaced) particle images."""
    from cesped.physics.fourier import centered_rfft2
    from cesped.refinement.score import noise_spectrum

    n = len(images)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_images)).round().astype(np.int64))
    total, count = None, 0
    for s in range(0, len(idx), 512):
        x = centered_rfft2(torch.from_numpy(np.asarray(images.read(idx[s : s + 512]), dtype=np.float32)))
        p = noise_spectrum(x) * len(x)
        total = p if total is None else total + p
        count += len(x)
    return total / count


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run torch's CPU ops and the numba kernels on ``n`` threads inside the block (None: as set).

    The refinement's default is 1: its work is many small torch ops and short parallel kernel
    calls, whose thread pools (torch's and numba's OpenMP) wait for each other. On 500 particles
    of synth_6msm (64 px) on a shared 2-core machine, 1 thread used 2-4x less CPU time and less
    wall time than 2 (torch 1/numba 1: 1.6-2.5 CPU s for top-5 refinement, torch 2/numba 2:
    3.7-5.5 CPU s, same poses); run one refinement per core to use more cores.
    """
    if n is None:
        yield
        return
    n = int(n)
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    old_torch = torch.get_num_threads()
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; the torch path needs none
        numba = None
    old_numba = numba.get_num_threads() if numba is not None else None
    torch.set_num_threads(n)
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        if numba is not None:
            numba.set_num_threads(old_numba)


def _run_chunks(images, parts, volume, px, device, chunk, work, threads=1):
    with cpu_threads(threads if torch.device(device).type == "cpu" else None):
        return _run_chunks_on(images, parts, volume, px, device, chunk, work)


def _run_chunks_on(images, parts, volume, px, device, chunk, work):
    from cesped.physics.ctf import ctf_from_particles
    from cesped.refinement.score import ImageBatch, Reference

    ref = Reference(volume, device=device)
    noise = estimate_noise(images)
    out = []
    n = len(parts)
    for s in range(0, n, chunk):
        rows = np.arange(s, min(s + chunk, n))
        img = np.asarray(images.read(rows), dtype=np.float32)
        ctf = ctf_from_particles(parts.iloc[rows], dtype=torch.float32)
        batch = ImageBatch(img, ctf, noise, device=device)
        out.append(work(ref, batch, rows))
    return {
        "rotmats": torch.cat([o.rotmats for o in out]).numpy(),
        "origins_A": torch.cat([o.origins_px for o in out]).numpy() * px,
        "confidence": torch.cat([o.confidence for o in out]).numpy(),
        "gain": torch.cat([o.gain for o in out]).numpy(),
        "start": torch.cat([o.start for o in out]).numpy(),
    }


def _global_starts(ref, batch, radius, order, shift_radius_px, top, origins_px=None, symmetry="C1"):
    """The ``top`` best rotations per particle of the exhaustive SO(3) search of ``order`` at the
    band ``radius`` (:func:`cesped.refinement.global_search.global_candidates`); shared by the
    refinement's global starts and the floor."""
    from cesped.refinement.global_search import global_candidates
    from cesped.refinement.score import Band

    band = Band.make(batch.n, radius, device=batch.device)
    return global_candidates(
        ref,
        batch,
        band,
        order=order,
        origins_px=origins_px,
        shift_radius_px=shift_radius_px,
        top=top,
        symmetry=symmetry,
    )


def refine_particles(
    images,
    parts,
    volume,
    pixel_size,
    candidates,
    config,
    device="cpu",
    chunk=256,
    threads: int | None = 1,
    global_top: int = 0,
    order: int = 2,
):
    """Local refinement of every particle (see :func:`cesped.refinement.local.refine_batch`).

    With ``global_top > 0`` each particle's starts also hold the ``global_top`` best rotations
    of an exhaustive search over the SO(3) grid of ``order`` against the same map, origins
    searched (:func:`cesped.refinement.global_search.global_candidates`, at the band of the grid
    step): the answer is refined from whichever start scores best, so a particle whose
    candidates are all far from its pose (beyond the reach of the local search, e.g. a wrong
    mirror-like view or a random guess) is still found.

    Parameters
    ----------
    images : ImageSource ; parts : DataFrame with CTF and optics columns per row
    volume : array ``(n, n, n)`` ; pixel_size : float (Å)
    candidates : torch.Tensor ``(N, K, 3, 3)``
    config : LocalConfig
    device : str ; chunk : int (particles per batch)
    threads : int or None
        CPU threads of torch and numba during the work (:func:`cpu_threads`; None: as set).
    global_top : int
        Global-search starts added per particle (0: the candidates only).
    order : int
        SO(3) grid order of the global search (2: 4,608 rotations, 15°).

    Returns
    -------
    dict
        ``rotmats (N, 3, 3)``, ``origins_A (N, 2)`` (RELION origins, Å), ``confidence (N,)``,
        ``gain (N,)`` (nats), ``start (N,)`` (index into
        ``start_labels(K, config.hypotheses, global_top)``), numpy arrays.
    """
    from cesped.refinement.global_search import grid_step_deg
    from cesped.refinement.local import refine_batch

    cand = torch.as_tensor(candidates)
    global_top = int(global_top)
    if global_top < 0:
        raise ValueError(f"--global-top must be >= 0, got {global_top}")
    radius = config.radius_of(grid_step_deg(order))

    def work(ref, batch, rows):
        extra = None
        if global_top:
            extra = _global_starts(
                ref, batch, radius, order, config.shift_radius_px, global_top, symmetry=config.symmetry
            )
        return refine_batch(ref, batch, cand[rows], config, extra_starts=extra)

    return _run_chunks(images, parts, volume, pixel_size, device, chunk, work, threads)


def floor_particles(
    images,
    parts,
    volume,
    pixel_size,
    config,
    order=2,
    true_origins_A=None,
    device="cpu",
    chunk=256,
    top=_FLOOR_TOP,
    threads: int | None = 1,
    survivors: int = _FLOOR_SURVIVORS,
):
    """Global grid search (:func:`global_candidates`) then local refinement of every particle.

    The ``top`` best rotations of the grid are all refined through the first level, the
    ``survivors`` best of them through every level (``LocalConfig.survivors``): at the grid's
    coarse band the right basin is often not the best one (``python benchmarks/bench_refinement.py
    --entry synth_4e43 --floor-search --floor-only``: the search alone with 4 starts and 1
    survivor, session 8's floor, against 8/4 and 16/8).
    ``true_origins_A`` (N, 2): use these origins (no shift search anywhere); otherwise origins
    are searched within ``config.shift_radius_px``. ``threads``: as :func:`refine_particles`.
    Returns as :func:`refine_particles`.
    """
    from cesped.refinement.global_search import grid_step_deg
    from cesped.refinement.local import LocalConfig, refine_batch

    local = LocalConfig(
        **{**config.as_dict(), "hypotheses": ("identity",), "keep": top, "survivors": min(survivors, top)}
    )
    radius = config.radius_of(grid_step_deg(order))

    def work(ref, batch, rows):
        fixed = None
        if true_origins_A is not None:
            fixed = torch.as_tensor(np.asarray(true_origins_A)[rows] / pixel_size, dtype=torch.float32)
        cand = _global_starts(ref, batch, radius, order, config.shift_radius_px, top, fixed, config.symmetry)
        return refine_batch(ref, batch, cand, local, fixed_origins_px=fixed)

    return _run_chunks(images, parts, volume, pixel_size, device, chunk, work, threads)


def _masked(volume: np.ndarray, pixel_size: float, how: str) -> tuple[np.ndarray, str]:
    """``volume`` with its solvent flattened by :func:`cesped.refinement.mask.solvent_mask` (``how``
    "auto") or as it is ("none"), and the line that records it."""
    if how == "none":
        return volume, "none"
    from cesped.refinement.mask import solvent_mask

    m = solvent_mask(volume, pixel_size)
    if m.mask is None:
        return volume, m.note
    return (volume * m.mask).astype(np.float32), m.note


def _with_poses(star, result):
    """A copy of ``star`` with the angles and origins of a refinement ``result``."""
    from cesped.geometry.rotations import matrix_to_euler

    st = star.copy()
    ang = matrix_to_euler(torch.from_numpy(result["rotmats"])).numpy()
    for i, c in enumerate(ANGLES):
        st.particles[c] = ang[:, i]
    for i, c in enumerate(ORIGINS):
        st.particles[c] = result["origins_A"][:, i].astype(np.float64)
    return st


def _write_refined(star, out, result, meta: dict, labels=None) -> None:
    from cesped.io.star import write_star

    st = _with_poses(star, result)
    for c in CONFIDENCE:
        st.particles[c] = result["confidence"].astype(np.float64)
    if labels is not None:
        st.particles[START] = np.asarray(labels, dtype=object)[result["start"]]
    st.other_blocks = {**st.other_blocks, "cesped_refinement": meta}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_star(out, st)


def refine_star(
    entry: str,
    halfset: int,
    star,
    out,
    reference=None,
    reference_from_half: int | None = None,
    top_k: int = 1,
    global_search: bool = False,
    global_top: int | None = None,
    device: str = "cpu",
    band_limit_A: float | None = None,
    shift_radius_px: float | None = None,
    order: int = 2,
    candidates=None,
    benchmark_dir=None,
    use_cache: bool = True,
    chunk: int = 256,
    threads: int | None = 1,
    weighting: str = "fsc",
    rounds: int | None = None,
    survivors: int = DEFAULT_SURVIVORS,
    track_separation_deg: float = DEFAULT_TRACK_SEPARATION,
    reference_mask: str = DEFAULT_REFERENCE_MASK,
    symmetric_search: bool = True,
) -> dict:
    """Refine the poses of a predictions star of one half-set and write the refined star.

    Parameters
    ----------
    entry : str
        Entry name (its directory holds the images and, for the default reference, the other
        half-set).
    halfset : {0, 1}
        The half-set of ``star``.
    star, out : path
        Predictions (angles, CTF columns, ``rlnImageName`` relative to the entry directory) and
        the refined star to write (atomically).
    reference : path, optional
        A user's map (box and pixel size checked).
    reference_from_half : {None, 1 - halfset}
        The default: the map of the other half-set's ground-truth poses. The refined half's own
        labels are never read.
    top_k : int
        Candidates per particle (``> 1`` reads ``<star stem>_topk.npz`` or ``candidates``).
    global_search : bool
        Ignore the star's poses: exhaustive SO(3) search then local refinement against the
        entry's true map ``gt_map.mrc`` (the image-limited floor).
    global_top : int, optional
        Without ``global_search``: add the ``global_top`` best rotations of an exhaustive search
        over the SO(3) grid of ``order`` against the same reference (origins searched) to every
        particle's starts (:func:`refine_particles`); 0: the candidates and their hypotheses
        only. Default :data:`DEFAULT_GLOBAL_TOP`. Recorded in the output: the block's
        ``cespedRefinementGlobalTop`` and ``cespedRefinementFromGlobal`` (fraction of particles
        whose answer came from a global start) and, per particle, the ``cespedRefinementStart``
        column (``candidate<i>[+mirror|+halfturn]`` or ``global<j>``).
    device : str
        "cpu" or a CUDA device.
    band_limit_A : float, optional
        Highest resolution compared (Å); default: the reference's FSC band limit (the other
        half's split FSC at 0.143), Nyquist for the true map; required with ``reference``.
    shift_radius_px : float, optional
        Largest origin searched (px); default ``max(3, 0.08 · box)``, recorded in the output.
    order : int
        SO(3) grid order of ``global_search`` and of the ``global_top`` starts.
    threads : int or None
        CPU threads of the search (:func:`cpu_threads`; default 1, None: the process's setting).
    weighting : {"fsc", "none"}
        "fsc": the default reference's shells weighted by its full-map FSC estimated from its
        split FSC (:func:`cesped.refinement.reference.fsc_weighted`, a Wiener filter of the
        map's own noise); a user's map and the true map have no FSC and are used as given.
    rounds : {1, 2}, optional
        2 (default reference only): a second local refinement from the first round's answers
        against the map of the other half-set's ground truth plus this half-set's images at their
        first-round poses (:func:`cesped.refinement.reference.reference_with_refined`: twice the
        particles, no label of this half). Default: :data:`DEFAULT_ROUNDS` with the default
        reference, 1 with ``reference`` or ``global_search``.
    survivors : int
        Tracks of the local search that go on after its first level, through every level (at
        least as many starts are kept through the first level); the answer is the best of them at
        the finest band. 1 is the fastest; 4 cost ~2x the CPU time and on stand-ins of the demo's
        predictions lowered the refined MAnE of ``synth_6msm`` from 3.6° to 3.0° and of
        ``synth_4e43`` from 22° to 15° (session 9, ``benchmarks/bench_refinement.py``);
        :data:`DEFAULT_SURVIVORS` (8, with 8 global starts) since session 12. Recorded as
        ``cespedRefinementSurvivors``.
    track_separation_deg : float
        The first level's tracks are the best starts at least this far apart (degrees;
        :class:`LocalConfig`); recorded as ``cespedRefinementTrackSeparationDeg``.
    reference_mask : {"auto", "none"}
        "auto" (default): the solvent of the reconstructed or user's reference is flattened by a
        soft mask made from that map alone (:func:`cesped.refinement.mask.solvent_mask`; each
        round's map its own mask), as RELION flattens its references' solvent; "none": the map
        as it is. Never applied to the true map of ``global_search``. Recorded as
        ``cespedRefinementReferenceMask`` (and ``cespedRefinementRound2ReferenceMask``),
        including a mask that could not be made (the reference then unmasked).
    symmetric_search : bool
        True (default): the search knows the entry's point group (its ``symmetry``): a map
        reconstructed with that symmetry scores ``g · R`` exactly as ``R``, so the global
        search's distinct starts and the first level's separated tracks are chosen apart from
        each other's symmetry mates, not only from each other (:class:`LocalConfig`
        ``symmetry``); False: as for C1 (mates can take several of the starts). Recorded as
        ``cespedRefinementSearchSymmetry``.

    Returns
    -------
    dict
        Summary: ``n``, ``seconds``, ``band_limit_A``, ``reference``, ``median_confidence``,
        ``global_top``, ``from_global``, ``rounds``, ``weighting``, ``out``.
    """
    from cesped.refinement.local import LocalConfig
    from cesped.refinement.reference import fsc_weighted, load_reference_map, reference_with_refined
    from cesped.refinement.reference import reference_from_half as ref_half
    from cesped.refinement.score import band_radius

    t0 = time.perf_counter()
    if int(halfset) not in (0, 1) or halfset != int(halfset):
        raise ValueError(f"--halfset must be 0 or 1, got {halfset!r}")
    halfset = int(halfset)
    other = 1 - halfset
    if reference is not None and reference_from_half is not None:
        raise ValueError("give either --reference or --reference-from-half, not both")
    if reference_from_half is not None and int(reference_from_half) != other:
        raise ValueError(
            f"--reference-from-half must be the other half-set ({other}): the map of half {halfset} "
            "would use the refined particles' own labels"
        )
    if global_search and reference is not None:
        raise ValueError("--global searches against the entry's true map; do not give --reference")
    if global_search and global_top:
        raise ValueError(
            "--global-top adds global starts to the candidates; --global searches globally already"
        )
    if reference_mask not in ("auto", "none"):
        raise ValueError(f"--reference-mask must be 'auto' or 'none', got {reference_mask!r}")
    if weighting not in ("fsc", "none"):
        raise ValueError(f"--weighting must be 'fsc' or 'none', got {weighting!r}")
    if rounds is None:
        rounds = 1 if (global_search or reference is not None) else DEFAULT_ROUNDS
    if rounds not in (1, 2):
        raise ValueError(f"--rounds must be 1 or 2, got {rounds!r}")
    if rounds == 2 and (global_search or reference is not None):
        raise ValueError(
            "--rounds 2 rebuilds the default reference (the other half-set's map) with the refined "
            "particles; use --rounds 1 with --global or --reference"
        )
    if global_top is None:
        global_top = 0 if global_search else DEFAULT_GLOBAL_TOP
    if int(global_top) != global_top or global_top < 0:
        raise ValueError(f"--global-top must be a non-negative integer, got {global_top!r}")
    global_top = int(global_top)
    if reference is not None and band_limit_A is None:
        raise ValueError(f"--reference {reference}: give --band-limit (Å) for a user's map")
    if band_limit_A is not None and not (band_limit_A > 0 and math.isfinite(band_limit_A)):
        raise ValueError(f"--band-limit must be a positive resolution in Å, got {band_limit_A}")
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available")
    out = Path(out)
    if Path(star).resolve() == out.resolve():
        raise ValueError(f"--out {out} is the input star; write the refined poses to a new file")
    edir = _entry_dir(entry, benchmark_dir)
    st, parts, images, px, box = read_particles(star, image_root=edir)
    sym = _symmetry(edir, halfset)
    gt_map = edir / "gt_map.mrc"
    if global_search:
        if not gt_map.is_file():
            raise FileNotFoundError(
                f"--global: entry {entry} has no true map {gt_map} (only simulated entries have one)"
            )
        cand = None
    else:
        cand = read_candidates(st, star, top_k, candidates)
    if shift_radius_px is None:
        shift_radius_px = max(3.0, 0.08 * box)
    if not shift_radius_px >= 0:
        raise ValueError(f"--shift-radius must be >= 0 px, got {shift_radius_px}")
    if isinstance(survivors, bool) or not isinstance(survivors, int | np.integer) or survivors < 1:
        raise ValueError(f"--survivors must be an integer >= 1, got {survivors!r}")
    # the reference
    if global_search:
        ref = load_reference_map(gt_map, box, px, band_limit_A or 2.0 * px)
        ref.source = f"true map {gt_map}"
    elif reference is not None:
        ref = load_reference_map(reference, box, px, band_limit_A)
    else:
        ref = ref_half(edir, other, symmetry=sym, device=device, use_cache=use_cache)
        if ref.pixel_size and abs(ref.pixel_size - px) > 1e-3 * px:
            raise ValueError(f"half {other} of {entry} has pixel size {ref.pixel_size}, --star has {px}")
        if band_limit_A is not None:
            ref.band_limit_A = band_limit_A
    config = LocalConfig(
        band_radius=band_radius(ref.band_limit_A, box, px), shift_radius_px=shift_radius_px,
        survivors=survivors, keep=max(4, survivors), track_separation_deg=float(track_separation_deg),
        symmetry=sym if symmetric_search else "C1",
    )
    config.check()
    weighted = weighting == "fsc" and bool(ref.fsc)
    volume = fsc_weighted(ref.volume, ref.fsc) if weighted else ref.volume
    volume, mask_note = _masked(volume, px, "none" if global_search else reference_mask)
    if global_search:
        result = floor_particles(
            images, parts, volume, px, config, order=order, device=device, chunk=chunk, threads=threads
        )
    else:
        result = refine_particles(
            images,
            parts,
            volume,
            px,
            cand,
            config,
            device=device,
            chunk=chunk,
            threads=threads,
            global_top=global_top,
            order=order,
        )
    round2 = {}
    if rounds == 2:
        ref2 = reference_with_refined(
            edir, other, _with_poses(st, result), symmetry=sym, device=device, n_threads=threads
        )
        band2 = band_limit_A if band_limit_A is not None else ref2.band_limit_A
        config2 = dataclasses.replace(config, band_radius=band_radius(band2, box, px))
        volume2 = fsc_weighted(ref2.volume, ref2.fsc) if weighting == "fsc" else ref2.volume
        volume2, mask_note2 = _masked(volume2, px, reference_mask)
        starts = torch.from_numpy(np.ascontiguousarray(result["rotmats"])).to(cand.dtype)[:, None]
        result2 = refine_particles(
            images, parts, volume2, px, starts, config2, device=device, chunk=chunk, threads=threads
        )
        result = {**result2, "start": result["start"]}
        round2 = {
            "cespedRefinementRound2Reference": ref2.source,
            "cespedRefinementRound2BandLimitAngst": float(band2),
            "cespedRefinementRound2ReferenceMask": mask_note2,
        }
    from cesped.refinement.local import start_labels

    if global_search:
        labels = start_labels(0, (), _FLOOR_TOP)
    else:
        labels = start_labels(cand.shape[1], config.hypotheses, global_top)
    from_global = float(np.mean([labels[i].startswith("global") for i in result["start"]]))
    meta = {
        "cespedRefinementReference": ref.source,
        "cespedRefinementBandLimitAngst": float(ref.band_limit_A),
        "cespedRefinementShiftRadiusPx": float(shift_radius_px),
        "cespedRefinementTopK": int(top_k) if not global_search else 0,
        "cespedRefinementGlobalTop": global_top,
        "cespedRefinementGlobalOrder": int(order) if (global_search or global_top) else -1,
        "cespedRefinementFromGlobal": from_global,
        "cespedRefinementSteps": ",".join(f"{s:g}" for s in config.steps_deg),
        "cespedRefinementHypotheses": ",".join(config.hypotheses),
        "cespedRefinementKeep": int(config.keep),
        "cespedRefinementSurvivors": int(config.survivors),
        "cespedRefinementTrackSeparationDeg": float(config.track_separation_deg),
        "cespedRefinementReferenceWeighting": "fsc" if weighted else "none",
        "cespedRefinementReferenceMask": mask_note,
        "cespedRefinementRounds": int(rounds),
        "cespedRefinementSearchSymmetry": config.symmetry,
        **round2,
    }
    _write_refined(st, out, result, meta, labels)
    return {
        "n": len(parts),
        "seconds": time.perf_counter() - t0,
        "band_limit_A": float(ref.band_limit_A),
        "reference": ref.source,
        "median_confidence": float(np.median(result["confidence"])),
        "global_top": global_top,
        "from_global": from_global,
        "rounds": int(rounds),
        "weighting": "fsc" if weighted else "none",
        "survivors": int(config.survivors),
        "reference_mask": mask_note,
        "search_symmetry": config.symmetry,
        "out": str(out),
    }


def image_limited_floor(
    entry: str,
    halfset: int,
    true_shifts: bool = False,
    order: int = 2,
    device: str = "cpu",
    shift_radius_px: float | None = None,
    limit: int | None = None,
    benchmark_dir=None,
    use_cache: bool = True,
    chunk: int = 256,
    threads: int | None = 1,
) -> dict:
    """The image-limited floor of one half-set of a simulated entry (cached per entry).

    The error of the maximum-likelihood pose of every particle against the true map
    ``gt_map.mrc`` at full band (CTF known), with the origins searched (``true_shifts=False``, as
    any estimator must) or fixed at the truth. The maximum is sought from two kinds of starts:
    an exhaustive SO(3) grid search then local refinement (:func:`floor_particles`), and a local
    refinement started 5° from the particle's true pose; each particle's answer is the one with the
    higher likelihood gain. The true pose only helps to find the likelihood's maximum: it is the
    answer's start, never the answer (the answer is a refined pose, scored like any other), and
    wherever another pose scores higher that pose is the answer. Without it the grid search alone
    misses the best basin for some particles and the "floor" is the search's error, not the
    images' (``benchmarks/bench_refinement.py --floor-search``; ``search_only_*`` below keeps the
    search's own figure).

    Returns
    -------
    dict
        ``MAnE_deg``, ``median_deg``, ``frac_above_150``, ``frac_below_5``, ``n``, ``seconds``
        (of the computation, 0 from the cache), ``shift_rmse_A``, ``rotmats`` and ``origins_A``
        (numpy arrays), ``cached``, ``errors_deg``; ``search_only_MAnE_deg`` and
        ``search_only_median_deg`` (the grid search's answers alone) and
        ``truth_basin_fraction`` (particles whose answer came from the true-pose start).
    """
    from cesped import settings
    from cesped.geometry.errors import symmetry_aware_error
    from cesped.geometry.rotations import euler_to_matrix
    from cesped.refinement.local import LocalConfig
    from cesped.refinement.reference import load_reference_map

    edir = _entry_dir(entry, benchmark_dir)
    star_path = edir / f"particles_{int(halfset)}.star"
    gt_map = edir / "gt_map.mrc"
    if not gt_map.is_file():
        raise FileNotFoundError(f"floor of {entry}: no true map {gt_map} (only simulated entries have one)")
    st, parts, images, px, box = read_particles(star_path, image_root=edir)
    if limit is not None:
        parts = parts.iloc[: int(limit)].reset_index(drop=True)
        st.particles = st.particles.iloc[: int(limit)].reset_index(drop=True)
    shift_radius_px = max(3.0, 0.08 * box) if shift_radius_px is None else float(shift_radius_px)
    key_src = hashlib.sha256(star_path.read_bytes() + gt_map.read_bytes())
    params = {"true_shifts": true_shifts, "order": order, "shift": shift_radius_px, "limit": limit}
    key_src.update(json.dumps({**params, "v": _FLOOR_VERSION}).encode())
    cpath = (
        settings.cache_dir() / "refinement" / f"floor_{entry}_{int(halfset)}_{key_src.hexdigest()[:24]}.npz"
    )
    t0 = time.perf_counter()
    cached = False
    r_true = euler_to_matrix(torch.from_numpy(parts[list(ANGLES)].to_numpy(np.float64)))
    if use_cache and cpath.is_file():
        with np.load(cpath) as z:
            rot, origins = z["rotmats"], z["origins_A"]
            rot_search, from_truth = z["rotmats_search"], z["from_truth"]
        cached = True
    else:
        ref = load_reference_map(gt_map, box, px, 2.0 * px)
        config = LocalConfig(
            band_radius=box // 2, shift_radius_px=shift_radius_px, symmetry=_symmetry(edir, int(halfset))
        )
        true_o = parts[list(ORIGINS)].to_numpy(np.float64) if true_shifts else None
        run = {"device": device, "chunk": chunk, "threads": threads}
        res = floor_particles(
            images, parts, ref.volume, px, config, order=order, true_origins_A=true_o, **run
        )
        at_truth = _refine_from_truth(images, parts, ref.volume, px, config, r_true, true_o, **run)
        from_truth = at_truth["gain"] > res["gain"]
        pick = from_truth[:, None]
        rot = np.where(pick[:, :, None], at_truth["rotmats"], res["rotmats"])
        origins = np.where(pick, at_truth["origins_A"], res["origins_A"])
        rot_search = res["rotmats"]
        if use_cache:
            from cesped.io.atomic import atomic_path

            cpath.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cpath) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, rotmats=rot, origins_A=origins, rotmats_search=rot_search, from_truth=from_truth)
    seconds = 0.0 if cached else time.perf_counter() - t0
    sym = _symmetry(edir, int(halfset))
    err = symmetry_aware_error(r_true, torch.from_numpy(rot), sym).numpy()
    err_search = symmetry_aware_error(r_true, torch.from_numpy(rot_search), sym).numpy()
    o_true = parts[list(ORIGINS)].to_numpy(np.float64)
    return {
        "MAnE_deg": float(err.mean()),
        "median_deg": float(np.median(err)),
        "frac_above_150": float((err > 150).mean()),
        "frac_below_5": float((err < 5).mean()),
        "shift_rmse_A": float(np.sqrt(((origins - o_true) ** 2).sum(1).mean())),
        "n": int(err.size),
        "seconds": seconds,
        "cached": cached,
        "true_shifts": bool(true_shifts),
        "rotmats": rot,
        "origins_A": origins,
        "errors_deg": err,
        "search_only_errors_deg": err_search,
        "search_only_MAnE_deg": float(err_search.mean()),
        "search_only_median_deg": float(np.median(err_search)),
        "truth_basin_fraction": float(np.mean(from_truth)),
    }


def _refine_from_truth(images, parts, volume, pixel_size, config, r_true, true_origins_A, **run):
    """Local refinement of every particle from its true pose alone (the floor's second start;
    origins searched, or fixed at ``true_origins_A``). Returns as :func:`refine_particles`."""
    from cesped.geometry.rotations import axis_angle_to_matrix
    from cesped.refinement.local import LocalConfig, refine_batch

    local = LocalConfig(**{**config.as_dict(), "hypotheses": ("identity",), "keep": 1, "survivors": 1})
    # a start _TRUTH_START_DEG from the true pose (random axis, fixed seed), inside the first level's
    # reach: the search lattice is then not anchored at the truth, whose error would otherwise be
    # exactly 0 wherever the true pose is a lattice point of the optimum's neighbourhood.
    gen = torch.Generator().manual_seed(0)
    axis = torch.randn(len(r_true), 3, generator=gen, dtype=torch.float64)
    turn = axis_angle_to_matrix(axis, torch.full((len(r_true),), _TRUTH_START_DEG, dtype=torch.float64))
    starts = (turn @ r_true.to(torch.float64)).to(torch.float32)[:, None]

    def work(ref, batch, rows):
        fixed = None
        if true_origins_A is not None:
            fixed = torch.as_tensor(np.asarray(true_origins_A)[rows] / pixel_size, dtype=torch.float32)
        return refine_batch(ref, batch, starts[rows], local, fixed_origins_px=fixed)

    return _run_chunks(images, parts, volume, pixel_size, run["device"], run["chunk"], work, run["threads"])
