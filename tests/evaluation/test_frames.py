"""Frame-free evaluation: a turned (or mirrored) map's poses are aligned back to the truth.

The reference for the conventions is physical, not the module's own derivation: a map made of
point atoms ``X`` (3, m) projected at pose ``R`` puts atom ``j`` at the image position
``(Rᵀ x_j)[:2]`` (``image(q) = ∫ V(R q) dz``). The test builds the poses of a turned or mirrored
map, checks that they give the same labelled images as the true poses, and only then asks
``align_frames`` to undo the frame without telling it how the poses were made.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cesped.evaluation.frames import align_frames, apply_frame, frame_free_metrics
from cesped.geometry.numpy_ops import symmetry_aware_error
from cesped.geometry.symmetry import symmetry_matrices_np

SYM = "C2"


def _c2_atoms(rng, m=12):
    """A chiral C2-symmetric point map (3, 2m): atoms and their images under the 2-fold."""
    X = rng.normal(size=(3, m)) * np.array([[10.0], [7.0], [5.0]])
    S = symmetry_matrices_np(SYM)
    return np.concatenate([S[0] @ X, S[1] @ X], axis=1)


def _image(R, X):
    """Labelled 2D projection positions (2, m) of point atoms X at pose R."""
    return (R.T @ X)[:2]


def _same_image_up_to_symmetry(R_a, X_a, R_b, X_b):
    """The two projections hold the same set of 2D points (a symmetry permutes the labels)."""
    a, b = _image(R_a, X_a).T, _image(R_b, X_b).T
    dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    return np.allclose(dist.min(axis=1), 0.0, atol=1e-9) and np.allclose(dist.min(axis=0), 0.0, atol=1e-9)


def _far_from_symmetry(rng, min_deg=40.0):
    """A Haar-random G at least ``min_deg`` from every symmetry element."""
    S = symmetry_matrices_np(SYM)
    while True:
        G = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
        if symmetry_aware_error(S, np.broadcast_to(G, S.shape), "C1").min() > min_deg:
            return G


def _frame_distance(G_a, G_b):
    """min_S angle((G_a S)ᵀ G_b), degrees: frames are equal up to right multiplication by S."""
    return symmetry_aware_error(G_a.T[None], G_b.T[None], SYM)[0]


@pytest.fixture
def setup():
    rng = np.random.default_rng(17)
    n = 600
    R_true = Rotation.random(n, random_state=3).as_matrix()
    S = symmetry_matrices_np(SYM)
    S_i = S[rng.integers(0, len(S), n)]  # each prediction may pick another symmetry mate
    return rng, R_true, S_i, _c2_atoms(rng)


def test_turned_frame_is_undone_and_unaligned_error_is_the_frame_angle(setup):
    rng, R_true, S_i, X = setup
    G = _far_from_symmetry(rng)
    # the predicted map is the true one turned by G: atoms at G X
    X_pred = G @ X
    R_pred = G @ S_i @ R_true
    for i in range(0, len(R_true), 97):  # the poses give the true images of the turned map
        assert _same_image_up_to_symmetry(R_pred[i], X_pred, R_true[i], X)

    metrics, al = frame_free_metrics(R_pred, R_true, SYM)
    assert not al.mirrored
    assert metrics["MAnE_deg"] < 1e-5
    assert np.abs(al.errors_deg).max() < 1e-5
    # recovered G up to the map's own symmetry, G ~ G·S
    assert _frame_distance(G, al.rotation) < 1e-5
    # unaligned, every particle is off by the frame angle min_S angle(Sᵀ G): the analytic value
    expected = symmetry_aware_error(np.eye(3)[None], G[None], SYM)[0]
    assert expected > 40.0
    assert metrics["MAnE_unaligned_deg"] == pytest.approx(expected, abs=1e-6)
    # the aligned poses give the true map's images
    for i in range(0, len(R_true), 97):
        assert _same_image_up_to_symmetry(al.aligned_rotmats[i], X, R_true[i], X)


def test_unaligned_error_over_random_frames_is_chance(setup):
    """Averaged over Haar-random frames, the unaligned MAnE is the MAnE of random poses."""
    rng, R_true, _, _ = setup
    Gs = Rotation.random(3000, random_state=5).as_matrix()
    unaligned = symmetry_aware_error(R_true[:1].repeat(3000, 0), Gs @ R_true[:1], SYM)
    chance = symmetry_aware_error(
        R_true[:1].repeat(3000, 0), Rotation.random(3000, random_state=6).as_matrix(), SYM
    )
    assert abs(unaligned.mean() - chance.mean()) < 3.0
    assert chance.mean() > 80.0
    al = align_frames(Gs[:1] @ R_true, R_true, SYM)
    assert al.errors_deg.max() < 1e-5


def test_mirrored_map_needs_allow_mirror(setup):
    rng, R_true, S_i, X = setup
    G = _far_from_symmetry(rng)
    J = np.diag([1.0, 1.0, -1.0])
    # the predicted map is the true one mirrored (z -> -z) and turned: atoms at G J X
    X_pred = G @ J @ X
    R_pred = G @ J @ S_i @ R_true @ J  # the proper rotation giving the same labelled images
    assert np.allclose(np.linalg.det(R_pred), 1.0)
    for i in range(0, len(R_true), 97):
        assert _same_image_up_to_symmetry(R_pred[i], X_pred, R_true[i], X)

    proper = align_frames(R_pred, R_true, SYM, allow_mirror=False)
    assert not proper.mirrored
    assert np.median(proper.errors_deg) > 10.0  # one rotation cannot undo the hand

    metrics, al = frame_free_metrics(R_pred, R_true, SYM, allow_mirror=True)
    assert al.mirrored
    assert metrics["frame_mirrored"] is True
    assert metrics["MAnE_deg"] < 1e-5
    assert al.cost_other_hand > 10.0
    for i in range(0, len(R_true), 97):
        assert _same_image_up_to_symmetry(al.aligned_rotmats[i], X, R_true[i], X)


def test_unmirrored_map_stays_unmirrored_with_allow_mirror(setup):
    rng, R_true, S_i, _ = setup
    G = _far_from_symmetry(rng)
    al = align_frames(G @ S_i @ R_true, R_true, SYM, allow_mirror=True)
    assert not al.mirrored
    assert al.errors_deg.max() < 1e-5


@pytest.mark.parametrize("mirror", [False, True])
def test_outliers_and_noise(setup, mirror):
    """30 % arbitrary outliers and 3° noise on the rest: the frame is still found."""
    rng, R_true, S_i, _ = setup
    n = len(R_true)
    G = _far_from_symmetry(rng)
    J = np.diag([1.0, 1.0, -1.0])
    R_pred = (G @ J @ S_i @ R_true @ J) if mirror else (G @ S_i @ R_true)
    outlier = rng.random(n) < 0.3
    R_pred[outlier] = Rotation.random(int(outlier.sum()), random_state=9).as_matrix()
    exact = frame_free_metrics(R_pred, R_true, SYM, allow_mirror=mirror)[0]
    assert np.mean(align_frames(R_pred, R_true, SYM, allow_mirror=mirror).errors_deg[~outlier]) < 1e-5
    assert exact["MAnE_deg"] > 15.0  # the outliers count in the reported MAnE

    noise = Rotation.from_rotvec(rng.normal(size=(n, 3)) * np.deg2rad(3.0) / np.sqrt(3)).as_matrix()
    al = align_frames(R_pred @ noise, R_true, SYM, allow_mirror=mirror)
    assert al.mirrored == mirror
    assert np.mean(al.errors_deg[~outlier]) < 4.0
    # the map G·J·X is the true map inverted and turned by -G·J (a proper rotation)
    expected_G = -G @ J if mirror else G
    assert _frame_distance(expected_G, al.rotation) < 1.0


def test_apply_frame_round_trip(setup):
    _, R_true, _, _ = setup
    G = Rotation.random(random_state=1).as_matrix()
    for mirrored in (False, True):
        F = np.diag([-1.0, -1.0, 1.0]) if mirrored else np.eye(3)
        assert np.allclose(apply_frame(G @ R_true @ F, G, mirrored), R_true)


def test_aligned_angles_are_relion_euler(setup):
    from cesped.geometry.numpy_ops import euler_to_matrix

    _, R_true, _, _ = setup
    al = align_frames(R_true, R_true, SYM)
    assert np.allclose(euler_to_matrix(al.aligned_angles_deg()), al.aligned_rotmats, atol=1e-9)


def test_bad_input():
    R = Rotation.random(5, random_state=0).as_matrix()
    with pytest.raises(ValueError, match="at least 3 particles"):
        align_frames(R[:2], R[:2], "C2")
    with pytest.raises(ValueError, match="gt_rotmats"):
        align_frames(R, R[:4], "C2")
    with pytest.raises(ValueError, match="pred_rotmats.*not rotations"):
        align_frames(R * np.array([1.0, 1.0, -1.0]), R, "C2")
    with pytest.raises(ValueError, match="keep"):
        align_frames(R, R, "C2", keep=0.0)
    with pytest.raises(ValueError, match="pred_rotmats"):
        align_frames(np.zeros((5, 3)), R, "C2")
