"""SO(3) activation speed: separable Fourier transform (ours) vs the dense Wigner-table reference.

Both are :class:`cesped.models.s2_so3.SO3Activation` (``method="fourier"``, the default, and
``method="dense"``: e3nn's computation, a ``(32 r³, Σ(2l+1)²)`` table multiplied in and out), the
same function to float32 rounding. Figures, forward + backward (gradient w.r.t. the input) in
milliseconds, ReLU, for ``B·F`` signals:

* lmax 6, resolution 10, ``B·F = 32·16`` (the Image2Sphere configuration of issue 6);
* lmax 4, resolution 5, ``B·F = 64·16``;

and with ``--train-step``, the whole Image2Sphere training step of issue 6 (ResNet-18, 64 px,
lmax 6, S² features 512, SO(3) features 16, activation resolution 10, batch 32, orders 2/2/3)
with either activation. Dense and Fourier runs alternate in one process (the machine is shared and
noisy); the medians are printed, one JSON line per figure::

    {"name": ..., "value": <fourier ms>, "unit": "ms", "reference": <dense ms>, "ratio": <dense / fourier>}

(the ``name`` key as in the other ``benchmarks/`` scripts, read by ``run_all.py``). Forward-only
(no grad) figures are printed too.

Example usage::

    python benchmarks/bench_so3_activation.py                     # one thread, 7 repeats
    python benchmarks/bench_so3_activation.py --threads 2 --repeats 11 --train-step
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cesped.models.s2_so3 import SO3Activation, so3_dim  # noqa: E402

CONFIGS = [(6, 10, 32, 16), (4, 5, 64, 16)]  # lmax, resolution, B, F


def emit(name, value, unit, reference=None, ratio=None, **extra):
    print(
        json.dumps(
            {"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio, **extra}
        ),
        flush=True,
    )


def alternate(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, calls interleaved (one warm-up call each)."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_activation(lmax, res, B, F, repeats, cache):
    mods = {
        "dense": SO3Activation(lmax, res, cache_dir=cache, method="dense"),
        "fourier": SO3Activation(lmax, res, cache_dir=cache),
    }
    x = torch.randn(B, F, so3_dim(lmax), generator=torch.Generator().manual_seed(0))
    gy = torch.randn_like(x)

    def fwd_bwd(m):
        def f():
            xx = x.clone().requires_grad_()
            m(xx).backward(gy)

        return f

    def fwd(m):
        def f():
            with torch.no_grad():
                m(x)

        return f

    tag = f"lmax{lmax}_res{res}_{B}x{F}"
    for name, make in (("fwd_bwd", fwd_bwd), ("fwd_nograd", fwd)):
        t = alternate({k: make(m) for k, m in mods.items()}, repeats)
        emit(
            f"so3_activation_{name}_{tag}",
            round(t["fourier"] * 1e3, 2),
            "ms",
            round(t["dense"] * 1e3, 2),
            round(t["dense"] / t["fourier"], 2),
        )


def bench_train_step(repeats, cache):
    from cesped.models.image2sphere import Image2Sphere
    from cesped.training.losses import symmetric_cross_entropy

    torch.manual_seed(0)
    model = Image2Sphere(
        "resnet18",
        lmax=6,
        s2_fdim=512,
        so3_fdim=16,
        hp_order_projector=2,
        hp_order_s2=2,
        hp_order_so3=3,
        so3_act_resolution=10,
        cache_dir=cache,
    )
    ((parent_name, child),) = [
        (n.rpartition(".")[0], n.rpartition(".")[2])
        for n, m in model.named_modules()
        if isinstance(m, SO3Activation)
    ]
    parent = model.get_submodule(parent_name)
    acts = {
        "dense": SO3Activation(6, 10, cache_dir=cache, method="dense"),
        "fourier": SO3Activation(6, 10, cache_dir=cache),
    }
    opt = torch.optim.RAdam(model.parameters(), 1e-3)
    img = torch.randn(32, 1, 64, 64)
    R = torch.linalg.qr(torch.randn(32, 3, 3))[0]
    R = R * torch.det(R)[:, None, None]
    model.train()

    def step(kind):
        def f():
            setattr(parent, child, acts[kind])
            loss = symmetric_cross_entropy(model.grid_logits(model(img)), model.target_indices(R))
            opt.zero_grad()
            loss.backward()
            opt.step()

        return f

    t = alternate({k: step(k) for k in acts}, repeats)
    emit(
        "i2s_train_step_resnet18_64px_lmax6_res10_b32",
        round(t["fourier"] * 1e3, 1),
        "ms",
        round(t["dense"] * 1e3, 1),
        round(t["dense"] / t["fourier"], 2),
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--train-step", action="store_true", help="also time the whole training step")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        for lmax, res, B, F in CONFIGS:
            bench_activation(lmax, res, B, F, args.repeats, cache)
        if args.train_step:
            bench_train_step(max(3, args.repeats // 2), cache)


if __name__ == "__main__":
    main()
