"""Particle images, CTFs and shifts of a star file, Fourier-resized for recovery."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

__all__ = ["Particles", "load_particles"]


@dataclass
class Particles:
    """Images ``(n, s, s)`` float32, CTFs ``(n, s, s//2+1)``, shifts ``(n, 2)`` px at the new size,
    pixel size (Å/px) at the new size, the star's table, and the poses in the star (n, 3, 3) or
    None when it has no angle columns."""

    images: torch.Tensor
    ctf: torch.Tensor
    shifts_px: torch.Tensor
    pixel_size: float
    table: pd.DataFrame
    rotmats: np.ndarray | None


def load_particles(star_path, image_size: int | None = None, image_root=None) -> Particles:
    """Read a particles star file (with CTF columns) and Fourier-resize its images to ``image_size``.

    Raises ``ValueError``/``FileNotFoundError`` naming the file (see
    :func:`cesped.refinement.api.read_particles`).
    """
    from cesped.data.preprocess import fourier_resize
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.physics.ctf import ctf_from_particles
    from cesped.refinement.api import read_particles

    _, parts, src, px, box = read_particles(star_path, image_root=image_root)
    size = box if image_size is None else int(image_size)
    if size < 8 or size > box or size % 2:
        raise ValueError(
            f"image_size must be even, >= 8 and <= the box ({box}) of {star_path}, got {image_size}"
        )
    imgs = torch.as_tensor(np.asarray(src.read(np.arange(len(parts))), dtype=np.float32))
    if size != box:
        imgs = fourier_resize(imgs[:, None], size)[:, 0]
    new_px = px * box / size
    ctf = ctf_from_particles(parts, image_size=size, pixel_size=new_px)
    shifts = np.zeros((len(parts), 2))
    for j, col in enumerate(("rlnOriginXAngst", "rlnOriginYAngst")):
        if col in parts.columns:
            shifts[:, j] = parts[col].to_numpy(np.float64) / new_px
    rot = None
    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    if all(c in parts.columns for c in cols):
        rot = euler_to_matrix(parts[cols].to_numpy(np.float64))
    return Particles(imgs, ctf, torch.as_tensor(shifts, dtype=torch.float32), new_px, parts, rot)
