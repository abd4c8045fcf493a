"""The demo's steps after training, at full scale: refine both halves, the floor, both evaluations.

``make demo`` trains two models (~11 min on 2 idle cores) and then refines both prediction files,
computes the entry's image-limited floor and evaluates raw and refined predictions. This script
times those later steps on synth_6msm (2 x 4,000 particles of 64 px) without training: the
prediction files are stand-ins at the demo's paths (``--stand-ins simple``: the true pose turned
by 10° about a random axis, 20 % of them mirrored or half-turned; ``--stand-ins demo``: a
log-normal spread of median 10°, 10 % turned by 180° about a random in-plane axis, 6 % fully
random, like make demo's network; :func:`bench_refinement.stand_in_candidates`; no origins), which
:func:`cesped.demo.run_demo` reuses as it reuses earlier predictions. One JSON line per figure;
the demo's own timings and rows (raw, refined, floor, random poses).

Example usage::

    python benchmarks/bench_demo_refinement.py --benchmark-dir /tmp/b    # simulates synth_6msm if missing
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _launch import emit, load_average


def write_stand_ins(entry_dir: Path, work: Path, options: dict) -> None:
    import numpy as np
    import torch
    from bench_refinement import stand_in_candidates

    from cesped.geometry.rotations import euler_to_matrix, matrix_to_euler
    from cesped.io.star import read_star, write_star

    ang = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    for h in (0, 1):  # the model trained on half h predicts half 1 - h
        st = read_star(entry_dir / f"particles_{1 - h}.star")
        r = euler_to_matrix(torch.from_numpy(st.particles[ang].to_numpy(np.float64)))
        cand, _ = stand_in_candidates(r, 1, seed=h, **options)
        st.particles[ang] = matrix_to_euler(cand[:, 0]).numpy()
        st.particles = st.particles.drop(columns=["rlnOriginXAngst", "rlnOriginYAngst"])
        out = work / "train" / entry_dir.name / f"half{h}" / f"predictions_{1 - h}.star"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_star(out, st)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark-dir", help="holds synth_6msm (simulated if missing; default: temp dir)")
    ap.add_argument("--stand-ins", choices=("simple", "demo"), default="simple", help="stand-in preset")
    args = ap.parse_args(argv)
    from bench_refinement import STAND_INS

    options = dict(STAND_INS[args.stand_ins])
    options["flip"] = options.pop("flip_fraction")
    bdir = Path(args.benchmark_dir) if args.benchmark_dir else Path(tempfile.mkdtemp(prefix="cesped_bench_"))
    os.environ["CESPED_BENCHMARK_DIR"] = str(bdir)
    work = Path(tempfile.mkdtemp(prefix="cesped_demo_refine_"))
    os.environ["CESPED_CACHE_DIR"] = str(work / "cache")  # the floor and the maps are computed, not cached
    entry = bdir / "synth_6msm"
    if not (entry / "generation.json").is_file():
        cmd = [sys.executable, "-m", "cesped.simulate", "--preset", "synth_6msm", "--out", str(entry)]
        subprocess.run(cmd + ["--no-progress"], check=True)
    write_stand_ins(entry, work / "demo", options)
    from cesped.demo import run_demo

    load0 = load_average()[0]
    t0 = time.perf_counter()
    run_demo("synth_6msm", work / "demo")
    wall = time.perf_counter() - t0
    import json

    summary = json.loads((work / "demo" / "summary.json").read_text())
    extra = {"load_before": load0, "load_after": load_average()[0], "particles": "2 x 4000, 64 px"}
    emit("demo_after_training_seconds", round(wall, 1), "s", goal="<= 4-5 min on 2 idle cores", **extra)
    for k, v in summary["timings_s"].items():
        if k.startswith(("refine", "floor", "evaluate")):
            emit(f"demo_{k}", round(v, 1), "s", **extra)
    for row, vals in summary["rows"].items():
        for k, v in vals.items():
            if v is not None:
                emit(
                    f"demo_{row.replace(' ', '_')}_{k}",
                    round(v, 3),
                    k.rsplit("_", 1)[-1],
                    predictions=f"stand-ins {args.stand_ins}: {options}",
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
