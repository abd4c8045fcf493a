"""GPU figures for ``benchmarks/gpu_check.sh`` (one JSON line each; needs CUDA).

* ``throughput``: the paper configuration (experiment=paper: ResNet-152 trunk with random
  weights, lmax 8, orders 3/3/4, S² features 512, SO(3) features 16, activation resolution 10,
  256 px images, batch 64 x 2 augmented copies) on one GPU: training steps (forward, cross
  entropy against the nearest grid rotation, backward, RAdam) for half of ``--seconds``, then
  deterministic prediction (batch 256) for the other half; images/s of each and the peak GPU
  memory;
* ``reconstruct``: ``cesped.reconstruction.fourier.reconstruct(device="cuda")`` of ``--n``
  particles of ``--box`` px (C1, CTF, random poses and shifts). The images come from a bank of
  64 noise images held in memory (the cost of the reconstruction does not depend on what the
  images show; 100,000 images of 256 px would be 26 GB on disk); the star file is real.
* ``refine``: the reference-based local refinement (``cesped.refinement.refine_particles``, the
  code of ``python -m cesped.refine``) of ``--n`` particles of ``--box`` px on CUDA, from top-5
  stand-in candidates (``bench_refinement.py``'s ``simple`` kind: the true pose turned by 10°,
  20 % of them further turned by the mirror view or the in-plane half-turn, four random others)
  against the true map (the built-in 6MSM model voxelised at ``--box`` px and ``--px`` Å/px),
  origins searched. The particles are simulated on the GPU (Fourier slices, RELION's CTF, origin
  shifts, Gaussian noise at ``--snr``) and held in host memory. Figures: particles/s and peak GPU
  memory; the same code on the same machine's CPU cores for ``--cpu-n`` of the same particles,
  with 1 thread (the refinement's default) and all cores (the faster is the reference); how far
  the CUDA poses are from the CPU poses of those particles; MAnE, median and fraction above 150°
  of the CUDA poses against the truth. ``--max-seconds`` bounds the CUDA part: the particles are
  refined in slices of 10,000 and the figure names how many were done.

Example usage::

    python benchmarks/gpu_bench.py throughput --seconds 120
    python benchmarks/gpu_bench.py reconstruct --n 100000 --box 256
    python benchmarks/gpu_bench.py refine --n 100000 --box 128 --px 1.5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _launch import emit  # noqa: E402


def throughput(seconds: float) -> None:
    import torch

    from cesped.models.image2sphere import Image2Sphere
    from cesped.training.losses import symmetric_cross_entropy

    dev = torch.device("cuda")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    m = Image2Sphere(
        "resnet152", pretrained=False, lmax=8, s2_fdim=512, so3_fdim=16, hp_order_projector=3, hp_order_s2=3,
        hp_order_so3=4, projector_subset_fraction=0.5, so3_act_resolution=10,
    ).to(dev)  # fmt: skip
    build = time.perf_counter() - t0
    b = 64 * 2  # batch 64, 2 augmented copies
    img = torch.randn(b, 1, 256, 256, device=dev)
    q = torch.nn.functional.normalize(torch.randn(b, 4, device=dev, dtype=torch.float64), dim=1)
    w, x, y, z = q.unbind(1)
    rot = torch.stack(
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
         2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
         2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1,
    ).reshape(b, 3, 3).float()  # fmt: skip
    opt = torch.optim.RAdam(m.parameters(), lr=1e-3, weight_decay=1e-5)

    def step():
        loss = symmetric_cross_entropy(m.grid_logits(m(img)), m.target_indices(rot))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    m.train()
    step()  # warm-up (cuDNN autotuning, tables)
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        loss = step()
        n += b
    torch.cuda.synchronize()
    train = n / (time.perf_counter() - t0)
    if not torch.isfinite(loss):
        raise RuntimeError("training loss is not finite")
    m.eval()
    pimg = torch.randn(256, 1, 256, 256, device=dev)
    m.predict(pimg)
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        m.predict(pimg)
        n += pimg.shape[0]
    torch.cuda.synchronize()
    infer = n / (time.perf_counter() - t0)
    extra = dict(
        config="experiment=paper: resnet152 (random weights) lmax8 orders3/3/4 256px batch64x2",
        device=torch.cuda.get_device_name(0),
        command=f"python benchmarks/gpu_bench.py throughput --seconds {seconds:g}",
    )
    emit("gpu_paper_train_throughput", round(train, 1), "images/s", **extra)
    emit("gpu_paper_inference_throughput", round(infer, 1), "images/s", **extra)
    emit("gpu_paper_peak_memory", round(torch.cuda.max_memory_allocated() / 2**30, 2), "GiB", **extra)
    emit("gpu_paper_build_seconds", round(build, 2), "s", **extra)


class BankSource:
    """``n`` images of ``box`` px drawn (by row) from a bank of 64 noise images in memory."""

    def __init__(self, n: int, box: int, seed: int = 0):
        self.n, self.box = int(n), int(box)
        self.bank = np.random.default_rng(seed).normal(size=(64, box, box)).astype(np.float32)

    def __len__(self) -> int:
        return self.n

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.box, self.box)

    def read(self, rows) -> np.ndarray:
        return self.bank[np.asarray(rows) % 64]


def write_star(path: Path, n: int, box: int, px: float, seed: int = 0) -> Path:
    import pandas as pd

    from cesped.io.star import StarFile
    from cesped.io.star import write_star as _write

    rng = np.random.default_rng(seed)
    optics = pd.DataFrame(
        {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [300.0],
         "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1], "rlnImagePixelSize": [px],
         "rlnImageSize": [box], "rlnImageDimensionality": [2]}
    )  # fmt: skip
    du = rng.uniform(8000, 25000, n)
    parts = pd.DataFrame(
        {"rlnImageName": [f"{i + 1:06d}@bank.mrcs" for i in range(n)],
         "rlnAngleRot": rng.uniform(-180, 180, n),
         "rlnAngleTilt": np.degrees(np.arccos(rng.uniform(-1, 1, n))),
         "rlnAnglePsi": rng.uniform(-180, 180, n), "rlnOriginXAngst": rng.uniform(-4, 4, n),
         "rlnOriginYAngst": rng.uniform(-4, 4, n), "rlnDefocusU": du,
         "rlnDefocusV": du - rng.uniform(0, 500, n),
         "rlnDefocusAngle": rng.uniform(0, 180, n), "rlnOpticsGroup": np.ones(n, dtype=np.int64)}
    )  # fmt: skip
    _write(path, StarFile(particles=parts, optics=optics))
    return path


def reconstruct_gpu(n: int, box: int, workdir: Path) -> None:
    import torch

    from cesped.io.star import read_star
    from cesped.reconstruction.fourier import reconstruct

    star = write_star(workdir / "gpu_bank.star", n, box, 1.0)
    st = read_star(star)
    src = BankSource(n, box)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    vol, _ = reconstruct(st, images=src, device="cuda")
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if not np.isfinite(vol).all():
        raise RuntimeError("reconstruction is not finite")
    extra = dict(
        device=torch.cuda.get_device_name(0),
        note="in-process (data made in memory, CUDA initialised before); images from a 64-image bank",
        command=f"python benchmarks/gpu_bench.py reconstruct --n {n} --box {box}",
    )
    emit(f"gpu_reconstruct_seconds_{n}x{box}px", round(dt, 2), "s", **extra)
    emit(f"gpu_reconstruct_particles_per_s_{n}x{box}px", round(n / dt, 1), "particles/s", **extra)
    peak = torch.cuda.max_memory_allocated() / 2**30
    emit(f"gpu_reconstruct_peak_memory_{n}x{box}px", round(peak, 2), "GiB", **extra)


class ArraySource:
    """Particle images held in memory, read by row (the refinement's ``images`` interface)."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:])

    def read(self, rows) -> np.ndarray:
        return self.images[np.asarray(rows)]


def true_map(box: int, px: float) -> np.ndarray:
    """The built-in 6MSM model (C1) voxelised at ``box`` px and ``px`` Å/px, as simulate_entry does."""
    from cesped.simulation.entry import _build_potential
    from cesped.simulation.presets import resolve_structure

    vol, _ = _build_potential(resolve_structure("6msm"), "C1", px, box, 0.0, False, True, 3.0 * px)
    return vol


def refine_bench(args) -> None:
    import torch
    from bench_refinement import STAND_INS, stand_in_candidates

    from cesped.geometry.rotations import euler_to_matrix
    from cesped.refinement.api import (
        DEFAULT_GLOBAL_TOP,
        DEFAULT_SURVIVORS,
        DEFAULT_TRACK_SEPARATION,
        floor_particles,
        refine_particles,
    )
    from cesped.refinement.local import LocalConfig
    from cesped.refinement.score import band_radius
    from cesped.simulation.fixtures import simulate_particles

    dev = args.device
    n, box, px = args.n, args.box, args.px
    t0 = time.perf_counter()
    vol = true_map(box, px)
    images, parts, optics = simulate_particles(vol, n, px, snr=args.snr, seed=0, chunk=4096, device=dev)
    for col in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize"):
        parts[col] = float(optics[col].iloc[0])
    parts["rlnImageSize"] = box
    t_sim = time.perf_counter() - t0
    r_true = euler_to_matrix(
        torch.as_tensor(
            parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy().copy(), dtype=torch.float64
        )
    )
    pre = STAND_INS["simple"]
    cand, _ = stand_in_candidates(
        r_true, 5, pre["jitter"], pre["flip_fraction"], seed=1, flip_axis=pre["flip_axis"]
    )
    config = LocalConfig(
        band_radius=band_radius(args.band_limit_A, box, px), shift_radius_px=max(3.0, 0.08 * box)
    )
    common = dict(
        box=box, pixel_size=px, snr=args.snr, top_k=5, band_limit_A=args.band_limit_A,
        stand_ins="simple: true pose turned 10 deg, 20 % mirror/half-turn, 4 random others",
        reference_map="true map (6MSM voxelised)", simulate_seconds=round(t_sim, 1),
        command=f"python benchmarks/gpu_bench.py refine --n {n} --box {box} --px {px} --global-top "
        + " ".join(str(g) for g in args.global_top) + f" --floor-n {args.floor_n}",
    )  # fmt: skip
    ncores = os.cpu_count() or 1
    m = min(args.cpu_n, n)
    few = ArraySource(images[:8])  # CPU warm-up (numba's compilation), not timed
    refine_particles(few, parts.iloc[:8].reset_index(drop=True), vol, px, cand[:8], config, device="cpu")
    default = dataclasses.replace(
        config,
        survivors=DEFAULT_SURVIVORS,
        keep=max(4, DEFAULT_SURVIVORS),
        track_separation_deg=DEFAULT_TRACK_SEPARATION,
    )
    variants = []
    for g in args.global_top:
        if g == "default":
            variants.append(("refine_default", DEFAULT_GLOBAL_TOP, n, default))
        else:
            variants.append((f"refine{'' if int(g) == 0 else f'_global{g}'}", int(g), n, config))
    if args.floor_n > 0:
        variants.append(("floor", None, min(args.floor_n, n), config))
    for tag, gtop, n_max, cfg in variants:

        def call(rows, device, chunk, threads=1, gtop=gtop, config=cfg):
            src = ArraySource(images[rows])
            p = parts.iloc[rows].reset_index(drop=True)
            if gtop is None:  # the floor: global grid search, then local refinement
                return floor_particles(src, p, vol, px, config, device=device, chunk=chunk, threads=threads)
            return refine_particles(
                src, p, vol, px, cand[rows], config, device=device, chunk=chunk, threads=threads,
                global_top=gtop,
            )  # fmt: skip

        search = dict(global_top=gtop, survivors=cfg.survivors, track_separation_deg=cfg.track_separation_deg)
        _variant(args, tag, call, n_max, m, ncores, dev, r_true, parts, dict(common, **search), box)


def _variant(args, tag, call, n_max, m, ncores, dev, r_true, parts, common, box) -> None:
    """Time ``call`` on ``dev`` over up to ``n_max`` particles (slices of 10,000, within
    ``--max-seconds``), then on the CPU over the first ``m`` particles, and emit the figures."""
    import torch

    from cesped.geometry.errors import angular_distance, symmetry_aware_error

    cuda = torch.device(dev).type == "cuda"
    name = torch.cuda.get_device_name(0) if cuda else "cpu"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    # warm-up (kernels, cuFFT plans), not timed; its poses are compared with the CPU's below
    first = np.arange(m)
    warm = call(first, dev, args.chunk)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    done, rot, orig, t_dev, chunk = 0, [], [], 0.0, args.chunk
    while done < n_max and t_dev < args.max_seconds:
        rows = np.arange(done, min(n_max, done + 10_000))
        w0 = time.perf_counter()
        try:
            res = call(rows, dev, chunk)
        except torch.cuda.OutOfMemoryError:
            if chunk <= 64:
                raise
            chunk //= 2  # the time of the failed try is not counted; the figure records the chunk
            torch.cuda.empty_cache()
            print(f"gpu_bench {tag}: out of GPU memory, chunk -> {chunk}", file=sys.stderr)
            continue
        sync()
        t_dev += time.perf_counter() - w0
        rot.append(res["rotmats"])
        orig.append(res["origins_A"])
        done = int(rows[-1]) + 1
    rot_dev = torch.from_numpy(np.concatenate(rot))
    extra = dict(common, device=name, n_refined=done, chunk=chunk, variant=tag)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    # the same code on this machine's CPU cores, on the same first m particles (same noise estimate)
    cpu_rates, cpu_rot = {}, {}
    for threads in sorted({1, ncores}):
        w0 = time.perf_counter()
        res = call(first, "cpu", 256, threads=threads)
        cpu_rates[threads] = m / (time.perf_counter() - w0)
        cpu_rot[threads] = torch.from_numpy(res["rotmats"])
    best_threads = max(cpu_rates, key=cpu_rates.get)
    rate = done / t_dev
    kind = "gpu" if cuda else "cpu"
    emit(
        f"{kind}_{tag}_particles_per_s_{box}px", round(rate, 1), "particles/s",
        reference=round(cpu_rates[best_threads], 2), ratio=round(rate / cpu_rates[best_threads], 1),
        reference_what=(
            f"the same code on this machine's CPU ({ncores} cores), {m} of the same particles, "
            f"{best_threads} thread(s) (the faster of 1 and {ncores}: "
            + ", ".join(f"{k}: {v:.2f}/s" for k, v in cpu_rates.items()) + ")"
        ),
        seconds=round(t_dev, 1),
        note=f"in-process, after a warm-up run of {m} particles; images in host memory",
        **extra,
    )  # fmt: skip
    if peak is not None:
        emit(f"gpu_{tag}_peak_memory_{box}px", round(peak, 2), "GiB", **extra)
    warm_rot = torch.from_numpy(warm["rotmats"])
    for threads, r in cpu_rot.items():
        d = angular_distance(warm_rot, r).numpy()
        emit(
            f"{tag}_{'cuda' if cuda else 'cpu'}_vs_cpu{threads}_pose_difference_{box}px",
            round(float(np.median(d)), 4), "deg", max=round(float(d.max()), 4),
            frac_above_1deg=round(float((d > 1).mean()), 4), n=m, cpu_threads=threads, **extra,
        )  # fmt: skip
    err = symmetry_aware_error(r_true[:done], rot_dev, "C1").numpy()
    emit(
        f"{tag}_MAnE_{box}px", round(float(err.mean()), 2), "deg", median=round(float(np.median(err)), 2),
        frac_above_150=round(float((err > 150).mean()), 4), frac_below_5=round(float((err < 5).mean()), 4),
        **extra,
    )  # fmt: skip
    o_true = parts[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()[:done]
    sh = float(np.sqrt(((np.concatenate(orig) - o_true) ** 2).sum(1).mean()))
    emit(f"{tag}_shift_rmse_{box}px", round(sh, 3), "Å", **extra)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["throughput", "reconstruct", "refine"])
    ap.add_argument("--seconds", type=float, default=120.0, help="throughput: training + inference time")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--box", type=int, default=256)
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--px", type=float, default=1.5, help="refine: pixel size (Å)")
    ap.add_argument("--snr", type=float, default=0.05, help="refine: signal-to-noise ratio of the images")
    ap.add_argument("--band-limit-A", type=float, default=4.0, help="refine: band limit of the scores (Å)")
    ap.add_argument("--chunk", type=int, default=1024, help="refine: particles per batch on the device")
    ap.add_argument("--cpu-n", type=int, default=128, help="refine: particles refined on the CPU too")
    ap.add_argument("--max-seconds", type=float, default=150.0, help="refine: bound of each device part")
    ap.add_argument(
        "--global-top", nargs="+", default=["0"],
        help="refine: global starts added to the top-5 (one variant each, 4 survivors, tracks not "
        "separated); 'default': refine_star's default search (DEFAULT_GLOBAL_TOP starts, "
        "DEFAULT_SURVIVORS survivors, tracks DEFAULT_TRACK_SEPARATION apart)",
    )  # fmt: skip
    ap.add_argument("--floor-n", type=int, default=0, help="refine: particles of the floor variant (0: none)")
    ap.add_argument("--device", default="cuda", help="refine: device (cpu: try the code without a GPU)")
    args = ap.parse_args(argv)
    import torch

    on_cpu = args.what == "refine" and torch.device(args.device).type == "cpu"  # a CPU try of refine
    if not on_cpu and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device: skipped", file=sys.stderr)
        return 0
    if args.what == "throughput":
        throughput(args.seconds)
    elif args.what == "refine":
        refine_bench(args)
    else:
        reconstruct_gpu(args.n, args.box, Path(args.workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
