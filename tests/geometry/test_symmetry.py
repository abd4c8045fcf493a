"""Point groups: names, orders, closure, axes, and agreement with RELION's own symmetry library."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cesped.geometry.symmetry import normalize_symmetry, symmetry_matrices, symmetry_order

GROUPS = ["C1", "C2", "C4", "C7", "D2", "D3", "D7", "T", "O", "I", "I1", "I2", "I3", "I4"]
ORDERS = {"C1": 1, "C2": 2, "C4": 4, "C7": 7, "D2": 4, "D3": 6, "D7": 14, "T": 12, "O": 24, "I": 60}


def _same_set(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    d = np.abs(a[:, None] - b[None]).max(axis=(2, 3))
    return len(a) == len(b) and d.min(1).max() < tol and d.min(0).max() < tol


@pytest.mark.parametrize("name", GROUPS)
def test_closed_orthonormal_and_orders(name):
    G = symmetry_matrices(name).numpy()
    n = len(G)
    assert n == symmetry_order(name)
    if name in ORDERS:
        assert n == ORDERS[name]
    np.testing.assert_allclose(G[0], np.eye(3), atol=1e-15)
    np.testing.assert_allclose(G @ np.swapaxes(G, 1, 2), np.broadcast_to(np.eye(3), G.shape), atol=1e-13)
    np.testing.assert_allclose(np.linalg.det(G), 1.0, atol=1e-13)
    # distinct elements, and every product (and inverse) is again an element
    d = np.abs(G[:, None] - G[None]).max(axis=(2, 3))
    assert (d + np.eye(n) * 10).min() > 1e-3
    prod = (G[:, None] @ G[None]).reshape(-1, 3, 3)
    assert np.abs(prod[:, None] - G[None]).max(axis=(2, 3)).min(1).max() < 1e-12
    assert _same_set(np.swapaxes(G, 1, 2), G, 1e-12)


def test_axis_conventions():
    # Cn: n-fold about z; Dn: plus a two-fold about x (RELION)
    c5 = symmetry_matrices("C5").numpy()
    ref = Rotation.from_euler("z", [[360 * k / 5] for k in range(5)], degrees=True).as_matrix()
    assert _same_set(c5, ref, 1e-12)
    d7 = symmetry_matrices("D7").numpy()
    flip_x = np.diag([1.0, -1.0, -1.0])
    assert np.abs(d7 - flip_x).max(axis=(1, 2)).min() < 1e-12
    # scipy's D_n uses the same axes (n-fold on z, two-fold on x); its C_n is also about z
    for name in ("C2", "C4", "D2", "D3", "D7"):
        sc = Rotation.create_group(name, axis="Z").as_matrix()
        assert _same_set(symmetry_matrices(name).numpy(), sc, 1e-12), name
    # O: RELION's 4-fold on z and 3-fold on (1,1,1) are the cube's axes, as scipy's O
    assert _same_set(symmetry_matrices("O").numpy(), Rotation.create_group("O").as_matrix(), 1e-12)
    # T: RELION puts a three-fold on z (scipy's T has two-folds on x, y, z: a different setting)
    t = symmetry_matrices("T").numpy()
    assert np.abs(t - Rotation.from_euler("z", 120, degrees=True).as_matrix()).max(axis=(1, 2)).min() < 1e-12
    assert not _same_set(t, Rotation.create_group("T").as_matrix(), 1e-3)
    # I = I2: two-fold on z, five-fold on (0.525731, 0, 0.850651)
    i2 = symmetry_matrices("I").numpy()
    assert np.array_equal(i2, symmetry_matrices("I2").numpy())
    five = Rotation.from_rotvec(np.radians(72) * np.array([0.525731112, 0.0, 0.850650808])).as_matrix()
    assert np.abs(i2 - five).max(axis=(1, 2)).min() < 1e-8


def test_names_and_dtype():
    assert normalize_symmetry("c2") == "C2"
    assert normalize_symmetry(" d7 ") == "D7"
    assert normalize_symmetry("i") == "I"
    G = symmetry_matrices("d2", dtype=torch.float32)
    assert G.dtype == torch.float32 and G.shape == (4, 3, 3)


@pytest.mark.parametrize("bad", ["X", "C0", "D1", "C2v", "D3h", "Ih", "I5", "", "C-2", "CC", 2])
def test_unknown_symmetry_raises(bad):
    with pytest.raises(ValueError, match="symmetry"):
        symmetry_matrices(bad)
    with pytest.raises(ValueError, match="symmetry"):
        symmetry_order(bad)


def _relion_symmetry_ops(sym: str, cwd) -> tuple[np.ndarray, np.ndarray]:
    """Matrices and Euler angles printed by ``relion_refine --print_symmetry_ops`` (RELION 3.1)."""
    out = subprocess.run(
        ["relion_refine", "--print_symmetry_ops", "--sym", sym],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    ).stdout
    lines = out.splitlines()
    mats, angles = [], []
    for i, line in enumerate(lines):
        if re.match(r"\s*R\(\d+\)=", line):
            mats.append([[float(v) for v in lines[i + k].split()] for k in (1, 2, 3)])
            m = (
                re.match(r"\s*Euler angles:\s*(\S+)\s+(\S+)\s+(\S+)", lines[i + 4])
                if i + 4 < len(lines)
                else None
            )
            angles.append([float(v) for v in m.groups()] if m else [np.nan] * 3)
    return np.array(mats), np.array(angles)


@pytest.mark.relion
@pytest.mark.parametrize("name", ["C1", "C5", "D2", "D7", "T", "O", "I", "I1", "I2", "I3", "I4"])
def test_groups_match_relion(name, tmp_path):
    if shutil.which("relion_refine") is None:
        pytest.skip("relion_refine not on PATH")
    mats, _ = _relion_symmetry_ops(name, tmp_path)
    assert len(mats) == symmetry_order(name)
    # RELION prints 5 significant digits
    assert _same_set(symmetry_matrices(name).numpy(), mats, 2e-4)
