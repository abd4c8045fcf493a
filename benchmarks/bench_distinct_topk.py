"""The network's top-5 as plain grid cells or as distinct modes, and the refinement's tracks
with and without a separation, each refined (session 10).

For a protocol run (``python -m cesped.benchmark run experiment=demo ... refine=true``) the
half-set 0 model (its best checkpoint) predicts half-set 1 with the demo's prediction settings
(grid order 3, the four quarter turns averaged, top-5), once with the plain top-5 grid cells and
once per ``--sep`` with the top-5 modes at least that far apart
(``prediction.topk_min_separation_deg``); each candidate set is refined by ``refine_star`` with
its defaults against the map of half-set 0's ground-truth poses (no label of half-set 1 is read),
and the refined poses are scored against half-set 1's labels, once per ``--track-sep`` (the
refinement's ``track_separation_deg``: its first level's tracks at least that far apart). Figures
per separation: the raw MAnE (first pose), how many particles have a candidate within 10° and 20°
of their pose, and the refined MAnE, median and fraction above 150° per track separation.

Example usage::

    python benchmarks/bench_distinct_topk.py --run-dir OUT/runs/Image2Sphere-demo/synth_6msm/seed1 \\
        --benchmark-dir BENCH --entry synth_6msm --sep 0 20 --track-sep 0 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _launch import emit  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="runs/<method>/<entry>/seed<k> of a protocol run")
    ap.add_argument("--benchmark-dir", required=True)
    ap.add_argument("--entry", required=True)
    ap.add_argument(
        "--sep", type=float, nargs="+", default=[0.0, 20.0], help="separations, degrees (0: plain)"
    )
    ap.add_argument(
        "--track-sep", type=float, nargs="+", default=[0.0], help="refine_star's track_separation_deg values"
    )
    args = ap.parse_args(argv)
    import torch

    from cesped.data.local import entry_symmetry
    from cesped.geometry.errors import symmetry_aware_error
    from cesped.geometry.rotations import euler_to_matrix
    from cesped.io.star import read_star
    from cesped.refinement.api import refine_star
    from cesped.training.infer import infer

    ckpts = sorted((Path(args.run_dir) / "half0" / "checkpoints").glob("best*.ckpt"))
    if not ckpts:
        raise ValueError(f"--run-dir: no best*.ckpt under {args.run_dir}/half0/checkpoints")
    entry_dir = Path(args.benchmark_dir) / args.entry
    truth = read_star(entry_dir / "particles_1.star").particles

    def rot(p):
        a = p[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(np.float64).copy()
        return euler_to_matrix(torch.from_numpy(a))

    r_true = rot(truth)
    sym = entry_symmetry(entry_dir)
    common = dict(entry=args.entry, checkpoint=ckpts[0].name, run_dir=Path(args.run_dir).name)
    with tempfile.TemporaryDirectory() as tmp:
        for sep in args.sep:
            pred = Path(tmp) / f"sep{sep:g}" / "predictions_1.star"
            infer(
                {"ckpt": str(ckpts[0]), "entry": args.entry, "halfset": 1, "out": str(pred), "top_k": 5,
                 "topk_min_separation_deg": sep, "order": 3, "rot90_average": True, "batch_size": 128,
                 "benchmark_dir": args.benchmark_dir, "progress": False}
            )  # fmt: skip
            with np.load(pred.with_name("predictions_1_topk.npz")) as z:
                cand = torch.from_numpy(z["rotmats"]).double()
            err_k = torch.stack(
                [symmetry_aware_error(r_true, cand[:, j], sym) for j in range(cand.shape[1])], 1
            )
            best = err_k.min(1).values
            tag = f"sep{sep:g}"
            emit(f"{tag}_raw_MAnE", round(float(err_k[:, 0].mean()), 2), "deg", **common)
            emit(
                f"{tag}_candidate_within_10deg",
                round(float((best < 10).double().mean()), 4),
                "fraction",
                **common,
            )
            emit(
                f"{tag}_candidate_within_20deg",
                round(float((best < 20).double().mean()), 4),
                "fraction",
                **common,
            )
            for ts in args.track_sep:
                out = pred.with_name(f"predictions_1_refined_track{ts:g}.star")
                t0 = time.perf_counter()
                refine_star(
                    args.entry, 1, pred, out, reference_from_half=0, top_k=5,
                    benchmark_dir=args.benchmark_dir, track_separation_deg=ts,
                )  # fmt: skip
                wall = time.perf_counter() - t0
                e = symmetry_aware_error(r_true, rot(read_star(out).particles), sym).numpy()
                emit(
                    f"{tag}_track{ts:g}_refined_MAnE", round(float(e.mean()), 3), "deg",
                    median=round(float(np.median(e)), 3), frac_above_150=round(float((e > 150).mean()), 4),
                    refine_seconds=round(wall, 1), track_separation_deg=ts, **common,
                )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
