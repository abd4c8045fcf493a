"""The examples (the paper's listings 1-4) run as they are on a tiny simulated entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import starfile

from cesped.simulation.entry import simulate_entry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    bench = tmp_path_factory.mktemp("bench")
    simulate_entry(bench / "tiny", "6msm", n_particles=240, pixel_size=6.0, box=40, snr=1.0, seed=3,
                   progress=False)
    return bench


def _run(args, cwd, bench):
    # the shell listing calls `python`: make it this interpreter (the test's virtual environment)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, CESPED_BENCHMARK_DIR=str(bench), PYTHONUNBUFFERED="1", PATH=path)
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_listings_run_end_to_end(tiny_bench, tmp_path):
    py = sys.executable
    for h in (0, 1):
        _run([py, str(EXAMPLES / "listing1_training_loop.py"), "--target", "tiny", "--halfset", str(h),
              "--steps", "3", "--batch-size", "16", "--num-workers", "2"], tmp_path, tiny_bench)
        assert (tmp_path / f"examples_output/model_half{h}.pt").is_file()
    for h in (0, 1):
        _run([py, str(EXAMPLES / "listing2_predictions.py"), "--model",
              f"examples_output/model_half{1 - h}.pt", "--target", "tiny", "--halfset", str(h),
              "--num-workers", "0"], tmp_path, tiny_bench)
        preds = starfile.read(tmp_path / f"examples_output/preds_{h}.star")
        particles = preds["particles"] if isinstance(preds, dict) else preds
        truth = starfile.read(tiny_bench / "tiny" / f"particles_{h}.star")["particles"]
        assert sorted(particles["rlnImageName"]) == sorted(truth["rlnImageName"])
        assert particles["rlnParticleFigureOfMerit"].between(0, 1).all()

    out = _run(["bash", str(EXAMPLES / "listing3_evaluate_cli.sh"), "tiny", "examples_output/preds_0.star",
                "examples_output/preds_1.star"], tmp_path, tiny_bench)
    metrics = json.loads((tmp_path / "examples_output/evaluation/metrics.json").read_text())
    assert 0 <= metrics["MAnE"] <= 180
    assert "MAnE" in out

    _run([py, str(EXAMPLES / "listing4_evaluate_function.py"), "--target", "tiny"], tmp_path, tiny_bench)
    metrics4 = json.loads((tmp_path / "examples_output/evaluation_fn/metrics.json").read_text())
    # the same predictions give the same pose metrics through the CLI and the function
    assert metrics4["MAnE"] == pytest.approx(metrics["MAnE"], abs=1e-9)
