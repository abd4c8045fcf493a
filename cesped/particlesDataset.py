"""CESPED particle datasets: the ``ParticlesDataset`` class and a command line for entries.

Example usage
-------------
::

    python -m cesped.particlesDataset list_entries [--benchmarkDir DIR]
    python -m cesped.particlesDataset download_entry -t TEST --halfset 0 [--benchmarkDir DIR]
    python -m cesped.particlesDataset preprocess_entry -t TEST --halfset 0 -o OUTDIR \\
        [--image_size 128] [--ctf_correction phase_flip] [--image_size_factor_for_crop 0.25]
    python -m cesped.particlesDataset add_entry --newTargetName mine --halfset 0 \\
        --starFname run_data.star --particlesRootDir /relion/project --symmetry C1

In Python::

    from cesped.particlesDataset import ParticlesDataset
    ds = ParticlesDataset("TEST", halfset=0)
    iid, img, (rotMat, xyShiftAngs, confidence), metadata = ds[0]
"""

from __future__ import annotations

import argparse
import sys

from cesped.data.dataset import ParticlesDataset, preprocess_entry

__all__ = ["ParticlesDataset", "main", "preprocess_entry"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cesped.particlesDataset",
        description="CESPED entries: list, download, preprocess, add your own.",
    )
    sub = p.add_subparsers(dest="mode", required=True)

    def bench(sp):
        sp.add_argument(
            "-b",
            "--benchmarkDir",
            default=None,
            help="benchmark directory (default: $CESPED_BENCHMARK_DIR or the per-user data dir)",
        )

    sp = sub.add_parser("list_entries", help="list registered and locally available entries")
    bench(sp)

    sp = sub.add_parser("download_entry", help="download (or simulate) an entry")
    sp.add_argument("-t", "--targetName", required=True)
    sp.add_argument("-p", "--halfset", type=int, choices=[0, 1], default=None, help="default: both")
    sp.add_argument(
        "--zenodoUrl", default=None, help="records API base URL (default $CESPED_ZENODO_URL or Zenodo)"
    )
    bench(sp)

    sp = sub.add_parser("preprocess_entry", help="write preprocessed images as a new star + mrcs")
    sp.add_argument("-t", "--targetName", required=True)
    sp.add_argument("-p", "--halfset", type=int, choices=[0, 1], required=True)
    sp.add_argument("-o", "--outDir", required=True)
    sp.add_argument("-s", "--image_size", type=int, default=None, help="final side in pixels (default: box)")
    sp.add_argument("-f", "--ctf_correction", choices=["none", "phase_flip", "wiener"], default="none")
    sp.add_argument(
        "-c",
        "--image_size_factor_for_crop",
        type=float,
        default=0.0,
        help="fraction of the side removed by the centre crop (default 0)",
    )
    sp.add_argument(
        "--no_normalization", action="store_true", help="skip the per-image background normalisation"
    )
    sp.add_argument("--batch_size", type=int, default=256)
    bench(sp)

    sp = sub.add_parser("add_entry", help="add your own star + mrcs as a local entry")
    sp.add_argument("--newTargetName", required=True)
    sp.add_argument("-p", "--halfset", type=int, choices=[0, 1], required=True)
    sp.add_argument("--starFname", required=True)
    sp.add_argument("--particlesRootDir", default=None, help="directory rlnImageName is relative to")
    sp.add_argument("--symmetry", required=True)
    sp.add_argument("--link", action="store_true", help="reference the stacks instead of copying them")
    sp.add_argument(
        "--unlabelled",
        action="store_true",
        help="the star has no poses (e.g. new data to predict): record the entry as unlabelled",
    )
    bench(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    from cesped import settings
    from cesped._cli import error_line
    from cesped.data.local import ensure_entry, locally_available_entries
    from cesped.data.zenodo import DownloadError

    try:
        if args.mode == "list_entries":
            from cesped.data.entries import entry_names, get_entry

            local = set(locally_available_entries(args.benchmarkDir))
            print(f"benchmark directory: {settings.benchmark_dir(args.benchmarkDir)}")
            print(f"{'entry':<18}{'symmetry':<9}{'box':>5}{'particles':>11}  halfsets (local: *)")
            for name in entry_names():
                e = get_entry(name)
                halves = " ".join(f"{h}{'*' if (name, h) in local else ''}" for h in (0, 1))
                print(
                    f"{name:<18}{e.symmetry or '?':<9}{e.box or '?':>5}{e.n_particles or '?':>11}  {halves}"
                    f"  {e.description}"
                )
            others = sorted({n for n, _ in local} - set(entry_names()))
            for name in others:
                print(f"{name:<18}(local) " + " ".join(str(h) for n, h in sorted(local) if n == name))
        elif args.mode == "download_entry":
            for h in [args.halfset] if args.halfset is not None else [0, 1]:
                d = ensure_entry(
                    args.targetName, h, args.benchmarkDir, download=True, base_url=args.zenodoUrl
                )
                print(f"{args.targetName} half-set {h}: {d / f'particles_{h}.star'}")
        elif args.mode == "preprocess_entry":
            star = preprocess_entry(
                args.targetName,
                args.halfset,
                args.outDir,
                args.benchmarkDir,
                args.image_size,
                args.ctf_correction,
                args.image_size_factor_for_crop,
                not args.no_normalization,
                args.batch_size,
            )
            print(f"wrote {star}")
        elif args.mode == "add_entry":
            d = ParticlesDataset.addNewEntryLocally(
                args.starFname,
                args.particlesRootDir,
                args.newTargetName,
                args.halfset,
                args.symmetry,
                benchmarkDir=args.benchmarkDir,
                copy_images=not args.link,
                labelled=not args.unlabelled,
            )
            print(f"added {args.newTargetName} half-set {args.halfset} in {d}")
    except (ValueError, OSError, DownloadError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
