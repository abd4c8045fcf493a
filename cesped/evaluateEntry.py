"""Evaluate predicted poses of a CESPED entry: reconstruct half-maps and compute the paper's metrics.

Example usage::

    python -m cesped.evaluateEntry --predictionType SO3 --targetName 10280 \\
        --half0PredsFname p0.star --half1PredsFname p1.star --n_cpus 12 --outdir evaluation/

    from cesped.evaluateEntry import evaluate
    metrics = evaluate(targetName="10280", half0PredsFname="p0.star", half1PredsFname="p1.star",
                       predictionType="SO3", usePredConfidence=True, n_cpus=4, outdir="evaluation/")

Outputs in ``--outdir``: metrics.json, metrics.csv (the paper's columns), fsc_curves.csv, the maps
gt_0/gt_1/gt/pred_0/pred_1/pred.mrc, the plots and report.html. They are built in a hidden
directory beside ``--outdir`` and replace it as a whole when complete (an interrupted run leaves
the previous result); an existing ``--outdir`` may hold only outputs of an evaluation.
Errors (bad input, unreadable or unwritable files, failed downloads) print one line and exit 2.
``--floor`` adds the entry's image-limited floor (``references`` in metrics.json, a reference
column of report.html's summary; simulated entries, cached per entry).
``--backend relion`` reconstructs with relion_reconstruct (PATH, ``CESPED_RELION_BIN``,
``--relionBin``) or inside ``--singularityImgFile`` (see singularity/README.md).
"""

from __future__ import annotations

import argparse
import sys

from cesped._cli import error_line
from cesped.evaluation.evaluate import evaluate

__all__ = ["evaluate", "main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cesped.evaluateEntry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--targetName", required=True, help="entry name (e.g. 10280, TEST) or an entry directory")
    p.add_argument("--half0PredsFname", required=True, help="star file with the predictions of half-set 0")
    p.add_argument("--half1PredsFname", required=True, help="star file with the predictions of half-set 1")
    p.add_argument(
        "--predictionType",
        default="SO3",
        choices=["S2", "SO3", "SO3xR2"],
        help="S2: rot, tilt; SO3: rot, tilt, psi; SO3xR2: also origins (default SO3)",
    )
    p.add_argument(
        "--usePredConfidence",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="weight particles by rlnParticleFigureOfMerit (in [0, 1], not all 0) when reconstructing "
        "the predicted-pose maps (default on)",
    )
    p.add_argument("--n_cpus", type=int, default=1, help="threads (native) or MPI ranks (relion)")
    p.add_argument(
        "--outdir",
        default=None,
        help="directory for metrics, maps and plots; built beside it and swapped in when complete "
        "(an existing one may hold only outputs of an evaluation)",
    )
    p.add_argument(
        "--benchmarkDir", default=None, help="root of the entries (default: $CESPED_BENCHMARK_DIR)"
    )
    p.add_argument("--backend", default="native", choices=["native", "relion"])
    p.add_argument("--device", default="cpu", help="torch device of the native backend (cpu, cuda)")
    p.add_argument(
        "--mask",
        default=None,
        help="mask .mrc (default: the entry's mask, downloaded for a registered entry; a failed "
        "download is an error); 'none' for unmasked metrics only",
    )
    p.add_argument(
        "--relionBin", default=None, help="RELION bin directory (default: $CESPED_RELION_BIN, PATH)"
    )
    p.add_argument(
        "--singularityImgFile", default=None, help="Singularity image with RELION (--backend relion)"
    )
    p.add_argument(
        "--symmetry",
        default=None,
        help="point group (e.g. C1, D2); required for an entry directory without info_{0,1}.json, "
        "otherwise it must agree with them",
    )
    p.add_argument(
        "--frame",
        default="fixed",
        choices=["fixed", "free"],
        help="'free': align each half-set's poses to the truth by one global rotation before scoring "
        "(methods whose poses live in their own map's frame); the frame is recorded in metrics.json",
    )
    p.add_argument(
        "--allow-mirror",
        dest="allow_mirror",
        action="store_true",
        help="with --frame free: also try the map of the other hand",
    )
    p.add_argument(
        "--no-ctf",
        dest="ctf",
        action="store_const",
        const=False,
        default=None,
        help="the entry's images carry no CTF (recorded in metrics.json); without it, a ground truth "
        'lacking CTF columns is refused unless the entry\'s info files say "ctf": false',
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="also report the entry's image-limited floor (global search + local refinement against "
        "its true map gt_map.mrc; minutes on the first evaluation of an entry, then cached) beside "
        "the random-pose reference",
    )
    p.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="recompute the ground-truth maps instead of using the cache",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        evaluate(
            targetName=args.targetName,
            half0PredsFname=args.half0PredsFname,
            half1PredsFname=args.half1PredsFname,
            predictionType=args.predictionType,
            usePredConfidence=args.usePredConfidence,
            n_cpus=args.n_cpus,
            outdir=args.outdir,
            benchmarkDir=args.benchmarkDir,
            backend=args.backend,
            device=args.device,
            mask=args.mask,
            relion_bin=args.relionBin,
            singularityImgFile=args.singularityImgFile,
            use_cache=args.use_cache,
            verbose=True,
            symmetry=args.symmetry,
            frame=args.frame,
            allow_mirror=args.allow_mirror,
            ctf=args.ctf,
            floor=args.floor,
        )
    except (ValueError, OSError, RuntimeError) as e:
        # bad input, a file that cannot be read or written, a failed download: one message, no traceback
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
