"""Prediction options of a trained checkpoint on the other half-set of synth_6msm: grid order,
quarter-turn averaging, local refinement (the README's 20-minute accuracy table).

Example usage::

    python -m cesped.train experiment=demo halfset=0 trainer.max_epochs=55 trainer.max_time=00:00:20:00 output_dir=run20
    python benchmarks/bench_i2s_prediction.py run20/checkpoints/best-*.ckpt 2,0,0 3,0,0 3,1,0 3,1,2 4,1,0

Each ``order,rot90_average,refine_steps`` triple prints one JSON line.
"""
# ruff: noqa: E402, E501  (a script: arguments are parsed before the heavy imports)

import json
import sys
import time

import torch

torch.set_num_threads(2)
from cesped.geometry.errors import symmetry_aware_error
from cesped.training.datamodule import open_particles
from cesped.training.infer import load_module, predict_dataset

ckpt = sys.argv[1]
mod = load_module(ckpt, "cpu")
ds = open_particles("synth_6msm", 1, **dict(mod.hparams.get("data_config") or {}))
labels = torch.stack([ds[i][2][0] for i in range(len(ds))]).double()
for order, avg, ref in [tuple(map(int, a.split(","))) for a in sys.argv[2:]]:
    t = time.time()
    ids, rot, prob = predict_dataset(
        mod.model, ds, 128, order=order, rot90_average=bool(avg), refine_steps=ref, progress=False
    )
    e = symmetry_aware_error(labels, rot[:, 0].double(), "C1")
    print(
        json.dumps(
            {
                "name": "i2s_prediction_mane_half1",
                "value": round(float(e.mean()), 2),
                "unit": "deg",
                "median_deg": round(float(e.median()), 2),
                "fraction_over_150deg": round(float((e > 150).float().mean()), 4),
                "order": order,
                "rot90_average": bool(avg),
                "refine_steps": ref,
                "seconds": round(time.time() - t, 1),
            }
        ),
        flush=True,
    )
