"""Orientation recovery from pairwise distances (Banjac et al. 2021), a label-free baseline (thin CLI).

Example usage::

    python -m cesped.recover --star entry/particles_1.star --train-star entry/particles_0.star \\
        --out recovered_1.star
    python -m cesped.recover --star entry/particles_1.star --oracle --out oracle_1.star

The distance network is trained WITH labels on ``--train-star`` (the other half-set, as every
supervised baseline); the poses of ``--star`` are not read (except with ``--oracle``, exact
distances from them, which checks the recovery alone). The output poses are defined up to the
map's frame and hand: evaluate with ``python -m cesped.evaluateEntry ... --frame free
--allow-mirror``. See :mod:`cesped.recovery`.
"""

from __future__ import annotations

import argparse
import sys

from cesped._cli import error_line

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m cesped.recover",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--star", required=True, help="particles to recover (star file with images and CTF columns)"
    )
    ap.add_argument("--out", required=True, help="output star file")
    ap.add_argument("--train-star", help="labelled particles of the same structure (the other half-set)")
    ap.add_argument(
        "--oracle", action="store_true", help="exact distances from --star's poses (sanity check)"
    )
    ap.add_argument("--image-size", type=int, default=32, help="Fourier-resized side, px (default 32)")
    ap.add_argument("--train-steps", type=int, default=6000)
    ap.add_argument("--train-lr", type=float, default=3e-3, help="network learning rate (Adam, cosine decay)")
    ap.add_argument("--width", type=int, default=8, help="network width (channels of the first layer)")
    ap.add_argument("--recover-steps", type=int, default=3000)
    ap.add_argument("--pair-batch", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=0.05, help="recovery learning rate")
    ap.add_argument("--inplane-particles", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from cesped.recovery.pipeline import run_recovery

    torch.set_num_threads(max(1, args.threads))
    if not args.oracle and not args.train_star:
        print("error: --train-star is required (or --oracle)", file=sys.stderr)
        return 2
    try:
        rec = run_recovery(
            args.star, args.out, train_star=args.train_star, oracle=args.oracle, image_size=args.image_size,
            train_steps=args.train_steps,
            train_lr=args.train_lr, width=args.width, recover_steps=args.recover_steps,
            pair_batch=args.pair_batch, lr=args.lr, inplane_particles=args.inplane_particles, seed=args.seed,
        )  # fmt: skip
    except (ValueError, OSError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    phi, total = rec["inplane_angle_deg"], rec["total_s"]
    print(f"[recover] wrote {args.out} (in-plane angle {phi:g} deg, {total:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
