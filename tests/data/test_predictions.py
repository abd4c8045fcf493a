"""Prediction stars (updateMd / saveMd) never carry the entry's ground truth (issue 13, section 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import DataLoader

from cesped.particlesDataset import ParticlesDataset

from ._helpers import tiny_tables, write_entry

RAW = dict(apply_perImg_normalization=False, ctf_correction="none", image_size_factor_for_crop=0.0)
POSE_GT = [
    "rlnAngleRot",
    "rlnAngleTilt",
    "rlnAnglePsi",
    "rlnOriginXAngst",
    "rlnOriginYAngst",
    "rlnMaxValueProbDistribution",
]


def _my_model(img, generator):
    """Stand-in for a user's model: random rotations and confidences."""
    b = img.shape[0]
    rot = Rotation.random(b, random_state=int(torch.randint(0, 2**31, (1,), generator=generator)))
    return torch.from_numpy(rot.as_matrix()), torch.rand(b, generator=generator, dtype=torch.float64)


def _readme_loop(ds, drop_last, batch_size=5):
    """The README's "evaluate your own model in ten lines" loop; returns what was predicted."""
    g = torch.Generator().manual_seed(0)
    preds = {}
    loader = DataLoader(ds, batch_size=batch_size, drop_last=drop_last)
    for iid, img, (rotMat, xyShiftAngs, confidence), metadata in loader:  # noqa: B007
        pred_rotmats, pred_conf = _my_model(img, g)
        ds.updateMd(ids=iid, angles=pred_rotmats, confidence=pred_conf, angles_format="rotmat")
        preds.update({i: (r.numpy(), float(c)) for i, r, c in zip(iid, pred_rotmats, pred_conf)})
    return preds


def _euler_matrices(df):
    return Rotation.from_euler(
        "ZYZ", df[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), degrees=True
    ).as_matrix()


def test_readme_loop_with_drop_last_refuses_to_save(tiny_entry, tmp_path):
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    _readme_loop(ds, drop_last=True)  # 24 particles in batches of 5: the last 4 are never seen
    out = tmp_path / "preds_0.star"
    with pytest.raises(
        ValueError, match=r"4 of the 24 particles .* no predicted angles.*000021@particles_0.mrcs"
    ):
        ds.saveMd(out)
    assert not out.exists()


def test_allow_partial_writes_exactly_the_predicted_rows_and_no_ground_truth(tiny_entry, tmp_path):
    from cesped.evaluateEntry import evaluate

    gt = starfile.read(tiny_entry / "tiny" / "particles_0.star")["particles"].set_index("rlnImageName")
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    preds = _readme_loop(ds, drop_last=True)
    out = tmp_path / "preds_0.star"
    ds.saveMd(out, allow_partial=True)
    got = starfile.read(out)["particles"]  # an independent parser
    assert list(got["rlnImageName"]) == sorted(preds) and len(got) == 20
    np.testing.assert_allclose(
        _euler_matrices(got), np.stack([preds[i][0] for i in got["rlnImageName"]]), atol=1e-9
    )
    np.testing.assert_allclose(got["rlnParticleFigureOfMerit"], [preds[i][1] for i in got["rlnImageName"]])
    # no shifts were predicted (the README's loop gives none): no shift columns, not GT's shifts
    assert not [c for c in got.columns if c.startswith("rlnOrigin")]
    assert "rlnMaxValueProbDistribution" not in got.columns
    # the image's own columns (CTF, optics group) are kept, unchanged
    np.testing.assert_allclose(got["rlnDefocusU"], gt.loc[got["rlnImageName"], "rlnDefocusU"])
    assert (
        got["rlnOpticsGroup"].to_numpy() == gt.loc[got["rlnImageName"], "rlnOpticsGroup"].to_numpy()
    ).all()
    # the entry's table (ground truth) is untouched by the predictions
    pd.testing.assert_series_equal(
        ds.particles.particles.set_index("rlnImageName")["rlnAngleRot"], gt["rlnAngleRot"], check_exact=False
    )
    # the evaluation says which particles are missing
    ds1 = ParticlesDataset("tiny", 1, benchmarkDir=tiny_entry, **RAW)
    _readme_loop(ds1, drop_last=False)
    ds1.saveMd(tmp_path / "preds_1.star")
    with pytest.raises(ValueError, match=r"4 particle\(s\) of half 0 have no prediction.*000021@particles_0"):
        evaluate(
            targetName="tiny",
            half0PredsFname=out,
            half1PredsFname=tmp_path / "preds_1.star",
            predictionType="SO3",
            benchmarkDir=tiny_entry,
            outdir=tmp_path / "eval",
            plots=False,
        )


def test_no_ground_truth_column_survives(tmp_path):
    """Every pose, prior and refinement column of the entry is dropped; image columns are kept."""
    n = 6
    parts, optics = tiny_tables(n, 16, seed=1)
    rng = np.random.default_rng(0)
    extra = {
        "rlnAngleRotPrior": rng.uniform(0, 90, n),
        "rlnAnglePsiPrior": rng.uniform(0, 90, n),
        "rlnAnglePsiFlipRatio": rng.uniform(0, 1, n),
        "rlnOriginXPriorAngst": rng.uniform(0, 2, n),
        "rlnOriginZAngst": rng.uniform(0, 2, n),
        "rlnParticleFigureOfMerit": rng.uniform(0.5, 1, n),
        "rlnNrOfSignificantSamples": rng.integers(1, 9, n),
        "rlnLogLikeliContribution": rng.uniform(1e4, 2e4, n),
        "rlnNormCorrection": rng.uniform(0.9, 1.1, n),
        "rlnClassNumber": np.ones(n, dtype=np.int64),
        "myPoseConfidence": rng.uniform(0, 1, n),  # not RELION's vocabulary: meaning unknown
        "rlnMicrographName": [f"mic{i}.mrc" for i in range(n)],
        "rlnCoordinateX": rng.uniform(0, 4000, n),
    }
    write_entry(tmp_path, "full", 0, np.zeros((n, 16, 16), np.float32), parts.assign(**extra), optics)
    ds = ParticlesDataset("full", 0, benchmarkDir=tmp_path, **RAW)
    ids = ds.particles.particles["rlnImageName"].tolist()
    pred = Rotation.random(n, random_state=1).as_matrix()
    ds.updateMd(ids, angles=pred)
    ds.saveMd(tmp_path / "p.star")
    got = starfile.read(tmp_path / "p.star")["particles"]
    assert sorted(got.columns) == sorted(
        [
            "rlnImageName",
            "rlnDefocusU",
            "rlnDefocusV",
            "rlnDefocusAngle",
            "rlnCtfPhaseShift",
            "rlnOpticsGroup",
            "rlnRandomSubset",
            "rlnMicrographName",
            "rlnCoordinateX",
            "rlnAngleRot",
            "rlnAngleTilt",
            "rlnAnglePsi",
        ]
    )
    np.testing.assert_allclose(_euler_matrices(got), pred, atol=1e-9)


def test_angles_only_never_keeps_ground_truth_shifts(tiny_entry, tmp_path):
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    ids = ds.particles.particles["rlnImageName"].tolist()
    ds.updateMd(ids, angles=Rotation.random(len(ids), random_state=2).as_matrix())
    ds.saveMd(tmp_path / "a.star")
    got = starfile.read(tmp_path / "a.star")["particles"]
    assert "rlnOriginXAngst" not in got.columns and "rlnOriginYAngst" not in got.columns
    # zeros are written only when given explicitly
    ds.updateMd(ids, shifts=np.zeros((len(ids), 2)))
    ds.saveMd(tmp_path / "b.star")
    np.testing.assert_array_equal(starfile.read(tmp_path / "b.star")["particles"]["rlnOriginXAngst"], 0.0)
    # shifts for only some of the predicted particles: refused, not completed with GT or 0
    ds2 = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    ds2.updateMd(ids, angles=Rotation.random(len(ids), random_state=3).as_matrix())
    ds2.updateMd(ids[:10], shifts=np.ones((10, 2)))
    with pytest.raises(
        ValueError, match=r"14 of the 24 particles with predicted angles were given no shifts"
    ):
        ds2.saveMd(tmp_path / "c.star")


def test_confidence_for_some_rows_never_leaves_others_at_zero(tmp_path):
    """A star without a figure-of-merit column: other rows must not become confidence 0."""
    n = 10
    parts, optics = tiny_tables(n, 16, seed=3)
    write_entry(tmp_path, "nofom", 0, np.zeros((n, 16, 16), np.float32), parts, optics)
    ds = ParticlesDataset("nofom", 0, benchmarkDir=tmp_path, **RAW)
    ids = ds.particles.particles["rlnImageName"].tolist()
    ds.updateMd(ids, angles=Rotation.random(n, random_state=4).as_matrix())
    ds.updateMd(ids[:4], confidence=np.full(4, 0.7))
    with pytest.raises(
        ValueError, match=r"6 of the 10 particles with predicted angles were given no confidence"
    ):
        ds.saveMd(tmp_path / "p.star")
    # only the particles predicted with a confidence: every written row has its own confidence
    ds2 = ParticlesDataset("nofom", 0, benchmarkDir=tmp_path, **RAW)
    ds2.updateMd(
        ids[:4], angles=Rotation.random(4, random_state=5).as_matrix(), confidence=[0.1, 0.2, 0.3, 0.4]
    )
    ds2.saveMd(tmp_path / "q.star", allow_partial=True)
    got = starfile.read(tmp_path / "q.star")["particles"]
    assert list(got["rlnImageName"]) == ids[:4]
    np.testing.assert_allclose(got["rlnParticleFigureOfMerit"], [0.1, 0.2, 0.3, 0.4])


def test_nothing_predicted_is_refused(tiny_entry, tmp_path):
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    ids = ds.particles.particles["rlnImageName"].tolist()
    ds.updateMd(ids, confidence=np.ones(len(ids)))  # confidences without angles predict nothing
    with pytest.raises(ValueError, match="none of the 24 particles"):
        ds.saveMd(tmp_path / "p.star", allow_partial=True)
    assert not (tmp_path / "p.star").exists()


def test_labels_stay_ground_truth_after_updates(tiny_entry):
    ds = ParticlesDataset("tiny", 0, benchmarkDir=tiny_entry, **RAW)
    iid, _, (rot, sh, conf), md = ds.get_batch(range(4))
    ds.updateMd(
        iid,
        angles=Rotation.random(4, random_state=6).as_matrix(),
        shifts=np.ones((4, 2)),
        confidence=[0.0] * 4,
    )
    iid2, _, (rot2, sh2, conf2), md2 = ds.get_batch(range(4))
    torch.testing.assert_close(rot2, rot)
    torch.testing.assert_close(sh2, sh)
    torch.testing.assert_close(conf2, conf)
    assert md2 == md
