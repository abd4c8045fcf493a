"""evaluate() carries the paper-compatible block and the random-pose reference (metrics.json,
metrics.csv and the report), each equal to its own function applied to the same inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from cesped.evaluateEntry import evaluate
from cesped.evaluation.paper_compat import paper_compatible
from cesped.evaluation.references import random_pose_reference
from cesped.io.star import read_star

from ._entries import make_entry
from .test_evaluate import _preds

ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    entry = make_entry(root / "bench", "tinyBlocks", "C2", n_per_half=60, seed=9)

    def jitter(h, st):
        R = Rotation.from_euler("ZYZ", st.particles[ANGLES].to_numpy(np.float64), degrees=True)
        st.particles[ANGLES] = (R * Rotation.from_rotvec(np.full((len(R), 3), 0.05))).as_euler(
            "ZYZ", degrees=True
        )

    p0, p1 = _preds(entry, root, edit=jitter)
    out = root / "out"
    return entry, evaluate(str(entry), p0, p1, outdir=out), out


def test_paper_compatible_block_equals_the_function_of_the_metrics(evaluated):
    _, m, out = evaluated
    expected = paper_compatible(m)
    assert m["paper_compatible"].keys() == expected.keys()
    for k, v in expected.items():
        assert m["paper_compatible"][k] == pytest.approx(v, nan_ok=True)
    # its FSCR(GT,V) is the unmasked one even with a mask (the original's definition)
    assert m["paper_compatible"]["FSCR0.143(GT,V)"] == pytest.approx(m["FSCR0.143(GT,V)_unmasked_A"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["paper_compatible"] == m["paper_compatible"]
    row = pd.read_csv(out / "metrics.csv").iloc[0]
    assert row["paper_compatible.MAnE"] == pytest.approx(m["MAnE_deg"], rel=1e-5)


def test_random_pose_reference_is_recorded_and_reported(evaluated):
    entry, m, out = evaluated
    rot = np.concatenate(
        [
            Rotation.from_euler(
                "ZYZ",
                read_star(entry / f"particles_{h}.star").particles[ANGLES].to_numpy(np.float64),
                degrees=True,
            ).as_matrix()
            for h in (0, 1)
        ]
    )
    ref = m["references"]["random poses"]
    direct = random_pose_reference(rot, "C2", seed=0)
    assert ref["MAnE_deg"] == pytest.approx(direct["MAnE_deg"])
    assert 80.0 < ref["MAnE_deg"] < 120.0  # random poses are far from the ~4 deg predictions
    assert m["MAnE_deg"] < 10.0
    html = (out / "report.html").read_text()
    assert f"{ref['MAnE_deg']:.1f}" in html or f"{ref['MAnE_deg']:.2f}" in html
