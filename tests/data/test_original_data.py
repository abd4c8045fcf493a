"""Real Zenodo record shapes and data the original cesped package already fetched (issue 13, section 3)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cesped.data.entries import get_entry
from cesped.data.local import EntryElsewhereError, ensure_entry, is_available
from cesped.data.zenodo import ChecksumError, download_halfset
from cesped.particlesDataset import ParticlesDataset

from ._helpers import tiny_tables, write_entry
from ._zenodo_real import STYLES, RealShapeZenodo

FAST = dict(progress=False, timeout=5.0, retries=2, backoff=0.0)
RAW = dict(apply_perImg_normalization=False, ctf_correction="none", image_size_factor_for_crop=0.0)
REC0 = get_entry("TEST").record_id(0)


def _entry_files(tmp_path, h=0, n=12, box=16):
    """The files of a real half-set record (star, info, stack) and the images."""
    parts, optics = tiny_tables(n, box, seed=h)
    imgs = np.random.default_rng(h).normal(size=(n, box, box)).astype(np.float32)
    d = write_entry(tmp_path / "staging", "TEST", h, imgs, parts, optics)
    names = (f"particles_{h}.star", f"info_{h}.json", f"particles_{h}.mrcs")
    return {k: (d / k).read_bytes() for k in names}, imgs


def _chunked(files, h=0, n_chunks=2):
    stack = files[f"particles_{h}.mrcs"]
    cut = np.linspace(0, len(stack), n_chunks + 1).astype(int)
    out = {k: v for k, v in files.items() if not k.endswith(".mrcs")}
    out.update({f"particles_{h}.mrcs.chunk_{k}": stack[cut[k] : cut[k + 1]] for k in range(n_chunks)})
    return out


@pytest.mark.parametrize("style", STYLES)
def test_real_record_shapes_with_an_unchunked_stack(tmp_path, style):
    files, imgs = _entry_files(tmp_path)
    with RealShapeZenodo({REC0: files}, style) as srv:
        ds = ParticlesDataset("TEST", 0, benchmarkDir=tmp_path / "bench", zenodo_url=srv.url, **RAW)
        assert srv.file_requests("particles_0.mrcs") == [None]  # one request, at links.self
    np.testing.assert_array_equal(ds.get_batch(range(12))[1][:, 0].numpy(), imgs)
    d = tmp_path / "bench" / "TEST"
    assert (d / "particles_0.mrcs").read_bytes() == files["particles_0.mrcs"]
    assert json.loads((d / ".complete_0.json").read_text())["record"] == REC0


@pytest.mark.parametrize("style", ["legacy", "entries"])
def test_real_record_shapes_are_checksummed(tmp_path, style):
    files, _ = _entry_files(tmp_path)
    with RealShapeZenodo({REC0: files}, style) as srv:
        good = srv.record_json

        def bad_md5(rec):  # the record advertises another md5 for the stack
            meta = good(rec)
            entries = meta["files"]["entries"].values() if style == "entries" else meta["files"]
            for f in entries:
                if f.get("key", f.get("filename")) == "particles_0.mrcs":
                    wrong = hashlib.md5(b"other bytes").hexdigest()
                    f["checksum"] = wrong if style == "legacy" else f"md5:{wrong}"
            return meta

        srv.record_json = bad_md5
        with pytest.raises(ChecksumError, match="particles_0.mrcs"):
            download_halfset("TEST", 0, tmp_path / "bench", base_url=srv.url, **FAST)
    assert not (tmp_path / "bench" / "TEST" / "particles_0.mrcs").exists()


def test_entries_dictionary_without_key_fields(tmp_path):
    """The InvenioRDM ``files.entries`` dictionary names each file by its dictionary key."""
    files, _ = _entry_files(tmp_path)
    with RealShapeZenodo({REC0: files}, "entries") as srv:
        good = srv.record_json

        def no_keys(rec):
            meta = good(rec)
            for f in meta["files"]["entries"].values():
                del f["key"]
            return meta

        srv.record_json = no_keys
        d = download_halfset("TEST", 0, tmp_path / "bench", base_url=srv.url, **FAST)
    assert (d / "particles_0.mrcs").read_bytes() == files["particles_0.mrcs"]


def _original_partial_download(d, files, h=0, keep=None):
    """What the original package leaves when interrupted: star and info, a stack prefix, no marker."""
    d.mkdir(parents=True, exist_ok=True)
    for k in (f"particles_{h}.star", f"info_{h}.json"):
        (d / k).write_bytes(files[k])
    stack = files[f"particles_{h}.mrcs"]
    (d / f"particles_{h}.mrcs").write_bytes(stack[: keep if keep is not None else len(stack)])


def test_half_downloaded_stack_of_the_original_is_resumed(tmp_path):
    files, imgs = _entry_files(tmp_path)
    record = _chunked(files)
    chunk0 = len(record["particles_0.mrcs.chunk_0"])
    bench = tmp_path / "bench"
    _original_partial_download(bench / "TEST", files, keep=chunk0 + 100)
    assert not is_available("TEST", 0, bench)  # a stack without a completion marker is not trusted
    with RealShapeZenodo({REC0: record}, "rdm") as srv:
        ds = ParticlesDataset("TEST", 0, benchmarkDir=bench, zenodo_url=srv.url, **RAW)
        assert srv.file_requests("particles_0.mrcs.chunk_0") == []  # verified from the disk
        assert srv.file_requests("particles_0.mrcs.chunk_1") == ["bytes=100-"]  # resumed
    np.testing.assert_array_equal(ds.get_batch(range(12))[1][:, 0].numpy(), imgs)
    assert is_available("TEST", 0, bench)


def test_corrupt_bytes_left_by_the_original_are_not_trusted(tmp_path):
    files, _ = _entry_files(tmp_path)
    record = _chunked(files)
    bench = tmp_path / "bench"
    _original_partial_download(bench / "TEST", files)  # full length, but no marker ...
    stack = bytearray((bench / "TEST" / "particles_0.mrcs").read_bytes())
    stack[-5] ^= 0xFF  # ... and one byte of the last chunk wrong
    (bench / "TEST" / "particles_0.mrcs").write_bytes(bytes(stack))
    with RealShapeZenodo({REC0: record}, "rdm") as srv:
        with pytest.raises(ChecksumError, match="chunk_1"):
            download_halfset("TEST", 0, bench, base_url=srv.url, **FAST)
        download_halfset("TEST", 0, bench, base_url=srv.url, **FAST)  # the bad chunk is fetched again
    assert (bench / "TEST" / "particles_0.mrcs").read_bytes() == files["particles_0.mrcs"]


def test_files_placed_by_hand_need_the_marker_the_instructions_name(tmp_path):
    files, _ = _entry_files(tmp_path)
    bench = tmp_path / "bench"
    _original_partial_download(bench / "TEST", files)
    with pytest.raises(FileNotFoundError, match=r"\.complete_0\.json") as exc:
        ensure_entry("TEST", 0, bench, download=False)
    assert f'{{"record": "{REC0}", "manual": true}}' in str(exc.value)
    (bench / "TEST" / ".complete_0.json").write_text(json.dumps({"record": REC0, "manual": True}))
    assert len(ParticlesDataset("TEST", 0, benchmarkDir=bench, download=False, **RAW)) == 12


@pytest.mark.parametrize("complete", [True, False])
def test_entry_in_the_original_folder_is_named_before_any_download(tmp_path, monkeypatch, complete):
    files, _ = _entry_files(tmp_path)
    orig = tmp_path / "home" / "tmp" / "cryoSupervisedDataset"
    _original_partial_download(orig / "TEST", files, keep=None if complete else 500)
    if complete:
        (orig / "TEST" / f"SUCCESSFUL_DOWNLOAD_{REC0}.txt").write_text(f"{REC0}\n")
    monkeypatch.setenv("CESPED_ORIGINAL_BENCHMARK_DIR", str(orig))
    ours = tmp_path / "ours"
    with RealShapeZenodo({REC0: files}, "rdm") as srv:
        with pytest.raises(EntryElsewhereError) as exc:
            ParticlesDataset("TEST", 0, benchmarkDir=ours, zenodo_url=srv.url)
        assert srv.log == []  # nothing was downloaded
        msg = str(exc.value)
        assert str(orig / "TEST") in msg and f"benchmarkDir='{orig}'" in msg
        assert ("partly downloaded" in msg) != complete
        # pointing benchmarkDir at it uses (or resumes) that copy
        ds = ParticlesDataset("TEST", 0, benchmarkDir=orig, zenodo_url=srv.url, **RAW)
        assert len(ds) == 12 and bool(srv.log) != complete
        # asked explicitly, a new copy is downloaded into ours
        monkeypatch.setenv("CESPED_ORIGINAL_BENCHMARK_DIR", "")
        ParticlesDataset("TEST", 0, benchmarkDir=ours, zenodo_url=srv.url, **RAW)
    assert (ours / "TEST" / "particles_0.mrcs").read_bytes() == files["particles_0.mrcs"]


def test_original_default_folder_is_searched(tmp_path, monkeypatch):
    """Without the environment variable, ~/tmp/cryoSupervisedDataset (the original's default) is looked at."""
    files, _ = _entry_files(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CESPED_ORIGINAL_BENCHMARK_DIR")
    _original_partial_download(tmp_path / "home" / "tmp" / "cryoSupervisedDataset" / "TEST", files)
    with pytest.raises(EntryElsewhereError, match="cryoSupervisedDataset"):
        ensure_entry("TEST", 0, tmp_path / "ours", download=False)


def test_missing_stack_of_a_named_entry_is_named(tmp_path):
    files, _ = _entry_files(tmp_path)
    d = tmp_path / "bench" / "mine"
    d.mkdir(parents=True)
    (d / "particles_0.star").write_bytes(files["particles_0.star"])
    (d / "info_0.json").write_bytes(files["info_0.json"])
    with pytest.raises(FileNotFoundError, match=r"mine.* incomplete: particles_0.mrcs missing"):
        ParticlesDataset("mine", 0, benchmarkDir=tmp_path / "bench")
