"""Native reconstruction vs ``relion_reconstruct`` on the same star file, in one run.

For each box size a synthetic particle set (blob map, random poses, CTFs, shifts, noise) is
written once, then reconstructed by the native backend (``cesped.reconstruction.fourier``,
run in a child process so that its peak RSS is its own) and by RELION (``relion_reconstruct``,
or ``mpirun -np N relion_reconstruct_mpi`` when ``--cpus`` > 1). Printed, one JSON line each:
seconds of both (the ratio is RELION/native), the FSC between the two maps at 0.8 x Nyquist,
and the native peak RSS for the full set and for a quarter of it (memory must not grow with the
particle count).

Example usage::

    python benchmarks/bench_reconstruction.py --boxes 64 128 --n-particles 8000 --cpus 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
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


def native_worker(star: str, threads: int, out: str, kernel: str) -> None:
    import torch

    torch.set_num_threads(threads)
    from cesped.io.mrc import write_map
    from cesped.io.star import read_star
    from cesped.reconstruction.fourier import reconstruct

    small = read_star(star)
    small.particles = small.particles.iloc[:16]
    t0 = time.perf_counter()
    reconstruct(small, n_threads=threads, kernel=kernel)  # loads the compiled kernels (numba cache)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    vol, px = reconstruct(star, n_threads=threads, kernel=kernel)
    dt = time.perf_counter() - t0
    write_map(out, vol, px)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": dt, "startup_seconds": startup, "peak_rss_mb": rss}))


def run_native(star: Path, threads: int, out: Path, kernel: str) -> dict:
    # a first call in the same process compiles/caches the numba kernel; we time a fresh child
    # whose kernel comes from numba's on-disk cache, as a user's second run would.
    cmd = [sys.executable, __file__, "--_worker", str(star), str(threads), str(out), kernel]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_seconds"] = wall
    return res


def run_relion(star: Path, cpus: int) -> tuple[float, np.ndarray]:
    from cesped.reconstruction.relion import reconstruct_relion

    t0 = time.perf_counter()
    vol, _ = reconstruct_relion(star, "C1", None, n_cpus=cpus)
    return time.perf_counter() - t0, vol


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--n-particles", type=int, default=8000)
    ap.add_argument("--cpus", type=int, default=2, help="threads for native, MPI ranks for RELION")
    ap.add_argument("--kernel", default="auto", choices=["auto", "torch", "numba"])
    ap.add_argument("--workdir", default=None, help="keep the data sets here (default: a temp dir)")
    ap.add_argument("--no-relion", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each side (median reported)")
    ap.add_argument("--_worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        native_worker(args._worker[0], int(args._worker[1]), args._worker[2], args._worker[3])
        return 0

    from cesped.evaluation.metrics import fsc
    from cesped.io.mrc import read_map
    from cesped.simulation.fixtures import blob_map, write_particle_set

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="cesped_bench_rec_")
        work = Path(tmp)
    else:
        work = Path(args.workdir)
    try:
        for n in args.boxes:
            d = work / f"set_{n}_{args.n_particles}"
            star = d / "particles.star"
            if not star.is_file():
                vol = blob_map(n, n_blobs=40, sigma=1.2, seed=0)
                write_particle_set(d, vol, args.n_particles, pixel_size=1.5, snr=1.0, seed=1)
            quarter = d / "particles_quarter.star"
            if not quarter.is_file():
                from cesped.io.star import read_star, write_star

                st = read_star(star)
                st.particles = st.particles.iloc[: max(1, args.n_particles // 4)].reset_index(drop=True)
                write_star(quarter, st)
            # warm the numba cache once (not timed)
            run_native(quarter, args.cpus, d / "native_warm.mrc", args.kernel)
            runs = [run_native(star, args.cpus, d / "native.mrc", args.kernel) for _ in range(args.repeats)]
            nat = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]  # median (lower)
            nat["runs"] = [round(r["seconds"], 3) for r in runs]
            nat["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            natq = run_native(quarter, args.cpus, d / "native_q.mrc", args.kernel)
            tag = f"{args.n_particles}x{n}px_{args.cpus}cpu"
            if not args.no_relion and shutil.which("relion_reconstruct"):
                rel = [run_relion(star, args.cpus) for _ in range(args.repeats)]
                rel_times = [r[0] for r in rel]
                t_rel, vrel = sorted(rel, key=lambda r: r[0])[(len(rel) - 1) // 2]
                vnat, _ = read_map(d / "native.mrc")
                curve = fsc(vnat, vrel)
                k08 = int(np.floor(0.8 * (n // 2)))
                emit(
                    f"reconstruct_seconds_native_{tag}",
                    round(nat["seconds"], 3),
                    "s",
                    reference=round(t_rel, 3),
                    ratio=round(t_rel / nat["seconds"], 2),
                    reference_name="relion_reconstruct" + ("_mpi" if args.cpus > 1 else ""),
                    first_call_seconds_16_particles=round(nat["startup_seconds"], 3),
                    process_wall_seconds=round(nat["wall_seconds"], 3),
                    runs=nat["runs"],
                    reference_runs=[round(t, 3) for t in rel_times],
                    load_average_1min=round(os.getloadavg()[0], 2),
                )
                emit(
                    f"fsc_native_vs_relion_min_to_0.8nyquist_{tag}",
                    round(float(np.nanmin(curve[: k08 + 1])), 4),
                    "FSC",
                    reference=None,
                    ratio=None,
                )
            else:
                emit(
                    f"reconstruct_seconds_native_{tag}",
                    round(nat["seconds"], 3),
                    "s",
                    runs=nat["runs"],
                    load_average_1min=round(os.getloadavg()[0], 2),
                )
            emit(
                f"peak_rss_native_{tag}",
                round(nat["peak_rss_mb"], 1),
                "MB",
                reference=round(natq["peak_rss_mb"], 1),
                ratio=round(nat["peak_rss_mb"] / natq["peak_rss_mb"], 3),
                reference_name=f"same with {args.n_particles // 4} particles",
            )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
