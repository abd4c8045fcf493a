"""The particlesDataset command line, entry availability and synthetic entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import starfile

from cesped.data.entries import get_entry, list_entries
from cesped.data.local import ensure_entry, is_available
from cesped.particlesDataset import ParticlesDataset, main

from ._helpers import tiny_tables, write_entry


def test_registry_facts():
    e = get_entry("consensus_10648")
    assert e.symmetry == "D2" and e.box == 222 and e.pixel_size == 1.5
    assert e.record_dependencies == {"11092025": ("8387534",), "11092048": ("8390711",)}
    assert e.mask_url.endswith("11092291/files/10648_mask.mrc")
    assert get_entry("TEST").mask_file == "11120_mask.mrc"
    assert get_entry("10280").record_id(1) == "8353737"
    assert get_entry("synth_4e43").is_synthetic
    names = [n for n, _ in list_entries()]
    assert len(names) == len(set(list_entries())) and names.count("TEST") == 2


def test_cli_list_entries(tiny_entry, capsys):
    assert main(["list_entries", "--benchmarkDir", str(tiny_entry)]) == 0
    out = capsys.readouterr().out
    for name in ("TEST", "10166", "consensus_10648", "synth_6msm"):
        assert name in out
    assert "tiny" in out and "(local)" in out


def test_cli_download_entry(tmp_path, fake_zenodo, capsys):
    rec = get_entry("TEST").record_id(1)
    files = {
        "particles_1.star": b"star",
        "info_1.json": b'{"symmetry": "C1"}',
        "particles_1.mrcs.chunk_0": b"ab",
    }
    with fake_zenodo({rec: files}) as srv:
        code = main(
            [
                "download_entry",
                "-t",
                "TEST",
                "--halfset",
                "1",
                "--benchmarkDir",
                str(tmp_path),
                "--zenodoUrl",
                srv.url,
            ]
        )
    assert code == 0
    assert (tmp_path / "TEST" / "particles_1.mrcs").read_bytes() == b"ab"
    assert "particles_1.star" in capsys.readouterr().out
    # offline: exit status 2 and what to download
    code = main(
        [
            "download_entry",
            "-t",
            "TEST",
            "--halfset",
            "0",
            "--benchmarkDir",
            str(tmp_path),
            "--zenodoUrl",
            "http://127.0.0.1:9/api/records/",
        ]
    )
    assert code == 2
    assert "records/" + get_entry("TEST").record_id(0) in capsys.readouterr().err


def test_cli_preprocess_entry(tiny_entry, tmp_path):
    out = tmp_path / "pre"
    code = main(
        [
            "preprocess_entry",
            "-t",
            "tiny",
            "--halfset",
            "0",
            "-o",
            str(out),
            "--benchmarkDir",
            str(tiny_entry),
            "--image_size",
            "20",
            "--ctf_correction",
            "phase_flip",
            "--image_size_factor_for_crop",
            "0.25",
        ]
    )
    assert code == 0
    ref = ParticlesDataset(
        "tiny",
        0,
        benchmarkDir=tiny_entry,
        image_size=20,
        ctf_correction="phase_flip",
        image_size_factor_for_crop=0.25,
    )
    _, ref_imgs, *_ = ref.get_batch(range(len(ref)))
    star = starfile.read(out / "particles_0.star")
    assert star["optics"]["rlnImageSize"].tolist() == [20, 20]
    np.testing.assert_allclose(star["optics"]["rlnImagePixelSize"], ref.sampling_rate)
    assert star["optics"]["rlnCtfDataArePhaseFlipped"].tolist() == [1, 1]
    # the output is itself a usable entry: read it back unprocessed
    pre = ParticlesDataset(
        "pre",
        0,
        benchmarkDir=tmp_path,
        apply_perImg_normalization=False,
        ctf_correction="none",
        image_size_factor_for_crop=0.0,
    )
    _, imgs, *_ = pre.get_batch(range(len(pre)))
    np.testing.assert_allclose(imgs.numpy(), ref_imgs.numpy(), atol=1e-6)
    assert json.loads((out / "info_0.json").read_text())["symmetry"] == "C1"
    # its optics say the data are phase-flipped: flipping again leaves the images unchanged
    again = ParticlesDataset(
        "pre",
        0,
        benchmarkDir=tmp_path,
        apply_perImg_normalization=False,
        ctf_correction="phase_flip",
        image_size_factor_for_crop=0.0,
    )
    _, imgs2, *_ = again.get_batch(range(len(again)))
    np.testing.assert_allclose(imgs2.numpy(), imgs.numpy(), atol=1e-5)


def test_cli_add_entry(tmp_path):
    parts, optics = tiny_tables(5, 16)
    src = write_entry(tmp_path / "user", "x", 0, np.ones((5, 16, 16), np.float32), parts, optics)
    code = main(
        [
            "add_entry",
            "--newTargetName",
            "mine",
            "--halfset",
            "0",
            "--starFname",
            str(src / "particles_0.star"),
            "--symmetry",
            "c2",
            "--benchmarkDir",
            str(tmp_path / "b"),
        ]
    )
    assert (
        code == 0 and is_available("mine", 0, tmp_path / "b") and not is_available("mine", 1, tmp_path / "b")
    )
    assert ParticlesDataset("mine", 0, benchmarkDir=tmp_path / "b").symmetry == "C2"
    assert (
        main(
            [
                "add_entry",
                "--newTargetName",
                "bad",
                "--halfset",
                "0",
                "--starFname",
                str(src / "particles_0.star"),
                "--symmetry",
                "X9",
                "--benchmarkDir",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )


def test_partial_download_is_not_available(tmp_path):
    d = tmp_path / "TEST"
    d.mkdir()
    (d / "particles_0.star").write_text("x")
    (d / "info_0.json").write_text('{"symmetry": "C1"}')
    (d / "particles_0.mrcs.part").write_bytes(b"half")
    assert not is_available("TEST", 0, tmp_path)
    with pytest.raises(FileNotFoundError, match="records/"):
        ensure_entry("TEST", 0, tmp_path, download=False)


def test_synthetic_entry_is_simulated_on_first_use(tmp_path, monkeypatch):
    from cesped.simulation import PRESETS

    small = {**PRESETS["synth_4e43"], "n_particles": 12, "box": 32, "pixel_size": 3.0}
    monkeypatch.setitem(PRESETS, "synth_4e43", small)
    ds = ParticlesDataset("synth_4e43", 1, benchmarkDir=tmp_path, image_size=16)
    assert ds.symmetry == "C2" and len(ds) == 6 and ds[0][1].shape == (1, 16, 16)
    assert (tmp_path / "synth_4e43" / "generation.json").exists()
    # second use: nothing simulated again
    mtime = (tmp_path / "synth_4e43" / "particles_0.mrcs").stat().st_mtime_ns
    ParticlesDataset("synth_4e43", 0, benchmarkDir=tmp_path)
    assert (tmp_path / "synth_4e43" / "particles_0.mrcs").stat().st_mtime_ns == mtime
