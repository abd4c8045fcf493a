"""Atomic potential: analytic integrals and projections of Peng Gaussians, file formats, errors."""

import math
import warnings

import mrcfile
import numpy as np
import pytest

from cesped.physics.potential import (
    PENG_FACTORS,
    POTENTIAL_CONSTANT,
    potential_from_map,
    potential_from_model,
    read_atoms,
    voxelize_atoms,
)

from ._models import make_structure, random_chain, write_structure


def _peng_integral(element):
    # integral of C sum_i a_i (4 pi / b_i)^1.5 exp(-4 pi^2 r^2 / b_i) over R^3 = C sum_i a_i
    return POTENTIAL_CONSTANT * sum(PENG_FACTORS[element][0])


@pytest.mark.parametrize("element", ["C", "O", "S", "Zn"])
def test_single_atom_integral(element):
    px = 0.8
    vol = voxelize_atoms([[0.37, -0.81, 1.23]], [element], px, 32)
    assert vol.shape == (32, 32, 32) and vol.dtype == np.float32
    assert float(vol.sum(dtype=np.float64)) * px**3 == pytest.approx(_peng_integral(element), rel=1e-4)


def test_single_atom_projection_matches_analytic_2d_gaussians():
    """Projected potential (sum over z times the voxel size) vs the analytic 2-D projection.

    With a B-factor the Gaussians are broad compared with the 0.1 Å voxels, so sampling the
    analytic projection at the pixel centres is accurate to ~0.1 %.
    """
    px, box, bfac = 0.1, 128, 30.0
    pos = np.array([0.033, -0.047, 0.02])
    vol = voxelize_atoms([pos], ["C"], px, box, bfactor=bfac).astype(np.float64)
    proj = vol.sum(axis=0) * px  # V Å
    x = (np.arange(box) - box // 2) * px
    yy, xx = np.meshgrid(x, x, indexing="ij")
    r2 = (xx - pos[0]) ** 2 + (yy - pos[1]) ** 2
    a, b = PENG_FACTORS["C"]
    expected = np.zeros_like(r2)
    for ai, bi in zip(a, b):
        bt = bi + bfac
        # 2-D projection of (4 pi / b)^1.5 exp(-4 pi^2 r^2 / b): (4 pi / b) exp(-4 pi^2 rho^2 / b)
        expected += POTENTIAL_CONSTANT * ai * (4 * math.pi / bt) * np.exp(-4 * math.pi**2 * r2 / bt)
    np.testing.assert_allclose(proj, expected, atol=3e-3 * expected.max())
    assert float(proj.sum() * px**2) == pytest.approx(_peng_integral("C"), rel=1e-4)


def test_bfactor_keeps_integral_and_lowers_peak():
    v0 = voxelize_atoms([[0, 0, 0]], ["N"], 1.0, 24)
    v1 = voxelize_atoms([[0, 0, 0]], ["N"], 1.0, 24, bfactor=50.0)
    assert v1.sum() == pytest.approx(v0.sum(), rel=1e-4)
    assert v1.max() < 0.5 * v0.max()


def test_linear_and_translation_covariant():
    a = voxelize_atoms([[1.0, 2.0, -1.0]], ["C"], 1.5, 24, bfactor=10)
    b = voxelize_atoms([[-2.0, 0.5, 3.0]], ["O"], 1.5, 24, bfactor=10)
    both = voxelize_atoms([[1.0, 2.0, -1.0], [-2.0, 0.5, 3.0]], ["C", "O"], 1.5, 24, bfactor=10)
    np.testing.assert_allclose(both, a + b, rtol=1e-5, atol=1e-6 * both.max())
    shifted = voxelize_atoms([[1.0 + 1.5, 2.0, -1.0 - 3.0]], ["C"], 1.5, 24, bfactor=10)
    np.testing.assert_allclose(shifted, np.roll(a, (-2, 0, 1), axis=(0, 1, 2)), atol=1e-6 * a.max())


def test_voxel_axes_are_zyx():
    vol = voxelize_atoms([[6.0, 0.0, 0.0]], ["C"], 1.0, 32)  # atom on +x
    z, y, x = np.unravel_index(np.argmax(vol), vol.shape)
    assert (z, y, x) == (16, 16, 22)


@pytest.mark.parametrize("name", ["m.pdb", "m.pdb.gz", "m.pdb.bz2", "m.cif", "m.cif.gz"])
def test_file_formats_and_centre_of_mass(tmp_path, name):
    st = make_structure({"A": random_chain(40, seed=1)})
    ref = potential_from_model(st, 2.0, 32)
    vol = potential_from_model(write_structure(st, tmp_path / name), 2.0, 32)
    # files store coordinates to 1e-3 Å
    np.testing.assert_allclose(vol, ref, rtol=0, atol=5e-3 * ref.max())
    assert len(read_atoms(st)) == 40


def test_centred_on_centre_of_mass():
    # two atoms of different mass: the centre of mass (not the centroid) lands on the box centre
    st = make_structure({"A": [("CA", "C", (10.0, 3.0, -2.0)), ("SG", "S", (16.0, 3.0, -2.0))]})
    m_c, m_s = 12.011, 32.06
    com_x = (10.0 * m_c + 16.0 * m_s) / (m_c + m_s)
    vol = potential_from_model(st, 0.5, 48)
    line = vol[24, 24, :]
    peaks = sorted(np.argsort(line)[-2:])
    x_c, x_s = (np.array(peaks) - 24) * 0.5
    assert x_c == pytest.approx(10.0 - com_x, abs=0.5)
    assert x_s == pytest.approx(16.0 - com_x, abs=0.5)


def test_hydrogens_and_waters_filtered():
    st = make_structure({"A": [("CA", "C", (0, 0, 0)), ("HA", "H", (1.0, 0, 0))]})
    assert len(read_atoms(st)) == 1
    assert len(read_atoms(st, hydrogens=True)) == 2
    with_h = potential_from_model(st, 1.0, 24, hydrogens=True)
    without = potential_from_model(st, 1.0, 24)
    assert with_h.sum() == pytest.approx(without.sum() + _peng_integral("H"), rel=1e-3)


def test_unknown_element_warns_and_is_skipped():
    known = voxelize_atoms([[0, 0, 0]], ["C"], 1.0, 24)
    with pytest.warns(UserWarning, match="Xe"):
        vol = voxelize_atoms([[0, 0, 0], [2, 0, 0]], ["C", "Xe"], 1.0, 24)
    np.testing.assert_array_equal(vol, known)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no atom with known"):
            voxelize_atoms([[0, 0, 0]], ["Xe"], 1.0, 24)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no atoms"):
        voxelize_atoms(np.zeros((0, 3)), [], 1.0, 16)
    empty = make_structure({})
    with pytest.raises(ValueError, match="no atoms"):
        potential_from_model(empty, 1.0, 16)
    st = make_structure({"A": [("CA", "C", (0, 0, 0)), ("CB", "C", (30.0, 0, 0))]})
    with pytest.raises(ValueError, match=r"box too small.*at least \d+ px"):
        potential_from_model(st, 1.0, 24)
    with pytest.raises(ValueError, match="pixel_size"):
        voxelize_atoms([[0, 0, 0]], ["C"], 0.0, 16)
    with pytest.raises(FileNotFoundError):
        potential_from_model(tmp_path / "missing.pdb", 1.0, 16)
    bad = tmp_path / "bad.pdb"
    bad.write_text("this is not a PDB file\n")
    with pytest.raises(ValueError):
        potential_from_model(bad, 1.0, 16)


def test_box_too_small_message_gives_a_box_that_works():
    st = make_structure({"A": [("CA", "C", (0, 0, 0)), ("CB", "C", (20.0, 0, 0))]})
    with pytest.raises(ValueError) as info:
        potential_from_model(st, 1.0, 16)
    needed = int(str(info.value).split("at least ")[1].split(" px")[0])
    assert potential_from_model(st, 1.0, needed).shape == (needed,) * 3


def _write_mrc(path, data, voxel):
    with mrcfile.new(str(path), overwrite=True) as m:
        m.set_data(np.asarray(data, dtype=np.float32))
        m.voxel_size = voxel


def test_map_source_resampling(tmp_path):
    st = make_structure({"A": random_chain(60, seed=2)})
    fine = potential_from_model(st, 1.0, 64, bfactor=150.0)
    _write_mrc(tmp_path / "fine.mrc", fine, 1.0)
    coarse = potential_from_map(tmp_path / "fine.mrc", 2.0, 40)
    direct = potential_from_model(st, 2.0, 40, bfactor=150.0)
    assert coarse.shape == (40, 40, 40)
    assert np.corrcoef(coarse.ravel(), direct.ravel())[0, 1] > 0.99
    assert coarse.sum() * 8 == pytest.approx(fine.sum(), rel=0.02)
    same = potential_from_map(tmp_path / "fine.mrc", 1.0, 64)
    np.testing.assert_allclose(same, fine, atol=1e-5 * fine.max())


def test_map_source_errors(tmp_path):
    _write_mrc(tmp_path / "flat.mrc", np.zeros((8, 16, 16)), 1.0)
    with pytest.raises(ValueError, match="cubic"):
        potential_from_map(tmp_path / "flat.mrc", 1.0, 16)
    blob = np.zeros((32, 32, 32))
    blob[4:28, 4:28, 4:28] = 1.0
    _write_mrc(tmp_path / "big.mrc", blob, 1.0)
    with pytest.raises(ValueError, match="box too small"):
        potential_from_map(tmp_path / "big.mrc", 1.0, 16)
    with pytest.raises(FileNotFoundError):
        potential_from_map(tmp_path / "nope.mrc", 1.0, 16)
