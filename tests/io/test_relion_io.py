"""RELION's own programs read the star files and stacks we write."""

from __future__ import annotations

import re
import shutil
import subprocess

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from cesped.geometry.rotations import matrix_to_euler, random_rotations, relion_matrix
from cesped.io.mrc import read_map
from cesped.io.stack import write_stack
from cesped.io.star import StarFile, write_star

pytestmark = pytest.mark.relion

N = 16
PX = 2.0
SIGMA = 1.2
BLOBS = np.array([[4.0, 0.0, 0.0], [0.0, -3.0, 1.0], [-2.0, 3.0, -4.0]])  # (x, y, z) px from centre
WEIGHTS = np.array([1.0, 0.8, 0.6])


def _blob_volume() -> np.ndarray:
    c = np.arange(N) - N // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return sum(
        w * np.exp(-((x - b[0]) ** 2 + (y - b[1]) ** 2 + (z - b[2]) ** 2) / (2 * SIGMA**2))
        for b, w in zip(BLOBS, WEIGHTS)
    )


def _blob_projections(A: np.ndarray) -> np.ndarray:
    """Analytic projections: a blob at volume position p appears at (A p)_xy (RELION convention)."""
    c = np.arange(N) - N // 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    pos = np.einsum("nij,bj->nbi", A, BLOBS)  # (n, blobs, 3)
    d2 = (xx[None, None] - pos[..., 0, None, None]) ** 2 + (yy[None, None] - pos[..., 1, None, None]) ** 2
    return np.einsum("b,nbyx->nyx", WEIGHTS * np.sqrt(2 * np.pi) * SIGMA, np.exp(-d2 / (2 * SIGMA**2)))


def _optics() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnVoltage": [300.0],
            "rlnSphericalAberration": [2.7],
            "rlnAmplitudeContrast": [0.1],
            "rlnImagePixelSize": [PX],
            "rlnImageSize": [N],
            "rlnImageDimensionality": [2],
        }
    )


def test_relion_reconstruct_accepts_our_star_and_stack(tmp_path):
    """A few hundred 16-px projections written by us reconstruct to the right volume in RELION."""
    n = 300
    R = random_rotations(n, generator=torch.Generator().manual_seed(0))
    ang = matrix_to_euler(R).numpy()
    imgs = _blob_projections(relion_matrix(torch.from_numpy(ang)).numpy())
    write_stack(tmp_path / "Particles" / "stack.mrcs", imgs, PX)
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@Particles/stack.mrcs" for i in range(n)],
            "rlnAngleRot": ang[:, 0],
            "rlnAngleTilt": ang[:, 1],
            "rlnAnglePsi": ang[:, 2],
            "rlnOriginXAngst": 0.0,
            "rlnOriginYAngst": 0.0,
            "rlnDefocusU": 10000.0,
            "rlnDefocusV": 10000.0,
            "rlnDefocusAngle": 0.0,
            "rlnOpticsGroup": 1,
            "rlnSomethingUnknown": "keep me",
        }
    )
    write_star(tmp_path / "particles.star", StarFile(particles, _optics()))
    proc = subprocess.run(
        ["relion_reconstruct", "--i", "particles.star", "--o", "rec.mrc"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "angpix from the first optics group: 2" in proc.stdout
    rec, vs = read_map(tmp_path / "rec.mrc")
    assert rec.shape == (N, N, N) and vs == pytest.approx(PX)
    gt = _blob_volume()
    corr = np.corrcoef(rec.ravel(), gt.ravel())[0, 1]
    # 0.9986 measured; images made with the transposed matrix give 0.74
    assert corr > 0.98, corr
    # CESPED's call (--ctf, --sym) reads the CTF columns and optics of our file as well
    proc = subprocess.run(
        ["relion_reconstruct", "--i", "particles.star", "--o", "rec_ctf.mrc"]
        + ["--ctf", "--sym", "c1", "--pad", "2.0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rec_ctf, _ = read_map(tmp_path / "rec_ctf.mrc")
    assert rec_ctf.shape == (N, N, N) and np.isfinite(rec_ctf).all()


def test_relion_image_handler_reads_our_stack(tmp_path):
    imgs = np.random.default_rng(1).normal(loc=3.0, scale=2.0, size=(4, N, N)).astype(np.float32)
    write_stack(tmp_path / "s.mrcs", imgs, 1.5)
    proc = subprocess.run(
        ["relion_image_handler", "--i", "s.mrcs", "--stats"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(
        r"(\d+)@s\.mrcs : \(x,y,z,n\)= (\d+) x (\d+) x 1 x 1 ; avg= (\S+) stddev= (\S+) "
        r"minval= (\S+) maxval= (\S+); angpix = (\S+)",
        proc.stdout,
    )
    assert len(rows) == 4
    for k, (i, nx, ny, avg, std, vmin, vmax, apix) in enumerate(rows):
        img = imgs[int(i) - 1]
        assert int(i) == k + 1 and (int(nx), int(ny)) == (N, N)
        assert float(avg) == pytest.approx(img.mean(), abs=1e-4)
        assert float(std) == pytest.approx(img.std(), rel=1e-3)
        assert float(vmin) == pytest.approx(img.min(), rel=1e-5)
        assert float(vmax) == pytest.approx(img.max(), rel=1e-5)
        assert float(apix) == pytest.approx(1.5)


def test_relion_project_output_readable(tmp_path):
    """Round trip the other way: our readers accept RELION's star and stack (relion_project)."""
    if shutil.which("relion_project") is None:
        pytest.skip("relion_project not on PATH")
    from cesped.io.mrc import write_map
    from cesped.io.stack import ImageSource
    from cesped.io.star import read_star

    write_map(tmp_path / "vol.mrc", _blob_volume(), PX)
    ang = np.array([[10.0, 20.0, 30.0], [100.0, 80.0, -40.0], [-60.0, 150.0, 5.0]])
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
    write_star(tmp_path / "ang.star", StarFile(particles, _optics()))
    subprocess.run(
        ["relion_project", "--i", "vol.mrc", "--o", "proj", "--ang", "ang.star"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    star = read_star(tmp_path / "proj.star")
    np.testing.assert_allclose(star.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), ang)
    images = ImageSource.from_star(star).read(slice(None))
    np.testing.assert_array_equal(images, mrcfile.read(tmp_path / "proj.mrcs"))
    expected = _blob_projections(relion_matrix(torch.from_numpy(ang)).numpy())
    for i in range(3):
        assert np.corrcoef(images[i].ravel(), expected[i].ravel())[0, 1] > 0.99
