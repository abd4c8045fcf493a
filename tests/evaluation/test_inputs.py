"""Bad input to the evaluation: a clear error (or a recorded choice), never a plausible wrong number.

Each test fails on the evaluation before issue 13 (which evaluated these cases with exit 0,
printed a traceback, or wrote nothing to say what it had assumed).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import mrcfile
import pytest

from cesped.evaluateEntry import evaluate, main
from cesped.io.star import read_star, write_star

from ._entries import make_entry
from .test_evaluate import _preds

MARK = 12345.5  # written as a number, turned into "nan" in the file text (as test_evaluate._preds)


@pytest.fixture(scope="module")
def base_entry(tmp_path_factory):
    return make_entry(tmp_path_factory.mktemp("bench"), "tinyIn", "C1", n_per_half=60, seed=3)


@pytest.fixture
def entry(base_entry, tmp_path):
    """A private copy of the entry, free to edit."""
    return shutil.copytree(base_entry, tmp_path / "bench" / "tinyIn")


def _write(path, st):
    write_star(path, st)
    path.write_text(path.read_text().replace(str(MARK), "nan"))


def _edit_entry(entry, edit):
    for h in (0, 1):
        st = read_star(entry / f"particles_{h}.star")
        edit(h, st)
        _write(entry / f"particles_{h}.star", st)


def _cli(entry, p0, p1, *extra):
    args = ["--targetName", str(entry), "--half0PredsFname", str(p0), "--half1PredsFname", str(p1)]
    return main([*args, *extra])


# ----------------------------------------------------------------------------------- symmetry


def test_entry_without_info_files_needs_the_symmetry(entry, tmp_path, capsys):
    p0, p1 = _preds(entry, tmp_path)
    for h in (0, 1):
        (entry / f"info_{h}.json").unlink()
    with pytest.raises(ValueError, match=r"neither info_0\.json nor info_1\.json.*symmetry"):
        evaluate(str(entry), p0, p1, mask="none")
    assert _cli(entry, p0, p1, "--mask", "none") == 2
    assert "--symmetry" in capsys.readouterr().err
    m = evaluate(str(entry), p0, p1, mask="none", symmetry="c1", plots=False)
    assert m["symmetry"] == "C1" and m["MAnE_deg"] == pytest.approx(0.0, abs=1e-6)
    assert _cli(entry, p0, p1, "--mask", "none", "--symmetry", "C1") == 0


def test_disagreeing_info_files_and_contradicting_argument(entry, tmp_path):
    p0, p1 = _preds(entry, tmp_path)
    with pytest.raises(ValueError, match=r"symmetry argument 'C2' contradicts.*info_0\.json"):
        evaluate(str(entry), p0, p1, symmetry="C2")
    (entry / "info_1.json").write_text(json.dumps({"symmetry": "C2"}))
    with pytest.raises(ValueError, match=r"info_0\.json says 'C1'.*info_1\.json says 'C2'"):
        evaluate(str(entry), p0, p1)


# --------------------------------------------------------------------------------------- mask


def test_failed_mask_download_is_an_error_unless_mask_none(entry, tmp_path, monkeypatch, capsys):
    """A registered entry whose published mask cannot be fetched: before, the paper's masked
    metrics silently became unmasked ones."""
    from cesped.data import zenodo
    from cesped.evaluation.masks import MaskUnavailableError

    root = tmp_path / "reg"
    reg = shutil.copytree(entry, root / "10280")
    (reg / "mask.mrc").unlink()
    for h, rec in ((0, "8353722"), (1, "8353737")):  # the half-sets count as downloaded
        (reg / f".complete_{h}.json").write_text(json.dumps({"record": rec, "manual": True}))

    def offline(*a, **k):
        raise zenodo.OfflineError("no network")

    monkeypatch.setattr(zenodo, "download_mask", offline)
    p0, p1 = _preds(reg, tmp_path)
    with pytest.raises(MaskUnavailableError, match=r"mask of entry '10280'.*mask='none'"):
        evaluate("10280", p0, p1, benchmarkDir=root, outdir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    capsys.readouterr()
    m = evaluate("10280", p0, p1, benchmarkDir=root, mask="none", plots=False)
    assert "no mask" not in capsys.readouterr().out
    assert m["mask"] is None and m["mask_md5"] is None and m["paper_columns_use"] == "unmasked"
    assert not any(m["paper_columns_masked"].values())
    rc = main(
        ["--targetName", "10280", "--benchmarkDir", str(root)]
        + ["--half0PredsFname", str(p0)]
        + ["--half1PredsFname", str(p1)]
    )
    assert rc == 2 and "could not download the mask" in capsys.readouterr().err


def test_metrics_record_the_mask_file_and_md5(entry, tmp_path):
    p0, p1 = _preds(entry, tmp_path)
    out = tmp_path / "out"
    m = evaluate(str(entry), p0, p1, outdir=out, plots=False)
    md5 = hashlib.md5((entry / "mask.mrc").read_bytes()).hexdigest()
    saved = json.loads((out / "metrics.json").read_text())
    for d in (m, saved):
        assert d["mask"] == "mask.mrc" and d["mask_md5"] == md5
        assert d["paper_columns_masked"]["PCC(GT,V)"] is True
        assert d["paper_columns_masked"]["FSCR0.143(GT0,GT1)"] is True
        assert d["paper_columns_masked"]["MAnE"] is False
        assert d["PCC(GT,V)"] == d["PCC(GT,V)_masked"]


# ------------------------------------------------------------------------- ground-truth cache


def test_gt_cache_key_follows_options_kernel_and_code(entry, tmp_path):
    from cesped.evaluation import gt_cache

    sp = entry / "particles_0.star"
    st = read_star(sp)
    cpu = gt_cache.reconstruction_kernel("native", "cpu")
    base = dict(symmetry="C1", kernel=cpu, pad=2, weights=False, code="a")
    key = gt_cache.gt_cache_key(sp, st, **base)
    assert gt_cache.gt_cache_key(sp, st, **base) == key
    changes = [
        dict(symmetry="C2"),
        dict(pad=3),
        dict(weights=True),
        dict(code="b"),
        dict(kernel=gt_cache.reconstruction_kernel("native", "cuda")),
        dict(kernel={**cpu, "library": "0.0"}),
        dict(kernel=gt_cache.reconstruction_kernel("relion", "cpu", relion_bin=tmp_path)),
    ]
    keys = {gt_cache.gt_cache_key(sp, st, **{**base, **c}) for c in changes}
    assert len(keys) == len(changes) and key not in keys
    # the default code hash is over the reconstruction's sources: editing one changes it
    from pathlib import Path

    import cesped

    pkg = tmp_path / "pkg"
    for sub in ("reconstruction", "physics"):
        shutil.copytree(
            Path(cesped.__file__).parent / sub, pkg / sub, ignore=shutil.ignore_patterns("__pycache__")
        )
    h0 = gt_cache.source_hash(str(pkg))
    assert h0 == gt_cache.source_hash()
    f = pkg / "reconstruction" / "fourier.py"
    f.write_text(f.read_text() + "\n# changed\n")
    gt_cache.source_hash.cache_clear()
    assert gt_cache.source_hash(str(pkg)) != h0
    assert gt_cache.gt_cache_key(sp, st, **{**base, "code": None}) == gt_cache.gt_cache_key(
        sp, st, **{**base, "code": h0}
    )


# ------------------------------------------------------------------------ ground-truth stars


def test_amplitude_contrast_outside_range_is_refused(entry, tmp_path):
    """Before: the numba path gave a NaN map and metrics None, exit 0."""
    from cesped.reconstruction.fourier import reconstruct

    p0, p1 = _preds(entry, tmp_path)

    def q0(h, st):
        st.optics["rlnAmplitudeContrast"] = 1.0

    _edit_entry(entry, q0)
    with pytest.raises(
        ValueError, match=r"particles_0\.star: rlnAmplitudeContrast is outside \[0, 1\).*row 0"
    ):
        evaluate(str(entry), p0, p1)
    with pytest.raises(ValueError, match=r"rlnAmplitudeContrast must be in \[0, 1\)"):
        reconstruct(entry / "particles_0.star", kernel="numba")


def test_non_finite_defocus_is_refused_naming_file_and_row(entry, tmp_path, capsys):
    """Before: NaN maps, every FSCR 192 Å, dFSCR 0, exit 0."""
    p0, p1 = _preds(entry, tmp_path)

    def nan_defocus(h, st):
        if h == 1:
            st.particles.loc[7, "rlnDefocusU"] = MARK

    _edit_entry(entry, nan_defocus)
    with pytest.raises(ValueError, match=r"particles_1\.star: rlnDefocusU is non-finite.*row 7 .*particle 8"):
        evaluate(str(entry), p0, p1)
    assert _cli(entry, p0, p1) == 2
    err = capsys.readouterr().err
    assert "particles_1.star" in err and "Traceback" not in err


@pytest.mark.parametrize("column", ["rlnImageName", "rlnAngleTilt", "rlnOriginYAngst"])
def test_ground_truth_without_a_column_is_one_line(entry, tmp_path, capsys, column):
    """Before: a bare KeyError traceback from evaluateEntry (a missing origin column: 0 shifts)."""
    p0, p1 = _preds(entry, tmp_path)

    def drop(h, st):
        if h == 0:
            st.particles = st.particles.drop(columns=[column])

    _edit_entry(entry, drop)
    assert _cli(entry, p0, p1) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "particles_0.star" in err and column in err


def test_pixel_size_disagreeing_with_the_stack_header_is_recorded(entry, tmp_path):
    """The star's pixel size is used (as RELION does); the stack's differing header value is a
    recorded warning with both values (before: the star silently won)."""
    p0, p1 = _preds(entry, tmp_path)
    with mrcfile.open(entry / "particles_1.mrcs", mode="r+") as m:
        m.voxel_size = 1.25
    out = tmp_path / "out"
    m = evaluate(str(entry), p0, p1, outdir=out, plots=False)
    assert len(m["warnings"]) == 1
    w = m["warnings"][0]
    assert "particles_1.mrcs" in w and "2.0" in w and "1.25" in w
    assert json.loads((out / "metrics.json").read_text())["warnings"] == m["warnings"]


# ------------------------------------------------------------------------------- predictions


def _huge_confidence(h, st):
    st.particles["rlnParticleFigureOfMerit"] = 1.0
    st.particles.loc[3, "rlnParticleFigureOfMerit"] = 1e30


def _zero_confidence(h, st):
    st.particles["rlnParticleFigureOfMerit"] = 0.0


def _huge_angle(h, st):
    st.particles.loc[2, "rlnAngleRot"] = 1e300


@pytest.mark.parametrize(
    "edit, message",
    [
        (_huge_confidence, r"rlnParticleFigureOfMerit must lie in \[0, 1\].*1e\+30"),
        (_zero_confidence, r"every rlnParticleFigureOfMerit is 0"),
        (_huge_angle, r"rlnAngleRot has \|angle\| > 10000 degrees"),
    ],
)
def test_bad_confidences_and_angles_are_refused(entry, tmp_path, edit, message):
    """Before: accepted (an empty map, a map dominated by one particle, an angle of 1e300)."""
    p0, p1 = _preds(entry, tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        evaluate(str(entry), p0, p1, usePredConfidence=True)


def test_missing_particles_are_counted_and_named(entry, tmp_path):
    names = read_star(entry / "particles_1.star").particles["rlnImageName"].tolist()

    def drop3(h, st):
        if h == 1:
            st.particles = st.particles.iloc[3:].reset_index(drop=True)

    p0, p1 = _preds(entry, tmp_path, drop3)
    with pytest.raises(
        ValueError, match=rf"3 particle\(s\) of half 1 have no prediction: {names[0]}, {names[1]}"
    ):
        evaluate(str(entry), p0, p1)


# -------------------------------------------------------------------------------------- outdir


def test_bad_outdir_is_refused_before_any_work(entry, tmp_path, monkeypatch, capsys):
    import cesped.evaluation.evaluate as ev

    p0, p1 = _preds(entry, tmp_path)

    def no_work(*a, **k):
        raise AssertionError("the evaluation started before checking outdir")

    monkeypatch.setattr(ev, "resolve_entry", no_work)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(NotADirectoryError, match="afile"):
        evaluate(str(entry), p0, p1, outdir=afile)
    with pytest.raises(NotADirectoryError, match="afile"):
        evaluate(str(entry), p0, p1, outdir=afile / "sub")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"mine holds files that are not outputs.*notes\.txt"):
        evaluate(str(entry), p0, p1, outdir=mine)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(tmp_path.glob(".mine*"))) == 0
    # the command line: one line naming the path, exit 2, no traceback
    assert _cli(entry, p0, p1, "--outdir", str(afile)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(afile) in err and "Traceback" not in err
    assert afile.read_text() == "x"


def test_cli_turns_oserror_into_one_line(entry, tmp_path, monkeypatch, capsys):
    import cesped.evaluation.evaluate as ev

    def unreadable(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked.star"))

    monkeypatch.setattr(ev, "resolve_entry", unreadable)
    p0, p1 = _preds(entry, tmp_path)
    assert _cli(entry, p0, p1) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "locked.star" in err and "Permission denied" in err


@pytest.mark.relion
def test_relion_path_refuses_bad_ctf_values_too(entry, tmp_path):
    """reconstruct_relion called directly (without the evaluation's checks): RELION itself refuses
    Q0 > 1, the independent reference for the range the native path now enforces."""
    from cesped.reconstruction.relion import reconstruct_relion

    def q0(h, st):
        st.optics["rlnAmplitudeContrast"] = 1.5

    _edit_entry(entry, q0)
    with pytest.raises(
        RuntimeError, match=r"AmplitudeContrast Q0 cannot be smaller than zero or larger than one"
    ):
        reconstruct_relion(entry / "particles_0.star", "C1")
