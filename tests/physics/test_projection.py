"""Projection against analytic Gaussians and relion_project; CTF + shift application."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.transform import Rotation

from cesped.physics.ctf import compute_ctf
from cesped.physics.projection import apply_ctf_and_shifts, project

from ._relion_helpers import gaussian_blobs, relion_project, write_map, write_particles_star


def _gaussian_volume(n, centre_xyz, sigma):
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij")
    cx, cy, cz = centre_xyz
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2))


def test_projection_of_offcentre_gaussian_follows_rotation():
    """A Gaussian at position p projects to a 2-D Gaussian at (A p)_xy = (Rᵀ p)_xy."""
    n, sigma = 40, 1.8
    p = np.array([6.0, -4.0, 3.0])  # x, y, z voxels
    vol = torch.from_numpy(_gaussian_volume(n, p, sigma))
    rot = Rotation.from_euler("ZYZ", [[30, 50, 70], [200, 120, 10]], degrees=True).as_matrix()
    imgs = project(vol, torch.from_numpy(rot)).numpy()
    y, x = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    for r, img in zip(rot, imgs):
        q = r.T @ p
        expected = np.sqrt(2 * np.pi) * sigma * np.exp(-((x - q[0]) ** 2 + (y - q[1]) ** 2) / (2 * sigma**2))
        # trilinear slice extraction + sinc² correction: ~0.5 % error at generic orientations
        assert np.linalg.norm(img - expected) / np.linalg.norm(expected) < 0.015
        assert np.corrcoef(img.ravel(), expected.ravel())[0, 1] > 0.9999


def test_identity_projection_is_sum_over_z_and_batched_equals_single():
    vol = torch.from_numpy(gaussian_blobs(32, 8, 2.0, seed=0))
    eye = torch.eye(3)
    single = project(vol, eye)
    assert single.shape == (32, 32) and single.dtype == torch.float32
    ref = vol.sum(0).numpy()
    # on-grid slices are over-corrected by the sinc² factor by a few per cent (documented)
    assert np.linalg.norm(single.numpy() - ref) / np.linalg.norm(ref) < 0.05
    assert np.corrcoef(single.numpy().ravel(), ref.ravel())[0, 1] > 0.999
    rot = torch.from_numpy(Rotation.random(5, random_state=1).as_matrix()).float()
    batch = project(vol, rot, chunk_size=2)
    for i in range(5):
        torch.testing.assert_close(batch[i], project(vol, rot[i]), atol=1e-4, rtol=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="cubic"):
        project(torch.zeros(8, 8, 6), torch.eye(3))
    with pytest.raises(ValueError, match="rotmats"):
        project(torch.zeros(8, 8, 8), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="square"):
        apply_ctf_and_shifts(torch.zeros(1, 8, 6))


def test_apply_ctf_dc_and_shift():
    n = 32
    img = torch.from_numpy(gaussian_blobs(n, 5, 2.0, seed=4).sum(0)).double()[None]
    ctf = compute_ctf(15000.0, 15000.0, 0.0, 300.0, 2.7, 0.1, 2.0, n, dtype=torch.float64)
    out = apply_ctf_and_shifts(img, ctf[None])
    # the DC term is multiplied by CTF(0) = Q0
    assert float(out.sum()) == pytest.approx(0.1 * float(img.sum()), rel=1e-9)
    shifted = apply_ctf_and_shifts(img, None, torch.tensor([[3.0, -2.0]], dtype=torch.float64))
    torch.testing.assert_close(shifted[0], torch.roll(img[0], (-2, 3), dims=(0, 1)))


@pytest.mark.relion
@pytest.mark.parametrize("with_ctf", [False, True])
def test_matches_relion_project(tmp_path, with_ctf):
    """Same map, same angles, origins (and CTFs): corr > 0.99 with relion_project's images."""
    n, px = 48, 2.0
    vol = gaussian_blobs(n, 12, 1.5, seed=5)
    write_map(tmp_path / "map.mrc", vol, px)
    rng = np.random.default_rng(7)
    b = 8
    ang = rng.uniform([0, 0, 0], [360, 180, 360], (b, 3))
    origin = rng.uniform(-6, 6, (b, 2))  # Å
    du = rng.uniform(8000, 20000, b)
    dv = du - rng.uniform(1000, 4000, b)
    da = rng.uniform(0, 180, b)
    parts = pd.DataFrame(
        {
            "rlnAngleRot": ang[:, 0],
            "rlnAngleTilt": ang[:, 1],
            "rlnAnglePsi": ang[:, 2],
            "rlnOriginXAngst": origin[:, 0],
            "rlnOriginYAngst": origin[:, 1],
            "rlnDefocusU": du,
            "rlnDefocusV": dv,
            "rlnDefocusAngle": da,
        }
    )
    write_particles_star(tmp_path / "ang.star", parts, px, n)
    ref = relion_project(tmp_path, tmp_path / "map.mrc", tmp_path / "ang.star", px, ctf=with_ctf)
    rot = torch.from_numpy(Rotation.from_euler("ZYZ", ang, degrees=True).as_matrix())
    ctf = compute_ctf(du, dv, da, 300.0, 2.7, 0.1, px, n, dtype=torch.float64) if with_ctf else None
    shifts = torch.from_numpy(-origin / px)
    ours = apply_ctf_and_shifts(project(torch.from_numpy(vol).double(), rot), ctf, shifts)
    for i in range(b):
        assert np.corrcoef(ours[i].numpy().ravel(), ref[i].ravel())[0, 1] > 0.995
        assert float(ours[i].std()) / ref[i].std() == pytest.approx(1.0, abs=0.02)
    # the transpose convention (A instead of Aᵀ) must fail
    wrong = project(torch.from_numpy(vol).double(), rot.transpose(-1, -2))
    wrong = apply_ctf_and_shifts(wrong, ctf, shifts)
    assert min(np.corrcoef(wrong[i].numpy().ravel(), ref[i].ravel())[0, 1] for i in range(b)) < 0.9
