"""Frame-free evaluation time: 8,000 poses aligned (both hands tried), against plain MAnE.

The poses are those of a map of the other hand, turned by a random rotation, with 30 % random
outliers and 5° noise on the rest (the hard case: both hands, outliers, symmetry). The measured
figure is one call of :func:`cesped.evaluation.frames.frame_free_metrics` with
``allow_mirror=True``; the reference, measured in the same process the same way, is the plain
(frame-bound) symmetry-aware MAnE of the same poses. Goal (issue 17): under 2 s for 8,000 poses.

Usage::

    nice .venv/bin/python benchmarks/bench_frames.py [--n 8000] [--symmetry C2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.spatial.transform import Rotation


def emit(name, value, unit, reference=None, **extra):
    ratio = value / reference if reference else None
    fig = {"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio}
    print(json.dumps({**fig, **extra}), flush=True)


def poses(n: int, symmetry: str, seed: int = 0):
    from cesped.geometry.symmetry import symmetry_matrices_np

    rng = np.random.default_rng(seed)
    R_true = Rotation.random(n, random_state=seed).as_matrix()
    S = symmetry_matrices_np(symmetry)
    G = Rotation.random(random_state=seed + 1).as_matrix()
    J = np.diag([1.0, 1.0, -1.0])
    R_pred = G @ J @ S[rng.integers(0, len(S), n)] @ R_true @ J  # other hand, turned by G
    noise = Rotation.from_rotvec(rng.normal(size=(n, 3)) * np.deg2rad(5.0) / np.sqrt(3)).as_matrix()
    R_pred = R_pred @ noise
    out = rng.random(n) < 0.3
    R_pred[out] = Rotation.random(int(out.sum()), random_state=seed + 2).as_matrix()
    return R_pred, R_true, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--symmetry", default="C2")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    from cesped.evaluation.frames import frame_free_metrics
    from cesped.geometry.numpy_ops import mean_angular_error, symmetry_aware_error

    R_pred, R_true, out = poses(args.n, args.symmetry)
    t_free, t_ref = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        metrics, al = frame_free_metrics(R_pred, R_true, args.symmetry, allow_mirror=True)
        t_free.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mean_angular_error(symmetry_aware_error(R_true, R_pred, args.symmetry))
        t_ref.append(time.perf_counter() - t0)
    extra = dict(n=args.n, symmetry=args.symmetry, goal_s=2.0, repeats=args.repeats)
    emit(
        "frame_free_metrics_time",
        min(t_free),
        "s",
        reference=min(t_ref),
        **extra,
        reference_name="frame-bound symmetry-aware MAnE of the same poses",
    )
    emit(
        "frame_free_inlier_MAnE",
        float(np.mean(al.errors_deg[~out])),
        "deg",
        mirrored=bool(al.mirrored),
        MAnE_unaligned=metrics["MAnE_unaligned_deg"],
        **extra,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
