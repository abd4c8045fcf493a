"""Time to simulate the heterogeneous entries (8,000 particles of 64 px), whole process.

Each preset is simulated by ``python -m cesped.simulate --preset NAME`` in its own process under
``/usr/bin/time -v`` (wall time, CPU time and peak memory of that process alone). The reference,
measured in the same run the same way, is the homogeneous entry of one of the same structures
with the same settings (``--structure adk_open``), so the ratio is the cost of heterogeneity.
Goal (issue 17): under 30 s on 2 cores. The machine's load average (``/proc/loadavg``) before
each run is recorded: on a shared machine the CPU time is the steadier figure.

Usage::

    nice .venv/bin/python benchmarks/bench_hetero_sim.py [--n 8000] [--presets synth_adk_states ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def emit(name, value, unit, reference=None, **extra):
    ratio = value / reference if reference else None
    fig = {"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio}
    print(json.dumps({**fig, **extra}), flush=True)


def _timed(args: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load = Path("/proc/loadavg").read_text().split()[0]
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "cesped.simulate", *args, "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{res.stderr[-2000:]}")

    def field(label):
        return re.search(rf"{re.escape(label)}: (.+)", res.stderr).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    wall_s = sum(float(x) * 60**i for i, x in enumerate(reversed(wall)))
    cpu_s = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    rss = int(field("Maximum resident set size (kbytes)")) / 1024
    return {"wall_s": wall_s, "cpu_s": cpu_s, "peak_rss_MiB": rss, "loadavg_before": float(load)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=["synth_adk_states", "synth_adk_motion"])
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        common = ["--n", str(args.n), "--overwrite"]
        settings = [
            "--pixel-size",
            "3.0",
            "--box",
            "64",
            "--snr",
            "0.05",
            "--defocus-range",
            "10000",
            "25000",
        ]
        ref = _timed(["--structure", "adk_open", *settings, "--out", f"{tmp}/ref", *common], args.threads)
        emit("simulate_adk_open_homogeneous_wall", ref["wall_s"], "s", goal_s=30.0, n=args.n, **ref)
        for preset in args.presets:
            r = _timed(["--preset", preset, "--out", f"{tmp}/{preset}", *common], args.threads)
            emit(f"simulate_{preset}_wall", r["wall_s"], "s", reference=ref["wall_s"], goal_s=30.0, n=args.n,
                 reference_name="homogeneous adk_open, same settings", **r)  # fmt: skip
            emit(f"simulate_{preset}_cpu", r["cpu_s"], "s", reference=ref["cpu_s"], n=args.n,
                 reference_name="homogeneous adk_open, same settings (CPU time)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
