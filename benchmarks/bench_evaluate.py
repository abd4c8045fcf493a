"""Whole ``evaluateEntry`` run, start to finish: ours (native backend) vs the original package.

A synthetic entry (default: 128 px at 1.5 Å/px, 2000 + 2000 particles, C1) is written once in
the layout both packages read (``<root>/<target>/particles_{0,1}.star`` ...), with predictions
that are the ground truth rotated by ~5° per particle. Each side runs as a fresh process:

* ours: ``python -m cesped.evaluateEntry --n_cpus N`` (fresh cache each repeat, so the ground-
  truth maps are reconstructed too: the cold, complete cost);
* the original (only when ``benchmarks/.venv-original`` exists, see ``original_env.sh``): its
  ``evaluate()`` with RELION (``mpirun -np N relion_reconstruct_mpi``), ``use_gt_mask=False``
  (no network) and a float-safe ``json.dump`` (it crashes writing metrics.json otherwise).

Printed, one JSON line each: the median seconds of ours, with the original's median as the
reference (ratio = original / ours), and both peak RSS (MB).

Example usage::

    python benchmarks/bench_evaluate.py --box 128 --n-per-half 2000 --cpus 2 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
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


def emit(name, value, unit, reference=None, ratio=None, **extra):
    print(
        json.dumps(
            {"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio, **extra}
        ),
        flush=True,
    )


# A small launcher forks and execs the command and reports the child's peak RSS. Measuring
# through it matters: on Linux a process forked from this (large) driver keeps the driver's
# resident size as its high-water mark even after exec, so wait4() on a direct child reports
# max(driver, child) for both sides.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def timed(cmd, env, cwd) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command (max over it and its waited descendants)."""
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "maxrss")
        launch = [sys.executable, "-c", _LAUNCHER, rss_file, *map(str, cmd)]
        t0 = time.perf_counter()
        proc = subprocess.run(launch, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-3000:])
            raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}")
        with open(rss_file) as fh:
            maxrss_kb = float(fh.read())
    return wall, maxrss_kb / 1024.0


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--n-per-half", type=int, default=2000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-original", action="store_true")
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
        ours, ours_rss = [], 0.0
        # compile/load the numba kernels once (their on-disk cache is installation state, like
        # .pyc files): a first run after installing or editing the kernels compiles them (~10 s)
        warm = (
            "import sys; from cesped.io.star import read_star; "
            "from cesped.reconstruction.fourier import reconstruct; "
            "st = read_star(sys.argv[1]); st.particles = st.particles.iloc[:16]; reconstruct(st, n_threads=1)"
        )
        star0 = str(root / target / "particles_0.star")
        subprocess.run([sys.executable, "-c", warm, star0], check=True, env=env)
        for i in range(args.repeats):
            shutil.rmtree(work / f"cache_{i}", ignore_errors=True)  # cold: GT maps are rebuilt too
            env_i = dict(env, CESPED_CACHE_DIR=str(work / f"cache_{i}"))
            cmd = [
                sys.executable,
                "-m",
                "cesped.evaluateEntry",
                "--predictionType",
                "SO3",
                "--targetName",
                target,
                "--benchmarkDir",
                str(root),
                "--half0PredsFname",
                str(p0),
                "--half1PredsFname",
                str(p1),
                "--n_cpus",
                str(args.cpus),
                "--outdir",
                str(work / f"ours_{i}"),
            ]
            wall, rss = timed(cmd, env_i, cwd=str(HERE.parent))
            ours.append(wall)
            ours_rss = max(ours_rss, rss)
        t_ours = statistics.median(ours)
        tag = f"{2 * args.n_per_half}x{args.box}px_{args.cpus}cpu"
        orig_py = ORIG_VENV / "bin" / "python"
        if not args.skip_original and orig_py.is_file() and shutil.which("relion_reconstruct"):
            support = HERE / "original_support"
            env_o = dict(
                env,
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
            t_orig = statistics.median(orig)
            emit(
                f"evaluateEntry_seconds_{tag}",
                round(t_ours, 2),
                "s",
                reference=round(t_orig, 2),
                ratio=round(t_orig / t_ours, 2),
                reference_name="original cesped 25.12.0 + relion (mpirun)",
                runs=[round(x, 2) for x in ours],
                reference_runs=[round(x, 2) for x in orig],
            )
            emit(
                f"evaluateEntry_peak_rss_{tag}",
                round(ours_rss, 1),
                "MB",
                reference=round(orig_rss, 1),
                ratio=round(orig_rss / ours_rss, 2),
                reference_name="original cesped 25.12.0",
            )
        else:
            emit(
                f"evaluateEntry_seconds_{tag}",
                round(t_ours, 2),
                "s",
                runs=[round(x, 2) for x in ours],
                note="original package not run (benchmarks/.venv-original missing or --skip-original)",
            )
            emit(f"evaluateEntry_peak_rss_{tag}", round(ours_rss, 1), "MB")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
