"""Whole-process reconstruction: ``python -m cesped.reconstruct`` vs RELION on the same star file.

For each box size a synthetic particle set (blob map, random poses, CTFs, shifts, noise) is
written once. Then, in the same run, each side reconstructs it as a whole process, from the
command's start to the map on disk (imports, compiled-kernel loading and file I/O included):

* cesped: ``python -m cesped.reconstruct STAR --out MAP --n-cpus N`` (numba's on-disk cache
  warmed once before, on a few particles: installation state, like ``.pyc`` files; the first
  run after installing, with the cache emptied, is measured once too and printed apart);
* RELION: ``relion_reconstruct --ctf --pad 2`` (one process) and ``mpirun -np N
  relion_reconstruct_mpi`` (N ranks); the reference is the faster of the two.

Peak memory is that of the measured process alone (``/usr/bin/time`` or a fork/exec launcher,
see ``_launch.py``); for ``mpirun`` the largest rank. "Flat in the particle count": cesped's
peak RSS on 1x, 2x and 8x the particles (``--flat-base``, rows of the largest set). Printed,
one JSON line each: seconds (ratio = RELION / cesped), peak RSS (ratio = RELION / cesped), FSC
between the two maps up to 0.8 x Nyquist, the flat-memory figures and the cold first run.

Example usage::

    python benchmarks/bench_reconstruction.py                                  # 8000 x 64/128 px
    python benchmarks/bench_reconstruction.py --boxes 128 --n-particles 20000 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _launch import emit, load_average, measure  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def subset_star(star: Path, n: int, out: Path) -> Path:
    """The first ``n`` particles of ``star`` (same image stack), written to ``out``."""
    from cesped.io.star import read_star, write_star

    if not out.is_file():
        st = read_star(star)
        st.particles = st.particles.iloc[:n].reset_index(drop=True)
        write_star(out, st)
    return out


def cesped_cmd(star: Path, out: Path, cpus: int) -> list[str]:
    return [sys.executable, "-m", "cesped.reconstruct", str(star), "--out", str(out), "--n-cpus", str(cpus)]


def relion_cmd(star: Path, out: Path, cpus: int) -> list[str]:
    from cesped.reconstruction.relion import relion_command

    return relion_command(star.name, str(out), "C1", n_cpus=cpus)


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower one of an even count), with every run's seconds."""
    best = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    peak = max(r["peak_rss_mb"] for r in runs)
    return {**best, "runs": [round(r["wall_s"], 3) for r in runs], "peak_rss_mb": peak}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--n-particles", type=int, default=8000)
    ap.add_argument("--cpus", type=int, default=2, help="cesped threads; MPI ranks of relion_reconstruct_mpi")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each side (median reported)")
    ap.add_argument("--flat-base", type=int, default=1000, help="particles of the 1x set (memory figure)")
    ap.add_argument("--workdir", default=None, help="keep the data sets here (default: a temp dir)")
    ap.add_argument("--no-relion", action="store_true")
    ap.add_argument("--no-cold", action="store_true", help="skip the first run with an empty numba cache")
    args = ap.parse_args(argv)

    from cesped.evaluation.metrics import fsc
    from cesped.io.mrc import read_map
    from cesped.simulation.fixtures import blob_map, write_particle_set

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="cesped_bench_rec_")
        work = Path(tmp)
    else:
        work = Path(args.workdir)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.cpus))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    have_relion = not args.no_relion and shutil.which("relion_reconstruct") is not None
    have_mpi = have_relion and args.cpus > 1 and shutil.which("relion_reconstruct_mpi") is not None
    try:
        for n in args.boxes:
            d = work / f"set_{n}_{args.n_particles}"
            star = d / "particles.star"
            if not star.is_file():
                vol = blob_map(n, n_blobs=40, sigma=1.2, seed=0)
                write_particle_set(d, vol, args.n_particles, pixel_size=1.5, snr=1.0, seed=1)
            tag = f"{args.n_particles}x{n}px_{args.cpus}cpu"
            small = subset_star(star, 16, d / "particles_16.star")
            if not args.no_cold:  # first run after install: numba compiles (empty cache)
                with tempfile.TemporaryDirectory(prefix="numba_cold_") as nc:
                    cold_env = dict(env, NUMBA_CACHE_DIR=nc)
                    cold = measure(cesped_cmd(star, d / "cold.mrc", args.cpus), cold_env, d)
                warm_env = dict(env, NUMBA_CACHE_DIR=str(d / "numba_cache"))
            else:
                warm_env = env
            measure(cesped_cmd(small, d / "warm.mrc", args.cpus), warm_env, d)  # fill the kernel cache
            cmd = cesped_cmd(star, d / "cesped.mrc", args.cpus)
            ours = median_run([measure(cmd, warm_env, d) for _ in range(args.repeats)])
            common = dict(n_particles=args.n_particles, box=n, cpus=args.cpus, load_avg=load_average())
            if not args.no_cold:
                emit(
                    f"reconstruct_first_run_seconds_{tag}",
                    round(cold["wall_s"], 2),
                    "s",
                    reference=round(ours["wall_s"], 2),
                    ratio=round(cold["wall_s"] / ours["wall_s"], 2),
                    reference_name="the same command with numba's cache warm",
                    note="whole process, numba cache emptied (NUMBA_CACHE_DIR); ratio = cold / warm",
                    command="python -m cesped.reconstruct STAR --out MAP --n-cpus N",
                    **common,
                )
            if have_relion:
                rel1 = median_run(
                    [measure(relion_cmd(star, d / "relion.mrc", 1), env, d) for _ in range(args.repeats)]
                )
                relm = None
                if have_mpi:
                    relm = median_run(
                        [
                            measure(relion_cmd(star, d / "relion_mpi.mrc", args.cpus), env, d)
                            for _ in range(args.repeats)
                        ]
                    )
                best, best_name = rel1, "relion_reconstruct"
                if relm is not None and relm["wall_s"] < rel1["wall_s"]:
                    best, best_name = relm, f"mpirun -np {args.cpus} relion_reconstruct_mpi"
                emit(
                    f"reconstruct_seconds_{tag}",
                    round(ours["wall_s"], 3),
                    "s",
                    reference=round(best["wall_s"], 3),
                    ratio=round(best["wall_s"] / ours["wall_s"], 2),
                    reference_name=best_name + " (the faster RELION, same run)",
                    note="whole process both sides, command start to map on disk; ratio = RELION / cesped",
                    command="python -m cesped.reconstruct STAR --out MAP --n-cpus N",
                    runs=ours["runs"],
                    relion_reconstruct_seconds=rel1["runs"],
                    relion_reconstruct_mpi_seconds=None if relm is None else relm["runs"],
                    **common,
                )
                emit(
                    f"reconstruct_vs_relion_single_process_seconds_{tag}",
                    round(ours["wall_s"], 3),
                    "s",
                    reference=round(rel1["wall_s"], 3),
                    ratio=round(rel1["wall_s"] / ours["wall_s"], 2),
                    reference_name="relion_reconstruct (one process), same run",
                    command="python -m cesped.reconstruct STAR --out MAP --n-cpus N",
                    **common,
                )
                emit(
                    f"reconstruct_peak_rss_{tag}",
                    round(ours["peak_rss_mb"], 1),
                    "MiB",
                    reference=round(rel1["peak_rss_mb"], 1),
                    ratio=round(rel1["peak_rss_mb"] / ours["peak_rss_mb"], 2),
                    reference_name="relion_reconstruct (one process), same run",
                    relion_mpi_largest_rank_mib=None if relm is None else round(relm["peak_rss_mb"], 1),
                    note="peak RSS of the measured process alone; ratio = RELION / cesped (> 1: smaller)",
                    rss_tool=ours["rss_tool"],
                    **common,
                )
                vnat, _ = read_map(d / "cesped.mrc")
                vrel, _ = read_map(d / "relion.mrc")
                curve = fsc(vnat, vrel)
                k08 = int(np.floor(0.8 * (n // 2)))
                emit(
                    f"fsc_cesped_vs_relion_min_to_0.8nyquist_{tag}",
                    round(float(np.nanmin(curve[: k08 + 1])), 4),
                    "FSC",
                    note="agreement of the two maps (1 = identical)",
                )
            else:
                emit(
                    f"reconstruct_seconds_{tag}",
                    round(ours["wall_s"], 3),
                    "s",
                    note="RELION not run (not on PATH or --no-relion): no reference",
                    runs=ours["runs"],
                    **common,
                )
                emit(f"reconstruct_peak_rss_{tag}", round(ours["peak_rss_mb"], 1), "MiB", **common)
            # flat memory: the same command on 1x, 2x and 8x the particles
            sizes = [m * args.flat_base for m in (1, 2, 8) if m * args.flat_base <= args.n_particles]
            if len(sizes) == 3:
                rss = {}
                for k in sizes:
                    sub = subset_star(star, k, d / f"particles_{k}.star")
                    rss[k] = measure(cesped_cmd(sub, d / "flat.mrc", args.cpus), warm_env, d)["peak_rss_mb"]
                emit(
                    f"reconstruct_peak_rss_flat_{n}px",
                    round(rss[sizes[-1]], 1),
                    "MiB",
                    reference=round(rss[sizes[0]], 1),
                    ratio=round(rss[sizes[0]] / rss[sizes[-1]], 3),
                    reference_name=f"the same with {sizes[0]} particles (8x fewer)",
                    peak_rss_mib_by_particles={str(k): round(v, 1) for k, v in rss.items()},
                    note="whole-process peak RSS at 1x, 2x, 8x particles; ratio 1 = flat",
                    box=n,
                )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
