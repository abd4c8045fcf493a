"""Prediction stars made from an entry's true poses (perturbed) for the refinement tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cesped.geometry.rotations import axis_angle_to_matrix, euler_to_matrix, matrix_to_euler
from cesped.io.star import read_star, write_star

ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
ORIGINS = ["rlnOriginXAngst", "rlnOriginYAngst"]


def true_rotmats(star) -> torch.Tensor:
    return euler_to_matrix(torch.from_numpy(star.particles[ANGLES].to_numpy(np.float64)))


def perturbed_star(entry_dir: Path, half: int, out: Path, jitter_deg=10.0, right=None, seed=0) -> Path:
    """Copy of ``particles_<half>.star`` with every pose rotated by ``jitter_deg`` about a random
    axis (then right-multiplied by ``right``, e.g. a mirror), origins zeroed, image names made
    relative to the entry directory (as cesped.infer writes them)."""
    st = read_star(Path(entry_dir) / f"particles_{half}.star")
    g = torch.Generator().manual_seed(seed)
    n = len(st.particles)
    axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
    R = axis_angle_to_matrix(axis, torch.full((n,), float(jitter_deg), dtype=torch.float64)) @ true_rotmats(
        st
    )
    if right is not None:
        R = R @ right
    st.particles[ANGLES] = matrix_to_euler(R).numpy()
    st.particles[ORIGINS] = 0.0
    write_star(out, st)
    return out
