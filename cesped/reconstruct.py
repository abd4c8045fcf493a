"""Reconstruct a map from a RELION particles star file (the native ``relion_reconstruct --ctf``).

A thin command over :func:`cesped.reconstruction.fourier.reconstruct`: direct Fourier
inversion with CTF weighting and 2x padding, on CPU (compiled numba loops) or a torch device.

Example usage::

    python -m cesped.reconstruct entry/particles_0.star --out half0.mrc
    python -m cesped.reconstruct particles.star --out map.mrc --n-cpus 2 --symmetry C2
    python -m cesped.reconstruct particles.star --out map.mrc --weights rlnParticleFigureOfMerit

The map is written atomically (a temporary name renamed into place), with the particles'
pixel size as its voxel size. Image paths in the star file are relative to its directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cesped._cli import error_line

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cesped.reconstruct",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("star", help="particles star file (images, poses, shifts, CTF)")
    p.add_argument("--out", required=True, help="output map (.mrc)")
    p.add_argument("--symmetry", default="C1", help="point group, e.g. C1, C2, D2 (default C1)")
    p.add_argument(
        "--n-cpus", type=int, default=None, help="CPU threads (default: OMP_NUM_THREADS or the usable CPUs)"
    )
    p.add_argument("--device", default="cpu", help="'cpu' (default) or a torch device such as 'cuda'")
    p.add_argument("--pad", type=int, default=2, help="Fourier padding factor (RELION --pad; default 2)")
    p.add_argument("--no-ctf", dest="ctf", action="store_false", help="no CTF (RELION without --ctf)")
    p.add_argument(
        "--weights", default=None, help="star column of per-particle weights, e.g. rlnParticleFigureOfMerit"
    )
    p.add_argument(
        "--kernel", default="auto", choices=["auto", "numba", "torch"], help="default auto: numba on CPU"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError) as e:  # bad input, a file that cannot be read or written
        print(f"cesped.reconstruct: error: {error_line(e)}", file=sys.stderr)
        return 2


def _run(args) -> int:
    star = Path(os.path.expanduser(args.star))
    if not star.is_file():
        raise FileNotFoundError(f"star file {star} not found")
    if args.n_cpus is not None and args.n_cpus < 1:
        raise ValueError(f"--n-cpus must be >= 1, got {args.n_cpus}")
    out = Path(os.path.expanduser(args.out))
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output directory {out.parent} does not exist (--out {args.out})")

    from cesped.io.mrc import write_map
    from cesped.reconstruction.fourier import reconstruct

    vol, voxel_size = reconstruct(
        star,
        symmetry=args.symmetry,
        weights=args.weights,
        device=args.device,
        pad=args.pad,
        n_threads=args.n_cpus,
        ctf=args.ctf,
        kernel=args.kernel,
    )
    write_map(out, vol, voxel_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
