"""A stack header whose pixel size disagrees with the star is reported with both values (issue 13, §4)."""

from __future__ import annotations

import json
import warnings

import mrcfile
import numpy as np
import pytest

from cesped.particlesDataset import ParticlesDataset, preprocess_entry

from ._helpers import tiny_tables, write_entry

RAW = dict(apply_perImg_normalization=False, ctf_correction="none", image_size_factor_for_crop=0.0)


def _entry(tmp_path, header_px):
    parts, optics = tiny_tables(6, 16, pixel_size=1.5)
    d = write_entry(tmp_path, "px", 0, np.zeros((6, 16, 16), np.float32), parts, optics)
    with mrcfile.open(d / "particles_0.mrcs", mode="r+") as m:
        m.voxel_size = header_px
    return d


def test_disagreeing_header_warns_and_is_recorded(tmp_path):
    d = _entry(tmp_path, 2.0)
    with pytest.warns(
        UserWarning, match=r"rlnImagePixelSize 1.5 Å/px disagrees .*particles_0.mrcs \(2 Å/px\)"
    ):
        ds = ParticlesDataset("px", 0, benchmarkDir=tmp_path, **RAW)
    assert ds.original_sampling_rate == 1.5  # the star's value, as RELION
    rec = ds.pixel_size_mismatch
    assert rec["star_pixel_size"] == 1.5 and rec["header_pixel_size"] == pytest.approx(2.0)
    assert rec["stack"] == str((d / "particles_0.mrcs").resolve())
    assert "header pixel size 2 Å/px ignored" in repr(ds)
    with pytest.warns(UserWarning, match="disagrees"):
        star = preprocess_entry("px", 0, tmp_path / "pre", benchmarkDir=tmp_path, progress=False)
    info = json.loads((star.parent / "info_0.json").read_text())
    assert info["pixel_size_mismatch"]["header_pixel_size"] == pytest.approx(2.0)


@pytest.mark.parametrize("header_px", [0.0, 1.5])
def test_agreeing_or_unset_header_is_silent(tmp_path, header_px):
    _entry(tmp_path, header_px)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ds = ParticlesDataset("px", 0, benchmarkDir=tmp_path, **RAW)
    assert ds.pixel_size_mismatch is None


def test_add_entry_records_the_disagreement(tmp_path):
    d = _entry(tmp_path, 2.5)
    with pytest.warns(UserWarning, match=r"\(2.5 Å/px\)"):
        out = ParticlesDataset.addNewEntryLocally(
            d / "particles_0.star", d, "mine", 0, "C1", benchmarkDir=tmp_path / "b"
        )
    info = json.loads((out / "info_0.json").read_text())
    assert info["pixel_size_mismatch"]["star_pixel_size"] == 1.5
