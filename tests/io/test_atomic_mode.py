"""atomic_path gives written files the permissions a plain open() would (not mkstemp's 0600)."""

from __future__ import annotations

import os

from cesped.io.atomic import atomic_open


def test_new_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "a.txt") as fh:
            fh.write("x")
        with open(tmp_path / "b.txt", "w") as fh:  # reference: what open() does
            fh.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644


def test_replacing_keeps_existing_mode(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    with atomic_open(target) as fh:
        fh.write("new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640
