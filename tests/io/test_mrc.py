"""MRC maps: round trip with voxel size, bad input, atomic writes."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import torch

from cesped.io.mrc import read_map, write_map


def test_round_trip_and_header(tmp_path):
    vol = np.random.default_rng(0).normal(size=(6, 7, 8))
    write_map(tmp_path / "m.mrc", torch.from_numpy(vol), 1.7)
    out, vs = read_map(tmp_path / "m.mrc")
    assert out.dtype == np.float32 and out.shape == (6, 7, 8)
    np.testing.assert_array_equal(out, vol.astype(np.float32))
    assert vs == pytest.approx(1.7)
    # an independent reader sees (z, y, x) = (6, 7, 8): nx = 8, nz = 6
    with mrcfile.open(tmp_path / "m.mrc") as m:
        assert (int(m.header.nx), int(m.header.ny), int(m.header.nz)) == (8, 7, 6)
        assert m.is_volume() and m.voxel_size.z == pytest.approx(1.7)
        assert float(m.header.dmax) == pytest.approx(vol.max(), rel=1e-6)


def test_read_map_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mrc"):
        read_map(tmp_path / "missing.mrc")
    with mrcfile.new(tmp_path / "img.mrc") as m:
        m.set_data(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"img\.mrc.*3-D"):
        read_map(tmp_path / "img.mrc")
    write_map(tmp_path / "t.mrc", np.ones((8, 8, 8)), 1.0)
    data = (tmp_path / "t.mrc").read_bytes()
    (tmp_path / "t.mrc").write_bytes(data[:-200])
    with pytest.raises(ValueError, match=r"t\.mrc"):
        read_map(tmp_path / "t.mrc")


def test_write_map_errors_and_atomicity(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="voxel_size"):
        write_map(tmp_path / "a.mrc", np.zeros((2, 2, 2)), -1.0)
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        write_map(tmp_path / "a.mrc", np.zeros((2, 2)), 1.0)
    write_map(tmp_path / "a.mrc", np.zeros((2, 2, 2)), 1.0)
    before = (tmp_path / "a.mrc").read_bytes()

    def boom(self):
        raise OSError("disk full")

    monkeypatch.setattr(mrcfile.mrcfile.MrcFile, "update_header_stats", boom)
    with pytest.raises(OSError):
        write_map(tmp_path / "a.mrc", np.ones((4, 4, 4)), 1.0)
    assert (tmp_path / "a.mrc").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.mrc"]


@pytest.mark.parametrize("axes", [(3, 1, 2), (2, 1, 3), (3, 2, 1)])
def test_axis_order_is_brought_to_zyx(tmp_path, axes):
    """A file whose columns/rows/sections run along MAPC/MAPR/MAPS != x/y/z is read as (z, y, x).

    Before: read as stored (transposed). Reference: the MRC2014 definition, the data block
    being (sections, rows, columns) with column axis MAPC etc., written with mrcfile.
    """
    vol = np.random.default_rng(1).normal(size=(4, 5, 6)).astype(np.float32)  # (z, y, x)
    zyx_axis = {3: 0, 2: 1, 1: 2}  # x/y/z (1/2/3) -> axis of vol
    mapc, mapr, maps = axes
    stored = vol.transpose(zyx_axis[maps], zyx_axis[mapr], zyx_axis[mapc])  # (sections, rows, columns)
    with mrcfile.new(tmp_path / "p.mrc") as m:
        m.set_data(np.ascontiguousarray(stored))
        m.header.mapc, m.header.mapr, m.header.maps = mapc, mapr, maps
        m.voxel_size = 1.5
    out, vs = read_map(tmp_path / "p.mrc")
    assert out.shape == (4, 5, 6)
    np.testing.assert_array_equal(out, vol)
    assert vs == pytest.approx(1.5)


def test_invalid_axis_order_and_nonzero_origin_are_refused(tmp_path):
    vol = np.zeros((4, 4, 4), np.float32)
    with mrcfile.new(tmp_path / "bad_axes.mrc") as m:
        m.set_data(vol)
        m.header.mapc, m.header.mapr, m.header.maps = 1, 1, 3
    with pytest.raises(ValueError, match=r"bad_axes\.mrc.*axis order"):
        read_map(tmp_path / "bad_axes.mrc")
    with mrcfile.new(tmp_path / "origin.mrc") as m:
        m.set_data(vol)
        m.header.origin = (10.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"origin\.mrc.*origin is not 0"):
        read_map(tmp_path / "origin.mrc")
    with mrcfile.new(tmp_path / "start.mrc") as m:
        m.set_data(vol)
        m.header.nzstart = -2
    with pytest.raises(ValueError, match=r"start\.mrc.*NXSTART"):
        read_map(tmp_path / "start.mrc")
