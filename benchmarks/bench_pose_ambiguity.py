"""How often does the exact image model itself prefer a wrong pose? The floor under any estimator.

For the particles of one half-set of a simulated entry (default ``synth_6msm`` half 1), the
Gaussian log-likelihood of each image under the simulation's own model (``gt_map.mrc`` projected
at a pose, its CTF and origin shift, times ``image_scale``, plus white noise of
``noise_variance``; read from ``generation.json``) is compared between the true pose and

* ``mirror``: ``R·Ry(180°)`` (the view from the other side; its projection is the mirror image),
* ``halfturn``: ``R·Rz(180°)`` (the image turned in-plane by 180°),
* ``pred``: the pose of a predictions star file (``--pred``), for the particles whose
  symmetry-aware error exceeds ``--min-error`` degrees,

within the frequency band that a network fed ``size``-px images sees (the Fourier crop of the
``box``-px images: ``|k| < size / 2`` cycles per box) and within the full band. The fraction of
particles whose alternative pose is at least as likely as the truth is the error rate of the
ideal (likelihood-ratio) test between the two poses: errors of that kind are in the data, not
in the network. A first line checks the model: the residual at the true pose must be white
noise of the recorded variance.

Example usage (the README's accuracy study)::

    CESPED_BENCHMARK_DIR=... python benchmarks/bench_pose_ambiguity.py --size 32
    python -m cesped.infer ckpt=run/checkpoints/best.ckpt entry=synth_6msm halfset=1 order=3 rot90_average=true refine_steps=2 out=pred1.star
    CESPED_BENCHMARK_DIR=... python benchmarks/bench_pose_ambiguity.py --size 32 --pred pred1.star
"""
# ruff: noqa: E501

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch


def emit(name, value, unit, **extra):
    print(json.dumps({"name": name, "value": value, "unit": unit, **extra}), flush=True)


def band_weights(n: int, radius: float) -> torch.Tensor:
    """(n, n//2+1) weights of the rfft2 coefficients within ``|k| < radius`` (Hermitian multiplicity
    / n², so that the weighted sum of |F|² is the real-space sum of squares of the band)."""
    ky = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    kx = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)
    r = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    mult = torch.full((n // 2 + 1,), 2.0, dtype=torch.float64)
    mult[0] = 1.0
    if n % 2 == 0:
        mult[-1] = 1.0
    return (r < radius).to(torch.float64) * mult[None, :] / n**2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entry", default="synth_6msm")
    ap.add_argument("--halfset", type=int, default=1)
    ap.add_argument("--size", type=int, default=32, help="network input size (px): the band compared")
    ap.add_argument("--pred", default=None, help="predictions star of the same half-set")
    ap.add_argument("--min-error", type=float, default=150.0)
    ap.add_argument("--limit", type=int, default=None, help="first N particles only")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    from cesped.data.local import ensure_entry, entry_paths
    from cesped.geometry.errors import symmetry_aware_error
    from cesped.geometry.rotations import euler_to_matrix, rotation_z
    from cesped.io.mrc import read_map
    from cesped.io.stack import ImageSource
    from cesped.io.star import particle_optics, read_star
    from cesped.physics.ctf import ctf_from_particles
    from cesped.physics.fourier import centered_rfft2, shift_images
    from cesped.physics.projection import Projector

    ensure_entry(args.entry, args.halfset)
    paths = entry_paths(args.entry, args.halfset)
    root = paths["star"].parent
    gen = json.loads((root / "generation.json").read_text())
    vol, px = read_map(root / "gt_map.mrc")
    star = read_star(paths["star"])
    parts = particle_optics(star)
    n_all = len(parts) if args.limit is None else min(args.limit, len(parts))
    parts = parts.iloc[:n_all]
    box = int(gen["box"])
    scale, sigma2 = float(gen["image_scale"]), float(gen["noise_variance"])
    proj = Projector(np.asarray(vol, dtype=np.float32), pad=float(gen.get("pad", 2.0)), dtype=torch.float32)
    ang = parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(np.float64)
    R = euler_to_matrix(torch.from_numpy(ang))
    mirror = R @ euler_to_matrix(torch.tensor([0.0, 180.0, 0.0], dtype=torch.float64))
    halfturn = R @ rotation_z(torch.tensor(180.0, dtype=torch.float64))
    alts = {"mirror": mirror, "halfturn": halfturn}
    pred_rows = None
    if args.pred:
        pst = read_star(args.pred).particles.set_index("rlnImageName")
        pang = pst.loc[parts["rlnImageName"], ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(np.float64)
        P = euler_to_matrix(torch.from_numpy(pang))
        err = symmetry_aware_error(R, P, star_symmetry(gen)).numpy()
        pred_rows = np.flatnonzero(err > args.min_error)
        alts["pred"] = P
        emit("pred_mane", round(float(err.mean()), 2), "deg", over_min_error=int(pred_rows.size), n=int(err.size))
    origins = parts[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(np.float64)
    shifts = torch.from_numpy(-origins / px).to(torch.float32)
    src = ImageSource.from_star(star)
    bands = {f"{args.size}px": args.size / 2.0, f"{box}px": box / 2.0 + 1.0}
    wts = {k: band_weights(box, r) for k, r in bands.items()}
    w_all = band_weights(box, math.inf)  # every coefficient: the residual check
    dll = {(a, b): [] for a in alts for b in bands}
    resid = []
    for start in range(0, n_all, 256):
        rows = np.arange(start, min(start + 256, n_all))
        img = torch.from_numpy(np.asarray(src.read(rows), dtype=np.float32))
        fi = centered_rfft2(img.to(torch.float64))
        ctf = ctf_from_particles(parts.iloc[rows], dtype=torch.float32)

        def model(rot, rows=rows, ctf=ctf):
            ft = shift_images(proj.project_rfft(rot[rows].to(torch.float32)) * ctf, shifts[rows], n=box)
            return ft.to(torch.complex128) * scale

        d_true = fi - model(R)
        resid.append(float((d_true.abs() ** 2 * w_all).sum() / (len(rows) * box * box)))
        for a, rot in alts.items():
            d_alt = fi - model(rot)
            for b, w in wts.items():
                # log p(img | true) - log p(img | alt) for white Gaussian noise of variance sigma2
                diff = ((d_alt.abs() ** 2 - d_true.abs() ** 2) * w).sum((-2, -1)) / (2 * sigma2)
                dll[(a, b)].append(diff.numpy())
    emit(
        "residual_variance_at_true_pose",
        round(float(np.average(resid)), 4),
        "noise variance units",
        expected=sigma2,
        note="the model reproduces the images: residual = the simulated noise",
    )
    for (a, b), parts_ in dll.items():
        d = np.concatenate(parts_)
        sel = pred_rows if a == "pred" else np.arange(d.size)
        if sel is None or sel.size == 0:
            continue
        d = d[sel]
        emit(
            f"ideal_test_prefers_{a}_over_true_pose",
            round(float(np.mean(d <= 0.0)), 4),
            "fraction",
            band=b,
            n=int(d.size),
            median_log_likelihood_ratio=round(float(np.median(d)), 2),
            fraction_llr_below_2=round(float(np.mean(d < 2.0)), 4),
        )
    return 0


def star_symmetry(gen: dict) -> str:
    model = gen.get("model") or {}
    return str(gen.get("symmetry") or model.get("symmetry") or "C1")


if __name__ == "__main__":
    raise SystemExit(main())
