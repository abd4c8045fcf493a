"""Image2Sphere model speed: training step and inference throughput, peak memory, build time.

Configuration of the side-by-side figures (issue 6): ResNet-18 (random weights), 64 px images,
lmax 6, projector / S2 / output grid orders 2 / 2 / 3, S2 features 512, SO(3) features 16,
SO(3) activation resolution 10, batch 32, C1. A training step is forward + cross-entropy against
the nearest grid rotation + backward + RAdam step; inference is the deterministic forward +
argmax + probability. Each side runs in a fresh child process (its own peak RSS); the original
package (cesped 25.12.0) runs with ``benchmarks/.venv-original/bin/python`` when it exists
(see ``benchmarks/original_env.sh``); otherwise the references are "not measured" (no ratio).

Also: the time (and peak RSS) to build the model at the paper's configuration (ResNet-152,
lmax 8, orders 3/3/4), with an empty and with a warm table cache; the original's build of the
same configuration is the reference with ``--original-paper-build`` (about 75 s), else "not
measured".

Example usage::

    python benchmarks/bench_model.py                 # everything (a few minutes on 2 cores)
    python benchmarks/bench_model.py --steps 3 --skip-paper --threads 1
    python benchmarks/bench_model.py --original-paper-build   # also the original's paper build
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _launch import emit, measure  # noqa: E402

REPO = HERE.parent
ORIGINAL_PY = HERE / ".venv-original" / "bin" / "python"

COMMON = textwrap.dedent(
    """
    import json, os, resource, sys, time
    import torch
    torch.set_num_threads({threads})
    torch.manual_seed(0)
    B, STEPS = {batch}, {steps}
    img = torch.randn(B, 1, 64, 64)
    q = torch.randn(B, 4, dtype=torch.float64); q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    rot = torch.stack([1-2*(y*y+z*z), 2*(x*y-z*w), 2*(x*z+y*w), 2*(x*y+z*w), 1-2*(x*x+z*z), 2*(y*z-x*w),
                       2*(x*z-y*w), 2*(y*z+x*w), 1-2*(x*x+y*y)], 1).reshape(B, 3, 3).float()
    def peak_gb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    """
)

OURS = COMMON + textwrap.dedent(
    """
    from cesped.models.image2sphere import Image2Sphere
    from cesped.training.losses import symmetric_cross_entropy
    t0 = time.perf_counter()
    m = Image2Sphere("resnet18", lmax=6, s2_fdim=512, so3_fdim=16, hp_order_projector=2, hp_order_s2=2,
                     hp_order_so3=3, so3_act_resolution={resolution}, label_frame="rx90")
    build = time.perf_counter() - t0
    opt = torch.optim.RAdam(m.parameters(), lr=1e-3, weight_decay=1e-5)
    def step():
        logits = m.grid_logits(m(img))
        loss = symmetric_cross_entropy(logits, m.target_indices(rot))
        opt.zero_grad(); loss.backward(); opt.step()
    m.train(); step()
    t0 = time.perf_counter()
    for _ in range(STEPS): step()
    train = B * STEPS / (time.perf_counter() - t0)
    m.eval()
    with torch.no_grad():
        m.predict(img)
        t0 = time.perf_counter()
        for _ in range(STEPS): m.predict(img)
        infer = B * STEPS / (time.perf_counter() - t0)
    print(json.dumps(dict(train=train, infer=infer, peak_gb=peak_gb(), build=build)))
    """
)

ORIGINAL = COMMON + textwrap.dedent(
    """
    import e3nn.nn
    from cesped.network.featureExtractors import ResNetImageEncoder
    from cesped.network.image2sphere import I2S
    t0 = time.perf_counter()
    enc = ResNetImageEncoder("resnet18", load_imagenetweights=False)
    shape = enc(torch.zeros(1, 1, 64, 64)).shape[1:]
    m = I2S(enc, shape, symmetry="C1", lmax=6, s2_fdim=512, so3_fdim=16, hp_order_projector=2, hp_order_s2=2,
            hp_order_so3=3, so3_act_resolution=10, rand_fraction_points_to_project=0.5)
    build = time.perf_counter() - t0
    opt = torch.optim.RAdam(m.parameters(), lr=1e-3, weight_decay=1e-5)
    def step():
        loss = m.forward_and_loss(img, rot)[0]
        opt.zero_grad(); loss.backward(); opt.step()
    m.train(); step()
    t0 = time.perf_counter()
    for _ in range(STEPS): step()
    train = B * STEPS / (time.perf_counter() - t0)
    m.eval()
    with torch.no_grad():
        m(img)
        t0 = time.perf_counter()
        for _ in range(STEPS): m(img)
        infer = B * STEPS / (time.perf_counter() - t0)
    print(json.dumps(dict(train=train, infer=infer, peak_gb=peak_gb(), build=build)))
    """
)

PAPER_BUILD = textwrap.dedent(
    """
    import json, resource, time, torch
    torch.set_num_threads({threads})
    t_imp = time.perf_counter()
    import e3nn.o3, torchvision
    from cesped.models.image2sphere import Image2Sphere
    imports = time.perf_counter() - t_imp
    t0 = time.perf_counter()
    m = Image2Sphere("resnet152", pretrained=False, lmax=8, s2_fdim=512, so3_fdim=16, hp_order_projector=3,
                     hp_order_s2=3, hp_order_so3=4, so3_act_resolution=10)
    build = time.perf_counter() - t0
    ckpt_mb = sum(v.numel() * v.element_size() for v in m.state_dict().values()) / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps(dict(build=build, imports=imports, peak_gb=peak, state_mb=ckpt_mb)))
    """
)


ORIGINAL_PAPER_BUILD = textwrap.dedent(
    """
    import json, resource, time, torch
    torch.set_num_threads({threads})
    import e3nn.nn
    from cesped.network.featureExtractors import ResNetImageEncoder
    from cesped.network.image2sphere import I2S
    t0 = time.perf_counter()
    enc = ResNetImageEncoder("resnet152", load_imagenetweights=False)
    shape = enc(torch.zeros(1, 1, 128, 128)).shape[1:]
    m = I2S(enc, shape, symmetry="C1", lmax=8, s2_fdim=512, so3_fdim=16, hp_order_projector=3, hp_order_s2=3,
            hp_order_so3=4, so3_act_resolution=10, rand_fraction_points_to_project=0.5)
    build = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps(dict(build=build, peak_gb=peak)))
    """
)


def run_child(python: str, code: str, env_extra: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``code`` in a fresh process (through ``_launch.measure``: its peak RSS is its own)."""
    env = {**os.environ, **(env_extra or {})}
    r = measure([python, "-c", code], env=env, cwd=cwd, timeout=3600)
    res = json.loads([ln for ln in r["output"].splitlines() if ln.startswith("{")][-1])
    res["process_seconds"] = r["wall_s"]
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-original", action="store_true")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument(
        "--original-paper-build", action="store_true", help="also time the original's paper build (~75 s)"
    )
    args = ap.parse_args(argv)
    fmt = dict(threads=args.threads, batch=args.batch, steps=args.steps)
    ours_env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}

    with tempfile.TemporaryDirectory() as cache:
        ours = run_child(
            sys.executable, OURS.format(**fmt, resolution=10), {**ours_env, "CESPED_CACHE_DIR": cache}
        )
        ours_default = run_child(
            sys.executable, OURS.format(**fmt, resolution=None), {**ours_env, "CESPED_CACHE_DIR": cache}
        )
    orig, source = None, "not measured (no benchmarks/.venv-original)"
    if not args.skip_original and ORIGINAL_PY.exists():
        support = HERE / "original_support"
        with tempfile.TemporaryDirectory() as tmp:  # its joblib cache lives in the temp dir
            orig = run_child(
                str(ORIGINAL_PY),
                ORIGINAL.format(**fmt),
                {"PYTHONPATH": str(support), "OMP_NUM_THREADS": str(args.threads), "TMPDIR": tmp},
                cwd=Path(tmp),
            )
        source = "original cesped 25.12.0, same run"
    ref = orig or {"train": None, "infer": None, "peak_gb": None}
    extra = {
        "config": "resnet18 64px lmax6 orders2/2/3 batch32",
        "threads": args.threads,
        "reference_source": source,
    }
    dextra = {**extra, "config": "as above with SO(3) activation resolution lmax+1 = 7 (our default), not 10"}
    for suffix, mine, ex in (("", ours, extra), ("_default_resolution", ours_default, dextra)):
        for key, name in (("train", "i2s_train_throughput"), ("infer", "i2s_inference_throughput")):
            r = ref[key]
            emit(name + suffix, round(mine[key], 2), "images/s", None if r is None else round(r, 2),
                 None if r is None else round(mine[key] / r, 3), **ex)
        r = ref["peak_gb"]
        emit("i2s_peak_rss" + suffix, round(mine["peak_gb"], 3), "GB", None if r is None else round(r, 3),
             None if r is None else round(r / mine["peak_gb"], 3), note="ratio = original / ours", **ex)

    if not args.skip_paper:
        with tempfile.TemporaryDirectory() as cache:
            env = {**ours_env, "CESPED_CACHE_DIR": cache}
            cold = run_child(sys.executable, PAPER_BUILD.format(**fmt), env)
            warm = run_child(sys.executable, PAPER_BUILD.format(**fmt), env)
        pextra = {"config": "resnet152 lmax8 orders3/3/4 (paper)", "threads": args.threads}
        ref, src = None, "not measured (run with --original-paper-build)"
        if args.original_paper_build and ORIGINAL_PY.exists():
            with tempfile.TemporaryDirectory() as tmp:  # its joblib cache lives in the temp dir: cold
                ref = run_child(
                    str(ORIGINAL_PY),
                    ORIGINAL_PAPER_BUILD.format(**fmt),
                    {"PYTHONPATH": str(HERE / "original_support"), "OMP_NUM_THREADS": str(args.threads),
                     "TMPDIR": tmp},
                    cwd=Path(tmp),
                )["build"]
            src = "original cesped 25.12.0, empty cache, same run"
        for name, run in (("cold", cold), ("warm", warm)):
            emit(f"i2s_paper_build_time_{name}_cache", round(run["build"], 2), "s",
                 None if ref is None else round(ref, 2),
                 None if ref is None else round(ref / run["build"], 2),
                 note="ratio = original / ours", reference_source=src, **pextra)
        emit(
            "i2s_import_time",
            round(warm["imports"], 2),
            "s",
            None,
            None,
            note="torch/e3nn/torchvision/cesped imports, not included in the build times",
            **pextra,
        )
        emit("i2s_paper_build_peak_rss", round(cold["peak_gb"], 3), "GB", None, None, **pextra)
        emit(
            "i2s_paper_checkpoint_state",
            round(cold["state_mb"], 1),
            "MB",
            None,
            None,
            note="state_dict size (weights only; derived tables are not persistent)",
            **pextra,
        )


if __name__ == "__main__":
    main()
