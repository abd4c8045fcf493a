"""The refined tail of a protocol run beside the image-limited floor (session 12).

For each half-set of a protocol run with ``refine=true`` (``runs/<method>/<entry>/seed<k>``), the
particles whose refined pose is more than ``--above`` degrees from the truth (symmetry-aware), and
what the floor (:func:`cesped.refinement.api.image_limited_floor`: the maximum-likelihood pose
against the entry's true map, cached per entry) says of the same particles: how many of them the
floor also gets wrong by more than ``--above`` (the images' own ambiguity) or more than 30°, and
the floor's median error on them (the rest are particles that a better search or a better
reference could still find). Also the raw (network) error of those particles, which shows
whether the refinement moved them there or left them. One JSON line per figure.

Example usage::

    python benchmarks/tail_vs_floor.py --run-dir OUT/runs/Image2Sphere-demo/synth_4e43/seed0 \\
        --benchmark-dir BENCH --entry synth_4e43
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _launch import emit  # noqa: E402

ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="runs/<method>/<entry>/seed<k> of a protocol run")
    ap.add_argument("--benchmark-dir", required=True)
    ap.add_argument("--entry", required=True)
    ap.add_argument("--above", type=float, default=150.0, help="the tail: refined error above this (deg)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the floor if not cached")
    args = ap.parse_args(argv)

    import torch

    from cesped.data.local import entry_symmetry
    from cesped.geometry.errors import symmetry_aware_error
    from cesped.geometry.rotations import euler_to_matrix
    from cesped.io.star import read_star
    from cesped.refinement.api import image_limited_floor

    run, bench = Path(args.run_dir), Path(args.benchmark_dir)
    edir = bench / args.entry
    sym = entry_symmetry(edir)

    def rot(df):
        return euler_to_matrix(torch.from_numpy(df[ANGLES].to_numpy(np.float64)))

    for h in (0, 1):
        refined_star = run / "refined" / f"predictions_{h}.star"
        raw_star = run / f"half{1 - h}" / f"predictions_{h}.star"
        for p in (refined_star, raw_star):
            if not p.is_file():
                raise ValueError(f"--run-dir: {p} not found (a protocol run with refine=true)")
        gt = read_star(edir / f"particles_{h}.star").particles
        ref = read_star(refined_star).particles
        raw = read_star(raw_star).particles
        ids = gt["rlnImageName"].astype(str).to_numpy()
        for name, df in (("refined", ref), ("raw", raw)):
            if not np.array_equal(df["rlnImageName"].astype(str).to_numpy(), ids):
                raise ValueError(f"{name} predictions of half {h}: particles not in the entry's order")
        r_true = rot(gt)
        e_ref = symmetry_aware_error(r_true, rot(ref), sym).numpy()
        e_raw = symmetry_aware_error(r_true, rot(raw), sym).numpy()
        floor = image_limited_floor(args.entry, h, benchmark_dir=bench, threads=args.threads)
        e_floor = floor["errors_deg"]
        tail = e_ref > args.above
        common = {"entry": args.entry, "half": h, "run_dir": run.name, "above_deg": args.above}
        emit("tail_particles", int(tail.sum()), "particles", n=len(ids), **common)
        emit(
            "tail_floor_also_above",
            int((e_floor[tail] > args.above).sum()),
            "particles",
            floor_tail=int((e_floor > args.above).sum()),
            note="of the tail, those the floor also puts above the threshold (the images' own ambiguity)",
            **common,
        )
        emit("tail_floor_above_30", int((e_floor[tail] > 30).sum()), "particles", **common)
        emit(
            "tail_floor_median",
            round(float(np.median(e_floor[tail])), 2) if tail.any() else None,
            "deg",
            **common,
        )
        emit(
            "tail_raw_median",
            round(float(np.median(e_raw[tail])), 2) if tail.any() else None,
            "deg",
            raw_above=int((e_raw[tail] > args.above).sum()),
            note="the network's error on the tail particles (raw above the threshold: raw_above)",
            **common,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
