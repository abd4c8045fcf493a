"""Prediction files with known errors for the benchmark tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]


def gt_star(bench: Path, entry: str, half: int):
    from cesped.io.star import read_star

    return read_star(Path(bench) / entry / f"particles_{half}.star")


def perturbed(rotmats: np.ndarray, angles_deg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``R · Rot(axis_i, angle_i)`` with random axes: geodesic distance to ``R`` is exactly ``angle_i``."""
    axes = rng.normal(size=(len(rotmats), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    turn = Rotation.from_rotvec(axes * np.deg2rad(angles_deg)[:, None]).as_matrix()
    return rotmats @ turn


def write_predictions(bench: Path, entry: str, half: int, out: Path, angles_deg, seed: int, conf=None):
    """Ground truth of ``entry``/``half`` turned by ``angles_deg`` (known errors); returns the rotmats."""
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.io.star import write_star

    star = gt_star(bench, entry, half)
    rng = np.random.default_rng(seed)
    true = euler_to_matrix(star.particles[ANGLES].to_numpy(dtype=np.float64))
    pred = perturbed(true, np.asarray(angles_deg, dtype=np.float64), rng)
    st = star.copy()
    st.particles[ANGLES] = Rotation.from_matrix(pred).as_euler("ZYZ", degrees=True)
    st.particles["rlnParticleFigureOfMerit"] = 1.0 if conf is None else conf
    write_star(out, st)
    return pred
