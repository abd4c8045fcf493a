"""evaluateEntry --frame free: poses in a turned frame (and of the other hand) score as the truth.

The predictions are the ground-truth poses of a C2 entry expressed in the frame of a map turned
by a random rotation G (``R_pred = G·R``) and, separately, of the mirrored map
(``R_pred = G·R·Rz(180°)``, see :mod:`cesped.evaluation.frames`). Fixed-frame scoring puts them at
chance; the frame-free evaluation recovers G and scores ~0° and the maps of the truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cesped.evaluateEntry import evaluate, main

from ._entries import make_entry
from .test_evaluate import _preds

ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]


@pytest.fixture(scope="module")
def c2_entry(tmp_path_factory):
    return make_entry(tmp_path_factory.mktemp("bench"), "tinyFrame", "C2", n_per_half=60, seed=5)


def _turned(G, mirrored):
    flip = Rotation.from_euler("z", 180, degrees=True) if mirrored else Rotation.identity()

    def edit(h, st):
        R = Rotation.from_euler("ZYZ", st.particles[ANGLES].to_numpy(np.float64), degrees=True)
        st.particles[ANGLES] = (G * R * flip).as_euler("ZYZ", degrees=True)

    return edit


@pytest.mark.parametrize("mirrored", [False, True])
def test_turned_and_mirrored_frames_score_as_the_truth(c2_entry, tmp_path, mirrored):
    G = Rotation.from_rotvec([0.9, -1.3, 0.4])
    p0, p1 = _preds(c2_entry, tmp_path, edit=_turned(G, mirrored))
    fixed = evaluate(str(c2_entry), p0, p1, mask="none", plots=False)
    assert fixed["MAnE_deg"] > 40.0 and fixed["frame"] == "fixed"
    free = evaluate(
        str(c2_entry), p0, p1, mask="none", plots=False, frame="free", allow_mirror=mirrored,
        outdir=tmp_path / "out",
    )
    assert free["MAnE_deg"] == pytest.approx(0.0, abs=1e-3)
    assert free["PCC(GT,V)_unmasked"] == pytest.approx(1.0, abs=1e-4)
    for h in (0, 1):
        assert free[f"frame_mirrored_half{h}"] is mirrored
        assert free[f"MAnE_unaligned_half{h}_deg"] == pytest.approx(fixed[f"MAnE_half{h}_deg"], abs=1e-6)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["frame"] == "free" and saved["MAnE_deg"] == pytest.approx(free["MAnE_deg"])


def test_the_other_hand_is_found_only_when_allowed(c2_entry, tmp_path):
    p0, p1 = _preds(c2_entry, tmp_path, edit=_turned(Rotation.from_rotvec([0.2, 0.5, -1.0]), True))
    free = evaluate(str(c2_entry), p0, p1, mask="none", plots=False, frame="free")
    assert free["MAnE_deg"] > 10.0 and not free["frame_mirrored_half0"]


def test_frame_free_bad_arguments(c2_entry, tmp_path, capsys):
    p0, p1 = _preds(c2_entry, tmp_path)
    with pytest.raises(ValueError, match="S2"):
        evaluate(str(c2_entry), p0, p1, predictionType="S2", frame="free")
    with pytest.raises(ValueError, match="frame must be"):
        evaluate(str(c2_entry), p0, p1, frame="loose")
    with pytest.raises(ValueError, match="allow_mirror"):
        evaluate(str(c2_entry), p0, p1, allow_mirror=True)
    args = ["--targetName", str(c2_entry), "--half0PredsFname", str(p0), "--half1PredsFname", str(p1)]
    assert main([*args, "--mask", "none", "--frame", "free", "--predictionType", "S2"]) == 2
    assert "S2" in capsys.readouterr().err
