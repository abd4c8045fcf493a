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

Example usage::

    python benchmarks/gpu_bench.py throughput --seconds 120
    python benchmarks/gpu_bench.py reconstruct --n 100000 --box 256
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["throughput", "reconstruct"])
    ap.add_argument("--seconds", type=float, default=120.0, help="throughput: training + inference time")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--box", type=int, default=256)
    ap.add_argument("--workdir", default=".")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device: skipped", file=sys.stderr)
        return 0
    if args.what == "throughput":
        throughput(args.seconds)
    else:
        reconstruct_gpu(args.n, args.box, Path(args.workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
