"""SO(3) HEALPix grid, nearest-rotation lookup and the factorised Wigner-D output tables."""

from __future__ import annotations

import math

import pytest
import torch

from cesped.geometry.errors import angular_distance
from cesped.geometry.rotations import random_rotations
from cesped.models.so3_grid import (
    OutputGrid,
    flat_wigner,
    grid_size,
    healpix_so3_angles,
    nearest_rotation_index,
    so3_grid_matrices,
)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_grid_has_72_8_order_distinct_rotations(order):
    R = so3_grid_matrices(order)
    assert R.shape == (72 * 8**order, 3, 3) and grid_size(order) == R.shape[0]
    eye = torch.eye(3, dtype=R.dtype)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye.expand_as(R), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[0], dtype=R.dtype))
    # the grid equals e3nn's Ry(a) Rx(b) Ry(g) for the same angles (independent implementation)
    from e3nn import o3

    torch.testing.assert_close(R, o3.angles_to_matrix(*healpix_so3_angles(order)))
    assert float(_nn_distances(order).min()) > 1.0  # no duplicates


def _nn_distances(order):
    """Geodesic distance (degrees) of each grid rotation to its nearest neighbour: cos θ = (tr(AᵀB) - 1)/2."""
    v = so3_grid_matrices(order).reshape(-1, 9)
    tr = v @ v.T
    tr.fill_diagonal_(-math.inf)
    return torch.rad2deg(torch.arccos(((tr.max(1).values - 1) / 2).clamp(-1, 1)))


def test_grid_is_uniform():
    nn2, nn1 = _nn_distances(2), _nn_distances(1)
    # 8x more rotations in 3 dimensions: spacing halves
    assert 1.8 < float(nn1.median() / nn2.median()) < 2.2
    # the spread of nearest-neighbour distances does not grow with the order
    assert float(nn2.max() / nn2.min()) < 1.2 * float(nn1.max() / nn1.min()) + 0.1
    # equal-volume cells: Haar-random rotations fall into the (pixel, gamma-bin) cells evenly
    import healpy as hp

    gen = torch.Generator().manual_seed(0)
    Q = random_rotations(200_000, gen)
    v = Q[:, :, 1]  # R e_y: e3nn (x, y, z) -> HEALPix (z, x, y)
    nside, ng = 4, 24
    theta = torch.arccos(v[:, 1].clamp(-1, 1)).numpy()
    phi = torch.atan2(v[:, 0], v[:, 2]).numpy()
    pix = torch.as_tensor(hp.ang2pix(nside, theta, phi))
    assert pix.unique().numel() == 12 * nside**2
    counts = torch.bincount(pix, minlength=12 * nside**2).double()
    expected = len(Q) / counts.numel()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < counts.numel() + 5 * math.sqrt(2 * counts.numel())
    assert ng * 12 * nside**2 == grid_size(2)


def test_nearest_rotation_matches_brute_force():
    grid = so3_grid_matrices(2)
    q = random_rotations(300, torch.Generator().manual_seed(1))
    idx = nearest_rotation_index(q, grid, chunk_size=1000)  # several chunks
    d = angular_distance(q[:, None], grid[None])
    ref = d.argmin(1)
    got = d.gather(1, idx[:, None])[:, 0]
    torch.testing.assert_close(got, d.min(1).values, atol=1e-9, rtol=0)
    assert float((idx == ref).double().mean()) > 0.99  # ties aside, the same index


@pytest.mark.parametrize("lmax", [3, 6])
def test_factorised_logits_equal_brute_force(lmax, tmp_path):
    grid = OutputGrid(lmax, 2, cache_dir=tmp_path)
    x = torch.randn(
        3, sum((2 * l + 1) ** 2 for l in range(lmax + 1)), generator=torch.Generator().manual_seed(2)
    )
    W = flat_wigner(lmax, *healpix_so3_angles(2)).float()  # (N, dim), the 1-GB-at-order-4 table
    ref = x @ W.T
    got = grid.logits(x)
    torch.testing.assert_close(got, ref, atol=1e-4 * float(ref.abs().max()), rtol=0)
    v, i = grid.topk(x, 5, pix_chunk=37)
    rv, ri = ref.topk(5, 1)
    torch.testing.assert_close(v, rv, atol=1e-4 * float(ref.abs().max()), rtol=0)
    assert torch.equal(i, ri)
    torch.testing.assert_close(grid.logsumexp(x, pix_chunk=50), torch.logsumexp(ref, 1), rtol=1e-5, atol=1e-4)
    # grid rotations used for labels agree with the table's rotations
    torch.testing.assert_close(grid.rotations(torch.arange(grid.size)), so3_grid_matrices(2).float())


def test_gamma_rotation_is_sparse():
    """The factorisation relies on D^l(0, 0, g) having non-zeros only at [m, m] and [m, 2l - m]."""
    from e3nn import o3

    g = torch.linspace(0, 2 * math.pi, 13, dtype=torch.float64)
    for l in range(7):
        d = o3.wigner_D(l, torch.zeros_like(g), torch.zeros_like(g), g)
        mask = torch.eye(2 * l + 1, dtype=torch.bool) | torch.eye(2 * l + 1, dtype=torch.bool).flip(-1)
        if l > 0:
            assert float(d[:, ~mask].abs().max()) < 1e-12


def test_tables_are_cached_and_not_persistent(tmp_path):
    g = OutputGrid(4, 1, cache_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "so3_tables").iterdir())
    assert files == ["gamma_L4_o1.pt", "pix_L4_o1.pt"]
    assert len(g.state_dict()) == 0
    g2 = OutputGrid(4, 1, cache_dir=tmp_path)  # loaded from the cache
    torch.testing.assert_close(g2.pix_table, g.pix_table)


def test_order5_prediction_without_full_table(tmp_path):
    grid = OutputGrid(2, 5, cache_dir=tmp_path)
    assert grid.size == 2_359_296
    assert grid.pix_table.numel() < 12 * 32**2 * 35 + 1  # per-pixel table only
    x = torch.randn(2, 35, generator=torch.Generator().manual_seed(3))
    v, i = grid.topk(x, 1)
    # the winner's value equals the signal evaluated directly at that rotation
    a, b, g = (t[i[:, 0]] for t in healpix_so3_angles(5))
    direct = (flat_wigner(2, a, b, g).float() * x).sum(1)
    torch.testing.assert_close(v[:, 0], direct, atol=1e-4, rtol=1e-4)


def test_so3_activation_equals_e3nn(tmp_path):
    import e3nn.nn

    from cesped.models.s2_so3 import SO3Activation

    torch.manual_seed(7)
    ours = SO3Activation(4, resolution=6, cache_dir=tmp_path)
    ref = e3nn.nn.SO3Activation(4, 4, torch.relu, 6)
    x = torch.randn(3, 2, 165)
    torch.testing.assert_close(ours(x), ref(x), atol=2e-4, rtol=2e-4)
    assert len(ours.state_dict()) == 0


def test_so3_activation_grid_round_trip_is_exact_from_resolution_lmax_plus_1(tmp_path):
    """With the identity as activation, to_grid -> from_grid returns the input (quadrature exactness)."""
    from cesped.models.s2_so3 import SO3Activation

    x = torch.randn(2, 165, generator=torch.Generator().manual_seed(8))
    exact = SO3Activation(4, resolution=5, act=lambda t: t, cache_dir=tmp_path)
    y = exact(x)
    c = float((y * x).sum() / (x * x).sum())  # normalize2mom's Monte-Carlo scale of the identity, ~1
    assert abs(c - 1) < 0.01
    torch.testing.assert_close(y, c * x, atol=1e-4 * float(x.abs().max()), rtol=0)
    coarse = SO3Activation(4, resolution=3, act=lambda t: t, cache_dir=tmp_path)
    assert float((coarse(x) - x).abs().max()) > 1e-2 * float(x.abs().max())
