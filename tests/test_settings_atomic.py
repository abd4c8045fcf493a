"""Tests of cesped.settings and cesped.io.atomic (the lead's foundation pieces)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cesped import settings
from cesped.io.atomic import atomic_open, atomic_path


def test_benchmark_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CESPED_BENCHMARK_DIR", str(tmp_path / "env"))
    assert settings.benchmark_dir() == tmp_path / "env"
    assert settings.benchmark_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("CESPED_BENCHMARK_DIR")
    default = settings.benchmark_dir()
    assert default.name == "benchmark" and "cesped" in str(default)


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CESPED_CACHE_DIR", str(tmp_path))
    assert settings.cache_dir() == tmp_path


def test_zenodo_url_gets_trailing_slash(monkeypatch):
    monkeypatch.delenv("CESPED_ZENODO_URL", raising=False)
    assert settings.zenodo_url() == "https://zenodo.org/api/records/"
    assert settings.zenodo_url("http://127.0.0.1:8000/api") == "http://127.0.0.1:8000/api/"


def test_atomic_open_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_open(target) as fh:
        fh.write("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half written")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_path_keeps_suffix_and_cleans_up(tmp_path):
    target = tmp_path / "map.mrc"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".mrc" and tmp != target
        Path(tmp).write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "x.mrc") as tmp:
            Path(tmp).write_bytes(b"partial")
            raise ValueError("bad")
    assert not (tmp_path / "x.mrc").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_atomic_open_rejects_read_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "a.txt", "r"):
            pass
