"""StagedOutdir / check_outdir on plain files: the swap, the fallback, refusals, stale stages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cesped.evaluation import staging
from cesped.evaluation.staging import StagedOutdir, check_outdir


def _write(stage, **files):
    for name, text in files.items():
        (stage.path / name).write_text(text)


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_new_outdir_appears_only_on_commit(tmp_path):
    out = tmp_path / "deep" / "out"
    with StagedOutdir(out) as st:
        assert st.path.parent == out.parent and st.path.name.startswith(".out.cesped-stage-")
        _write(st, **{"metrics.json": "{}"})
        assert not out.exists()
        st.commit()
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"] and _siblings(out) == []


@pytest.mark.parametrize("exchange", [True, False])
def test_existing_outdir_is_replaced_as_a_whole(tmp_path, monkeypatch, exchange):
    if not exchange:  # file systems without renameat2(RENAME_EXCHANGE): two renames
        monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("old")
    (out / "metrics.json").write_text("old")
    with StagedOutdir(out) as st:
        _write(st, **{"metrics.json": "new"})
        st.commit()
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert (out / "metrics.json").read_text() == "new" and _siblings(out) == []


def test_error_inside_leaves_outdir_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with StagedOutdir(out) as st:
            _write(st, **{"metrics.json": "new", "gt.mrc": "x"})
            raise RuntimeError("boom")
    assert [p.name for p in out.iterdir()] == ["metrics.json"] and (out / "metrics.json").read_text() == "old"
    assert _siblings(out) == []


def test_refusals(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="f exists and is not a directory"):
        check_outdir(tmp_path / "f")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        check_outdir(tmp_path / "f" / "sub")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"not outputs of an evaluation \(sub\)"):
        check_outdir(out)
    (out / "sub").rmdir()
    monkeypatch.setattr(staging.os, "access", lambda *a: False)
    with pytest.raises(PermissionError, match="not writable"):
        check_outdir(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_parent(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="ro"):
            with StagedOutdir(ro / "out"):
                pass
    finally:
        ro.chmod(0o755)


def test_symlinked_outdir_replaces_its_target(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (target / "metrics.json").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(target)
    with StagedOutdir(link) as st:
        _write(st, **{"metrics.json": "new"})
        st.commit()
    assert link.is_symlink() and (link / "metrics.json").read_text() == "new"


def test_stale_stage_of_a_dead_process_is_removed(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".out.cesped-stage-{pid}-abc"
    (stale / "gt.mrc").parent.mkdir()
    (stale / "gt.mrc").write_text("half-written")
    alive = tmp_path / f".out.cesped-stage-{os.getppid()}-def"  # a live process's stage is kept
    alive.mkdir()
    with StagedOutdir(out) as st:
        st.commit()
    assert not stale.exists() and alive.exists()
