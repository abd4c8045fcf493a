"""Command line of the benchmark protocol (thin: parsing only; the work is in protocol/leaderboard).

Usage::

    python -m cesped.benchmark run experiment=<name> entries=[synth_6msm,...] seeds=[0,1,2] \\
        [outdir=benchmark_results] [method=<name>] [benchmark_dir=DIR] [n_cpus=2] [device=cpu] \\
        [save_maps=false] [refine=false] [random_reference=true] [floor_reference=true]
        [<training override> ...]
    python -m cesped.benchmark run method=<name> predictions=<template> entries=[...] seeds=[...] \\
        [method_config=<file.json|yaml>] [outdir=...]
    python -m cesped.benchmark table RESULTS... [--out DIR] [--benchmarkDir DIR] [--no-random]
        [--no-verify] [--allow-mixed-versions] [--min-seeds 3]

``run`` trains each entry's half-sets with each seed (``python -m cesped.train experiment=<name>``),
predicts the other half, evaluates, and writes one results record per (entry, seed) into
``<outdir>/records``; a second call continues where the first stopped. Any other ``key=value``
is a Hydra override of the training config (e.g. ``trainer.max_epochs=5``). With
``predictions=`` (a template with ``{entry}``, ``{seed}``, ``{half}``) a user's prediction files
are evaluated instead. ``refine=true`` also refines both prediction files
(:func:`cesped.refinement.api.refine_star`) and records the refined metrics beside the raw
ones. Each simulated entry also gets an image-limited floor record (``floor_reference``:
:mod:`cesped.benchmark.floor_record`) and every entry a random-poses record. ``table`` prints
the leaderboard (Markdown) of the records (files or directories), and with ``--out`` writes
``leaderboard.md`` and ``leaderboard.html`` there.
"""

from __future__ import annotations

import argparse
import sys

from cesped._cli import error_line

_RUN_KEYS = {
    "experiment",
    "entries",
    "seeds",
    "outdir",
    "method",
    "predictions",
    "method_config",
    "benchmark_dir",
    "n_cpus",
    "device",
    "save_maps",
    "refine",
    "random_reference",
    "floor_reference",
}
# training keys the protocol sets itself: a user's value would silently be overridden or clash
_RESERVED = {"entry": "entries", "seed": "seeds", "halfset": None, "output_dir": "outdir", "resume": None}


def _list(value: str) -> list[str]:
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):
        v = v[1:-1]
    return [x.strip().strip("'\"") for x in v.split(",") if x.strip()]


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{key}: expected true or false, got {value!r}")


def _load_config_file(path: str) -> dict:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"method_config: {p} not found")
    if p.suffix in (".yaml", ".yml"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(p), resolve=True)
    import json

    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise ValueError(f"method_config: {p} is not valid JSON ({e})") from e


def parse_run_args(argv: list[str]):
    """``key=value`` tokens -> :class:`cesped.benchmark.protocol.ProtocolConfig`."""
    from cesped.benchmark.protocol import ProtocolConfig

    kw: dict = {"train_overrides": []}
    for tok in argv:
        if "=" not in tok:
            raise ValueError(f"run: expected key=value arguments, got {tok!r}")
        key, value = tok.split("=", 1)
        bare = key.lstrip("+~")
        if bare in _RESERVED:
            hint = f"; use {_RESERVED[bare]}=" if _RESERVED[bare] else ""
            raise ValueError(f"run: {key} is set by the protocol for each run{hint}")
        if key not in _RUN_KEYS:
            kw["train_overrides"].append(tok)
            continue
        if key == "entries":
            kw[key] = _list(value)
        elif key == "seeds":
            try:
                kw[key] = [int(s) for s in _list(value)]
            except ValueError:
                raise ValueError(f"seeds: expected a list of integers, got {value!r}") from None
        elif key == "n_cpus":
            kw[key] = int(value)
        elif key in ("save_maps", "refine", "random_reference", "floor_reference"):
            kw[key] = _bool(key, value)
        elif key == "method_config":
            kw[key] = _load_config_file(value)
        else:
            kw[key] = None if value.lower() in ("null", "none", "") else value
    for required in ("entries", "seeds"):
        if required not in kw:
            raise ValueError(f"run: {required}=[...] is required")
    if kw.get("predictions") and kw["train_overrides"]:
        raise ValueError(
            f"run: unknown argument(s) {kw['train_overrides']} "
            "(training overrides are unused with predictions=)"
        )
    if kw.get("predictions") and "experiment" not in kw:
        kw["experiment"] = None
    kw["command"] = ["python", "-m", "cesped.benchmark", "run", *argv]
    return ProtocolConfig(**kw)


def _table(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m cesped.benchmark table", description="leaderboard of results")
    p.add_argument("results", nargs="+", help="record files or directories (searched for seed*.json)")
    p.add_argument(
        "--out", default=None, help="write leaderboard.md and leaderboard.html into this directory"
    )
    p.add_argument("--benchmarkDir", default=None, help="benchmark directory holding the entries")
    p.add_argument("--no-random", action="store_true", help="do not compute missing random-poses rows")
    p.add_argument(
        "--no-verify", action="store_true", help="do not compare checksums with the entries on disk"
    )
    p.add_argument(
        "--allow-mixed-versions",
        action="store_true",
        help="accept records of different cesped major versions (flagged)",
    )
    p.add_argument("--min-seeds", type=int, default=None, help="flag methods with fewer seeds (default 3)")
    p.add_argument("--n-cpus", type=int, default=2, help="threads for computing random-poses rows")
    a = p.parse_args(argv)
    from cesped.benchmark.leaderboard import MIN_SEEDS, build_leaderboard, write_leaderboard

    board = build_leaderboard(
        a.results,
        benchmark_dir=a.benchmarkDir,
        verify_entries=not a.no_verify,
        compute_random=not a.no_random,
        allow_mixed_versions=a.allow_mixed_versions,
        min_seeds=MIN_SEEDS if a.min_seeds is None else a.min_seeds,
        n_cpus=a.n_cpus,
    )
    print(board.markdown())
    if a.out:
        md, page = write_leaderboard(board, a.out)
        print(f"wrote {md} and {page}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "run":
            from cesped.benchmark.protocol import run_protocol

            if any(a in ("-h", "--help") for a in rest):
                print(__doc__)
                return 0
            for path in run_protocol(parse_run_args(rest)):
                print(path)
            return 0
        if cmd == "table":
            return _table(rest)
    except (ValueError, OSError) as e:  # bad input, a file that cannot be read or written
        print(f"cesped.benchmark {cmd}: error: {error_line(e)}", file=sys.stderr)
        return 2
    print(f"cesped.benchmark: unknown command {cmd!r} (run or table)\n\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
