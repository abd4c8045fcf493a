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
