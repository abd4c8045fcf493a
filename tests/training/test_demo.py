"""The demo's whole flow on the tiny entry with a tiny model: train both halves, refine both,
the floor, evaluate raw (SO3) and refined (SO3xR2), the three rows in summary.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.training._tiny import TINY_NET

TINY_TRAINING = [
    "data.batch_size=8",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "prediction.batch_size=16",
    "prediction.order=null",
    "prediction.rot90_average=false",
    "prediction.top_k=2",
    *TINY_NET,
]


@pytest.mark.slow
def test_demo_refines_both_halves_and_reports_raw_refined_floor(tiny_entry, tmp_path, capsys):
    from cesped.demo import run_demo
    from cesped.evaluation.floor import FLOOR
    from cesped.io.star import read_star

    work = tmp_path / "demo"
    metrics = run_demo("tiny", work, benchmark_dir=tiny_entry, train_overrides=tuple(TINY_TRAINING))
    out = capsys.readouterr().out
    summary = json.loads((work / "summary.json").read_text())
    rows = summary["rows"]
    assert list(rows) == ["raw", "refined", "floor", "random poses"]
    assert rows["raw"]["MAnE_deg"] == pytest.approx(metrics["MAnE_deg"])
    assert rows["floor"]["MAnE_deg"] == pytest.approx(metrics["references"][FLOOR]["MAnE_deg"])
    refined_metrics = json.loads((work / "evaluation_refined" / "metrics.json").read_text())
    assert refined_metrics["predictionType"] == "SO3xR2"
    assert rows["refined"]["MAnE_deg"] == pytest.approx(refined_metrics["MAnE_deg"])
    assert np.isfinite(rows["refined"]["shiftsRMSE_A"])
    for name in ("raw", "refined", "floor", "random poses"):
        assert any(line.startswith(name) for line in out.splitlines()), name
    # each half refined against the map of the half its model was trained on
    for h in (0, 1):
        star = work / "train" / "tiny" / f"half{1 - h}" / f"predictions_{h}_refined.star"
        meta = read_star(star).other_blocks["cesped_refinement"]
        assert f"particles_{1 - h}.star" in meta["cespedRefinementReference"]
        assert int(meta["cespedRefinementTopK"]) == 2
    assert {"refine_s", "floor_s", "evaluate_refined_s"} <= set(summary["timings_s"])
    # a second run reuses the refined files and the cached floor
    run_demo("tiny", work, benchmark_dir=tiny_entry, train_overrides=tuple(TINY_TRAINING))
    assert "reusing" in capsys.readouterr().out
    again = json.loads((work / "summary.json").read_text())
    assert again["rows"] == rows
