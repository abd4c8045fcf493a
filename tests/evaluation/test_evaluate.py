"""evaluate / python -m cesped.evaluateEntry on tiny synthetic entries."""

from __future__ import annotations

import json
import math

import mrcfile
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from cesped.evaluateEntry import evaluate, main
from cesped.evaluation.evaluate import PAPER_COLUMNS
from cesped.io.star import read_star, write_star

from ._entries import make_entry


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return {
        "C1": make_entry(root, "tinyC1", "C1", n_per_half=300, seed=0),
        "C2": make_entry(root, "tinyC2", "C2", n_per_half=200, seed=1),
    }


def _preds(entry, tmp_path, edit=None, tag="p"):
    """Prediction files = GT tables, optionally edited per half: edit(h, StarFile)."""
    out = []
    for h in (0, 1):
        st = read_star(entry / f"particles_{h}.star")
        if edit is not None:
            edit(h, st)
        p = tmp_path / f"{tag}_{h}.star"
        write_star(p, st)
        # write_star refuses non-finite numbers; a marker value is turned into "nan" in the text
        p.write_text(p.read_text().replace("12345.5", "nan"))
        out.append(p)
    return out


def _random_angles(h, st, seed=0):
    rot = Rotation.random(len(st.particles), random_state=seed + h)
    st.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]] = rot.as_euler("ZYZ", degrees=True)


def test_ground_truth_poses_give_zero_error_and_no_loss(entries, tmp_path):
    p0, p1 = _preds(entries["C1"], tmp_path)
    out = tmp_path / "out"
    m = evaluate(str(entries["C1"]), p0, p1, predictionType="SO3", outdir=out)
    assert m["MAnE_deg"] == pytest.approx(0.0, abs=1e-6)
    assert m["wMAnE_deg"] == pytest.approx(0.0, abs=1e-6)
    assert m["PCC(GT,V)_masked"] == pytest.approx(1.0, abs=1e-6)
    assert m["PCC(V0,V1)_masked"] == pytest.approx(m["PCC(GT0,GT1)_masked"], abs=1e-6)
    # dPCC = PCC(GT0,GT1) - PCC(GT,V): with V == GT only the half-map noise of GT0/GT1 remains
    for fl in ("masked", "unmasked"):
        assert m[f"dPCC_{fl}"] == pytest.approx(m[f"PCC(GT0,GT1)_{fl}"] - 1.0, abs=1e-6)
    assert abs(m["dPCC_masked"]) < 0.03
    # outputs: the JSON holds what was returned; one CSV row with the paper's columns
    saved = json.loads((out / "metrics.json").read_text())
    for k, v in m.items():
        assert saved[k] == (pytest.approx(v) if isinstance(v, float) else v)
    csv = pd.read_csv(out / "metrics.csv")
    # the paper's columns (our consistent definitions), then the original's (paper_compatible.*)
    assert list(csv.columns[: len(PAPER_COLUMNS)]) == list(PAPER_COLUMNS) and len(csv) == 1
    assert all(c.startswith("paper_compatible.") for c in csv.columns[len(PAPER_COLUMNS) :])
    assert csv["PCC(GT,V)"].iloc[0] == pytest.approx(m["PCC(GT,V)_masked"], rel=1e-5)
    for name in ("gt_0", "gt_1", "gt", "pred_0", "pred_1", "pred"):
        with mrcfile.open(out / f"{name}.mrc") as f:
            assert f.data.shape == (32, 32, 32)
            assert float(f.voxel_size.x) == pytest.approx(2.0)
    pngs = ("fsc.png", "angular_errors.png", "central_slices.png", "orientation_coverage.png")
    assert not (out / "confidence_vs_error.png").exists()  # the predictions carry no confidence
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the report embeds every plot (the per-particle ones rendered while the maps were built)
    report = (out / "report.html").read_text()
    assert report.count('src="data:image/png;base64,') == len(pngs)
    assert "Histogram of symmetry-aware angular errors" in report
    assert not list(out.glob("*.tmp*")) and not list(out.glob(".*"))  # no temporary leftovers
    curves = pd.read_csv(out / "fsc_curves.csv")
    np.testing.assert_allclose(curves["frequency_1/A"], np.arange(17) / 64.0)
    assert "FSC(GT0,GT1)_masked" in curves and "FSC(GT,V)_unmasked" in curves


def test_random_poses_c1(entries, tmp_path):
    p0, p1 = _preds(entries["C1"], tmp_path, _random_angles)
    m = evaluate(str(entries["C1"]), p0, p1, predictionType="SO3")
    # Haar-random relative rotation: p(θ) = (1 - cos θ)/π, E[θ] = π/2 + 2/π rad
    expected = math.degrees(math.pi / 2 + 2 / math.pi)
    assert m["MAnE_deg"] == pytest.approx(expected, abs=4.0)
    # a random-pose map is a blurred ball: still correlated at low resolution, clearly worse
    assert m["PCC(GT,V)_masked"] < 0.75 < m["PCC(GT0,GT1)_masked"]
    assert m["dPCC_masked"] > 0.25
    assert m["FSCR0.143(GT,V)_masked_A"] > 2 * m["FSCR0.143(GT0,GT1)_masked_A"]


def test_random_poses_c2_lower_error(entries, tmp_path):
    p0, p1 = _preds(entries["C2"], tmp_path, _random_angles)
    m = evaluate(str(entries["C2"]), p0, p1, predictionType="SO3")
    # Monte Carlo with scipy (independent of cesped.geometry): min over {I, Rz(180°)} acting on the left
    a = Rotation.random(200_000, random_state=7)
    b = Rotation.random(200_000, random_state=8)
    g = Rotation.from_euler("z", 180, degrees=True)
    err = np.minimum((a.inv() * b).magnitude(), ((g * a).inv() * b).magnitude())
    expected = np.degrees(err.mean())
    assert expected < math.degrees(math.pi / 2 + 2 / math.pi) - 10
    assert m["MAnE_deg"] == pytest.approx(expected, abs=5.0)


def test_symmetry_equivalent_predictions_have_zero_error(entries, tmp_path):
    """C2: predicting S·R (the other symmetry mate) is not an error; nor is the map worse."""

    def mate(h, st):
        rot = Rotation.from_euler(
            "ZYZ", st.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]], degrees=True
        )
        st.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]] = (
            Rotation.from_euler("z", 180, degrees=True) * rot
        ).as_euler("ZYZ", degrees=True)

    p0, p1 = _preds(entries["C2"], tmp_path, mate)
    m = evaluate(str(entries["C2"]), p0, p1, predictionType="SO3", mask="none")
    assert m["MAnE_deg"] == pytest.approx(0.0, abs=1e-4)
    assert m["PCC(GT,V)_unmasked"] > 0.99
    assert m["mask"] is None and "PCC(GT,V)_masked" not in m


def test_s2_and_so3xr2(entries, tmp_path):
    def wrong_psi(h, st):
        st.particles["rlnAnglePsi"] += 40.0

    p0, p1 = _preds(entries["C1"], tmp_path, wrong_psi, tag="psi")
    s2 = evaluate(str(entries["C1"]), p0, p1, predictionType="S2")
    assert s2["MAnE_deg"] == pytest.approx(0.0, abs=1e-4)  # psi is not part of an S2 prediction
    assert s2["PCC(GT,V)_masked"] > 0.999 and s2["shiftsRMSE_A"] is None
    so3 = evaluate(str(entries["C1"]), p0, p1, predictionType="SO3")
    assert so3["MAnE_deg"] == pytest.approx(40.0, abs=1e-3)

    def wrong_shift(h, st):
        st.particles["rlnOriginXAngst"] += 4.0

    p0, p1 = _preds(entries["C1"], tmp_path, wrong_shift, tag="shift")
    so3 = evaluate(str(entries["C1"]), p0, p1, predictionType="SO3")  # GT shifts are used
    assert so3["PCC(GT,V)_masked"] > 0.999 and so3["shiftsRMSE_A"] is None
    so3xr2 = evaluate(str(entries["C1"]), p0, p1, predictionType="SO3xR2")
    assert so3xr2["MAnE_deg"] == pytest.approx(0.0, abs=1e-4)
    assert so3xr2["shiftsRMSE_A"] == pytest.approx(4.0, rel=1e-9)
    assert so3xr2["PCC(GT,V)_masked"] < so3["PCC(GT,V)_masked"] - 0.05


def test_confidence_weighting(entries, tmp_path):
    """Zero confidence on the randomised half of the particles restores the map."""

    def half_random(h, st):
        n = len(st.particles)
        rnd = Rotation.random(n, random_state=h).as_euler("ZYZ", degrees=True)
        bad = np.arange(n) % 2 == 0
        st.particles.loc[bad, ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]] = rnd[bad]
        st.particles["rlnParticleFigureOfMerit"] = np.where(bad, 0.0, 1.0)

    p0, p1 = _preds(entries["C1"], tmp_path, half_random)
    weighted = evaluate(str(entries["C1"]), p0, p1, usePredConfidence=True)
    plain = evaluate(str(entries["C1"]), p0, p1, usePredConfidence=False)
    assert weighted["MAnE_deg"] == pytest.approx(plain["MAnE_deg"])
    assert weighted["PCC(GT,V)_masked"] > 0.99 > plain["PCC(GT,V)_masked"]


def test_gt_maps_are_cached(entries, tmp_path):
    from cesped import settings

    p0, p1 = _preds(entries["C1"], tmp_path)
    evaluate(str(entries["C1"]), p0, p1)
    cached = sorted((settings.cache_dir() / "gt_maps").glob("*.mrc"))
    assert len(cached) >= 2
    mtimes = [c.stat().st_mtime_ns for c in cached]
    evaluate(str(entries["C1"]), p0, p1)
    assert [c.stat().st_mtime_ns for c in cached] == mtimes


def _drop_one(h, st):
    st.particles = st.particles.iloc[1:].reset_index(drop=True)


def _duplicate(h, st):
    st.particles = pd.concat([st.particles, st.particles.iloc[:1]], ignore_index=True)


def _extra(h, st):
    row = st.particles.iloc[:1].copy()
    row["rlnImageName"] = "999999@elsewhere.mrcs"
    st.particles = pd.concat([st.particles, row], ignore_index=True)


def _nan_angle(h, st):
    st.particles.loc[5, "rlnAngleTilt"] = 12345.5  # becomes "nan" in the file


def _box(h, st):
    st.optics["rlnImageSize"] = 64


def _pixel(h, st):
    st.optics["rlnImagePixelSize"] = 1.0


def _no_psi(h, st):
    st.particles = st.particles.drop(columns=["rlnAnglePsi"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (_drop_one, "no prediction"),
        (_duplicate, "duplicated"),
        (_extra, "not in the entry"),
        (_nan_angle, "non-finite"),
        (_box, "box size"),
        (_pixel, "pixel size"),
        (_no_psi, "rlnAnglePsi"),
    ],
)
def test_bad_predictions_raise_and_write_nothing(entries, tmp_path, edit, message):
    p0, p1 = _preds(entries["C1"], tmp_path, edit)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        evaluate(str(entries["C1"]), p0, p1, predictionType="SO3", outdir=out)
    assert not out.exists()


def test_swapped_halves_are_recognised(entries, tmp_path):
    p0, p1 = _preds(entries["C1"], tmp_path)
    with pytest.raises(ValueError, match="other half"):
        evaluate(str(entries["C1"]), p1, p0)


def test_other_bad_arguments(entries, tmp_path, monkeypatch):
    p0, p1 = _preds(entries["C1"], tmp_path)
    with pytest.raises(ValueError, match="predictionType"):
        evaluate(str(entries["C1"]), p0, p1, predictionType="R3")
    with pytest.raises(FileNotFoundError, match="half1PredsFname"):
        evaluate(str(entries["C1"]), p0, tmp_path / "nope.star")
    with pytest.raises(ValueError, match="noSuchEntry"):
        evaluate("noSuchEntry", p0, p1)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CESPED_RELION_BIN", raising=False)
    with pytest.raises(FileNotFoundError, match="relion_reconstruct"):
        evaluate(str(entries["C1"]), p0, p1, backend="relion", outdir=tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


def test_command_line(entries, tmp_path, capsys):
    p0, p1 = _preds(entries["C1"], tmp_path)
    out = tmp_path / "cli"
    rc = main(
        [
            "--predictionType",
            "SO3",
            "--targetName",
            str(entries["C1"]),
            "--half0PredsFname",
            str(p0),
            "--half1PredsFname",
            str(p1),
            "--n_cpus",
            "1",
            "--outdir",
            str(out),
            "--no-usePredConfidence",
        ]
    )
    assert rc == 0
    assert json.loads((out / "metrics.json").read_text())["usePredConfidence"] is False
    assert "PCC(GT,V)" in capsys.readouterr().out
    rc = main(
        ["--targetName", str(entries["C1"]), "--half0PredsFname", str(p1), "--half1PredsFname", str(p0)]
    )
    assert rc == 2
    assert "other half" in capsys.readouterr().err


@pytest.mark.relion
def test_relion_backend_agrees_with_native(entries, tmp_path):
    def perturb(h, st):
        rot = Rotation.from_euler(
            "ZYZ", st.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]], degrees=True
        )
        noise = Rotation.from_rotvec(np.random.default_rng(h).normal(0, np.radians(3), (len(rot), 3)))
        st.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]] = (noise * rot).as_euler(
            "ZYZ", degrees=True
        )

    p0, p1 = _preds(entries["C1"], tmp_path, perturb)
    nat = evaluate(str(entries["C1"]), p0, p1)
    rel = evaluate(str(entries["C1"]), p0, p1, backend="relion", n_cpus=1)
    assert rel["MAnE_deg"] == nat["MAnE_deg"]
    for k in ("PCC(GT0,GT1)_masked", "PCC(GT,V)_masked", "PCC(V0,V1)_masked"):
        assert rel[k] == pytest.approx(nat[k], abs=0.02), k


def test_failure_during_reconstruction_writes_nothing(entries, tmp_path, monkeypatch):
    """The per-particle plots render in a background thread while the maps are built; when the
    reconstruction fails nothing reaches outdir and no thread is left running."""
    import threading

    import cesped.evaluation.reconstruct as rec

    def boom(*a, **k):
        raise ValueError("reconstruction failed on purpose")

    monkeypatch.setattr(rec, "native_gt_and_pred", boom)
    p0, p1 = _preds(entries["C1"], tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="on purpose"):
        evaluate(str(entries["C1"]), p0, p1, outdir=out)
    assert not out.exists() or list(out.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "cesped-plots"]
