"""Synthetic particle sets made from a given map, for tests and benchmarks of the reconstruction.

Unlike :mod:`cesped.simulation` (atomic models, presets, full entries) this only projects a
map at random poses with random CTFs and shifts and adds white noise, fast enough for tests.

Example usage::

    from cesped.reconstruction.synthetic import blob_map, write_particle_set
    vol = blob_map(32, seed=0)
    star_path = write_particle_set("tmp/set", vol, n_particles=500, pixel_size=2.0, snr=10.0)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = ["blob_map", "write_particle_set"]


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
    """Project ``volume`` at Haar-random poses with CTF, shifts and noise; write star + stack.

    Parameters
    ----------
    out_dir : path
        Created if missing; receives ``star_name`` and ``stack_name`` (image paths in the star
        file are relative to it).
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
        Å, uniform; astigmatism up to 500 Å at a random angle.
    extra_columns : dict, optional
        Extra particle columns (name -> array of n_particles values).

    Returns
    -------
    Path of the star file.
    """
    from cesped.geometry.rotations import matrix_to_euler, random_rotations
    from cesped.io.stack import write_stack
    from cesped.io.star import StarFile, write_star
    from cesped.physics.ctf import compute_ctf
    from cesped.physics.projection import apply_ctf_and_shifts, project

    out = Path(os.path.expanduser(str(out_dir)))
    out.mkdir(parents=True, exist_ok=True)
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
    for s in range(0, n_particles, chunk):
        e = min(n_particles, s + chunk)
        proj = project(vol, rot[s:e].to(torch.float32))
        ctf = compute_ctf(dfu[s:e], dfv[s:e], dfa[s:e], 300.0, 2.7, 0.1, pixel_size, n)
        img = apply_ctf_and_shifts(proj, ctf, torch.as_tensor(-shifts[s:e] / pixel_size, dtype=torch.float32))
        if np.isfinite(snr):
            sd = float(img.std()) / np.sqrt(snr)
            img = img + sd * torch.randn(img.shape, generator=gen)
        images[s:e] = img.numpy()
    write_stack(out / stack_name, images, pixel_size)
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
    parts = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@{stack_name}" for i in range(n_particles)],
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
    for k, v in (extra_columns or {}).items():
        parts[k] = np.asarray(v)
    star_path = out / star_name
    write_star(star_path, StarFile(particles=parts, optics=optics))
    return star_path
