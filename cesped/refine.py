"""Refine predicted poses by projection matching against a reference map (thin entry point).

Example usage::

    python -m cesped.refine --entry synth_6msm --halfset 1 --star preds_1.star --out refined_1.star
    python -m cesped.refine --entry synth_6msm --halfset 1 --star preds_1.star --out refined_1.star \\
        --top-k 5                     # reads preds_1_topk.npz (cesped.infer top_k=5)
    python -m cesped.refine --entry synth_6msm --halfset 1 --star preds_1.star --out refined_1.star \\
        --reference my_map.mrc --band-limit 8
    python -m cesped.refine --entry synth_6msm --halfset 1 --star preds_1.star --out refined_1.star \\
        --global-top 0                # the candidates only (no global-search starts)
    python -m cesped.refine --entry synth_6msm --halfset 1 --star preds_1.star --out floor_1.star --global

The default reference is the map of the OTHER half-set reconstructed from its ground-truth poses
(no label of the refined half is read), its shells weighted by its FSC (a Wiener filter of its
own noise; ``--weighting none``: as reconstructed) and compared up to its own FSC band limit.
A second round (``--rounds 2``, the default with this reference) refines the first round's
answers against the map of the other half-set together with this half-set's images at their
first-round poses (twice the particles, still no label of this half). Every particle's
starts are its candidates, their mirror-view and in-plane half-turn hypotheses and (``--global-top
G``, default 8) the G best rotations of an exhaustive SO(3) grid search (``--order``) against the
same reference, chosen apart from each other's symmetry mates (``--c1-search``: as for C1), so
that a particle whose candidates are all far from its pose is still found; the start each answer
came from is written per particle (``cespedRefinementStart``). ``--global``
ignores the star's poses: exhaustive SO(3) search then local refinement against the entry's true
map (``gt_map.mrc`` of a simulated entry), the image-limited floor. The refined angles, origins
(Å) and the posterior confidence (``rlnMaxValueProbDistribution`` = ``rlnParticleFigureOfMerit``)
are written atomically to ``--out`` with the parameters in a ``data_cesped_refinement`` block.
"""

from __future__ import annotations

import argparse
import json
import sys

from cesped._cli import error_line

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cesped.refine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--entry", required=True, help="entry name (its directory holds the images)")
    p.add_argument("--halfset", type=int, required=True, choices=(0, 1), help="half-set of --star")
    p.add_argument("--star", required=True, help="predictions star file of that half-set")
    p.add_argument("--out", required=True, help="refined star file to write")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference", help="a user's map (.mrc) of the particles' box and pixel size")
    ref.add_argument("--reference-from-half", type=int, choices=(0, 1), help="the other half-set (default)")
    p.add_argument("--top-k", type=int, default=1, help="candidates per particle (>1 reads <star>_topk.npz)")
    p.add_argument(
        "--candidates", help="candidates .npz (ids, rotmats (N, K, 3, 3)) instead of <star>_topk.npz"
    )
    p.add_argument(
        "--global", dest="global_search", action="store_true", help="global search vs the true map"
    )
    p.add_argument(
        "--global-top",
        type=int,
        help="global-search starts added to each particle's candidates (default 8; 0: candidates only)",
    )
    p.add_argument(
        "--survivors",
        type=int,
        default=None,
        help="local-search tracks kept through every level (default 8; 1: fastest, as before session 9)",
    )
    p.add_argument(
        "--track-separation",
        type=float,
        default=None,
        help="the first level's tracks are the best starts at least this far apart, degrees "
        "(default 16; 0: the plain best, as before session 10)",
    )
    p.add_argument(
        "--order", type=int, default=2, help="SO(3) grid order of --global and --global-top (2: 15 deg)"
    )
    p.add_argument("--band-limit", type=float, help="highest resolution compared, Å (default: reference FSC)")
    p.add_argument(
        "--shift-radius", type=float, help="largest origin searched, px (default max(3, 0.08 box))"
    )
    p.add_argument(
        "--rounds",
        type=int,
        choices=(1, 2),
        help="2 (default with the other half's map): a second round against that map plus this half's "
        "particles at their first-round poses; 1 with --reference or --global",
    )
    p.add_argument(
        "--weighting",
        choices=("fsc", "none"),
        default="fsc",
        help="fsc (default): weight the reference's shells by its FSC (Wiener); none: as reconstructed",
    )
    p.add_argument(
        "--reference-mask",
        choices=("auto", "none"),
        default="auto",
        help="auto (default): flatten the reference's solvent with a soft mask made from that map "
        "alone (not the true map of --global); none: the map as it is",
    )
    p.add_argument(
        "--c1-search",
        dest="symmetric_search",
        action="store_false",
        help="search as if the map had no symmetry (default: the entry's point group, so that the "
        "global starts and the tracks are not symmetry mates of each other)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads (default 1: least CPU time; run one per core)"
    )
    p.add_argument("--benchmark-dir", help="default: CESPED_BENCHMARK_DIR")
    p.add_argument("--no-cache", dest="use_cache", action="store_false", help="rebuild the reference map")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from cesped.refinement.api import refine_star

    try:
        summary = refine_star(
            args.entry,
            args.halfset,
            args.star,
            args.out,
            reference=args.reference,
            reference_from_half=args.reference_from_half,
            top_k=args.top_k,
            global_search=args.global_search,
            global_top=args.global_top,
            device=args.device,
            band_limit_A=args.band_limit,
            shift_radius_px=args.shift_radius,
            order=args.order,
            candidates=args.candidates,
            benchmark_dir=args.benchmark_dir,
            use_cache=args.use_cache,
            threads=args.threads,
            rounds=args.rounds,
            weighting=args.weighting,
            **({} if args.survivors is None else {"survivors": args.survivors}),
            reference_mask=args.reference_mask,
            symmetric_search=args.symmetric_search,
            **({} if args.track_separation is None else {"track_separation_deg": args.track_separation}),
        )
    except (ValueError, OSError) as e:  # bad input, a file that cannot be read or written
        print(f"cesped.refine: error: {error_line(e)}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
