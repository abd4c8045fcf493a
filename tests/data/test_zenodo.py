"""Downloads against a fake Zenodo on 127.0.0.1 (offline)."""

from __future__ import annotations

import hashlib
import json
import socket
import time

import numpy as np
import pytest

from cesped.data import zenodo
from cesped.data.entries import get_entry
from cesped.data.zenodo import (
    ChecksumError,
    DownloadError,
    OfflineError,
    download_halfset,
    is_halfset_complete,
)

FAST = dict(progress=False, timeout=5.0, retries=3, backoff=0.0)


def _payload(n, seed):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _record(h=0, n_chunks=2, chunk=3000, seed=0):
    files = {
        f"particles_{h}.star": b"data_particles\nloop_\n_rlnImageName #1\n1@particles_%d.mrcs\n" % h,
        f"info_{h}.json": json.dumps({"symmetry": "C1"}).encode(),
    }
    for k in range(n_chunks):
        files[f"particles_{h}.mrcs.chunk_{k}"] = _payload(chunk + k, seed + k)
    return files


def _stack(files, h=0):
    keys = sorted((k for k in files if ".chunk_" in k), key=lambda k: int(k.rsplit("_", 1)[1]))
    return b"".join(files[k] for k in keys)


REC0 = get_entry("TEST").record_id(0)


def test_full_download_verified_and_idempotent(tmp_path, fake_zenodo):
    files = _record(n_chunks=3)
    with fake_zenodo({REC0: files}) as srv:
        d = download_halfset("TEST", 0, benchmark_dir=tmp_path, base_url=srv.url, **FAST)
        assert d == tmp_path / "TEST"
        assert (d / "particles_0.mrcs").read_bytes() == _stack(files)
        assert (d / "particles_0.star").read_bytes() == files["particles_0.star"]
        assert json.loads((d / "info_0.json").read_text()) == {"symmetry": "C1"}
        assert is_halfset_complete(d, 0, REC0)
        assert not list(d.glob("*.part*"))
        n_requests = len(srv.log)
        download_halfset("TEST", 0, benchmark_dir=tmp_path, base_url=srv.url, **FAST)
        assert len(srv.log) == n_requests  # complete: nothing fetched again


def test_dropped_connection_resumes_with_range(tmp_path, fake_zenodo):
    files = _record(n_chunks=2, chunk=5000)
    key = "particles_0.mrcs.chunk_1"
    with fake_zenodo({REC0: files}) as srv:
        srv.drop_once[key] = 2000
        d = download_halfset("TEST", 0, benchmark_dir=tmp_path, base_url=srv.url, **FAST)
        assert srv.file_requests(key) == [None, "bytes=2000-"]
    assert (d / "particles_0.mrcs").read_bytes() == _stack(files)


def test_resume_partial_file_from_earlier_run(tmp_path, fake_zenodo):
    data = _payload(10000, 3)
    with fake_zenodo({"1": {"a.bin": data}}) as srv:
        parts = zenodo.fetch_record_files("1", srv.url, retries=0)
        dest = tmp_path / "a.bin"
        dest.with_name("a.bin.part").write_bytes(data[:4096])
        zenodo.download_files(parts, dest, **FAST)
        assert srv.file_requests("a.bin") == ["bytes=4096-"]
    assert dest.read_bytes() == data


def test_server_ignoring_range_restarts(tmp_path, fake_zenodo):
    data = _payload(10000, 4)
    with fake_zenodo({"1": {"a.bin": data}}) as srv:
        srv.ignore_range.add("a.bin")
        parts = zenodo.fetch_record_files("1", srv.url, retries=0)
        dest = tmp_path / "a.bin"
        dest.with_name("a.bin.part").write_bytes(data[:4096])
        zenodo.download_files(parts, dest, **FAST)
        assert srv.file_requests("a.bin") == ["bytes=4096-"]  # asked, got 200 + full body
    assert dest.read_bytes() == data


def test_wrong_checksum_fails_and_entry_not_complete(tmp_path, fake_zenodo):
    files = _record()
    with fake_zenodo({REC0: files}) as srv:
        srv.bad_md5.add("particles_0.mrcs.chunk_1")
        with pytest.raises(ChecksumError, match="checksum mismatch"):
            download_halfset("TEST", 0, benchmark_dir=tmp_path, base_url=srv.url, **FAST)
        d = tmp_path / "TEST"
        assert not (d / "particles_0.mrcs").exists()
        assert not is_halfset_complete(d, 0, REC0)
        assert not (d / ".complete_0.json").exists()
        # the bad chunk's bytes were discarded; the good first chunk stays verified for the next call
        assert (d / "particles_0.mrcs.part").stat().st_size == len(files["particles_0.mrcs.chunk_0"])
        # once the server is fixed, the next call finishes without fetching chunk 0 again
        srv.bad_md5.clear()
        download_halfset("TEST", 0, benchmark_dir=tmp_path, base_url=srv.url, **FAST)
        assert len(srv.file_requests("particles_0.mrcs.chunk_0")) == 1
    assert (d / "particles_0.mrcs").read_bytes() == _stack(files)
    assert is_halfset_complete(d, 0, REC0)


def test_503_is_retried(tmp_path, fake_zenodo):
    files = _record()
    with fake_zenodo({REC0: files}) as srv:
        srv.fail_status[REC0] = [503]
        srv.fail_status["particles_0.mrcs.chunk_0"] = [503, 502]
        d = download_halfset("TEST", 0, benchmark_dir=tmp_path, base_url=srv.url, **FAST)
        assert len(srv.file_requests("particles_0.mrcs.chunk_0")) == 3
    assert (d / "particles_0.mrcs").read_bytes() == _stack(files)


def test_persistent_503_gives_up(tmp_path, fake_zenodo):
    with fake_zenodo({"1": {"a.bin": b"abc"}}) as srv:
        srv.fail_status["a.bin"] = [503] * 10
        parts = zenodo.fetch_record_files("1", srv.url, retries=0)
        with pytest.raises(DownloadError, match="after 3 attempts"):
            zenodo.download_files(parts, tmp_path / "a.bin", progress=False, retries=2, backoff=0.0)
    assert not (tmp_path / "a.bin").exists()


@pytest.mark.parametrize("bad", ["../evil.txt", "/etc/evil.txt", "sub/../../evil.txt"])
def test_path_traversal_refused(tmp_path, fake_zenodo, bad):
    with fake_zenodo({REC0: _record()}) as srv:
        srv.extra_files[REC0] = [
            {
                "key": bad,
                "size": 3,
                "checksum": "md5:" + hashlib.md5(b"abc").hexdigest(),
                "links": {"self": f"http://127.0.0.1:{srv.port}/files/x/y"},
            }
        ]
        with pytest.raises(DownloadError, match="refusing file name"):
            download_halfset("TEST", 0, benchmark_dir=tmp_path / "bench", base_url=srv.url, **FAST)
        assert srv.file_requests("particles_0.star") == []  # refused before any transfer
    assert not (tmp_path / "evil.txt").exists()


def test_offline_fails_fast_with_instructions(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    t0 = time.perf_counter()
    with pytest.raises(OfflineError) as exc:
        download_halfset(
            "TEST",
            1,
            benchmark_dir=tmp_path,
            base_url=f"http://127.0.0.1:{port}/api/records/",
            progress=False,
            retries=5,
            backoff=10.0,
        )
    assert time.perf_counter() - t0 < 5.0  # no back-off loop
    msg = str(exc.value)
    rec1 = get_entry("TEST").record_id(1)
    assert f"/records/{rec1}" in msg
    assert str(tmp_path / "TEST") in msg and "particles_1.mrcs" in msg


def test_dependencies_are_linked(tmp_path, fake_zenodo):
    info = get_entry("consensus_10648")
    rec = info.record_id(0)
    (dep,) = info.record_dependencies[rec]
    dep_files = _record(seed=7)
    own = {k: v for k, v in _record(seed=11).items() if ".chunk_" not in k}
    own["particles_0.star"] = b"consensus star"
    with fake_zenodo({rec: own, dep: dep_files}) as srv:
        d = download_halfset("consensus_10648", 0, benchmark_dir=tmp_path, base_url=srv.url, **FAST)
    assert (d / "particles_0.star").read_bytes() == b"consensus star"
    assert (d / "particles_0.mrcs").read_bytes() == _stack(dep_files)
    assert (tmp_path / "10648" / "particles_0.star").read_bytes() == dep_files["particles_0.star"]
    assert is_halfset_complete(d, 0, rec) and is_halfset_complete(tmp_path / "10648", 0, dep)


def test_original_package_marker_is_accepted(tmp_path):
    d = tmp_path / "TEST"
    d.mkdir()
    (d / "particles_0.star").write_text("x")
    (d / "info_0.json").write_text('{"symmetry": "C1"}')
    (d / f"SUCCESSFUL_DOWNLOAD_{REC0}.txt").write_text(f"{REC0}\n")
    # the URL is never contacted: an unreachable one would raise
    assert download_halfset("TEST", 0, benchmark_dir=tmp_path, base_url="http://127.0.0.1:9/x/", **FAST) == d


def test_bad_arguments():
    with pytest.raises(ValueError, match="known entries"):
        download_halfset("nope", 0)
    with pytest.raises(ValueError, match="halfset"):
        download_halfset("TEST", 2)


def test_download_mask_uses_the_mask_record(tmp_path, fake_zenodo):
    from cesped.data.entries import MASK_RECORD_ID

    masks = {"11120_mask.mrc": b"mask of 11120", "10648_mask.mrc": b"mask of 10648"}
    with fake_zenodo({str(MASK_RECORD_ID): masks}) as srv:
        got = zenodo.download_mask("TEST", tmp_path / "TEST" / "mask.mrc", base_url=srv.url, **FAST)
        assert got.read_bytes() == b"mask of 11120"  # TEST uses 11120's mask
        got = zenodo.download_mask("consensus_10648", tmp_path / "c" / "mask.mrc", base_url=srv.url, **FAST)
        assert got.read_bytes() == b"mask of 10648"
        with pytest.raises(DownloadError, match="no file '10166_mask.mrc'"):
            zenodo.download_mask("10166", tmp_path / "x.mrc", base_url=srv.url, **FAST)


def test_unusable_self_links_fall_back_to_content_route(tmp_path, fake_zenodo):
    files = _record()
    with fake_zenodo({REC0: files}) as srv:
        srv.broken_self_links = True
        d = download_halfset("TEST", 0, benchmark_dir=tmp_path, base_url=srv.url, **FAST)
        paths = [p for p, _ in srv.log]
    assert (d / "particles_0.mrcs").read_bytes() == _stack(files)
    assert f"/api/records/{REC0}/files/particles_0.mrcs.chunk_1/content" in paths
    assert not any("uuid" in p for p in paths)
