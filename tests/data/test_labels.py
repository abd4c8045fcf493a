"""Labelled entries must carry their pose columns; unlabelled data is an explicit, recorded opt-in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import starfile
import torch
from scipy.spatial.transform import Rotation

from cesped.particlesDataset import ParticlesDataset, main

from ._helpers import tiny_tables, write_entry

RAW = dict(apply_perImg_normalization=False, ctf_correction="none", image_size_factor_for_crop=0.0)


@pytest.mark.parametrize("drop", ["rlnAngleTilt", "rlnOriginYAngst"])
def test_entry_without_a_pose_column_is_an_error(tmp_path, drop):
    parts, optics = tiny_tables(5, 16)
    d = write_entry(
        tmp_path, "nopose", 0, np.zeros((5, 16, 16), np.float32), parts.drop(columns=[drop]), optics
    )
    with pytest.raises(ValueError, match=rf"{d / 'particles_0.star'}.*lacks the pose column\(s\) {drop}"):
        ParticlesDataset("nopose", 0, benchmarkDir=tmp_path, **RAW)


def _user_star(tmp_path, parts, optics):
    from cesped.io.stack import write_stack
    from cesped.io.star import StarFile, write_star

    n = len(parts)
    imgs = np.random.default_rng(0).normal(size=(n, 16, 16)).astype(np.float32)
    write_stack(tmp_path / "user" / "p.mrcs", imgs, 1.5)
    names = [f"{i + 1}@p.mrcs" for i in range(n)]
    star = tmp_path / "user" / "p.star"
    write_star(star, StarFile(parts.assign(rlnImageName=names), optics))
    return star


def _add_entry_cli(star, name, bench, *extra):
    argv = ["add_entry", "--newTargetName", name, "-p", "0", "--starFname", str(star), "--symmetry", "C1"]
    return main([*argv, "-b", str(bench), *extra])


def test_add_entry_without_shifts_is_refused_not_zero_filled(tmp_path, capsys):
    parts, optics = tiny_tables(4, 16)
    star = _user_star(tmp_path, parts.drop(columns=["rlnOriginXAngst", "rlnOriginYAngst"]), optics)
    with pytest.raises(
        ValueError, match=r"p.star: data_particles lacks column\(s\) rlnOriginXAngst, rlnOriginYAngst"
    ):
        ParticlesDataset.addNewEntryLocally(star, None, "mine", 0, "C1", benchmarkDir=tmp_path / "b")
    assert not (tmp_path / "b" / "mine" / "particles_0.star").exists()
    # the command line says the same in one line, exit status 2
    assert _add_entry_cli(star, "mine", tmp_path / "b") == 2
    assert "rlnOriginXAngst" in capsys.readouterr().err


def test_unlabelled_entry_is_an_explicit_recorded_choice(tmp_path, capsys):
    parts, optics = tiny_tables(4, 16)
    bare = parts.drop(
        columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
    )
    star = _user_star(tmp_path, bare.assign(rlnAngleRotPrior=1.0), optics)
    bench = tmp_path / "b"
    assert _add_entry_cli(star, "new", bench, "--unlabelled") == 0
    assert json.loads((bench / "new" / "info_0.json").read_text())["labelled"] is False
    entry_star = starfile.read(bench / "new" / "particles_0.star")["particles"]
    assert not [c for c in entry_star.columns if c.startswith(("rlnAngle", "rlnOrigin", "rlnMaxValue"))]
    ds = ParticlesDataset("new", 0, benchmarkDir=bench, **RAW)
    iid, img, (rot, sh, conf), md = ds.get_batch(range(4))
    assert torch.isnan(rot).all() and torch.isnan(sh).all() and torch.isnan(conf).all()
    ds.updateMd(iid, angles=Rotation.random(4, random_state=0).as_matrix())
    ds.saveMd(tmp_path / "pred.star")
    assert len(starfile.read(tmp_path / "pred.star")["particles"]) == 4


def _bare_star(tmp_path):
    parts, optics = tiny_tables(4, 16)
    pose = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
    return _user_star(tmp_path, parts.drop(columns=pose), optics)


def test_preprocessed_unlabelled_entry_stays_unlabelled(tmp_path):
    from cesped.particlesDataset import preprocess_entry

    bench = tmp_path / "b"
    ParticlesDataset.addNewEntryLocally(
        _bare_star(tmp_path), None, "new", 0, "C1", benchmarkDir=bench, labelled=False
    )
    star = preprocess_entry("new", 0, bench / "pre", benchmarkDir=bench, progress=False)
    assert json.loads((star.parent / "info_0.json").read_text())["labelled"] is False
    _, _, (rot, _, _), _ = ParticlesDataset("pre", 0, benchmarkDir=bench, **RAW).get_batch(range(4))
    assert torch.isnan(rot).all()


def test_predicting_a_star_without_poses(tmp_path, monkeypatch):
    """infer's star=... path registers new data as unlabelled: no poses needed, none invented."""
    from cesped.training.datamodule import open_particles

    monkeypatch.setenv("CESPED_CACHE_DIR", str(tmp_path / "cache"))
    ds = open_particles(star=_bare_star(tmp_path), **RAW)
    iid, img, (rot, sh, conf), _ = ds.get_batch(range(4))
    assert img.shape == (4, 1, 16, 16) and torch.isnan(rot).all() and torch.isnan(sh).all()
