"""Pose-aware augmentation: an in-plane image rotation equals a projection at the composed pose."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cesped.data.augment import MIRROR, PoseAugmenter, mirror_images, rot90_images, rotate_images, rotz
from cesped.physics.fourier import shift_images
from cesped.physics.projection import project

N = 32


@pytest.fixture(scope="module")
def volume():
    """Asymmetric volume: Gaussian blobs of different sizes/weights at chiral positions."""
    c = np.arange(N) - N // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = np.zeros((N, N, N))
    for (px, py, pz), w, s in [
        ((5, 0, 0), 1.0, 2.0),
        ((0, 8, 1), 0.7, 1.5),
        ((-2, -3, 6), 0.5, 2.5),
        ((-6, 4, -3), 1.2, 1.8),
        ((3, -7, -4), 0.6, 1.2),
    ]:
        vol += w * np.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) / (2 * s**2))
    return torch.from_numpy(vol)


@pytest.fixture(scope="module")
def poses():
    return torch.from_numpy(
        Rotation.from_euler("ZYZ", [[30, 50, 70], [-100, 120, 10], [200, 20, -45]], degrees=True).as_matrix()
    )


def corr(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


@pytest.mark.parametrize("a", [17.0, -35.0, 120.0])
def test_rotation_composes_as_R_Rz_minus_a(volume, poses, a):
    imgs = project(volume, poses)[:, None]
    angle = torch.full((len(poses),), a, dtype=torch.float64)
    rotated = rotate_images(imgs, angle, padding_mode="zeros")[:, 0]
    right = project(volume, poses @ rotz(-angle))
    wrong = project(volume, poses @ rotz(angle))
    for i in range(len(poses)):
        assert corr(rotated[i], right[i]) > 0.95
        assert corr(rotated[i], wrong[i]) < corr(rotated[i], right[i]) - 0.15
    # in Euler angles this is psi' = psi - a
    eul = Rotation.from_matrix((poses @ rotz(-angle)).numpy()).as_euler("ZYZ", degrees=True)
    eul0 = Rotation.from_matrix(poses.numpy()).as_euler("ZYZ", degrees=True)
    np.testing.assert_allclose(np.cos(np.deg2rad(eul[:, 2] - (eul0[:, 2] - a))), 1.0, atol=1e-9)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rot90_composes_as_psi_plus_90k(volume, poses, k):
    imgs = project(volume, poses)[:, None]
    rotated = rot90_images(imgs, k)[:, 0]
    # even box: the exact quarter turn keeps pixel n//2 fixed, so it matches the projection to round-off
    right = project(volume, poses @ rotz(torch.full((len(poses),), 90.0 * k, dtype=torch.float64)))
    wrong = project(volume, poses @ rotz(torch.full((len(poses),), -90.0 * k, dtype=torch.float64)))
    for i in range(len(poses)):
        assert corr(rotated[i], right[i]) > 0.999
        if k != 2:
            assert corr(rotated[i], wrong[i]) < 0.9
    # odd box: torch.rot90 itself
    assert torch.equal(
        rot90_images(imgs[..., :-1, :-1], k), torch.rot90(imgs[..., :-1, :-1], k, dims=(-2, -1))
    )


def test_mirror_is_the_projection_at_R_Ry180(volume, poses):
    imgs = project(volume, poses)[:, None]
    mirrored = mirror_images(imgs)[:, 0]
    m = torch.tensor(MIRROR, dtype=poses.dtype)
    right = project(volume, poses @ m)
    torch.testing.assert_close(mirrored, right, atol=1e-9 * float(right.abs().max()), rtol=0)
    for i in range(len(poses)):  # and it is not the same image (the volume is chiral)
        assert corr(mirrored[i], imgs[i, 0]) < 0.9
    assert torch.equal(mirror_images(mirror_images(imgs)), imgs)
    # odd box: a plain flip
    assert torch.equal(mirror_images(imgs[..., :-1, :-1]), torch.flip(imgs[..., :-1, :-1], dims=(-1,)))


def _shifted(imgs, origin_px):
    """RELION's image(x) = projection(x + origin): content moved by -origin."""
    n = imgs.shape[-1]
    ft = torch.fft.rfft2(torch.fft.ifftshift(imgs, dim=(-2, -1)))
    return torch.fft.fftshift(torch.fft.irfft2(shift_images(ft, -origin_px, n), s=(n, n)), dim=(-2, -1))


@pytest.mark.parametrize("p_mirror", [0.0, 1.0])
def test_augmenter_labels_match_images(volume, poses, p_mirror):
    """End to end: images with origins, random quarter turns, rotations, shifts, zoom -> labels."""
    pix = 1.5
    origin_px = torch.tensor([[1.5, -2.0], [0.0, 3.0], [-2.5, 1.0]], dtype=torch.float64)
    imgs = _shifted(project(volume, poses), origin_px)[:, None]
    aug = PoseAugmenter(
        seed=3,
        p_rot90=1.0,
        p_mirror=p_mirror,
        p_rotation=1.0,
        p_shift=1.0,
        p_zoom=0.0,
        p_gauss_noise=0.0,
        p_unif_noise=0.0,
        p_blur=0.0,
        p_erasing=0.0,
        padding_mode="zeros",
    )
    out, R, sh = aug(imgs, poses, origin_px * pix, pixel_size=pix)
    assert not torch.allclose(R, poses)
    expected = _shifted(project(volume, R), sh / pix)
    for i in range(len(poses)):
        assert corr(out[i, 0], expected[i]) > 0.95
    # and the labels are proper rotations
    np.testing.assert_allclose(torch.det(R).numpy(), 1.0, atol=1e-9)


def test_augmenter_zoom_label(volume, poses):
    """Zoom about the centre scales the origin: o' = s·o (no rotation, no shift)."""
    origin_px = torch.tensor([[2.0, -1.0]] * 3, dtype=torch.float64)
    imgs = _shifted(project(volume, poses), origin_px)[:, None]
    aug = PoseAugmenter(
        seed=5,
        p_rot90=0.0,
        p_rotation=0.0,
        p_shift=0.0,
        p_zoom=1.0,
        max_zoom_fraction=0.2,
        p_gauss_noise=0.0,
        p_unif_noise=0.0,
        p_blur=0.0,
        p_erasing=0.0,
    )
    out, R, sh = aug(imgs, poses, origin_px)
    torch.testing.assert_close(R, poses)
    s = sh[:, 0] / origin_px[:, 0]
    torch.testing.assert_close(sh, origin_px * s[:, None])
    assert (s - 1).abs().max() > 0.01
    centred = _shifted(out[:, 0], -sh)  # undo the new origin: the zoomed, centred projection
    ref = rotate_images(
        project(volume, poses)[:, None], torch.zeros(3, dtype=torch.float64), zoom=s, padding_mode="zeros"
    )[:, 0]
    for i in range(3):
        assert corr(centred[i], ref[i]) > 0.95


def test_deterministic_given_seed_and_all_ops_run():
    imgs = torch.randn(16, 1, 24, 24)
    R = torch.from_numpy(Rotation.random(16, random_state=0).as_matrix()).float()
    kw = dict(
        p_rotation=1.0,
        p_shift=1.0,
        p_zoom=1.0,
        p_gauss_noise=1.0,
        p_unif_noise=1.0,
        p_blur=1.0,
        p_erasing=1.0,
    )
    a = PoseAugmenter(seed=11, **kw)(imgs, R, torch.zeros(16, 2))
    b = PoseAugmenter(seed=11, **kw)(imgs, R, torch.zeros(16, 2))
    c = PoseAugmenter(seed=12, **kw)(imgs, R, torch.zeros(16, 2))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == imgs.shape and a[0].dtype == imgs.dtype and a[1].dtype == R.dtype
    assert torch.isfinite(a[0]).all()


def test_identity_when_all_probabilities_zero():
    imgs = torch.randn(4, 1, 16, 16)
    R = torch.eye(3).expand(4, 3, 3)
    aug = PoseAugmenter(
        seed=0,
        p_rot90=0.0,
        p_rotation=0.0,
        p_shift=0.0,
        p_zoom=0.0,
        p_gauss_noise=0.0,
        p_unif_noise=0.0,
        p_blur=0.0,
        p_erasing=0.0,
    )
    out, R2, sh = aug(imgs, R, torch.ones(4, 2))
    assert torch.equal(out, imgs) and torch.equal(R2, R) and torch.equal(sh, torch.ones(4, 2))


def test_bad_input():
    with pytest.raises(ValueError, match="probability"):
        PoseAugmenter(p_rotation=1.5)
    with pytest.raises(ValueError, match="rotmats"):
        PoseAugmenter(seed=0)(torch.zeros(2, 1, 8, 8), torch.eye(3).expand(3, 3, 3))
