"""RELION itself as the reference for the Euler convention (``relion_project``, ``relion_refine``)."""

from __future__ import annotations

import re
import shutil
import subprocess

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from cesped.geometry.rotations import euler_to_matrix, matrix_to_euler, relion_matrix
from cesped.io.mrc import write_map
from cesped.io.star import StarFile, write_star

pytestmark = pytest.mark.relion

N = 32
SIGMA = 1.5
# asymmetric arrangement of Gaussian blobs: (x, y, z) in pixels from the box centre, weight
BLOBS = np.array([[6.0, 0.0, 0.0], [0.0, -4.0, 2.0], [-3.0, 5.0, -7.0], [2.0, 2.0, 8.0]])
WEIGHTS = np.array([1.0, 0.7, 0.5, 0.9])


def _optics(px: float, box: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnVoltage": [300.0],
            "rlnSphericalAberration": [2.7],
            "rlnAmplitudeContrast": [0.1],
            "rlnImagePixelSize": [px],
            "rlnImageSize": [box],
            "rlnImageDimensionality": [2],
        }
    )


def _analytic_projection(M: np.ndarray) -> np.ndarray:
    """Line integral along z of the blobs after mapping volume coordinates p to M p."""
    c = np.arange(N) - N // 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    img = np.zeros((N, N))
    for b, w in zip(BLOBS @ M.T, WEIGHTS):
        img += (
            w * np.sqrt(2 * np.pi) * SIGMA * np.exp(-((xx - b[0]) ** 2 + (yy - b[1]) ** 2) / (2 * SIGMA**2))
        )
    return img


def test_relion_project_uses_relion_matrix(tmp_path):
    """RELION's projection of a blob at volume position p lands at (A p)_xy, A = relion_matrix."""
    if shutil.which("relion_project") is None:
        pytest.skip("relion_project not on PATH")
    c = np.arange(N) - N // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = sum(
        w * np.exp(-((x - b[0]) ** 2 + (y - b[1]) ** 2 + (z - b[2]) ** 2) / (2 * SIGMA**2))
        for b, w in zip(BLOBS, WEIGHTS)
    )
    write_map(tmp_path / "vol.mrc", vol, 1.0)
    ang = np.array([[30.0, 50.0, 70.0], [-100.0, 120.0, 10.0], [0.0, 90.0, 0.0], [45.0, 10.0, -160.0]])
    particles = pd.DataFrame(
        {
            "rlnAngleRot": ang[:, 0],
            "rlnAngleTilt": ang[:, 1],
            "rlnAnglePsi": ang[:, 2],
            "rlnOriginXAngst": 0.0,
            "rlnOriginYAngst": 0.0,
            "rlnOpticsGroup": 1,
        }
    )
    write_star(tmp_path / "ang.star", StarFile(particles, _optics(1.0, N)))
    subprocess.run(
        ["relion_project", "--i", "vol.mrc", "--o", "proj", "--ang", "ang.star", "--angpix", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    proj = mrcfile.read(tmp_path / "proj.mrcs")
    assert proj.shape == (len(ang), N, N)
    A = relion_matrix(torch.tensor(ang)).numpy()
    R = euler_to_matrix(torch.tensor(ang)).numpy()
    for i in range(len(ang)):
        good = np.corrcoef(_analytic_projection(A[i]).ravel(), proj[i].ravel())[0, 1]
        wrong = np.corrcoef(_analytic_projection(R[i]).ravel(), proj[i].ravel())[0, 1]
        assert good > 0.999, (i, good)
        assert wrong < 0.9, (i, wrong)


def test_relion_euler_matrix_pairs(tmp_path):
    """``relion_refine --print_symmetry_ops`` prints matrices with RELION's own Euler angles for them."""
    if shutil.which("relion_refine") is None:
        pytest.skip("relion_refine not on PATH")
    out = subprocess.run(
        ["relion_refine", "--print_symmetry_ops", "--sym", "I3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    lines = out.splitlines()
    mats, angles = [], []
    for i, line in enumerate(lines):
        m = re.match(r"\s*Euler angles:\s*(\S+)\s+(\S+)\s+(\S+)", line)
        if m:
            angles.append([float(v) for v in m.groups()])
            mats.append([[float(v) for v in lines[i - k].split()] for k in (3, 2, 1)])
    assert len(angles) == 59  # all but the identity
    angles = torch.tensor(angles, dtype=torch.float64)
    mats = np.array(mats)
    A = relion_matrix(angles).numpy()
    # printed with ~5-6 significant digits (angles to 0.001 degree)
    np.testing.assert_allclose(A, mats, atol=5e-4)
    # the transpose is a different matrix for most elements: the test can tell A from Aᵀ
    assert np.abs(np.swapaxes(A, 1, 2) - mats).max() > 0.1
    # our inverse recovers RELION's angles up to the Euler ambiguity (same matrix)
    back = relion_matrix(matrix_to_euler(torch.tensor(mats).transpose(1, 2))).numpy()
    np.testing.assert_allclose(back, mats, atol=5e-4)
