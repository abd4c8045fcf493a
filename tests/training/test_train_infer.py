"""End-to-end: train a few steps on a tiny simulated entry, predict, resume, infer, evaluate."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ._tiny import TINY_NET, compose_train


def _angles(star_path):
    from cesped.io.star import read_star

    df = read_star(star_path).particles.sort_values("rlnImageName")
    return df


def test_train_predict_resume_infer_evaluate(tiny_entry, tmp_path):
    from cesped.io.star import read_star
    from cesped.training.infer import infer
    from cesped.training.train import train

    out = tmp_path / "run"
    res = train(compose_train(tiny_entry, out))
    pred = Path(res["predictions"])
    assert pred == out / "predictions_1.star"
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "config.yaml").is_file()
    assert (out / "csv" / "metrics.csv").is_file() and any((out / "tensorboard").iterdir())
    gt = read_star(tiny_entry / "tiny" / "particles_1.star").particles
    df = read_star(pred).particles
    assert sorted(df["rlnImageName"]) == sorted(gt["rlnImageName"])
    ang = df[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    fom = df["rlnParticleFigureOfMerit"].to_numpy()
    assert np.isfinite(ang).all() and ((fom > 0) & (fom <= 1)).all()
    assert not np.allclose(ang, gt[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())

    # the saved config recomposes the run; resume continues from last.ckpt
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 4  # 2 epochs x 2 batches
    assert not any("pix_table" in k or "gamma_table" in k for k in ck["state_dict"])
    train(compose_train(tiny_entry, out, ["resume=true", "trainer.max_epochs=3", "predict_other_half=false"]))
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 6  # one more epoch, not a restart from 0

    # inference: entry half-set and the same particles as a plain star file give identical poses
    base = {
        "ckpt": str(out / "checkpoints" / "last.ckpt"),
        "batch_size": 5,
        "progress": False,
        "benchmark_dir": str(tiny_entry),
    }
    p0 = infer({**base, "entry": "tiny", "halfset": 0, "out": str(tmp_path / "p0.star")})
    p0b = infer({**base, "entry": "tiny", "halfset": 0, "out": str(tmp_path / "p0b.star"), "top_k": 3})
    p0s = infer(
        {**base, "star": str(tiny_entry / "tiny" / "particles_0.star"), "out": str(tmp_path / "p0s.star")}
    )
    a, b, c = _angles(p0), _angles(p0b), _angles(p0s)
    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnParticleFigureOfMerit"]
    np.testing.assert_allclose(a[cols].to_numpy(), c[cols].to_numpy(), atol=1e-4)  # same batches: identical
    # top-1 vs top-3 selection: same probabilities; poses may differ only between exact ties of the
    # barely trained tiny model, and then the top-1 pose is one of the top-3 poses
    np.testing.assert_allclose(a[cols[3]].to_numpy(), b[cols[3]].to_numpy(), rtol=1e-5)
    topk = np.load(tmp_path / "p0b_topk.npz")
    assert topk["rotmats"].shape == (len(a), 3, 3, 3) and (np.diff(topk["probs"], axis=1) <= 0).all()
    from cesped.geometry.rotations import euler_to_matrix

    order = {iid: i for i, iid in enumerate(topk["ids"])}
    top = torch.as_tensor(topk["rotmats"][[order[i] for i in a["rlnImageName"]]]).double()
    ra = euler_to_matrix(torch.as_tensor(a[cols[:3]].to_numpy()))
    assert bool(((top - ra[:, None]).abs().amax((-1, -2)) < 1e-4).any(1).all())

    # evaluateEntry accepts the prediction files
    from cesped.evaluation.evaluate import evaluate

    p1 = infer({**base, "entry": "tiny", "halfset": 1, "out": str(tmp_path / "p1.star")})
    metrics = evaluate(
        str(tiny_entry / "tiny"), p0, p1, outdir=tmp_path / "eval", benchmarkDir=tiny_entry, plots=False
    )
    from cesped.geometry.errors import symmetry_aware_error
    from cesped.geometry.rotations import euler_to_matrix

    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    gt1 = read_star(tiny_entry / "tiny" / "particles_1.star").particles.sort_values("rlnImageName")
    err = symmetry_aware_error(
        euler_to_matrix(torch.as_tensor(gt1[cols].to_numpy())),
        euler_to_matrix(torch.as_tensor(_angles(p1)[cols].to_numpy())),
        "C2",
    )
    assert metrics["MAnE_half1_deg"] == pytest.approx(float(err.mean()), abs=1e-3)


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tiny_entry, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "cesped.train",
        "entry=tiny",
        "halfset=0",
        f"benchmark_dir={tiny_entry}",
        f"output_dir={out}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.sync_batchnorm=false",
        "+trainer.max_steps=2",
        "+trainer.limit_val_batches=1",
        "data.batch_size=4",
        "trainer.enable_progress_bar=false",
        "predict_other_half=false",
        *TINY_NET,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == 2


def test_cosine_schedule_spans_the_epoch_budget(tiny_entry, tmp_path):
    """optimizer=radam_cosine: total_steps from the trainer (2 epochs x 2 batches), stepped per batch.
    The same run trains with ``model.target=exact``, which must reach the module."""
    from cesped.training.train import train

    out = tmp_path / "cos"
    extra = [
        "optimizer=radam_cosine",
        "optimizer.scheduler.warmup_steps=1",
        "predict_other_half=false",
        "model.target=exact",
    ]
    result = train(compose_train(tiny_entry, out, extra))
    assert math.isfinite(result["metrics"]["train_loss"])
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["hyper_parameters"]["target"] == "exact"
    assert ck["lr_schedulers"][0]["last_epoch"] == 4  # one scheduler step per batch
    lr = ck["optimizer_states"][0]["param_groups"][0]["lr"]
    # after the whole budget the factor is min_factor (0.02) of the initial 2e-3
    assert lr == pytest.approx(0.02 * 2e-3, rel=1e-6)


def test_last_checkpoint_is_written_every_epoch_even_without_a_new_best(tiny_entry, tmp_path):
    """Monitoring ``epoch`` (mode min) makes epoch 0 the only best: last.ckpt must still be the
    final epoch's, so that resume=true loses at most one epoch."""
    from cesped.training.train import train

    out = tmp_path / "last"
    extra = ["callbacks.model_checkpoint.monitor=epoch", "trainer.max_epochs=3", "predict_other_half=false"]
    result = train(compose_train(tiny_entry, out, extra))
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["epoch"] == 2 and ck["global_step"] == 6
    best = [p.name for p in (out / "checkpoints").glob("best-*.ckpt")]
    assert best == ["best-epoch000-err" + best[0].split("-err")[1]] and result["best_ckpt"].endswith(best[0])
