"""entry_symmetry: the symmetry of an entry directory from both info files, and ParticlesDataset.symmetry."""

from __future__ import annotations

import json

import pytest

from cesped.data.local import entry_symmetry


def _info(d, h, sym):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"info_{h}.json").write_text(json.dumps({"symmetry": sym}))


def test_agreeing_info_files_give_the_canonical_name(tmp_path):
    _info(tmp_path, 0, "d2")
    _info(tmp_path, 1, "D2")
    assert entry_symmetry(tmp_path) == "D2"


def test_one_info_file_is_enough(tmp_path):
    _info(tmp_path, 1, "c3")
    assert entry_symmetry(tmp_path) == "C3"


def test_disagreeing_info_files_name_both(tmp_path):
    _info(tmp_path, 0, "C1")
    _info(tmp_path, 1, "C2")
    with pytest.raises(ValueError, match=r"info_0\.json.*'C1'.*info_1\.json.*'C2'"):
        entry_symmetry(tmp_path)


def test_missing_and_bad_info_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"info_0\.json.*info_1\.json"):
        entry_symmetry(tmp_path)
    _info(tmp_path, 0, "C1")
    (tmp_path / "info_1.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"info_1\.json.*JSON"):
        entry_symmetry(tmp_path)
    (tmp_path / "info_1.json").write_text(json.dumps({"symmetry": "C2v"}))
    with pytest.raises(ValueError, match=r"info_1\.json"):
        entry_symmetry(tmp_path)
    (tmp_path / "info_1.json").write_text(json.dumps({"sym": "C1"}))
    with pytest.raises(ValueError, match=r"info_1\.json.*'symmetry'"):
        entry_symmetry(tmp_path)


def test_dataset_symmetry_checks_both_info_files(tiny_entry):
    """Before: ParticlesDataset.symmetry returned info_<h>.json's value whatever the other half said."""
    from cesped.particlesDataset import ParticlesDataset

    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, ctf_correction="none")
    assert ds.symmetry == "C1"
    _info(tiny_entry / "tiny", 1, "C4")
    with pytest.raises(ValueError, match=r"info_1\.json.*'C4'"):
        _ = ds.symmetry
