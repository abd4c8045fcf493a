"""Where a DataLoader batch of ``ParticlesDataset`` spends CPU: the main process vs its workers.

A profiling aid for ``bench_dataloading.py`` (not a benchmark: it prints no comparison). On the
entry that ``bench_dataloading.py --workdir DIR`` writes (paper defaults: per-image
normalisation, phase flip, crop 0.25, 128 px, batch 32), it iterates a shuffled DataLoader with
each of ``--workers`` and prints one JSON line each: wall ms per batch, CPU ms per batch of the
main process (all its threads) and of the workers (their whole lives, from ``RUSAGE_CHILDREN``),
and the load average. CPU times are less disturbed than wall times on a shared machine.

Example usage::

    python benchmarks/bench_dataloading.py --workdir /tmp/bl --workers 0 --rounds 1 --no-original
    python benchmarks/profile_dataloading.py /tmp/bl --workers 0 2 --batches 150
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_dataloading import NAME  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", help="benchmark directory holding the bench_loading entry")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=150)
    args = ap.parse_args(argv)
    import torch
    from torch.utils.data import DataLoader

    from cesped.particlesDataset import ParticlesDataset

    torch.set_num_threads(1)
    if not (Path(args.workdir) / NAME / "particles_0.star").is_file():
        raise ValueError(f"{args.workdir}: no {NAME} entry (write it with bench_dataloading.py --workdir)")
    ds = ParticlesDataset(
        NAME,
        0,
        benchmarkDir=args.workdir,
        image_size=128,
        apply_perImg_normalization=True,
        ctf_correction="phase_flip",
        image_size_factor_for_crop=0.25,
    )
    for w in args.workers:
        g = torch.Generator().manual_seed(0)
        ch0 = _children_cpu()
        it = iter(DataLoader(ds, batch_size=32, shuffle=True, num_workers=w, generator=g))
        next(it)  # worker start-up
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for _ in it:
            n += 1
            if n >= args.batches:
                break
        wall, main_cpu = time.perf_counter() - t0, time.process_time() - c0
        del it
        gc.collect()
        time.sleep(0.5)  # the workers have exited: their CPU is in RUSAGE_CHILDREN
        produced = n + 1 + 2 * w  # timed + first + prefetched (prefetch_factor 2)
        print(
            json.dumps(
                {
                    "workers": w,
                    "batches": n,
                    "wall_ms_per_batch": round(wall * 1000 / n, 2),
                    "main_cpu_ms_per_batch": round(main_cpu * 1000 / n, 2),
                    "workers_cpu_ms_per_batch": round((_children_cpu() - ch0) * 1000 / produced, 2)
                    if w
                    else 0.0,
                    "load_avg": [round(x, 2) for x in os.getloadavg()],
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
