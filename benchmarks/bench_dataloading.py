"""Data-loading throughput: cesped's ``ParticlesDataset`` vs the original package's, same files.

One entry of ``--n-particles`` random images (box ``--box``, 1.5 Å/px, RELION star with CTF
parameters, one optics group) is written once (in chunks; memory does not depend on its size).
Then each side iterates a ``DataLoader`` (``--batch-size``, shuffled over the whole entry) through the
full pipeline: read, per-image normalisation, CTF phase flip, centre crop (factor 0.25), resize to
``--image-size``, with 0 and 2 workers, timing ``--max-batches`` batches. Each measurement runs in
a fresh process started through ``_launch.measure`` (so its peak RSS is its own, not inherited
from this driver), the two sides alternate for ``--rounds`` rounds and the best round of each is
reported (the machine is shared). The original runs with ``benchmarks/.venv-original/bin/python``
when it exists (see ``benchmarks/original_env.sh``); otherwise the reference is "not measured"
(no ratio). The first batch (worker start-up) is not timed. Defaults: the paper's dataset
options (per-image normalisation, phase flip, crop factor 0.25), batch 32, 128 px, 0 and 2
workers.
Both sides use ``--threads`` torch threads in the main process (default 1).

Printed, one JSON line per figure: images/s (reference = the original in the same run; ratio =
ours / original), peak RSS of the main process and of the largest worker (ratio = original /
ours), and our peak RSS over 1/8, 1/4 and all of the entry (flat memory: it must not grow
with the particle count).

Example usage::

    python benchmarks/bench_dataloading.py                       # 8000 particles, 128 px, batch 32
    python benchmarks/bench_dataloading.py --n-particles 1000 --max-batches 5   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _launch import emit, load_average, measure  # noqa: E402

REPO = HERE.parent
ORIGINAL_PY = HERE / ".venv-original" / "bin" / "python"
NAME = "bench_loading"


def make_entry(root: Path, n: int, box: int, seed: int = 0) -> Path:
    """Write ``<root>/bench_loading/particles_0.{star,mrcs}`` + ``info_0.json`` (random images)."""
    import numpy as np
    import pandas as pd

    from cesped.simulation.fixtures import write_entry_half

    d = root / NAME
    if (d / "particles_0.star").exists() and (d / "info_0.json").exists():
        return d
    rng = np.random.default_rng(seed)
    optics = pd.DataFrame(
        {  # one optics group: the original package reads only one
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnVoltage": [300.0],
            "rlnSphericalAberration": [2.7],
            "rlnAmplitudeContrast": [0.1],
            "rlnImagePixelSize": [1.5],
            "rlnImageSize": [box],
            "rlnImageDimensionality": [2],
        }
    )
    du = rng.uniform(8000, 25000, n)
    parts = pd.DataFrame(
        {
            "rlnAngleRot": rng.uniform(-180, 180, n),
            "rlnAngleTilt": rng.uniform(0, 180, n),
            "rlnAnglePsi": rng.uniform(-180, 180, n),
            "rlnOriginXAngst": rng.uniform(-4, 4, n),
            "rlnOriginYAngst": rng.uniform(-4, 4, n),
            "rlnDefocusU": du,
            "rlnDefocusV": du - rng.uniform(0, 1000, n),
            "rlnDefocusAngle": rng.uniform(0, 180, n),
            "rlnOpticsGroup": np.ones(n, dtype=np.int64),
            "rlnMaxValueProbDistribution": rng.uniform(0, 1, n),
            "rlnRandomSubset": np.ones(n, dtype=np.int64),
        }
    )
    # images made chunk by chunk (the stack may exceed memory); the original package checks for its
    # download marker (record id falls back to the half-set)
    images = lambda s, e: rng.normal(size=(e - s, box, box)).astype(np.float32)  # noqa: E731
    return write_entry_half(root, NAME, 0, images, parts, optics, "C1", original_marker=True)


def worker(
    side: str,
    bench_dir: str,
    workers: int,
    image_size: int,
    batch_size: int,
    max_batches: int,
    n_limit: int,
    threads: int,
) -> None:
    """Child process: iterate the DataLoader, print one JSON line."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    from torch.utils.data import DataLoader, Subset

    from cesped.particlesDataset import ParticlesDataset

    ds = ParticlesDataset(
        NAME,
        0,
        benchmarkDir=bench_dir,
        image_size=image_size,
        apply_perImg_normalization=True,
        ctf_correction="phase_flip",
        image_size_factor_for_crop=0.25,
    )
    if n_limit and n_limit < len(ds):
        ds = Subset(ds, list(range(n_limit)))
    g = torch.Generator().manual_seed(0)
    dl = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, generator=g)
    it = iter(dl)
    first = next(it)
    n_img, n_batches = 0, 0
    t0 = time.perf_counter()
    for batch in it:
        n_img += len(batch[0])
        n_batches += 1
        if max_batches and n_batches >= max_batches:
            break
    dt = time.perf_counter() - t0
    assert tuple(first[1].shape[-2:]) == (image_size, image_size), first[1].shape
    del it, dl
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print(
        json.dumps(
            {
                "side": side,
                "images": n_img,
                "seconds": dt,
                "images_per_s": n_img / dt,
                "peak_rss_main_mb": self_rss,
                "peak_rss_worker_mb": child_rss,
            }
        )
    )


def run_child(side: str, bench_dir: Path, workers: int, args, n_limit: int = 0) -> dict | None:
    if side == "original":
        if not ORIGINAL_PY.exists():
            return None
        py = str(ORIGINAL_PY)
        env = dict(os.environ)
        support = subprocess.run(
            ["bash", str(HERE / "original_env.sh"), "--print-env"], capture_output=True, text=True
        ).stdout
        env.pop("PYTHONPATH", None)
        for line in support.splitlines():  # export KEY=VALUE
            if line.startswith("export ") and "=" in line:
                k, v = line[len("export ") :].split("=", 1)
                env[k] = v
    else:
        py = sys.executable
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        py,
        str(Path(__file__).resolve()),
        "--_worker",
        side,
        str(bench_dir),
        str(workers),
        str(args.image_size),
        str(args.batch_size),
        str(args.max_batches),
        str(n_limit),
        str(args.threads),
    ]
    try:
        r = measure(cmd, env=env, cwd=str(HERE))
    except RuntimeError as e:
        print(f"# {side} failed:\n{e}", file=sys.stderr)
        return None
    res = json.loads([ln for ln in r["output"].splitlines() if ln.startswith("{")][-1])
    res["process_peak_rss_mb"] = r["peak_rss_mb"]  # the process and its DataLoader workers (max)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-particles", type=int, default=8000)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument(
        "--max-batches",
        type=int,
        default=50,
        help="timed batches per run, shuffled over the whole entry (0: all)",
    )
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs per side; the best is reported")
    ap.add_argument("--workdir", default=None, help="keep the entry here (default: a temp dir)")
    ap.add_argument("--no-original", action="store_true")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads of the main process, both sides (0: torch's default). "
        "DataLoader workers always use 1. Default 1: on a shared machine more threads "
        "spin and slow both sides down",
    )
    ap.add_argument("--_worker", nargs=8, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        side, bench_dir, w, size, bs, mb, lim, thr = args._worker
        worker(side, bench_dir, int(w), int(size), int(bs), int(mb), int(lim), int(thr))
        return 0

    tmp = None
    if args.workdir:
        root = Path(args.workdir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="cesped_bench_loading_")
        root = Path(tmp.name)
    make_entry(root, args.n_particles, args.box)
    tag = dict(
        n_particles=args.n_particles,
        box=args.box,
        image_size=args.image_size,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    for w in args.workers:
        # alternate the two sides and keep each side's best round: the machine is shared and noisy
        ours_runs, orig_runs = [], []
        for _ in range(max(1, args.rounds)):
            r = run_child("ours", root, w, args)
            if r is None:
                return 1
            ours_runs.append(r)
            if not args.no_original:
                r = run_child("original", root, w, args)
                if r is not None:
                    orig_runs.append(r)
        ours = max(ours_runs, key=lambda r: r["images_per_s"])
        orig = max(orig_runs, key=lambda r: r["images_per_s"]) if orig_runs else None
        ref = orig["images_per_s"] if orig else None
        src = "original cesped 25.12.0, same run" if orig else "not measured (no benchmarks/.venv-original)"
        emit(
            f"dataloading_images_per_s_workers{w}",
            round(ours["images_per_s"], 1),
            "images/s",
            reference=None if ref is None else round(ref, 1),
            ratio=None if ref is None else round(ours["images_per_s"] / ref, 2),
            reference_source=src,
            load_avg=load_average(),
            command=f"python benchmarks/bench_dataloading.py --workers {w}",
            rounds=[round(r["images_per_s"], 1) for r in ours_runs],
            reference_rounds=[round(r["images_per_s"], 1) for r in orig_runs],
            images_timed=ours["images"],
            **tag,
        )
        for key in ("peak_rss_main_mb", "peak_rss_worker_mb"):
            if w == 0 and key == "peak_rss_worker_mb":
                continue
            mine = max(r[key] for r in ours_runs)
            ref_rss = max(r[key] for r in orig_runs) if orig_runs else None
            emit(
                f"dataloading_{key}_workers{w}",
                round(mine, 1),
                "MB",
                reference=None if ref_rss is None else round(ref_rss, 1),
                ratio=None if ref_rss is None else round(ref_rss / mine, 2),
                note="ratio = original / ours (> 1: ours smaller)",
                **tag,
            )
    # flat memory: the same whole pass over 1x, 2x and 8x the particles
    whole = argparse.Namespace(**{**vars(args), "max_batches": 0})
    sizes = [max(1, args.n_particles // 8), max(1, args.n_particles // 4), args.n_particles]
    rss = {}
    for k in sizes:
        r = run_child("ours", root, 0, whole, n_limit=k if k < args.n_particles else 0)
        if r is None:
            return 1
        rss[k] = r["peak_rss_main_mb"]
    emit(
        "dataloading_peak_rss_flat_workers0",
        round(rss[sizes[-1]], 1),
        "MB",
        reference=round(rss[sizes[0]], 1),
        ratio=round(rss[sizes[0]] / rss[sizes[-1]], 2),
        reference_name=f"the same pass over {sizes[0]} particles (8x fewer)",
        peak_rss_mb_by_particles={str(k): round(v, 1) for k, v in rss.items()},
        note="whole pass, 1x / 2x / 8x particles; ratio 1 = flat",
        **tag,
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
