"""``evaluateEntry --floor``: the image-limited floor as a reference beside random poses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cesped.io.star import read_star, write_star


@pytest.fixture(scope="module")
def sim_entry(tmp_path_factory):
    """``(benchmark_dir, name)``: a simulated 6MSM entry with its true map, 2 x 40 particles of 48 px."""
    from cesped.simulation import simulate_entry

    root = tmp_path_factory.mktemp("floor_bench")
    simulate_entry(
        root / "floor6msm",
        structure="6msm",
        n_particles=80,
        pixel_size=4.0,
        box=48,
        snr=2.0,
        seed=5,
        progress=False,
    )
    return root, "floor6msm"


def _predictions(entry_dir, tmp_path, psi_error):
    out = []
    for h in (0, 1):
        st = read_star(entry_dir / f"particles_{h}.star")
        st.particles["rlnAnglePsi"] = st.particles["rlnAnglePsi"] + psi_error
        p = tmp_path / f"p_{h}.star"
        write_star(p, st)
        out.append(str(p))
    return out


def test_floor_reference_in_metrics_and_report(sim_entry, tmp_path):
    from cesped.evaluation.evaluate import evaluate
    from cesped.evaluation.floor import FLOOR
    from cesped.refinement.api import image_limited_floor

    torch.set_num_threads(2)
    root, name = sim_entry
    p0, p1 = _predictions(root / name, tmp_path, 20.0)
    m = evaluate(name, p0, p1, outdir=tmp_path / "ev", benchmarkDir=root, plots=True, floor=True)
    floor = m["references"][FLOOR]
    # the pooled floor is the mean of the two halves' floors, computed independently here
    errs = [image_limited_floor(name, h, benchmark_dir=root)["errors_deg"] for h in (0, 1)]
    assert floor["MAnE_deg"] == pytest.approx(float(np.concatenate(errs).mean()), rel=1e-9)
    assert floor["n_particles"] == 80
    # on these clean images the floor is far below predictions 20 degrees off and random poses
    assert floor["MAnE_deg"] < 0.5 * m["MAnE_deg"]
    assert abs(m["MAnE_deg"] - 20.0) < 1e-6
    assert floor["MAnE_deg"] < m["references"]["random poses"]["MAnE_deg"] / 10
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["references"][FLOOR]["MAnE_deg"] == pytest.approx(floor["MAnE_deg"])
    html = (tmp_path / "ev" / "report.html").read_text()
    summary = html[html.index('<table id="summary">') : html.index("</table>")]
    assert f"<th>{FLOOR}</th>" in summary and f"{floor['MAnE_deg']:.3g}"[:3] in summary
    # cached per entry: the second evaluation does not search again
    m2 = evaluate(name, p0, p1, outdir=tmp_path / "ev2", benchmarkDir=root, plots=False, floor=True)
    assert m2["references"][FLOOR]["seconds"] == 0.0
    assert m2["references"][FLOOR]["MAnE_deg"] == floor["MAnE_deg"]


def test_floor_needs_a_true_map_and_rotations(sim_entry, tmp_path):
    import shutil

    from cesped.evaluateEntry import main

    root, name = sim_entry
    bare = tmp_path / "bench" / "bare"
    shutil.copytree(root / name, bare)
    (bare / "gt_map.mrc").unlink()
    p0, p1 = _predictions(bare, tmp_path, 5.0)
    out = tmp_path / "ev"
    args = [
        "--targetName",
        "bare",
        "--benchmarkDir",
        str(tmp_path / "bench"),
        "--half0PredsFname",
        p0,
        "--half1PredsFname",
        p1,
        "--outdir",
        str(out),
        "--floor",
    ]
    assert main(args) == 2
    assert not out.exists()  # nothing written
    from cesped.evaluation.evaluate import evaluate

    with pytest.raises(FileNotFoundError, match="gt_map.mrc"):
        evaluate("bare", p0, p1, benchmarkDir=tmp_path / "bench", floor=True)
    with pytest.raises(ValueError, match="SO3 or SO3xR2"):
        evaluate(name, p0, p1, benchmarkDir=root, predictionType="S2", floor=True)
