"""Benchmark: time to simulate the default synthetic entry (8000 particles, 64 px, 3 Å/px).

Prints JSON lines ``{"name", "value", "unit", "reference", "ratio"}``:

* ``simulate_<preset>_seconds``: wall time of ``simulate_entry`` (reference: the 60 s goal),
* ``simulate_<preset>_particles_per_s``,
* ``simulate_vs_relion_project``: our time over ``relion_project --ctf --add_noise`` making the
  same images from the same star files and ground-truth map (measured in the same run; only
  when RELION is on PATH; RELION is single-threaded).

Example usage::

    python benchmarks/bench_simulation.py                 # 2 threads, preset synth_6msm
    python benchmarks/bench_simulation.py --threads 1 --preset synth_4e43 --n 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from cesped.simulation import PRESETS, simulate_entry


def _line(name, value, unit, reference, ratio=None):
    if ratio is None and reference:
        ratio = value / reference
    print(json.dumps({"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio}))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="synth_6msm", choices=sorted(PRESETS))
    p.add_argument("--n", type=int, default=None, help="override the number of particles")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=None, help="where to write the entry (default: a temporary dir)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    kwargs = dict(PRESETS[args.preset])
    if args.n:
        kwargs["n_particles"] = args.n
    n = kwargs["n_particles"]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        out = Path(tmp) / args.preset
        t0 = time.perf_counter()
        simulate_entry(out, **kwargs, progress=False)
        elapsed = time.perf_counter() - t0
        _line(f"simulate_{args.preset}_seconds", elapsed, "s", 60.0 * n / 8000)
        _line(f"simulate_{args.preset}_particles_per_s", n / elapsed, "particles/s", 8000 / 60.0)
        if shutil.which("relion_project"):
            t0 = time.perf_counter()
            for h in (0, 1):
                subprocess.run(
                    [
                        "relion_project",
                        "--i",
                        "gt_map.mrc",
                        "--o",
                        f"relion_{h}",
                        "--ang",
                        f"particles_{h}.star",
                        "--ctf",
                        "--add_noise",
                        "--white_noise",
                        "1",
                        "--angpix",
                        str(kwargs["pixel_size"]),
                    ],
                    cwd=out,
                    check=True,
                    capture_output=True,
                )
            relion = time.perf_counter() - t0
            _line(
                "simulate_vs_relion_project",
                elapsed / relion,
                "ratio (ours / relion_project)",
                1.0,
                ratio=elapsed / relion,
            )
            _line("relion_project_seconds", relion, "s", elapsed)


if __name__ == "__main__":
    main()
