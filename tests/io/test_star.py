"""STAR files: RELION 3.1 round trip, legacy files, optics joins, bad input, atomic writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from cesped.io import star as star_mod
from cesped.io.star import (
    StarFile,
    check_finite,
    particle_optics,
    pixel_size,
    read_star,
    require_columns,
    write_star,
)

RELION31 = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnVoltage #3
_rlnSphericalAberration #4
_rlnAmplitudeContrast #5
_rlnImagePixelSize #6
_rlnImageSize #7
_rlnImageDimensionality #8
opticsGroup1 1 300.000000 2.700000 0.100000 1.500000 16 2
opticsGroup2 2 200.000000 2.000000 0.070000 1.500000 16 2

# version 30001

data_particles

loop_
_rlnImageName #1
_rlnMicrographName #2
_rlnAngleRot #3
_rlnAngleTilt #4
_rlnAnglePsi #5
_rlnOriginXAngst #6
_rlnOriginYAngst #7
_rlnDefocusU #8
_rlnOpticsGroup #9
_rlnClassNumber #10
_rlnMyUnknownFloat #11
_rlnMyUnknownText #12
000001@stacks/s.mrcs mics/0001.mrc 10.5 20.25 -30.125 1.5 -0.75 12345.678901 1 3 0.000000001 abc
000002@stacks/s.mrcs mics/0002.mrc -179.999999 179.5 0.000001 0.0 2.25 23456.5 2 1 12345678.123456 "two words"
000003@stacks/s.mrcs mics/0002.mrc 45.0 90.0 135.0 -3.0 0.5 15000.0 1 2 -1e-12 x

data_model_classes

loop_
_rlnReferenceImage #1
_rlnClassDistribution #2
class001.mrc 0.25
class002.mrc 0.75

data_general

_rlnNrClasses 2
_rlnFinalResolution 3.5
"""

LEGACY = """
data_

loop_
_rlnImageName #1
_rlnAngleRot #2
_rlnAngleTilt #3
_rlnAnglePsi #4
_rlnOriginX #5
_rlnOriginY #6
_rlnVoltage #7
_rlnSphericalAberration #8
_rlnAmplitudeContrast #9
_rlnDetectorPixelSize #10
_rlnMagnification #11
_rlnDefocusU #12
1@s.mrcs 10.0 20.0 30.0 2.0 -1.0 300.0 2.7 0.1 14.0 100000.0 10000.0
2@s.mrcs 11.0 21.0 31.0 0.5 0.0 300.0 2.7 0.1 14.0 100000.0 11000.0
3@s.mrcs 12.0 22.0 32.0 0.0 0.0 200.0 2.7 0.1 14.0 100000.0 12000.0
"""


def _write_text(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_relion31_read_values(tmp_path):
    s = read_star(_write_text(tmp_path, "a.star", RELION31))
    assert len(s.particles) == 3 and len(s.optics) == 2
    assert s.path == tmp_path / "a.star"
    assert s.particles["rlnImageName"].tolist() == [f"00000{i}@stacks/s.mrcs" for i in (1, 2, 3)]
    assert s.particles["rlnAnglePsi"].tolist() == [-30.125, 0.000001, 135.0]
    assert s.particles["rlnMyUnknownText"].tolist() == ["abc", "two words", "x"]
    assert set(s.other_blocks) == {"model_classes", "general"}
    assert s.other_blocks["general"] == {"rlnNrClasses": 2, "rlnFinalResolution": 3.5}


def test_round_trip_keeps_every_column_value_and_block(tmp_path):
    src = _write_text(tmp_path, "a.star", RELION31)
    s = read_star(src)
    write_star(tmp_path / "out" / "b.star", s)
    t = read_star(tmp_path / "out" / "b.star")
    pd.testing.assert_frame_equal(s.particles, t.particles, check_exact=True)
    pd.testing.assert_frame_equal(s.optics, t.optics, check_exact=True)
    assert list(t.other_blocks) == list(s.other_blocks)
    pd.testing.assert_frame_equal(s.other_blocks["model_classes"], t.other_blocks["model_classes"])
    assert t.other_blocks["general"] == s.other_blocks["general"]
    # independent reader: the starfile library sees the same numbers as in the original text
    orig = starfile.read(src, always_dict=True)
    back = starfile.read(tmp_path / "out" / "b.star", always_dict=True)
    for block in ("optics", "particles", "model_classes"):
        pd.testing.assert_frame_equal(orig[block], back[block], check_exact=True)
    # floats stay floats even when integral (300.0 must not come back as int)
    assert back["optics"]["rlnVoltage"].dtype == np.float64
    # written with the RELION 3.1 block names, in order
    text = (tmp_path / "out" / "b.star").read_text()
    assert text.index("data_optics") < text.index("data_particles") < text.index("data_model_classes")


def test_round_trip_random_float64_values(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    vals = rng.normal(size=n) * 10.0 ** rng.integers(-10, 10, size=n)
    p = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1}@s.mrcs" for i in range(n)],
            "rlnOpticsGroup": 1,
            "rlnFoo": vals,
            "rlnAngleRot": rng.uniform(-180, 180, n),
        }
    )
    o = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.0]})
    write_star(tmp_path / "r.star", StarFile(p, o))
    t = read_star(tmp_path / "r.star")
    np.testing.assert_allclose(t.particles["rlnFoo"].to_numpy(), vals, rtol=1e-14, atol=0)
    np.testing.assert_allclose(
        t.particles["rlnAngleRot"].to_numpy(), p["rlnAngleRot"], rtol=1e-14, atol=1e-13
    )


def test_legacy_star_gets_optics(tmp_path):
    s = read_star(_write_text(tmp_path, "legacy.star", LEGACY))
    # two optics groups: 300 kV and 200 kV; pixel size = 14 µm * 1e4 / 100000 = 1.4 Å
    assert s.optics["rlnOpticsGroup"].tolist() == [1, 2]
    assert s.optics["rlnVoltage"].tolist() == [300.0, 200.0]
    np.testing.assert_allclose(s.optics["rlnImagePixelSize"], [1.4, 1.4])
    assert s.particles["rlnOpticsGroup"].tolist() == [1, 1, 2]
    assert "rlnVoltage" not in s.particles.columns
    assert pixel_size(s) == pytest.approx(1.4)
    # pixel origins become Å
    np.testing.assert_allclose(s.particles["rlnOriginXAngst"], [2.8, 0.7, 0.0])
    np.testing.assert_allclose(s.particles["rlnOriginYAngst"], [-1.4, 0.0, 0.0])
    assert "rlnOriginX" not in s.particles.columns
    # every other column is kept
    for c in ("rlnDefocusU", "rlnMagnification", "rlnDetectorPixelSize", "rlnAnglePsi"):
        assert c in s.particles.columns
    joined = particle_optics(s)
    assert joined["rlnVoltage"].tolist() == [300.0, 300.0, 200.0]
    # written as RELION 3.1 and read back identically
    write_star(tmp_path / "converted.star", s)
    t = read_star(tmp_path / "converted.star")
    pd.testing.assert_frame_equal(s.particles, t.particles)
    pd.testing.assert_frame_equal(s.optics, t.optics)


def test_legacy_without_pixel_size(tmp_path):
    text = "data_images\n\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n1@a.mrcs 5.0\n2@a.mrcs 6.0\n"
    s = read_star(_write_text(tmp_path, "l.star", text))
    assert s.optics["rlnOpticsGroup"].tolist() == [1]
    assert s.particles["rlnOpticsGroup"].tolist() == [1, 1]
    with pytest.raises(ValueError, match=r"l\.star.*data_optics.*rlnImagePixelSize"):
        pixel_size(s)


def test_legacy_with_image_pixel_size_column(tmp_path):
    text = "data_\n\nloop_\n_rlnImageName #1\n_rlnImagePixelSize #2\n_rlnOriginX #3\n1@a.mrcs 2.5 1.0\n"
    s = read_star(_write_text(tmp_path, "l.star", text))
    assert pixel_size(s) == 2.5
    assert s.particles["rlnOriginXAngst"].tolist() == [2.5]


def test_particle_optics_keeps_row_order(tmp_path):
    s = read_star(_write_text(tmp_path, "a.star", RELION31))
    j = particle_optics(s)
    assert len(j) == 3
    assert j["rlnImageName"].tolist() == s.particles["rlnImageName"].tolist()
    assert j["rlnVoltage"].tolist() == [300.0, 200.0, 300.0]
    assert j["rlnAmplitudeContrast"].tolist() == [0.1, 0.07, 0.1]
    assert pixel_size(s) == 1.5 and pixel_size(s, group=2) == 1.5


def test_pixel_size_groups_disagree(tmp_path):
    s = read_star(_write_text(tmp_path, "a.star", RELION31))
    s.optics.loc[1, "rlnImagePixelSize"] = 2.0
    with pytest.raises(ValueError, match="different pixel sizes"):
        pixel_size(s)
    assert pixel_size(s, group=2) == 2.0
    with pytest.raises(ValueError, match="no optics group 7"):
        pixel_size(s, group=7)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.star"):
        read_star(tmp_path / "nope.star")


def test_missing_particles_block(tmp_path):
    text = RELION31.split("# version 30001\n\ndata_particles")[0]
    with pytest.raises(ValueError, match=r"only_optics\.star.*data_particles"):
        read_star(_write_text(tmp_path, "only_optics.star", text))


def test_missing_columns_named(tmp_path):
    s = read_star(_write_text(tmp_path, "a.star", RELION31))
    with pytest.raises(
        ValueError, match=r"a\.star: data_particles lacks column\(s\) rlnDefocusV, rlnFoo.*CTF"
    ):
        require_columns(s, ["rlnDefocusU", "rlnDefocusV", "rlnFoo"], "the CTF")
    with pytest.raises(ValueError, match=r"data_optics lacks column\(s\) rlnCtfDataAreCtfPremultiplied"):
        require_columns(s, ["rlnCtfDataAreCtfPremultiplied"], block="optics")
    require_columns(s, ["rlnDefocusU", "rlnAngleRot"])  # present: no error


def test_optics_without_group_column(tmp_path):
    text = RELION31.replace("_rlnOpticsGroup #2\n", "_rlnOpticsGroupX #2\n")
    with pytest.raises(ValueError, match=r"data_optics lacks column rlnOpticsGroup"):
        read_star(_write_text(tmp_path, "a.star", text))


def test_unknown_optics_group(tmp_path):
    text = RELION31.replace("15000.0 1 2", "15000.0 5 2")
    with pytest.raises(ValueError, match=r"row 2 .*rlnOpticsGroup 5"):
        read_star(_write_text(tmp_path, "a.star", text))


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_angles(tmp_path, bad):
    text = RELION31.replace("45.0 90.0 135.0", f"45.0 {bad} 135.0")
    with pytest.raises(ValueError, match=r"bad\.star: data_particles: column rlnAngleTilt .* row 2"):
        read_star(_write_text(tmp_path, "bad.star", text))


def test_check_finite_shifts(tmp_path):
    s = read_star(_write_text(tmp_path, "a.star", RELION31))
    s.particles.loc[1, "rlnOriginYAngst"] = np.nan
    with pytest.raises(ValueError, match="rlnOriginYAngst .* row 1"):
        check_finite(s, ["rlnOriginYAngst"])
    # write_star refuses too, and writes nothing
    with pytest.raises(ValueError, match="rlnOriginYAngst"):
        write_star(tmp_path / "w.star", s)
    assert not (tmp_path / "w.star").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.star"]


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    src = _write_text(tmp_path, "a.star", RELION31)
    s = read_star(src)
    target = tmp_path / "b.star"
    write_star(target, s)
    before = target.read_bytes()

    real_format = star_mod._format_block

    def broken_format(name, block):  # data_optics reaches the file, then the write fails
        if name == "particles":
            raise OSError("disk full")
        return real_format(name, block)

    monkeypatch.setattr(star_mod, "_format_block", broken_format)
    s.particles.loc[0, "rlnAngleRot"] = 99.0
    with pytest.raises(OSError, match="disk full"):
        write_star(target, s)
    assert target.read_bytes() == before
    with pytest.raises(OSError):
        write_star(tmp_path / "new.star", s)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.star", "b.star"]


def test_write_rejects_bad_tables(tmp_path):
    p = pd.DataFrame({"rlnImageName": ["1@a.mrcs"], "rlnOpticsGroup": [2]})
    o = pd.DataFrame({"rlnOpticsGroup": [1]})
    with pytest.raises(ValueError, match="rlnOpticsGroup 2"):
        write_star(tmp_path / "x.star", StarFile(p, o))
    with pytest.raises(ValueError, match="lacks column"):
        write_star(tmp_path / "x.star", StarFile(p.drop(columns="rlnOpticsGroup"), o))
    with pytest.raises(ValueError, match="other_blocks"):
        write_star(tmp_path / "x.star", StarFile(p.assign(rlnOpticsGroup=1), o, other_blocks={"optics": {}}))
    assert list(tmp_path.iterdir()) == []


def test_legacy_image_size_from_stack_header(tmp_path):
    from cesped.io.stack import write_stack

    write_stack(tmp_path / "s.mrcs", np.zeros((3, 24, 24), np.float32), 1.4)
    s = read_star(_write_text(tmp_path, "legacy.star", LEGACY))
    assert s.optics["rlnImageSize"].tolist() == [24, 24]


def test_written_text_is_plain_relion_star(tmp_path):
    p = pd.DataFrame(
        {
            "rlnImageName": ["1@a b.mrcs", "2@a.mrcs"],
            "rlnOpticsGroup": [1, 1],
            "rlnIsFlipped": [True, False],
            "rlnVal": [300.0, 1e-12],
            "rlnEmpty": ["", "x"],
        }
    )
    o = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.0]})
    general = {"rlnText": "two words", "rlnX": 2.0}
    write_star(tmp_path / "t.star", StarFile(p, o, other_blocks={"general": general}))
    lines = (tmp_path / "t.star").read_text().splitlines()
    rows = lines[lines.index("_rlnEmpty #5") + 1 :][:2]
    assert rows == ['"1@a b.mrcs"\t1\t1\t300.0\t""', "2@a.mrcs\t1\t0\t1e-12\tx"]
    assert '_rlnText\t"two words"' in lines and "_rlnX\t2.0" in lines
    back = starfile.read(tmp_path / "t.star", always_dict=True)
    assert back["particles"]["rlnImageName"].tolist() == ["1@a b.mrcs", "2@a.mrcs"]
    assert back["general"] == {"rlnText": "two words", "rlnX": 2.0}
