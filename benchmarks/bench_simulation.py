"""Benchmark: simulating the default synthetic entry (8000 particles, 64 px, 3 Å/px), whole process.

Prints JSON lines ``{"name", "value", "unit", "reference", "ratio"}``:

* ``simulate_<preset>_seconds``: ``python -m cesped.simulate --preset <preset> --out DIR`` as a
  whole process (imports, the map from the atomic model, projections, file writing); the
  reference is ``relion_project --ctf --add_noise`` making the same images from the same star
  files and ground-truth map, both half-sets, whole processes, in the same run (RELION is
  single-threaded and does not build the map; ratio = RELION / cesped). Without RELION on PATH
  the reference is "not measured";
* ``simulate_<preset>_particles_per_s``, against the same reference;
* the peak RSS of the cesped process.

Example usage::

    python benchmarks/bench_simulation.py                 # 2 threads, preset synth_6msm
    python benchmarks/bench_simulation.py --threads 1 --preset synth_4e43 --n 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _launch import emit, load_average, measure  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="synth_6msm")
    p.add_argument("--n", type=int, default=None, help="override the number of particles")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=None, help="where to write the entry (default: a temporary dir)")
    args = p.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        out = Path(tmp) / args.preset
        cmd = [sys.executable, "-m", "cesped.simulate", "--preset", args.preset, "--out", str(out)]
        cmd.append("--no-progress")
        if args.n:
            cmd += ["--n", str(args.n)]
        ours = measure(cmd, env=env, cwd=tmp)
        from cesped.simulation.presets import PRESETS

        n = int(args.n or PRESETS[args.preset]["n_particles"])
        px = PRESETS[args.preset]["pixel_size"]
        rel = None
        if shutil.which("relion_project") and px:
            rel = 0.0
            for h in (0, 1):
                rcmd = [
                    "relion_project", "--i", "gt_map.mrc", "--o", f"relion_{h}",
                    "--ang", f"particles_{h}.star", "--ctf", "--add_noise", "--white_noise", "1",
                    "--angpix", str(px),
                ]  # fmt: skip
                rel += measure(rcmd, env=env, cwd=out)["wall_s"]
        extra = dict(
            preset=args.preset,
            threads=args.threads,
            load_avg=load_average(),
            command=f"python -m cesped.simulate --preset {args.preset} --out DIR",
            reference_name="relion_project --ctf --add_noise, both half-sets (images only), same run"
            if rel
            else "not measured (relion_project not on PATH)",
        )
        emit(
            f"simulate_{args.preset}_seconds",
            round(ours["wall_s"], 2),
            "s",
            reference=None if rel is None else round(rel, 2),
            ratio=None if rel is None else round(rel / ours["wall_s"], 2),
            note="whole process both sides; ratio = RELION / cesped",
            **extra,
        )
        if n:
            emit(
                f"simulate_{args.preset}_particles_per_s",
                round(n / ours["wall_s"], 1),
                "particles/s",
                reference=None if rel is None else round(n / rel, 1),
                ratio=None if rel is None else round(rel / ours["wall_s"], 2),
                **extra,
            )
        emit(f"simulate_{args.preset}_peak_rss", round(ours["peak_rss_mb"], 1), "MiB", **extra)


if __name__ == "__main__":
    main()
