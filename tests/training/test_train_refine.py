"""``python -m cesped.train ... refine=true``: the refined predictions beside the raw ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.training._tiny import compose_train


def test_refine_true_writes_refined_predictions_against_the_training_half(tiny_entry, tmp_path):
    from cesped.io.star import read_star
    from cesped.refinement.api import refine_star
    from cesped.training.train import train

    out = tmp_path / "run"
    res = train(compose_train(tiny_entry, out, ["refine=true", "prediction.top_k=2"]))
    raw, refined = Path(res["predictions"]), Path(res["refined"])
    assert refined == out / "predictions_1_refined.star" and refined.is_file()
    assert (out / "predictions_1_topk.npz").is_file()

    st, st_raw = read_star(refined), read_star(raw)
    df, df_raw = st.particles, st_raw.particles
    assert list(df["rlnImageName"]) == list(df_raw["rlnImageName"])
    for c in ("rlnOriginXAngst", "rlnOriginYAngst", "rlnMaxValueProbDistribution"):
        assert np.isfinite(df[c].to_numpy(np.float64)).all(), c
    conf = df["rlnParticleFigureOfMerit"].to_numpy(np.float64)
    assert ((conf >= 0) & (conf <= 1)).all()
    meta = st.other_blocks["cesped_refinement"]
    # the reference is the TRAINING half's map (half 0), never the predicted half's labels
    assert "particles_0.star" in meta["cespedRefinementReference"]
    assert int(meta["cespedRefinementTopK"]) == 2

    # the same as the command's defaults on the raw predictions, run separately
    again = tmp_path / "again.star"
    refine_star("tiny", 1, raw, again, top_k=2, benchmark_dir=tiny_entry)
    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
    np.testing.assert_allclose(
        read_star(again).particles[cols].to_numpy(np.float64), df[cols].to_numpy(np.float64), atol=1e-4
    )
