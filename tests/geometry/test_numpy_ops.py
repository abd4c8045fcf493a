"""The torch-free numpy geometry (used by the evaluation) against the torch functions and
independent references (scipy's ZYZ rotations, brute-force symmetry minimum)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cesped.geometry import errors as terr
from cesped.geometry import numpy_ops as gnp
from cesped.geometry import rotations as trot
from cesped.geometry.symmetry import symmetry_matrices, symmetry_matrices_np


def _angles(n, seed):
    return Rotation.random(n, random_state=seed).as_euler("ZYZ", degrees=True)


def test_euler_to_matrix_matches_scipy_and_torch():
    ang = _angles(500, 0)
    got = gnp.euler_to_matrix(ang)
    assert got.dtype == np.float64 and got.shape == (500, 3, 3)
    np.testing.assert_allclose(got, Rotation.from_euler("ZYZ", ang, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(got, trot.euler_to_matrix(torch.from_numpy(ang)).numpy(), atol=1e-15)
    np.testing.assert_allclose(gnp.relion_matrix(ang), np.swapaxes(got, -1, -2), atol=0)


@pytest.mark.parametrize("sym", ["C1", "C4", "D2", "T", "O", "I"])
def test_symmetry_aware_error_matches_torch_and_brute_force(sym):
    a = gnp.euler_to_matrix(_angles(300, 1))
    b = gnp.euler_to_matrix(_angles(300, 2))
    got = gnp.symmetry_aware_error(a, b, sym)
    ref_torch = terr.symmetry_aware_error(torch.from_numpy(a), torch.from_numpy(b), sym).numpy()
    np.testing.assert_allclose(got, ref_torch, atol=1e-9)
    # brute force: scipy's magnitude of (g R_true)^T R_pred over every group element
    g = symmetry_matrices_np(sym)
    # R_tᵀ g R_p for every g: the group holds g and gᵀ, so the minimum equals min_g d(g R_t, R_p)
    rel = np.einsum("nji,gjk,nkl->gnil", a, g, b)
    brute = np.degrees(Rotation.from_matrix(rel.reshape(-1, 3, 3)).magnitude()).reshape(len(g), -1).min(0)
    np.testing.assert_allclose(got, brute, atol=1e-6)
    if sym != "C1":
        assert np.all(got <= gnp.symmetry_aware_error(a, b, "C1") + 1e-9)
        assert got.mean() < 0.9 * gnp.symmetry_aware_error(a, b, "C1").mean()


def test_identical_poses_give_exactly_zero():
    a = gnp.euler_to_matrix(_angles(100, 3))
    assert np.all(gnp.symmetry_aware_error(a, a, "D7") == 0.0)


@pytest.mark.parametrize("sym", ["C1", "C2", "D3"])
def test_viewing_direction_error_matches_torch(sym):
    a = gnp.euler_to_matrix(_angles(200, 4))
    b = gnp.euler_to_matrix(_angles(200, 5))
    got = gnp.viewing_direction_error(a, b, sym)
    ref = terr.viewing_direction_error(torch.from_numpy(a), torch.from_numpy(b), sym).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-9)
    # psi does not move the viewing direction
    ang = _angles(200, 4)
    ang[:, 2] += 77.0
    np.testing.assert_allclose(gnp.viewing_direction_error(a, gnp.euler_to_matrix(ang), sym), 0.0, atol=1e-6)


def test_symmetry_matrices_np_is_the_torch_group_and_a_copy():
    g = symmetry_matrices_np("O")
    np.testing.assert_array_equal(g, symmetry_matrices("O").numpy())
    g[:] = 0.0  # editing the returned copy leaves the cached group intact
    assert np.allclose(symmetry_matrices_np("O")[0], np.eye(3))


def test_bad_shapes_and_complex_input_raise_value_error():
    with pytest.raises(ValueError, match="angles"):
        gnp.euler_to_matrix(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="R_pred"):
        gnp.symmetry_aware_error(np.eye(3)[None], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="complex"):
        gnp.euler_to_matrix(np.zeros(3, dtype=complex))


def test_symmetry_aware_error_in_blocks_and_broadcast(monkeypatch):
    """Particles cut into several blocks, and a broadcast pair, give the torch values."""
    monkeypatch.setattr(gnp, "_CHUNK", 1024)
    a = gnp.euler_to_matrix(_angles(2500, 6))
    b = gnp.euler_to_matrix(_angles(2500, 7))
    for sym in ("C1", "D2"):  # 3 blocks of 1024 particles each
        ref = terr.symmetry_aware_error(torch.from_numpy(a), torch.from_numpy(b), sym).numpy()
        np.testing.assert_allclose(gnp.symmetry_aware_error(a, b, sym), ref, atol=1e-9)
    got = gnp.symmetry_aware_error(a[:1, None], b[None, :7], "D2")  # (1, 7)
    ref = terr.symmetry_aware_error(torch.from_numpy(a[:1, None]), torch.from_numpy(b[None, :7]), "D2")
    assert got.shape == (1, 7)
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-9)
