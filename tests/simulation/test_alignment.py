"""Symmetry-axis alignment: synthetic oligomers with a known axis, and the built-in C2 model."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cesped.physics.potential import read_atoms, read_structure, voxelize_atoms
from cesped.simulation.alignment import align_and_symmetrize, find_cyclic_axis, kabsch, rotation_to_z
from cesped.simulation.presets import resolve_structure

from ..physics._models import make_structure, random_chain


def _oligomer(order, axis, point, seed=0):
    """n copies of a random chain related by rotations of 360/n about (axis, point)."""
    base = np.array([a[2] for a in random_chain(30, seed)]) + np.array([10.0, 0, 0])
    rot = Rotation.from_rotvec(np.asarray(axis) / np.linalg.norm(axis) * 2 * math.pi / order).as_matrix()
    chains, coords = {}, base
    for k in range(order):
        chains["ABCDEFG"[k]] = [("CA", "C", tuple(p + point)) for p in coords]
        coords = coords @ rot.T
    return make_structure(chains)


@pytest.mark.parametrize("order", [2, 3, 5])
def test_find_axis_of_synthetic_oligomer(order):
    axis = np.array([0.3, -0.5, 0.8])
    axis /= np.linalg.norm(axis)
    point = np.array([5.0, -3.0, 2.0])
    found = find_cyclic_axis(_oligomer(order, axis, point), order)
    assert abs(abs(found["axis"] @ axis) - 1) < 1e-6
    # the found point lies on the true axis
    d = found["point"] - point
    assert np.linalg.norm(d - (d @ axis) * axis) < 1e-6
    assert found["rmsd"] < 1e-3


def test_wrong_order_is_refused():
    st = _oligomer(3, [0, 0, 1], np.zeros(3))
    with pytest.raises(ValueError, match="not a multiple"):
        find_cyclic_axis(st, 2)
    with pytest.raises(ValueError, match="two protein chains"):
        find_cyclic_axis(make_structure({"A": random_chain(10, 1)}), 2)


def test_kabsch_and_rotation_to_z():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 3))
    r = Rotation.random(random_state=1).as_matrix()
    rot, t, rmsd = kabsch(a, a @ r.T + [1.0, 2.0, 3.0])
    np.testing.assert_allclose(rot, r, atol=1e-10)
    np.testing.assert_allclose(t, [1.0, 2.0, 3.0], atol=1e-10)
    for u in ([1, 2, 3], [0, 0, -1], [0, 0, 1]):
        q = rotation_to_z(u)
        np.testing.assert_allclose(q @ (np.array(u) / np.linalg.norm(u)), [0, 0, 1], atol=1e-12)
        assert np.linalg.det(q) == pytest.approx(1.0)


def _c2_correlation(vol):
    """Correlation of a (z, y, x) map with its 180° rotation about Z through voxel n // 2."""
    rot = np.zeros_like(vol)
    rot[:, 1:, 1:] = vol[:, 1:, 1:][:, ::-1, ::-1]
    return np.corrcoef(vol.ravel(), rot.ravel())[0, 1]


def test_builtin_4e43_is_c2_about_z_after_alignment():
    path = resolve_structure("4e43")
    st = read_structure(path)
    model = read_atoms(st)
    found = find_cyclic_axis(st, 2)
    assert abs(found["angle"] - 180) < 5 and found["rmsd"] < 1.5
    aligned, info = align_and_symmetrize(model, "C2", structure=st)
    vol = voxelize_atoms(aligned.coords, aligned.elements, 3.0, 64, weights=aligned.occupancies)
    assert _c2_correlation(vol) > 0.999
    # without symmetrising, the (nearly symmetric) protein is still close to C2 about Z ...
    raw, _ = align_and_symmetrize(model, "C2", structure=st, symmetrize=False)
    vol_raw = voxelize_atoms(raw.coords, raw.elements, 3.0, 64, weights=raw.occupancies)
    assert _c2_correlation(vol_raw) > 0.85
    # ... while the unaligned model is not
    c1, _ = align_and_symmetrize(model, "C1")
    vol_c1 = voxelize_atoms(c1.coords, c1.elements, 3.0, 64, weights=c1.occupancies)
    assert _c2_correlation(vol_c1) < 0.6
    assert info["aligned"] and info["symmetrized"]
