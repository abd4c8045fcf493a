"""Helpers to run RELION's binaries on small synthetic inputs (tests only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile


def write_map(path: Path, volume: np.ndarray, voxel_size: float) -> None:
    with mrcfile.new(str(path), overwrite=True) as m:
        m.set_data(np.ascontiguousarray(volume, dtype=np.float32))
        m.voxel_size = voxel_size


def write_particles_star(
    path: Path, particles: pd.DataFrame, pixel_size: float, box: int, voltage=300.0, cs=2.7, q0=0.1
) -> None:
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnVoltage": [voltage],
            "rlnSphericalAberration": [cs],
            "rlnAmplitudeContrast": [q0],
            "rlnImagePixelSize": [pixel_size],
            "rlnImageSize": [box],
            "rlnImageDimensionality": [2],
        }
    )
    particles = particles.copy()
    particles["rlnOpticsGroup"] = 1
    if "rlnImageName" not in particles:
        particles["rlnImageName"] = [f"{i + 1:06d}@dummy.mrcs" for i in range(len(particles))]
    starfile.write({"optics": optics, "particles": particles}, str(path), overwrite=True)


def relion_project(
    workdir: Path, map_path: Path, star_path: Path, pixel_size: float, ctf: bool
) -> np.ndarray:
    out = workdir / ("proj_ctf" if ctf else "proj")
    cmd = [
        "relion_project",
        "--i",
        str(map_path),
        "--o",
        str(out),
        "--ang",
        str(star_path),
        "--angpix",
        str(pixel_size),
    ]
    if ctf:
        cmd.append("--ctf")
    subprocess.run(cmd, check=True, capture_output=True, cwd=workdir)
    return mrcfile.read(str(out) + ".mrcs").astype(np.float64)


def gaussian_blobs(n: int, n_blobs: int, sigma: float, seed: int) -> np.ndarray:
    """An asymmetric test volume: a sum of isotropic Gaussians at random positions (voxels)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij")
    vol = np.zeros((n, n, n))
    for c, a in zip(rng.uniform(-n / 5, n / 5, (n_blobs, 3)), rng.uniform(0.5, 1.5, n_blobs)):
        vol += a * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * sigma**2))
    return vol.astype(np.float32)
