"""Whole ``evaluateEntry`` run, start to finish: cesped (native backend) vs RELION, same run.

A synthetic entry (default: 128 px at 1.5 Å/px, 2000 + 2000 particles, C1) is written once in
the layout both packages read (``<root>/<target>/particles_{0,1}.star`` ...), with predictions
that are the ground truth rotated by ~5° per particle. Each side runs as a whole process
(command start to metrics on disk), measured by ``_launch.measure`` (peak RSS of the measured
process alone):

* ours: ``python -m cesped.evaluateEntry --n_cpus N`` (fresh cache each repeat, so the ground-
  truth maps are reconstructed too: the cold, complete cost). numba's kernel cache is warmed
  once before (installation state); the first run after installing, with the kernel cache
  emptied (``NUMBA_CACHE_DIR``), is measured once and printed against the warm median;
* ours with RELION: the same command with ``--backend relion`` (``mpirun -np N
  relion_reconstruct_mpi`` for N > 1, ``relion_reconstruct`` for N = 1), when RELION is on PATH;
* the original (only when ``benchmarks/.venv-original`` exists, see ``original_env.sh``): its
  ``evaluate()`` with RELION (``mpirun -np N relion_reconstruct_mpi``), ``use_gt_mask=False``
  (no network) and a float-safe ``json.dump`` (it crashes writing metrics.json otherwise).

Printed, one JSON line each: the median seconds of ours against each reference (ratio =
reference / ours), and the peak RSS (ratio = reference / ours).

Example usage::

    python benchmarks/bench_evaluate.py --box 128 --n-per-half 2000 --cpus 2 --repeats 2
    python benchmarks/bench_evaluate.py --n-per-half 10000 --repeats 1 --skip-original
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _launch import emit, load_average, measure  # noqa: E402

ORIG_VENV = HERE / ".venv-original"

_ORIGINAL_DRIVER = r"""
import json, sys
_dump = json.dump
json.dump = lambda obj, fh, **kw: _dump(obj, fh, default=float, **kw)
from cesped.evaluateEntry import evaluate
a = json.loads(sys.argv[1])
evaluate(a["target"], a["p0"], a["p1"], predictionType="SO3", usePredConfidence=True,
         benchmarkDir=a["root"], relionBinDir=a["relion_bin"], mpirun="mpirun", use_gt_mask=False,
         n_cpus=a["cpus"], outdir=a["outdir"])
"""


def timed(cmd, env, cwd) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command, as a whole process (``_launch.measure``)."""
    r = measure(cmd, env=env, cwd=cwd)
    return r["wall_s"], r["peak_rss_mb"]


def make_entry(root: Path, target: str, box: int, n_per_half: int, seed: int = 0) -> tuple[Path, Path]:
    import numpy as np
    from scipy.spatial.transform import Rotation

    from cesped.io.star import read_star, write_star
    from cesped.simulation.fixtures import write_synthetic_entry

    preds = root / "predictions"
    if (preds / "p_1.star").is_file():
        return preds / "p_0.star", preds / "p_1.star"
    d = write_synthetic_entry(
        root,
        target,
        "C1",
        n_per_half=n_per_half,
        box=box,
        pixel_size=1.5,
        snr=0.5,
        seed=seed,
        n_blobs=60,
        sigma=1.5,
        mask_edge=6.0,
        original_marker=True,  # the original package's "available" marker
    )
    preds.mkdir(parents=True, exist_ok=True)
    for h in (0, 1):
        st = read_star(d / f"particles_{h}.star")
        ang = st.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
        noise = Rotation.from_rotvec(
            np.random.default_rng(seed + 20 + h).normal(0, np.radians(5) / np.sqrt(3), (len(ang), 3))
        )
        st.particles[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]] = (
            noise * Rotation.from_euler("ZYZ", ang, degrees=True)
        ).as_euler("ZYZ", degrees=True)
        st.particles["rlnParticleFigureOfMerit"] = 1.0
        write_star(preds / f"p_{h}.star", st)
    return preds / "p_0.star", preds / "p_1.star"


def ours_cmd(target, root, p0, p1, cpus, outdir, backend="native") -> list[str]:
    return [
        sys.executable, "-m", "cesped.evaluateEntry", "--predictionType", "SO3", "--targetName", target,
        "--benchmarkDir", str(root), "--half0PredsFname", str(p0), "--half1PredsFname", str(p1),
        "--n_cpus", str(cpus), "--outdir", str(outdir), "--backend", backend,
    ]  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--n-per-half", type=int, default=2000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--skip-relion", action="store_true", help="skip cesped's --backend relion reference")
    ap.add_argument("--skip-cold", action="store_true", help="skip the first run with an empty numba cache")
    args = ap.parse_args(argv)

    tmp = None
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cesped_bench_eval_"))
    if args.workdir is None:
        tmp = work
    target = f"BENCH{args.box}"
    try:
        root = work / "benchmark"
        p0, p1 = make_entry(root, target, args.box, args.n_per_half)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.cpus))
        env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
        tag = f"{2 * args.n_per_half}x{args.box}px_{args.cpus}cpu"
        common = dict(n_particles=2 * args.n_per_half, box=args.box, cpus=args.cpus)
        command = "python -m cesped.evaluateEntry --n_cpus N ... (fresh GT cache)"
        kernel_cache = work / "numba_cache"
        env = dict(env, NUMBA_CACHE_DIR=str(kernel_cache))

        def run_ours(tag_i: str, env_i: dict, backend: str = "native") -> tuple[float, float]:
            shutil.rmtree(work / f"cache_{tag_i}", ignore_errors=True)  # GT maps are rebuilt too
            shutil.rmtree(work / f"ours_{tag_i}", ignore_errors=True)
            env_i = dict(env_i, CESPED_CACHE_DIR=str(work / f"cache_{tag_i}"))
            cmd = ours_cmd(target, root, p0, p1, args.cpus, work / f"ours_{tag_i}", backend)
            return timed(cmd, env_i, cwd=str(HERE.parent))

        cold = None
        if not args.skip_cold:  # the first run after installing: numba compiles its kernels
            shutil.rmtree(kernel_cache, ignore_errors=True)
            cold = run_ours("cold", env)
        else:  # compile/load the kernels once (their on-disk cache is installation state)
            run_ours("warmup", env)
        ours, ours_rss = [], 0.0
        for i in range(args.repeats):
            wall, rss = run_ours(str(i), env)
            ours.append(wall)
            ours_rss = max(ours_rss, rss)
        t_ours = statistics.median(ours)
        runs = [round(x, 2) for x in ours]
        if cold is not None:
            emit(
                f"evaluateEntry_first_run_seconds_{tag}",
                round(cold[0], 2),
                "s",
                reference=round(t_ours, 2),
                ratio=round(cold[0] / t_ours, 2),
                reference_name="the same command, numba's kernel cache warm (median)",
                note="whole process, kernel cache emptied (NUMBA_CACHE_DIR); ratio = first / warm",
                command=command,
                load_avg=load_average(),
                **common,
            )
        refs = []
        if not args.skip_relion and shutil.which("relion_reconstruct"):
            rel, rel_rss = [], 0.0
            for i in range(args.repeats):
                wall, rss = run_ours(f"relion_{i}", env, backend="relion")
                rel.append(wall)
                rel_rss = max(rel_rss, rss)
            relion_name = (
                f"cesped evaluateEntry --backend relion (mpirun -np {args.cpus} relion_reconstruct_mpi)"
                if args.cpus > 1
                else "cesped evaluateEntry --backend relion (relion_reconstruct)"
            )
            refs.append(("relion", relion_name, rel, rel_rss))
        orig_py = ORIG_VENV / "bin" / "python"
        if not args.skip_original and orig_py.is_file() and shutil.which("relion_reconstruct"):
            support = HERE / "original_support"
            env_o = dict(
                os.environ,
                OMP_NUM_THREADS=str(args.cpus),
                PYTHONPATH=str(support),
                CESPED_CONFIGDIR=str(support / "configs"),
                OMPI_ALLOW_RUN_AS_ROOT="1",
                OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
            )
            orig = []
            orig_rss = 0.0
            relion_bin = str(Path(shutil.which("relion_reconstruct")).parent)
            for i in range(args.repeats):
                a = {
                    "target": target,
                    "p0": str(p0),
                    "p1": str(p1),
                    "root": str(root),
                    "relion_bin": relion_bin,
                    "cpus": args.cpus,
                    "outdir": str(work / f"orig_{i}"),
                }
                shutil.rmtree(work / f"orig_{i}", ignore_errors=True)
                wall, rss = timed([str(orig_py), "-c", _ORIGINAL_DRIVER, json.dumps(a)], env_o, cwd=str(work))
                orig.append(wall)
                orig_rss = max(orig_rss, rss)
            refs.append(("original", "original cesped 25.12.0 + relion (mpirun)", orig, orig_rss))
        if not refs:
            emit(
                f"evaluateEntry_seconds_{tag}",
                round(t_ours, 2),
                "s",
                runs=runs,
                note="no reference run (RELION missing, --skip-relion/--skip-original)",
                command=command,
                **common,
            )
            emit(f"evaluateEntry_peak_rss_{tag}", round(ours_rss, 1), "MiB", command=command, **common)
        for key, name, times, rss in refs:
            suffix = "" if key == "original" else "_vs_relion_backend"
            t_ref = statistics.median(times)
            emit(
                f"evaluateEntry_seconds{suffix}_{tag}",
                round(t_ours, 2),
                "s",
                reference=round(t_ref, 2),
                ratio=round(t_ref / t_ours, 2),
                reference_name=name + ", same run",
                note="whole process both sides; ratio = reference / ours",
                command=command,
                runs=runs,
                reference_runs=[round(x, 2) for x in times],
                load_avg=load_average(),
                **common,
            )
            emit(
                f"evaluateEntry_peak_rss{suffix}_{tag}",
                round(ours_rss, 1),
                "MiB",
                reference=round(rss, 1),
                ratio=round(rss / ours_rss, 2),
                reference_name=name + ", same run",
                note="peak RSS of the measured process alone; ratio = reference / ours",
                command=command,
                **common,
            )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
