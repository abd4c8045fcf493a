"""Rotations: RELION convention, round trips, gimbal lock, quaternions, dtypes, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cesped.geometry.rotations import (
    axis_angle_to_matrix,
    euler_to_matrix,
    euler_to_quaternion,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_euler,
    quaternion_to_matrix,
    random_rotations,
    relion_matrix,
    rotation_z,
)

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _random_angles(n, seed=0, dtype=torch.float64):
    g = np.random.default_rng(seed)
    a = np.c_[g.uniform(-180, 180, n), np.degrees(np.arccos(g.uniform(-1, 1, n))), g.uniform(-180, 180, n)]
    return torch.tensor(a, dtype=dtype)


def _relion_euler_angles2matrix(rot, tilt, psi):
    """Transcription of RELION src/euler.cpp Euler_angles2matrix (scalar, float64)."""
    alpha, beta, gamma = np.radians([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = (
        np.cos(alpha),
        np.sin(alpha),
        np.cos(beta),
        np.sin(beta),
        np.cos(gamma),
        np.sin(gamma),
    )
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )


def test_label_is_transpose_of_relion_and_equals_scipy_zyz():
    ang = _random_angles(500)
    R = euler_to_matrix(ang).numpy()
    ref = Rotation.from_euler("ZYZ", ang.numpy(), degrees=True).as_matrix()
    np.testing.assert_allclose(R, ref, atol=1e-13)
    A = relion_matrix(ang).numpy()
    for i in range(0, 500, 37):
        np.testing.assert_allclose(A[i], _relion_euler_angles2matrix(*ang[i].tolist()), atol=1e-13)
    np.testing.assert_allclose(A, np.swapaxes(R, -1, -2), atol=0)


def test_relion_matrix_maps_volume_to_image_axis():
    # RELION A(0, 90, 0) = [[0, 0, -1], [0, 1, 0], [1, 0, 0]]: the volume's +x axis becomes the
    # image's +z (projection) axis and the volume's +z axis the image's -x axis
    A = relion_matrix(torch.tensor([0.0, 90.0, 0.0], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(A @ [1, 0, 0], [0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(A @ [0, 0, 1], [-1, 0, 0], atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orthonormal_det_one_and_batching(dtype):
    ang = _random_angles(24, seed=1, dtype=dtype).reshape(2, 3, 4, 3)
    R = euler_to_matrix(ang)
    assert R.shape == (2, 3, 4, 3, 3) and R.dtype == dtype
    eye = torch.eye(3, dtype=dtype).expand_as(R)
    assert (R @ R.transpose(-1, -2) - eye).abs().max() < 10 * TOL[dtype]
    assert (torch.linalg.det(R) - 1).abs().max() < 10 * TOL[dtype]
    # batched result equals the per-element result
    flat = euler_to_matrix(ang.reshape(-1, 3)).reshape(R.shape)
    assert torch.equal(flat, R)
    assert torch.equal(euler_to_matrix(ang[1, 2, 3]), R[1, 2, 3])
    # every conversion keeps the leading dimensions and the dtype
    q = matrix_to_quaternion(R)
    e = matrix_to_euler(R)
    assert q.shape == (2, 3, 4, 4) and e.shape == (2, 3, 4, 3) and q.dtype == e.dtype == dtype
    assert quaternion_to_matrix(q).shape == R.shape and quaternion_to_euler(q).shape == e.shape
    assert euler_to_quaternion(e).shape == q.shape and relion_matrix(e).shape == R.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_euler_round_trip_random(dtype):
    R = random_rotations(20000, generator=torch.Generator().manual_seed(3), dtype=dtype)
    e = matrix_to_euler(R)
    assert e.dtype == dtype and e.shape == (20000, 3)
    assert (e[:, 1] >= 0).all() and (e[:, 1] <= 180).all()
    assert (e[:, [0, 2]] > -180).all() and (e[:, [0, 2]] <= 180).all()
    assert (euler_to_matrix(e) - R).abs().max() < TOL[dtype]
    # angles themselves come back (away from gimbal lock they are unique)
    ang = _random_angles(2000, seed=4, dtype=torch.float64)
    ang = ang[(ang[:, 1] > 1) & (ang[:, 1] < 179)]
    e64 = matrix_to_euler(euler_to_matrix(ang))
    diff = torch.remainder(e64 - ang + 180, 360) - 180
    assert diff.abs().max() < 1e-9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tilt", [0.0, 180.0, 1e-9, 180 - 1e-9, 1e-4, 180 - 1e-4, 0.5])
def test_euler_round_trip_gimbal(dtype, tilt):
    rp = torch.tensor([[30.0, 40.0], [-170.0, 100.0], [179.0, 179.0], [0.0, -45.0]], dtype=torch.float64)
    ang = torch.stack([rp[:, 0], torch.full((4,), tilt, dtype=torch.float64), rp[:, 1]], -1).to(dtype)
    R = euler_to_matrix(ang)
    e = matrix_to_euler(R)
    assert torch.isfinite(e).all()
    assert (euler_to_matrix(e) - R).abs().max() < TOL[dtype]
    if tilt in (0.0, 180.0):
        # exact gimbal lock: everything in rot, psi = 0, tilt exact
        assert (e[:, 2] == 0).all() and (e[:, 1] == tilt).all()
        s = 1.0 if tilt == 0.0 else -1.0  # tilt 0: rot + psi matters; tilt 180: rot - psi
        expected = torch.remainder(rp[:, 0] + s * rp[:, 1] + 180, 360) - 180
        diff = torch.remainder(e[:, 0].double() - expected + 180, 360) - 180
        assert diff.abs().max() < (1e-4 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quaternions(dtype):
    R = random_rotations(5000, generator=torch.Generator().manual_seed(5), dtype=dtype)
    q = matrix_to_quaternion(R)
    assert q.dtype == dtype and (q[:, 0] >= 0).all()
    assert (torch.linalg.vector_norm(q, dim=-1) - 1).abs().max() < TOL[dtype]
    assert (quaternion_to_matrix(q) - R).abs().max() < TOL[dtype]
    # scipy agrees (scalar-last there), up to the sign of q
    qs = torch.tensor(Rotation.from_matrix(R.double().numpy()).as_quat()[:, [3, 0, 1, 2]], dtype=dtype)
    qs = torch.where(qs[:, :1] < 0, -qs, qs)
    assert (q - qs).abs().max() < 10 * TOL[dtype]
    # Euler <-> quaternion both ways
    ang = matrix_to_euler(R)
    assert (quaternion_to_matrix(euler_to_quaternion(ang)) - R).abs().max() < TOL[dtype]
    assert (euler_to_matrix(quaternion_to_euler(q)) - R).abs().max() < TOL[dtype]


def test_quaternion_near_pi_rotations_stable():
    # rotations by ~180 degrees make w ~ 0: Shepperd's branch selection must keep full accuracy
    axes = torch.randn(200, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    R = axis_angle_to_matrix(axes, torch.full((200,), 180.0 - 1e-7, dtype=torch.float64))
    q = matrix_to_quaternion(R)
    assert (quaternion_to_matrix(q) - R).abs().max() < 1e-14
    n = axes / axes.norm(dim=-1, keepdim=True)
    assert (q[:, 1:].abs() - n.abs()).abs().max() < 1e-9


def test_random_rotations_haar_and_reproducible():
    R = random_rotations(40000, generator=torch.Generator().manual_seed(7))
    R2 = random_rotations(40000, generator=torch.Generator().manual_seed(7))
    assert torch.equal(R, R2)
    # Haar measure: E[R] = 0, and the rotation angle has density (1 - cos θ)/π on [0, π]
    assert R.mean(0).abs().max() < 0.02
    theta = torch.arccos(((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)).numpy()
    hist, edges = np.histogram(theta, bins=10, range=(0, math.pi))
    cdf = (edges - np.sin(edges)) / math.pi
    expected = np.diff(cdf) * len(theta)
    assert np.abs(hist - expected).max() < 5 * np.sqrt(expected.max())
    # the viewing direction (third column) is uniform on the sphere: cos(tilt) uniform in [-1, 1]
    h2, _ = np.histogram(R[:, 2, 2].numpy(), bins=10, range=(-1, 1))
    assert np.abs(h2 - 4000).max() < 5 * np.sqrt(4000)


def test_axis_angle_and_rotation_z():
    a = torch.tensor([10.0, -75.0, 190.0], dtype=torch.float64)
    Rz = rotation_z(a)
    ref = Rotation.from_euler("z", a.numpy()[:, None], degrees=True).as_matrix()
    np.testing.assert_allclose(Rz.numpy(), ref, atol=1e-15)
    np.testing.assert_allclose(
        axis_angle_to_matrix(torch.tensor([0.0, 0.0, 2.0]).double(), a).numpy(), ref, atol=1e-15
    )
    axis = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    ref2 = Rotation.from_rotvec(np.radians(33.0) * axis.numpy() / np.linalg.norm(axis.numpy())).as_matrix()
    np.testing.assert_allclose(axis_angle_to_matrix(axis, 33.0).numpy(), ref2, atol=1e-15)
    # the label composes as Rz(rot) Ry(tilt) Rz(psi)
    ang = torch.tensor([25.0, 60.0, -110.0], dtype=torch.float64)
    Ry = axis_angle_to_matrix(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), ang[1])
    np.testing.assert_allclose(
        euler_to_matrix(ang).numpy(), (rotation_z(ang[0]) @ Ry @ rotation_z(ang[2])).numpy(), atol=1e-15
    )


def test_dtype_preserved_and_int_input():
    assert euler_to_matrix(torch.zeros(3, dtype=torch.float32)).dtype == torch.float32
    assert euler_to_matrix(np.zeros(3, dtype=np.float32)).dtype == torch.float32
    assert euler_to_matrix([0, 90, 0]).dtype == torch.float64
    assert matrix_to_euler(torch.eye(3, dtype=torch.float32)).dtype == torch.float32
    assert quaternion_to_matrix(torch.tensor([1.0, 0, 0, 0], dtype=torch.float32)).dtype == torch.float32


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="angles"):
        euler_to_matrix(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="R"):
        matrix_to_euler(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="zero length"):
        axis_angle_to_matrix(torch.zeros(3), 10.0)
