"""``cesped.Evaluator.eval`` on 300,000 predictions vs evaluateEntry's angular part, same run.

A half-set of N particles (default 300,000, C1 and D2) is written as an entry directory
(``particles_0.star``, ``info_0.json``; the Evaluator reads no image) with predictions that are
the ground truth turned by about 5° per particle, in shuffled order. Measured in this process,
median of ``--repeats``:

* ``Evaluator.eval(ids, rotmats, confidence)`` on in-memory arrays in a new order each repeat:
  id lookup, duplicate and rotation checks, symmetry-aware errors, MAnE, wMAnE, median,
  fractions (the figure; goal < 1 s on 2 cores); and the same call again with the same ids
  (the id lookup is reused, as for a validation set evaluated every epoch);
* the reference, evaluateEntry's angular part on the same predictions: read the prediction
  star file, align it to the ground truth by ``rlnImageName``, the symmetry-aware errors of the
  Euler angles (:func:`cesped.evaluation.metrics.angular_errors`, as ``evaluate`` calls it), MAnE
  and wMAnE (ratio = reference / Evaluator, > 1: the Evaluator is faster).

Each figure also gives the process CPU seconds (``cpu_s``, all threads): on a machine shared
with other jobs the wall time includes waiting for a core, the CPU time does not.
The one-off ``Evaluator(...)`` construction (reading the ground-truth star file) is reported too.
Both sides' MAnE are checked equal before anything is printed.

Example usage::

    python benchmarks/bench_evaluator.py --n 300000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def emit(name, value, unit, reference=None, ratio=None, **extra):
    print(
        json.dumps(
            {"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio, **extra}
        ),
        flush=True,
    )


def write_entry(root: Path, n: int, symmetry: str, seed: int = 0) -> tuple[Path, Path]:
    """An entry directory with half-set 0 of n particles, and a prediction star file (shuffled)."""
    import pandas as pd
    from scipy.spatial.transform import Rotation

    from cesped.io.star import StarFile, write_star

    rng = np.random.default_rng(seed)
    true = Rotation.random(n, rng=rng)
    names = [f"{i + 1:06d}@particles_0.mrcs" for i in range(n)]
    parts = pd.DataFrame(
        {
            "rlnImageName": names,
            **dict(zip(["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"], true.as_euler("ZYZ", degrees=True).T)),
            "rlnOriginXAngst": 0.0,
            "rlnOriginYAngst": 0.0,
            "rlnDefocusU": 15000.0,
            "rlnDefocusV": 15000.0,
            "rlnDefocusAngle": 0.0,
            "rlnOpticsGroup": 1,
            "rlnMaxValueProbDistribution": rng.uniform(0.1, 1.0, n),
        }
    )
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnAmplitudeContrast": [0.1],
            "rlnSphericalAberration": [2.7],
            "rlnVoltage": [300.0],
            "rlnImagePixelSize": [1.5],
            "rlnImageSize": [128],
            "rlnImageDimensionality": [2],
        }
    )
    entry = root / f"bench_{symmetry}"
    entry.mkdir(parents=True, exist_ok=True)
    write_star(entry / "particles_0.star", StarFile(particles=parts, optics=optics))
    (entry / "info_0.json").write_text(json.dumps({"symmetry": symmetry}))
    turn = Rotation.from_rotvec(rng.normal(size=(n, 3)) * np.deg2rad(5.0) / np.sqrt(3))
    pred = parts.copy()
    pred[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]] = (true * turn).as_euler("ZYZ", degrees=True)
    pred["rlnParticleFigureOfMerit"] = rng.uniform(0, 1, n)
    pred = pred.iloc[rng.permutation(n)].reset_index(drop=True)
    pred_path = root / f"pred_{symmetry}.star"
    write_star(pred_path, StarFile(particles=pred, optics=optics))
    return entry, pred_path


def reference_angular(gt_star: Path, pred_star: Path, symmetry: str) -> float:
    """evaluateEntry's angular part: read predictions, align by rlnImageName, errors, MAnE, wMAnE."""
    from cesped.evaluation.metrics import angular_errors
    from cesped.geometry.numpy_ops import mean_angular_error, weighted_mean_angular_error
    from cesped.io.star import read_star

    ang = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    gt = read_star(gt_star).particles
    pred = read_star(pred_star).particles
    names = pred["rlnImageName"].astype(str)
    if names.duplicated().any():
        raise ValueError("duplicated predictions")
    aligned = pred.set_index(names.to_numpy()).loc[gt["rlnImageName"].astype(str).to_numpy()]
    err = angular_errors(gt[ang].to_numpy(np.float64), aligned[ang].to_numpy(np.float64), symmetry)
    weighted_mean_angular_error(err, gt["rlnMaxValueProbDistribution"].to_numpy(np.float64))
    return mean_angular_error(err)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300_000, help="predictions (particles of the half-set)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--symmetries", nargs="+", default=["C1", "D2"])
    a = ap.parse_args()

    from cesped.benchmark.evaluator import Evaluator
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.io.star import read_star

    with tempfile.TemporaryDirectory(prefix="cesped_bench_evaluator_") as tmp:
        for sym in a.symmetries:
            entry, pred_path = write_entry(Path(tmp), a.n, sym)
            t0 = time.perf_counter()
            ev = Evaluator(str(entry), 0)
            build_s = time.perf_counter() - t0
            p = read_star(pred_path).particles
            ids = p["rlnImageName"].astype(str).to_numpy()
            rot = euler_to_matrix(p[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(np.float64))
            conf = p["rlnParticleFigureOfMerit"].to_numpy(np.float64)
            ours, again, ref, mane = [], [], [], None
            cpu, cpu_again, cpu_ref = [], [], []
            rng = np.random.default_rng(1)
            for _ in range(a.repeats):
                order = rng.permutation(a.n)  # a new order each time: no lookup is reused
                ids_k, rot_k, conf_k = ids[order], rot[order], conf[order]
                t0, c0 = time.perf_counter(), time.process_time()
                res = ev.eval(ids_k, rot_k, confidence=conf_k)
                ours.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                t0, c0 = time.perf_counter(), time.process_time()
                ev.eval(ids_k, rot_k, confidence=conf_k)  # the same ids again (validation every epoch)
                again.append(time.perf_counter() - t0)
                cpu_again.append(time.process_time() - c0)
                t0, c0 = time.perf_counter(), time.process_time()
                ref_mane = reference_angular(entry / "particles_0.star", pred_path, sym)
                ref.append(time.perf_counter() - t0)
                cpu_ref.append(time.process_time() - c0)
                mane = res["MAnE"]
            if abs(mane - ref_mane) > 1e-9 * max(1.0, ref_mane):
                raise SystemExit(f"MAnE differs: Evaluator {mane}, evaluateEntry's path {ref_mane}")
            o, r = statistics.median(ours), statistics.median(ref)
            emit(
                f"Evaluator.eval {a.n} predictions {sym}",
                round(o, 4),
                "s",
                reference=round(r, 4),
                ratio=round(r / o, 2),
                reference_is="evaluateEntry angular part (read star, align, angular_errors, MAnE, wMAnE)",
                mane_deg=round(mane, 4),
                cpu_s=round(statistics.median(cpu), 4),
                reference_cpu_s=round(statistics.median(cpu_ref), 4),
                load_avg_1min=round(os.getloadavg()[0], 2),
            )
            g = statistics.median(again)
            emit(
                f"Evaluator.eval {a.n} predictions {sym}, same ids as the previous call",
                round(g, 4),
                "s",
                reference=round(r, 4),
                ratio=round(r / g, 2),
                cpu_s=round(statistics.median(cpu_again), 4),
                load_avg_1min=round(os.getloadavg()[0], 2),
            )
            emit(f"Evaluator construction {a.n} particles {sym}", round(build_s, 4), "s")


if __name__ == "__main__":
    main()
