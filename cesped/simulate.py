"""Simulate a benchmark entry (particles with exact poses) from an atomic model or a map.

Example usage::

    python -m cesped.simulate --structure 6msm --n 8000 --pixel-size 3.0 --box 64 --snr 0.05 \\
        --symmetry C1 --out synth_6msm/
    python -m cesped.simulate --preset synth_4e43 --out synth_4e43/
    python -m cesped.simulate --structure my_model.cif.gz --n 2000 --pixel-size 2.0 --box 96 \\
        --snr 0.1 --symmetry C3 --jitter-fraction 0.1 --jitter-deg 10 --out my_entry/ --seed 3
    # heterogeneous: two states 70/30 (rlnClassNumber), or a linear morph (cespedMorphCoordinate)
    python -m cesped.simulate --structure adk_open adk_closed --weights 0.7 0.3 --n 8000 \\
        --pixel-size 3 --box 64 --snr 0.05 --out adk_states/
    python -m cesped.simulate --preset synth_adk_motion --out synth_adk_motion/

    from cesped.simulation import simulate_entry, PRESETS
    simulate_entry("synth_6msm/", **PRESETS["synth_6msm"])

Writes ``particles_{0,1}.star`` + ``.mrcs`` (two random half-sets), ``info_{0,1}.json``,
``gt_map.mrc`` (noiseless potential), ``mask.mrc`` and ``generation.json`` (every parameter and
the seed; the same arguments give byte-identical files). ``--structure`` takes a built-in name
(6msm, 4e43, adk_open, adk_closed), a PDB/mmCIF file (plain, .gz, .bz2) or a cubic .mrc map;
several atomic models make a heterogeneous entry (see ``cesped.simulation.hetero``). The SNR is the
mean variance of the noiseless CTF-modulated projections (over the whole box) over the noise
variance.
"""

from __future__ import annotations

import argparse
import sys

from cesped.simulation.presets import BUILTIN_STRUCTURES, PRESETS

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cesped.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="entry directory to write")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset; other options override it")
    p.add_argument(
        "--structure",
        nargs="+",
        help=f"built-in model ({', '.join(BUILTIN_STRUCTURES)}), PDB/mmCIF file or .mrc; several "
        "atomic models make a heterogeneous entry (discrete states, or --morph)",
    )
    p.add_argument(
        "--weights",
        type=float,
        nargs="+",
        help="fraction of particles in each state, one per --structure, summing to 1 (default equal)",
    )
    p.add_argument(
        "--morph",
        action="store_true",
        default=None,
        help="linear morph between two structures with the same atoms (coordinate per particle)",
    )
    p.add_argument("--morph-frames", type=int, help="number of values of the morph coordinate (default 33)")
    p.add_argument("--n", dest="n_particles", type=int, help="number of particles (both half-sets)")
    p.add_argument("--pixel-size", type=float, help="Å/px")
    p.add_argument("--box", type=int, help="image size in pixels (even)")
    p.add_argument("--snr", type=float, help="signal-to-noise ratio (> 0)")
    p.add_argument("--noiseless", action="store_true", help="write noiseless images (no --snr)")
    p.add_argument("--symmetry", help="point group of the model, e.g. C1, C2 (default C1)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument(
        "--defocus-range",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="mean defocus range in Å (default 10000 25000)",
    )
    p.add_argument("--astigmatism-max", type=float, help="largest DefocusU - DefocusV in Å (default 1000)")
    p.add_argument("--voltage", type=float, help="kV (default 300)")
    p.add_argument(
        "--cs", dest="spherical_aberration", type=float, help="spherical aberration, mm (default 2.7)"
    )
    p.add_argument("--amplitude-contrast", type=float, help="default 0.1")
    p.add_argument(
        "--phase-shift-range", type=float, nargs=2, metavar=("MIN", "MAX"), help="degrees (default 0 0)"
    )
    p.add_argument("--max-shift", type=float, help="largest |rlnOriginX/YAngst| in Å (default 3 px)")
    p.add_argument("--bfactor", type=float, help="B-factor of the atoms in Å² (default 0)")
    p.add_argument("--hydrogens", action="store_true", help="keep hydrogens present in the model")
    p.add_argument(
        "--no-symmetrize",
        dest="symmetrize",
        action="store_false",
        default=None,
        help="do not average the symmetry copies of a Cn model",
    )
    p.add_argument("--jitter-fraction", type=float, help="fraction of labels rotated by up to --jitter-deg")
    p.add_argument("--jitter-deg", type=float, help="largest label jitter in degrees")
    p.add_argument("--random-fraction", type=float, help="fraction of labels replaced by random poses")
    p.add_argument("--overwrite", action="store_true", help="replace an existing entry")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return p


_REQUIRED = ("structure", "n_particles", "pixel_size", "box")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from cesped.simulation.entry import simulate_entry

    parser = build_parser()
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    preset = args.pop("preset")
    noiseless = args.pop("noiseless")
    kwargs = dict(PRESETS[preset]) if preset else {}
    for key, value in args.items():
        if value is not None and key not in ("overwrite", "progress", "hydrogens"):
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    kwargs["overwrite"] = args["overwrite"]
    kwargs["progress"] = args["progress"]
    kwargs["hydrogens"] = args["hydrogens"] or kwargs.get("hydrogens", False)
    if noiseless:
        if args["snr"] is not None:
            parser.error("--noiseless and --snr are mutually exclusive")
        kwargs["snr"] = None
    missing = [k for k in _REQUIRED + ("snr",) if k not in kwargs]
    if missing:
        names = {"n_particles": "--n", "pixel_size": "--pixel-size", "snr": "--snr (or --noiseless)"}
        parser.error("missing " + ", ".join(names.get(k, f"--{k}") for k in missing) + " (or give --preset)")
    from cesped._cli import check_output_dir, error_line

    try:
        check_output_dir(out)  # an unusable --out fails before any work
        path = simulate_entry(out, **kwargs)
    except (ValueError, OSError) as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
