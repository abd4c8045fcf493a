"""Angular errors: geodesic distance, symmetry-aware error, viewing direction, MAnE / wMAnE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cesped.geometry.errors import (
    angular_distance,
    mean_angular_error,
    symmetry_aware_error,
    viewing_direction_error,
    weighted_mean_angular_error,
)
from cesped.geometry.rotations import axis_angle_to_matrix, euler_to_matrix, random_rotations
from cesped.geometry.symmetry import symmetry_matrices


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_angular_distance_matches_known_angles(dtype):
    R = random_rotations(500, generator=_gen(0), dtype=torch.float64)
    axes = torch.randn(500, 3, generator=_gen(1), dtype=torch.float64)
    angles = torch.cat(
        [torch.logspace(-5, 0, 50), torch.linspace(1, 179, 400), 180 - torch.logspace(-5, 0, 50)]
    )
    angles = angles.to(torch.float64)
    R2 = R @ axis_angle_to_matrix(axes, angles)  # right perturbation: d(R, R2) = angle
    d = angular_distance(R.to(dtype), R2.to(dtype))
    assert d.dtype == dtype and d.shape == (500,)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    assert (d.double() - angles).abs().max() < tol
    # also left perturbation, and symmetric in its arguments
    R3 = axis_angle_to_matrix(axes, angles) @ R
    assert (angular_distance(R3, R) - angles).abs().max() < 1e-9
    # scipy's magnitude of the relative rotation
    ref = np.degrees((Rotation.from_matrix(R.numpy()).inv() * Rotation.from_matrix(R2.numpy())).magnitude())
    np.testing.assert_allclose(angular_distance(R, R2).numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_poses_give_zero(dtype):
    R = random_rotations(1000, generator=_gen(2), dtype=dtype)
    assert torch.equal(angular_distance(R, R), torch.zeros(1000, dtype=dtype))
    assert torch.equal(symmetry_aware_error(R, R, "C1"), torch.zeros(1000, dtype=dtype))


@pytest.mark.parametrize("sym", ["C1", "C4", "D7", "T", "O", "I"])
def test_symmetry_equivalent_poses_give_zero(sym):
    R = random_rotations(300, generator=_gen(3))
    G = symmetry_matrices(sym)
    g = G[torch.randint(len(G), (300,), generator=_gen(4))]
    err = symmetry_aware_error(R, g @ R, sym)  # left multiplication: R ~ S R
    assert err.max() < 1e-6
    err = symmetry_aware_error(g @ R, R, sym)
    assert err.max() < 1e-6
    # with a perturbation, the symmetry-aware error equals the perturbation when it is small
    axes = torch.randn(300, 3, generator=_gen(5), dtype=torch.float64)
    P = axis_angle_to_matrix(axes, torch.full((300,), 3.0, dtype=torch.float64))
    err = symmetry_aware_error(R, g @ R @ P, sym)
    assert (err - 3.0).abs().max() < 1e-9


def test_symmetry_aware_error_is_minimum_over_group_brute_force():
    R1 = random_rotations(200, generator=_gen(6))
    R2 = random_rotations(200, generator=_gen(7))
    G = symmetry_matrices("D3")
    brute = torch.stack([angular_distance(g @ R1, R2) for g in G]).min(0).values
    err = symmetry_aware_error(R1, R2, "d3")
    assert (err - brute).abs().max() < 1e-10
    assert (err <= angular_distance(R1, R2) + 1e-12).all()
    # C1 is the plain geodesic distance; right multiplication by a group element is NOT a symmetry
    assert torch.equal(symmetry_aware_error(R1, R2, "C1"), angular_distance(R1, R2))
    right = symmetry_aware_error(R1, R1 @ G[1], "D3")
    assert (right > 1e-3).float().mean() > 0.9


def test_symmetric_error_bounded_by_group():
    # the largest possible error shrinks with the group: random pairs never exceed 180 (C1)
    R1 = random_rotations(500, generator=_gen(8))
    R2 = random_rotations(500, generator=_gen(9))
    e1 = symmetry_aware_error(R1, R2, "C1")
    e60 = symmetry_aware_error(R1, R2, "I")
    assert e1.max() <= 180 and (e60 <= e1 + 1e-12).all()
    assert e60.mean() < e1.mean() / 2


def test_viewing_direction_error():
    ang = torch.tensor([[10.0, 40.0, 0.0], [10.0, 40.0, 123.0], [-60.0, 100.0, 30.0]], dtype=torch.float64)
    R = euler_to_matrix(ang)
    # psi does not change the viewing direction
    assert viewing_direction_error(R[0], R[1]) < 1e-12
    # the viewing direction is R e_z = (cos rot sin tilt, sin rot sin tilt, cos tilt)
    r, t = np.radians(ang[:, 0].numpy()), np.radians(ang[:, 1].numpy())
    v = np.stack([np.cos(r) * np.sin(t), np.sin(r) * np.sin(t), np.cos(t)], -1)
    np.testing.assert_allclose(R[:, :, 2].numpy(), v, atol=1e-15)
    expected = np.degrees(np.arccos(np.clip(v[0] @ v[2], -1, 1)))
    assert abs(float(viewing_direction_error(R[0], R[2])) - expected) < 1e-9
    # changing tilt by 7 degrees at fixed rot changes the direction by 7 degrees
    R3 = euler_to_matrix(torch.tensor([10.0, 47.0, 80.0], dtype=torch.float64))
    assert abs(float(viewing_direction_error(R[0], R3)) - 7.0) < 1e-9
    # symmetry: a D2 element applied to the true pose gives 0; the opposite direction is 180 in C1, 0 in D2
    G = symmetry_matrices("D2")
    Rs = random_rotations(100, generator=_gen(10))
    assert viewing_direction_error(Rs, G[2] @ Rs, "D2").max() < 1e-9
    assert (viewing_direction_error(Rs, G[2] @ Rs, "C1") > 1e-3).all()
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))  # 2-fold about x
    Rz = euler_to_matrix(torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64))
    assert abs(float(viewing_direction_error(Rz, flip @ Rz, "C1")) - 180.0) < 1e-9
    assert float(viewing_direction_error(Rz, flip @ Rz, "D2")) < 1e-9


def test_mean_and_weighted_mean():
    err = np.array([1.0, 2.0, 6.0])
    assert mean_angular_error(err) == 3.0
    assert mean_angular_error(torch.tensor(err)) == 3.0
    assert weighted_mean_angular_error(err, [1.0, 1.0, 2.0]) == pytest.approx(15.0 / 4.0)
    assert weighted_mean_angular_error(err, [0.0, 0.0, 0.5]) == pytest.approx(6.0)


@pytest.mark.parametrize(
    "weights, match",
    [
        ([0.0, 0.0, 0.0], "sum to 0"),
        ([1.0, -1.0, 1.0], "negative"),
        ([1.0, np.nan, 1.0], "non-finite"),
        ([1.0, np.inf, 1.0], "non-finite"),
        ([1.0, 1.0], "weights"),
    ],
)
def test_weighted_mean_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        weighted_mean_angular_error([1.0, 2.0, 3.0], weights)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        mean_angular_error([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_angular_error([1.0, np.nan])
    with pytest.raises(ValueError, match="R1"):
        angular_distance(torch.zeros(3, 4), torch.eye(3))
    with pytest.raises(ValueError, match="symmetry"):
        symmetry_aware_error(torch.eye(3), torch.eye(3), "Q7")


def test_gradients_finite_at_zero_error():
    R = random_rotations(4, generator=_gen(11)).requires_grad_()
    angular_distance(R, R.detach()).sum().backward()
    assert torch.isfinite(R.grad).all()
    R2 = random_rotations(4, generator=_gen(12)).requires_grad_()
    symmetry_aware_error(R.detach(), R2, "D2").sum().backward()
    assert torch.isfinite(R2.grad).all() and R2.grad.abs().sum() > 0
