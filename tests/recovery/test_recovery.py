"""Orientation recovery (cesped.recovery): conventions, the recovery step, the in-plane search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cesped.evaluation.frames import align_frames
from cesped.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix, rotation_z
from cesped.physics.image_ops import rot90_images
from cesped.physics.projection import Projector
from cesped.recovery.inplane import inplane_search
from cesped.recovery.quaternions import o4_align, qmul, quarter_turns
from cesped.recovery.solve import exact_distance_fn, recover_orientations
from cesped.simulation.fixtures import blob_map


def _rz(phi):
    return rotation_z(torch.tensor(float(phi), dtype=torch.float64)).numpy()


@pytest.fixture(scope="module")
def blob():
    return blob_map(24, n_blobs=16, sigma=1.5, seed=3).astype(np.float64)


def test_quarter_turn_of_a_projection_is_the_pose_times_rz(blob):
    """The tie the recovery relies on, from the projector: rot90(P(R), k) == P(R·Rz(90k))."""
    proj = Projector(torch.from_numpy(blob), pad=2.0)
    R = torch.from_numpy(Rotation.random(3, random_state=0).as_matrix())
    base = proj.project(R)
    for k in (1, 2, 3):
        turned = proj.project(R @ torch.from_numpy(_rz(90 * k)))
        got = rot90_images(base[:, None], k)[:, 0]
        assert torch.allclose(got, turned, atol=1e-6 * float(base.abs().max()))
        # and it is not the other sign (for k = 1, 3)
        if k != 2:
            wrong = proj.project(R @ torch.from_numpy(_rz(-90 * k)))
            assert (got - wrong).abs().max() > 0.05 * base.abs().max()


def test_quaternion_product_and_quarter_turns_match_matrices():
    a = torch.randn(6, 4, dtype=torch.float64)
    b = torch.randn(6, 4, dtype=torch.float64)
    assert torch.allclose(quaternion_to_matrix(qmul(a, b)), quaternion_to_matrix(a) @ quaternion_to_matrix(b))
    k = torch.tensor([0, 1, 2, 3, 5])
    ref = torch.stack([torch.from_numpy(_rz(90 * int(v))) for v in k])
    assert torch.allclose(quaternion_to_matrix(quarter_turns(k)), ref, atol=1e-12)


def test_o4_align_undoes_an_orthogonal_map_and_signs():
    rng = np.random.default_rng(1)
    qt = matrix_to_quaternion(torch.from_numpy(Rotation.random(50, random_state=2).as_matrix())).numpy()
    M = np.linalg.qr(rng.standard_normal((4, 4)))[0]  # any O(4) element, det +-1
    qp = (qt @ M) * rng.choice([-1.0, 1.0], size=(50, 1))  # q_true = M q_pred up to sign
    _, err = o4_align(qp, qt)
    assert err.max() < 1e-5


def _recover(R, inplane_copies, steps=1000):
    return recover_orientations(len(R), exact_distance_fn(R), steps=steps, batch_size=256, lr=0.05,
                                inplane_copies=inplane_copies, seed=0)  # fmt: skip


def _best_over_phi(R_hat, R_true):
    """Smallest frame-free MAnE over a global right factor Rz(phi), 1-degree grid (brute force)."""
    return min(
        align_frames(R_hat @ _rz(phi), R_true, "C1", allow_mirror=True).errors_deg.mean()
        for phi in np.arange(0.0, 180.0, 0.5)
    )


def test_recovery_with_exact_distances_is_defined_up_to_frame_and_inplane_angle():
    """With the quarter-turn tie, exact distances give the truth up to G (left) and Rz(phi) (right).

    (Without the tie the recovery is defined only up to O(4): benchmarks/probe_recovery_ambiguity.py.)
    """
    R = Rotation.random(40, random_state=4).as_matrix()
    tied = _recover(R, True)
    assert tied.losses[-50:].mean() < 1e-5
    assert _best_over_phi(tied.rotmats(), R) < 1.0


@pytest.mark.slow
def test_inplane_search_finds_the_angle_on_noiseless_projections(blob):
    n = 200
    R = Rotation.random(n, random_state=5).as_matrix()
    images = Projector(torch.from_numpy(blob), pad=2.0).project(torch.from_numpy(R)).to(torch.float32)
    G = Rotation.random(random_state=6).as_matrix()
    phi0 = 37.0
    R_hat = G @ R @ _rz(phi0)  # what the recovery leaves: frame G, in-plane angle phi0
    res = inplane_search(images, R_hat, coarse_step_deg=5.0, fine_step_deg=1.0)
    assert abs(((res.angle_deg + phi0 + 90) % 180) - 90) <= 1.0  # R_hat Rz(angle) = G R (mod hand)
    assert res.scores.max() > 0.9
    assert np.median(res.scores) < res.scores.max() - 0.02


@pytest.mark.slow
def test_recovery_then_inplane_search_gives_frame_free_poses(blob):
    """The whole label-free chain with a perfect distance estimator, scored frame-free."""
    n = 120
    R = Rotation.random(n, random_state=7).as_matrix()
    images = Projector(torch.from_numpy(blob), pad=2.0).project(torch.from_numpy(R)).to(torch.float32)
    R_hat = _recover(R, True).rotmats()
    res = inplane_search(images, R_hat)
    al = align_frames(R_hat @ _rz(res.angle_deg), R, "C1", allow_mirror=True)
    assert al.errors_deg.mean() < 1.5
    random_poses = Rotation.random(n, random_state=8).as_matrix()
    assert align_frames(random_poses, R, "C1", allow_mirror=True).errors_deg.mean() > 60.0


def test_bad_inputs_raise_clear_errors(blob):
    with pytest.raises(ValueError, match="n must be"):
        recover_orientations(2, exact_distance_fn(np.eye(3)[None].repeat(2, 0)))
    with pytest.raises(ValueError, match="distance_fn must return"):
        recover_orientations(5, lambda i, ki, j, kj: torch.zeros(3), steps=1, batch_size=4)
    with pytest.raises(ValueError, match="lr"):
        recover_orientations(5, lambda i, ki, j, kj: torch.zeros(4), steps=1, batch_size=4, lr=0)
    imgs = torch.zeros(10, 16, 16)
    with pytest.raises(ValueError, match="rotmats must be"):
        inplane_search(imgs, np.eye(3)[None].repeat(9, 0))
    with pytest.raises(ValueError, match="ctf must be"):
        inplane_search(imgs, np.eye(3)[None].repeat(10, 0), ctf=torch.ones(10, 16, 16))
    with pytest.raises(ValueError, match="o4_align"):
        o4_align(np.zeros((3, 4)), np.zeros((4, 4)))


def test_siamese_and_cli_bad_inputs(tmp_path, capsys):
    from cesped.recover import main
    from cesped.recovery.siamese import train_siamese

    R = Rotation.random(30, random_state=0).as_matrix()
    with pytest.raises(ValueError, match="symmetry 'C2' not supported"):
        train_siamese(torch.zeros(30, 16, 16), R, symmetry="C2")
    with pytest.raises(ValueError, match=r"rotmats must be \(30, 3, 3\)"):
        train_siamese(torch.zeros(30, 16, 16), R[:29])
    assert main(["--star", str(tmp_path / "p.star"), "--out", str(tmp_path / "o.star")]) == 2
    assert "--train-star is required" in capsys.readouterr().err
    assert (
        main(["--star", str(tmp_path / "missing.star"), "--oracle", "--out", str(tmp_path / "o.star")]) == 2
    )
    err = capsys.readouterr().err
    assert "missing.star" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.star").exists()
