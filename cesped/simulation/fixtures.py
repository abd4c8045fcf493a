"""Synthetic particle sets and benchmark entries for tests, benchmarks and examples.

The one writer of the entry layout used outside :mod:`cesped.simulation.entry` (which simulates
full entries from atomic models): ``<root>/<name>/particles_<h>.mrcs``, ``particles_<h>.star``
(``rlnImageName = <i>@particles_<h>.mrcs``), ``info_<h>.json`` (``{"symmetry": ...}``),
optionally ``mask.mrc`` and the original package's ``SUCCESSFUL_DOWNLOAD_<h>.txt`` marker. Every
file is written atomically. The particle sets project a map at Haar-random poses with random
CTFs and shifts and add white noise: fast enough for tests.

Layers: :func:`write_particles` (a stack and its star file) <- :func:`write_entry_half` (+ the
info file) and :func:`write_particle_set` (a projected map) <- :func:`write_synthetic_entry`
(both half-sets of one map, and a mask).

Example usage
-------------
    from cesped.simulation.fixtures import blob_map, write_particle_set, write_synthetic_entry
    vol = blob_map(32, seed=0)
    star_path = write_particle_set("tmp/set", vol, n_particles=500, pixel_size=2.0, snr=10.0)
    entry_dir = write_synthetic_entry("tmp/bench", "tiny", symmetry="C2", n_per_half=200)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "blob_map",
    "simulate_particles",
    "write_particles",
    "write_entry_half",
    "write_particle_set",
    "write_synthetic_entry",
    "soft_sphere_mask",
]


def blob_map(
    n: int, n_blobs: int = 24, sigma: float = 1.5, seed: int = 0, symmetry: str = "C1"
) -> np.ndarray:
    """A map made of isotropic Gaussian blobs, optionally symmetrised.

    Parameters
    ----------
    n : int
        Box side (voxels); the map is ``(n, n, n)`` indexed ``(z, y, x)``, centre ``n // 2``.
    n_blobs : int
        Blobs per asymmetric unit, centres uniform within ``n/5`` voxels of the centre.
    sigma : float
        Blob width (voxels).
    seed : int
    symmetry : str
        Each blob is repeated at ``S·c`` for every operator ``S`` of the point group, so the map
        is invariant: ``V(S r) = V(r)``.

    Returns
    -------
    np.ndarray float32 (n, n, n)
    """
    from cesped.geometry.symmetry import symmetry_matrices

    rng = np.random.default_rng(seed)
    ops = symmetry_matrices(symmetry).numpy()
    x = np.arange(n) - n // 2
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    vol = np.zeros((n, n, n))
    centres = rng.uniform(-n / 5, n / 5, (n_blobs, 3))  # (x, y, z)
    amps = rng.uniform(0.5, 1.5, n_blobs)
    for s in ops:
        for c, a in zip(centres @ s.T, amps):
            vol += a * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) / (2 * sigma**2))
    return vol.astype(np.float32)


def soft_sphere_mask(box: int, radius: float, edge: float) -> np.ndarray:
    """A sphere of ``radius`` voxels about ``box // 2`` with a raised-cosine edge ``edge`` voxels wide.

    Returns
    -------
    np.ndarray float32 (box, box, box): 1 inside ``radius``, 0 beyond ``radius + edge``.
    """
    x = np.arange(box) - box // 2
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    return (0.5 + 0.5 * np.cos(np.pi * np.clip((r - radius) / edge, 0.0, 1.0))).astype(np.float32)


def write_particles(
    out_dir,
    images: np.ndarray | Callable[[int, int], np.ndarray],
    particles: pd.DataFrame,
    optics: pd.DataFrame,
    stack_name: str = "particles.mrcs",
    star_name: str = "particles.star",
    chunk: int = 1000,
) -> Path:
    """Write a stack and its star file; row ``i`` of ``particles`` is image ``i``.

    Parameters
    ----------
    out_dir : path
        Created if missing; image paths in the star file are relative to it.
    images : array (n, ny, nx) or callable
        The images, or ``images(start, stop)`` returning images ``start .. stop-1`` (for stacks
        larger than memory; called in order, ``chunk`` images at a time).
    particles : DataFrame
        One row per image; ``rlnImageName`` is set to ``<i>@<stack_name>`` (row ``i``, 1-based).
        Rows and images are written as given, also when their numbers differ (tests of bad
        entries); with a callable, the stack has ``len(particles)`` images.
    optics : DataFrame
        The optics table; the stack's voxel size is its first ``rlnImagePixelSize`` (Å/px).

    Returns
    -------
    Path of the star file.
    """
    from cesped.io.stack import StackWriter
    from cesped.io.star import StarFile, write_star

    out = Path(os.path.expanduser(str(out_dir)))
    out.mkdir(parents=True, exist_ok=True)
    n = len(images) if not callable(images) else len(particles)
    px = float(np.asarray(optics["rlnImagePixelSize"], dtype=float)[0])
    get = images if callable(images) else (lambda s, e: images[s:e])
    first = np.asarray(get(0, min(n, chunk)), dtype=np.float32)
    with StackWriter(out / stack_name, n, first.shape[-2:], px) as w:
        w.write(0, first)
        for s in range(len(first), n, chunk):
            w.write(s, get(s, min(n, s + chunk)))
    parts = particles.copy()
    names = [f"{i + 1:06d}@{stack_name}" for i in range(len(parts))]
    if "rlnImageName" in parts.columns:
        parts["rlnImageName"] = names
    else:
        parts.insert(0, "rlnImageName", names)
    star_path = out / star_name
    write_star(star_path, StarFile(particles=parts, optics=optics))
    return star_path


def write_entry_half(
    root,
    name: str,
    halfset: int,
    images: np.ndarray | Callable[[int, int], np.ndarray],
    particles: pd.DataFrame,
    optics: pd.DataFrame,
    symmetry: str = "C1",
    original_marker: bool = False,
) -> Path:
    """Write half-set ``halfset`` of entry ``name``: stack, star file and ``info_<h>.json``.

    Parameters
    ----------
    root : path
        The benchmark directory; the entry is ``root/name``.
    images, particles, optics
        As for :func:`write_particles`.
    symmetry : str
        Point group written to ``info_<h>.json``.
    original_marker : bool
        Also write ``SUCCESSFUL_DOWNLOAD_<h>.txt``, the original package's "downloaded" marker.

    Returns
    -------
    Path of the entry directory.
    """
    from cesped.io.atomic import atomic_open

    h = int(halfset)
    if h not in (0, 1):
        raise ValueError(f"halfset must be 0 or 1, got {halfset!r}")
    d = Path(os.path.expanduser(str(root))) / name
    write_particles(d, images, particles, optics, f"particles_{h}.mrcs", f"particles_{h}.star")
    with atomic_open(d / f"info_{h}.json") as fh:
        json.dump({"symmetry": symmetry}, fh)
    if original_marker:
        with atomic_open(d / f"SUCCESSFUL_DOWNLOAD_{h}.txt") as fh:
            fh.write("synthetic\n")
    return d


def simulate_particles(
    volume,
    n_particles: int,
    pixel_size: float,
    snr: float = np.inf,
    seed: int = 0,
    max_shift_px: float = 3.0,
    defocus_range=(8000.0, 25000.0),
    chunk: int = 500,
    device=None,
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Project ``volume`` at Haar-random poses with CTF, shifts and noise.

    Parameters
    ----------
    volume : array (n, n, n)
    n_particles : int
    pixel_size : float
        Å/px.
    snr : float
        Signal variance over noise variance per image (``inf``: no noise).
    seed : int
    max_shift_px : float
        Origins uniform in ``[-max, max]`` pixels (written in Å).
    defocus_range : (float, float)
        Å, uniform; astigmatism up to 500 Å at a random angle. 300 kV, Cs 2.7 mm, Q0 0.1.
    chunk : int
        Particles projected at once.
    device : str or torch.device, optional
        Where the projections, CTF and noise are computed (default CPU). Poses, defocus and
        shifts do not depend on it; the noise is drawn from a generator on that device, so CUDA
        and CPU give different noise for the same seed.

    Returns
    -------
    images : np.ndarray float32 (n_particles, n, n)
    particles : DataFrame (poses, origins in Å, defocus; no ``rlnImageName``)
    optics : DataFrame (one optics group)
    """
    import torch

    from cesped.geometry.rotations import matrix_to_euler, random_rotations
    from cesped.physics.ctf import compute_ctf
    from cesped.physics.projection import Projector, apply_ctf_and_shifts

    dev = torch.device("cpu" if device is None else device)
    vol = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    n = int(vol.shape[-1])
    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng(seed)
    rot = random_rotations(n_particles, generator=gen, dtype=torch.float64)
    angles = matrix_to_euler(rot).numpy()
    dfu = rng.uniform(*defocus_range, n_particles)
    dfv = dfu - rng.uniform(0, 500, n_particles)
    dfa = rng.uniform(0, 180, n_particles)
    shifts = rng.uniform(-max_shift_px, max_shift_px, (n_particles, 2)) * pixel_size
    images = np.empty((n_particles, n, n), dtype=np.float32)
    projector = Projector(vol, pad=2.0, device=dev)
    noise_gen = gen if dev.type == "cpu" else torch.Generator(dev).manual_seed(int(seed))
    for s in range(0, n_particles, chunk):
        e = min(n_particles, s + chunk)
        proj = torch.cat(
            [projector.project(rot[i : min(e, i + 1024)].to(torch.float32)) for i in range(s, e, 1024)]
        )
        ctf = compute_ctf(dfu[s:e], dfv[s:e], dfa[s:e], 300.0, 2.7, 0.1, pixel_size, n, device=dev)
        shift = torch.as_tensor(-shifts[s:e] / pixel_size, dtype=torch.float32, device=dev)
        img = apply_ctf_and_shifts(proj, ctf, shift)
        if np.isfinite(snr):
            sd = float(img.std()) / np.sqrt(snr)
            img = img + sd * torch.randn(img.shape, generator=noise_gen, device=dev)
        images[s:e] = img.cpu().numpy()
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnVoltage": [300.0],
            "rlnSphericalAberration": [2.7],
            "rlnAmplitudeContrast": [0.1],
            "rlnImagePixelSize": [pixel_size],
            "rlnImageSize": [n],
            "rlnImageDimensionality": [2],
        }
    )
    particles = pd.DataFrame(
        {
            "rlnAngleRot": angles[:, 0],
            "rlnAngleTilt": angles[:, 1],
            "rlnAnglePsi": angles[:, 2],
            "rlnOriginXAngst": shifts[:, 0],
            "rlnOriginYAngst": shifts[:, 1],
            "rlnDefocusU": dfu,
            "rlnDefocusV": dfv,
            "rlnDefocusAngle": dfa,
            "rlnOpticsGroup": np.ones(n_particles, dtype=np.int64),
        }
    )
    return images, particles, optics


def write_particle_set(
    out_dir,
    volume,
    n_particles: int,
    pixel_size: float,
    snr: float = np.inf,
    seed: int = 0,
    max_shift_px: float = 3.0,
    defocus_range=(8000.0, 25000.0),
    stack_name: str = "particles.mrcs",
    star_name: str = "particles.star",
    chunk: int = 500,
    extra_columns: dict | None = None,
) -> Path:
    """Project ``volume`` (:func:`simulate_particles`) and write star + stack (:func:`write_particles`).

    Parameters
    ----------
    out_dir : path
        Created if missing; receives ``star_name`` and ``stack_name`` (image paths in the star
        file are relative to it).
    volume, n_particles, pixel_size, snr, seed, max_shift_px, defocus_range, chunk
        See :func:`simulate_particles`.
    extra_columns : dict, optional
        Extra particle columns (name -> array of n_particles values).

    Returns
    -------
    Path of the star file.
    """
    images, parts, optics = simulate_particles(
        volume, n_particles, pixel_size, snr, seed, max_shift_px, defocus_range, chunk
    )
    for k, v in (extra_columns or {}).items():
        parts[k] = np.asarray(v)
    return write_particles(out_dir, images, parts, optics, stack_name, star_name)


def write_synthetic_entry(
    root,
    name: str,
    symmetry: str = "C1",
    n_per_half: int = 400,
    box: int = 32,
    pixel_size: float = 2.0,
    snr: float = 3.0,
    seed: int = 0,
    n_blobs: int | None = None,
    sigma: float = 1.3,
    mask_radius: float | None = None,
    mask_edge: float = 4.0,
    confidence: tuple[float, float] = (0.05, 1.0),
    original_marker: bool = False,
) -> Path:
    """Both half-sets of a :func:`blob_map` as entry ``root/name``, with info files and ``mask.mrc``.

    Parameters
    ----------
    root : path
        Benchmark directory.
    name : str
        Entry name.
    symmetry : str
        Point group of the map and of ``info_{0,1}.json``.
    n_per_half, box, pixel_size, snr
        Particles per half-set, box (px), Å/px, SNR (see :func:`simulate_particles`).
    seed : int
        Map ``seed``; half ``h`` uses particle seed ``seed + 10 + h`` and confidence seed ``seed + 100 + h``.
    n_blobs : int, optional
        Blobs per asymmetric unit (default 16 for C1, 8 otherwise); ``sigma`` their width (voxels).
    mask_radius, mask_edge : float
        :func:`soft_sphere_mask` in voxels (default radius ``0.3 * box``).
    confidence : (float, float)
        ``rlnMaxValueProbDistribution`` uniform in this range.
    original_marker : bool
        Also write the original package's ``SUCCESSFUL_DOWNLOAD_<h>.txt``.

    Returns
    -------
    Path of the entry directory.
    """
    from cesped.io.mrc import write_map

    if n_blobs is None:
        n_blobs = 16 if symmetry.upper() == "C1" else 8
    vol = blob_map(box, n_blobs=n_blobs, sigma=sigma, seed=seed, symmetry=symmetry)
    d = Path(os.path.expanduser(str(root))) / name
    for h in (0, 1):
        images, parts, optics = simulate_particles(vol, n_per_half, pixel_size, snr=snr, seed=seed + 10 + h)
        parts["rlnMaxValueProbDistribution"] = np.random.default_rng(seed + 100 + h).uniform(
            *confidence, n_per_half
        )
        write_entry_half(root, name, h, images, parts, optics, symmetry, original_marker)
    radius = 0.3 * box if mask_radius is None else float(mask_radius)
    write_map(d / "mask.mrc", soft_sphere_mask(box, radius, mask_edge), pixel_size)
    return d
