"""Probe (issue 17, item 4): what frame does orientation recovery from pairwise distances give?

Orientation recovery (Banjac, Donati & Defferrard 2021) finds unit quaternions ``q̂`` whose
distances ``d(q̂_i, q̂_j) = 2 arccos|q̂_i·q̂_j|`` match estimated distances between projections.
That distance is a function of the 4-D dot product, so every orthogonal map of R⁴ (O(4): a left
and a right quaternion product, and a reflection) leaves the loss unchanged: the recovered poses
are ``G·R·H`` (or ``G·Rᵀ·H``) for *unknown G and H*. The frame alignment of
:mod:`cesped.evaluation.frames` undoes only the map's frame ``G`` (and its hand, a half-turn on
the right), which is what any reconstruction-based method can be off by. This probe recovers
orientations from *exact* distances (the oracle distance network) by Adam on mini-batches of
pairs, then aligns them both ways and prints one JSON line per figure: the final loss, the
error after an O(4) alignment (≈ 0 when the recovery converged) and after the frame alignment
(large: H is not a frame change).

Usage::

    nice .venv/bin/python benchmarks/probe_recovery_ambiguity.py [--n 300] [--steps 3000]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy.spatial.transform import Rotation


def emit(name, value, unit, **extra):
    print(json.dumps({"name": name, "value": value, "unit": unit, "reference": None, "ratio": None, **extra}))


def quat_distance(a, b):
    return 2 * torch.arccos(torch.clamp((a * b).sum(-1).abs(), max=1 - 1e-7))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    from cesped.evaluation.frames import align_frames

    R_true = Rotation.random(args.n, random_state=args.seed)
    q_true = torch.tensor(R_true.as_quat()[:, [3, 0, 1, 2]])
    q = torch.randn(args.n, 4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([q], lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed + 1)
    for _ in range(args.steps):
        i = torch.randint(0, args.n, (args.batch,), generator=gen)
        j = torch.randint(0, args.n, (args.batch,), generator=gen)
        qn = q / q.norm(dim=-1, keepdim=True)
        loss = ((quat_distance(qn[i], qn[j]) - quat_distance(q_true[i], q_true[j])) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    qn = (q / q.norm(dim=-1, keepdim=True)).detach().numpy()
    qt = q_true.numpy()
    with torch.no_grad():
        full = quat_distance(torch.from_numpy(qn)[:, None], torch.from_numpy(qn)[None])
        full_true = quat_distance(q_true[:, None], q_true[None])
        rms = float(torch.sqrt(((full - full_true) ** 2).mean())) * 180 / np.pi
    emit("recovery_rms_distance_mismatch", rms, "deg", n=args.n, steps=args.steps)
    # O(4) alignment (orthogonal Procrustes in R^4, per-particle sign of q)
    s = np.ones(args.n)
    for _ in range(20):
        u, _, vt = np.linalg.svd((qt * s[:, None]).T @ qn)
        aligned = qn @ (u @ vt).T
        s = np.sign((aligned * qt).sum(1))
    err = np.degrees(2 * np.arccos(np.clip(np.abs((aligned * qt).sum(1)), 0, 1)))
    emit("O4_aligned_MAnE", float(err.mean()), "deg", n=args.n)
    R_rec = Rotation.from_quat(qn[:, [1, 2, 3, 0]]).as_matrix()
    for label, P in (("R", R_rec), ("R_transposed", np.swapaxes(R_rec, 1, 2))):
        al = align_frames(P, R_true.as_matrix(), "C1", allow_mirror=True)
        emit(
            f"frame_aligned_MAnE_{label}", float(al.errors_deg.mean()), "deg", mirrored=al.mirrored, n=args.n
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
