"""Score a recovered-orientation star file against the truth (issue 17, item 4).

Prints one JSON line per figure:
- ``frame_free_MAnE``: MAnE after the frame-free alignment of :mod:`cesped.evaluation.frames`
  (a global rotation of the map's frame and, with the hand flip, its mirror) — pose accuracy;
- ``random_pose_MAnE``: the same alignment applied to uniformly random poses (the reference:
  what a frame search alone makes of poses that carry no information);
- ``O4_aligned_MAnE``: MAnE after the best orthogonal map of R⁴ in quaternion space (Banjac et
  al.'s alignment). It also undoes image-side rotations that no map frame explains: the
  recovery's INTERNAL CONSISTENCY, not pose accuracy.

Usage::

    python benchmarks/eval_recovery.py --pred recovered_1.star --truth entry/particles_1.star
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def emit(name, value, unit, reference=None, **extra):
    ratio = None if reference in (None, 0) else value / reference
    print(
        json.dumps(
            {"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio, **extra}
        )
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from scipy.spatial.transform import Rotation

    from cesped.evaluation.frames import align_frames
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.geometry.rotations import matrix_to_quaternion
    from cesped.io.star import read_star
    from cesped.recovery.quaternions import o4_align

    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    pred, truth = read_star(args.pred).particles, read_star(args.truth).particles
    if list(pred["rlnImageName"]) != list(truth["rlnImageName"]):
        raise SystemExit("error: --pred and --truth do not list the same images in the same order")
    Rp = euler_to_matrix(pred[cols].to_numpy(np.float64))
    Rt = euler_to_matrix(truth[cols].to_numpy(np.float64))
    n = len(Rt)
    Rr = Rotation.random(n, random_state=args.seed).as_matrix()
    al_r = align_frames(Rr, Rt, "C1", allow_mirror=True)
    ref = float(al_r.errors_deg.mean())
    al = align_frames(Rp, Rt, "C1", allow_mirror=True)
    emit("random_pose_MAnE_frame_free", ref, "deg", n=n)
    emit("frame_free_MAnE", float(al.errors_deg.mean()), "deg", reference=ref, n=n, mirrored=al.mirrored,
         median_deg=float(np.median(al.errors_deg)))  # fmt: skip
    qp = matrix_to_quaternion(torch.from_numpy(Rp)).numpy()
    qt = matrix_to_quaternion(torch.from_numpy(Rt)).numpy()
    _, e4 = o4_align(qp, qt)
    _, e4r = o4_align(matrix_to_quaternion(torch.from_numpy(Rr)).numpy(), qt)
    emit("O4_aligned_MAnE_internal_consistency_not_accuracy", float(e4.mean()), "deg",
         reference=float(e4r.mean()), n=n)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
