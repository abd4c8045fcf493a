"""Projection-matching refinement on synth_6msm: the image-limited floor, refinement, speed.

Figures (one JSON line each, also appended to ``benchmarks/results/refinement_<date>.jsonl``):

1. ``floor_*``: the image-limited floor of half 1 -- exhaustive SO(3) search (order 2, 15°) then
   local refinement against the entry's true map ``gt_map.mrc``, origins searched (as any
   estimator must) and, as a second figure, fixed at the truth. MAnE / median / fraction > 150°.
2. ``refined_*``: refinement of half 1 from stand-in network predictions -- top-5 candidates per
   particle whose first is the true pose turned by ``--jitter`` degrees about a random axis and,
   for a fraction of particles, composed with the mirror view ``Ry(180°)`` or the in-plane
   half-turn ``Rz(180°)``; the other four are random rotations -- against the default
   reference (the map of half 0's ground-truth poses, band limit from half 0's split FSC),
   origins searched. Compared with the floor measured in the same run (``ratio``).
3. ``*_seconds`` / ``*_cpu_seconds``: wall and CPU time of each step in this process (the CPU
   time is the figure to read on a shared machine: on 2 dedicated cores, wall ≈ CPU / 2);
   ``load_average`` records ``uptime`` before and after.

Example usage::

    python benchmarks/bench_refinement.py                      # simulates synth_6msm in a temp dir
    python benchmarks/bench_refinement.py --benchmark-dir /tmp/b --n 1000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


class Emitter:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, name, value, unit, reference=None, **extra):
        ratio = None
        if reference not in (None, 0) and value is not None:
            ratio = round(float(value) / float(reference), 3)
        rec = {"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio, **extra}
        line = json.dumps(rec)
        print(line, flush=True)
        with open(self.path, "a") as fh:
            fh.write(line + "\n")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return open("/proc/loadavg").read().split(" ")[0]


def stand_in_candidates(r_true: torch.Tensor, k: int, jitter: float, flip: float, seed: int):
    from cesped.geometry.rotations import axis_angle_to_matrix, euler_to_matrix, random_rotations

    g = torch.Generator().manual_seed(seed)
    n = len(r_true)
    axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
    first = axis_angle_to_matrix(axis, torch.full((n,), jitter, dtype=torch.float64)) @ r_true
    u = torch.rand(n, generator=g, dtype=torch.float64)
    mirror = euler_to_matrix(torch.tensor([0.0, 180.0, 0.0], dtype=torch.float64))
    half = euler_to_matrix(torch.tensor([180.0, 0.0, 0.0], dtype=torch.float64))
    first = torch.where((u < flip / 2)[:, None, None], first @ mirror, first)
    first = torch.where(((u >= flip / 2) & (u < flip))[:, None, None], first @ half, first)
    others = random_rotations(n * (k - 1), generator=g).reshape(n, k - 1, 3, 3)
    return torch.cat([first[:, None], others], 1), u < flip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--benchmark-dir", help="holds synth_6msm (simulated there if missing; default: temp dir)"
    )
    ap.add_argument("--n", type=int, default=None, help="first N particles of half 1 (default all 4,000)")
    ap.add_argument("--floor-n", type=int, default=None, help="particles for the floor (default --n)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--jitter", type=float, default=10.0)
    ap.add_argument(
        "--flip-fraction", type=float, default=0.2, help="mirrored + half-turned first candidates"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-floor", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    RESULTS.mkdir(exist_ok=True)
    emit = Emitter(RESULTS / f"refinement_{datetime.date.today().isoformat()}.jsonl")
    tmp = None
    bdir = (
        Path(args.benchmark_dir)
        if args.benchmark_dir
        else Path(tmp := tempfile.mkdtemp(prefix="cesped_bench_"))
    )
    os.environ["CESPED_BENCHMARK_DIR"] = str(bdir)
    os.environ.setdefault("CESPED_CACHE_DIR", str(bdir / "_cache"))
    entry = bdir / "synth_6msm"
    if not (entry / "generation.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cesped.simulate",
                "--preset",
                "synth_6msm",
                "--out",
                str(entry),
                "--no-progress",
            ],
            check=True,
        )
    emit("load_average_start", float(load()), "1-min load", cpus=os.cpu_count(), threads=args.threads)

    from cesped.geometry.errors import symmetry_aware_error
    from cesped.geometry.rotations import euler_to_matrix
    from cesped.refinement.api import image_limited_floor, read_particles, refine_particles
    from cesped.refinement.local import LocalConfig
    from cesped.refinement.reference import reference_from_half
    from cesped.refinement.score import band_radius

    def stats(err):
        return float(err.mean()), float(np.median(err)), float((err > 150).mean())

    floor = {}
    if not args.skip_floor:
        for true_shifts in (False, True):
            tag = "true_shifts" if true_shifts else "shifts_searched"
            w0, c0 = time.perf_counter(), cpu_seconds()
            f = image_limited_floor(
                "synth_6msm", 1, true_shifts=true_shifts, limit=args.floor_n or args.n, use_cache=False
            )
            wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
            floor[tag] = f
            for key, unit in (("MAnE_deg", "deg"), ("median_deg", "deg"), ("frac_above_150", "fraction")):
                emit(f"floor_{tag}_{key}", round(f[key], 4), unit, n=f["n"])
            emit(
                f"floor_{tag}_seconds", round(wall, 1), "s", n=f["n"], cpu_seconds=round(cpu, 1), load=load()
            )
            if not true_shifts:
                emit("floor_shift_rmse", round(f["shift_rmse_A"], 3), "Å", n=f["n"])

    # the default reference: half 0's ground-truth map and its split-FSC band limit
    w0, c0 = time.perf_counter(), cpu_seconds()
    ref = reference_from_half(entry, 0, symmetry="C1", use_cache=False)
    emit(
        "reference_build_seconds",
        round(time.perf_counter() - w0, 1),
        "s",
        cpu_seconds=round(cpu_seconds() - c0, 1),
    )
    emit("reference_band_limit", ref.band_limit_A, "Å", note="FSC 0.143 of two random halves of half 0")

    st, parts, images, px, box = read_particles(entry / "particles_1.star")
    if args.n:
        parts = parts.iloc[: args.n].reset_index(drop=True)
    n = len(parts)
    r_true = euler_to_matrix(
        torch.from_numpy(parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())
    )
    cand, flipped = stand_in_candidates(r_true, args.top_k, args.jitter, args.flip_fraction, seed=1)
    err0 = symmetry_aware_error(r_true, cand[:, 0], "C1").numpy()
    m0, md0, f0 = stats(err0)
    emit("start_MAnE", round(m0, 2), "deg", n=n, median=round(md0, 2), frac_above_150=round(f0, 4))
    config = LocalConfig(
        band_radius=band_radius(ref.band_limit_A, box, px), shift_radius_px=max(3.0, 0.08 * box)
    )
    w0, c0, l0 = time.perf_counter(), cpu_seconds(), load()
    res = refine_particles(images, parts, ref.volume, px, cand, config)
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
    err = symmetry_aware_error(r_true, torch.from_numpy(res["rotmats"]), "C1").numpy()
    m, md, f150 = stats(err)
    fl = floor.get("shifts_searched")
    emit(
        "refined_MAnE",
        round(m, 3),
        "deg",
        reference=fl and round(fl["MAnE_deg"], 3),
        n=n,
        vs="floor (shifts searched)",
    )
    emit("refined_median", round(md, 3), "deg", reference=fl and round(fl["median_deg"], 3), n=n)
    emit("refined_frac_above_150", round(f150, 5), "fraction", reference=fl and fl["frac_above_150"], n=n)
    emit(
        "refined_flipped_starts_median",
        round(float(np.median(err[flipped.numpy()])), 3),
        "deg",
        n=int(flipped.sum()),
    )
    o_true = parts[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(np.float64)
    emit(
        "refined_shift_rmse", round(float(np.sqrt(((res["origins_A"] - o_true) ** 2).sum(1).mean())), 3), "Å"
    )
    emit("refined_median_confidence", round(float(np.median(res["confidence"])), 4), "probability")
    emit(
        f"refine_{n}_particles_top{args.top_k}_seconds",
        round(wall, 1),
        "s",
        cpu_seconds=round(cpu, 1),
        load_before=l0,
        load_after=load(),
        goal="<= 60 s for 4,000 on 2 cores",
    )
    if tmp:
        print(f"# entry left in {tmp}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
