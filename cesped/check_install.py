"""Check that an installed cesped is complete: modules import, configs and structures ship.

Example usage::

    python -m cesped.check_install
    python -m cesped.check_install --expect-prefix /path/to/site-packages

Exits with status 1 and a message naming what is missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import sys
from pathlib import Path

PUBLIC_MODULES = (
    "cesped.particlesDataset",
    "cesped.evaluateEntry",
    "cesped.simulate",
    "cesped.train",
    "cesped.infer",
)


def check(expect_prefix: str | None = None) -> list[str]:
    """Return a list of problems (empty when the installation is complete)."""
    problems: list[str] = []
    import cesped

    location = Path(cesped.__file__).resolve()
    if expect_prefix is not None and not str(location).startswith(str(Path(expect_prefix).resolve())):
        problems.append(f"cesped imported from {location}, expected under {expect_prefix}")
    for name in PUBLIC_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # report every failure, not only the first
            problems.append(f"cannot import {name}: {exc!r}")
    try:
        configs = importlib.resources.files("cesped.configs")
        if not configs.joinpath("train.yaml").is_file():
            problems.append("cesped.configs/train.yaml is missing (Hydra configs not installed)")
    except ModuleNotFoundError:
        problems.append("package cesped.configs is missing (Hydra configs not installed)")
    try:
        structures = importlib.resources.files("cesped.simulation").joinpath("structures")
        names = {p.name for p in structures.iterdir()}
        for needed in ("6msm.pdb.bz2", "4e43.pdb.gz"):
            if needed not in names:
                problems.append(f"built-in structure {needed} is missing from cesped/simulation/structures")
    except (ModuleNotFoundError, FileNotFoundError):
        problems.append("cesped/simulation/structures is missing")
    if not problems:
        problems.extend(_compose_configs())
    return problems


def _compose_configs() -> list[str]:
    from hydra import compose, initialize_config_module

    problems = []
    try:
        with initialize_config_module(config_module="cesped.configs", version_base="1.3"):
            compose(config_name="train", overrides=["experiment=demo"])
    except Exception as exc:
        problems.append(f"composing the training config failed: {exc!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--expect-prefix", default=None, help="fail unless cesped is imported from here")
    args = parser.parse_args(argv)
    problems = check(args.expect_prefix)
    if problems:
        for p in problems:
            print(f"cesped install check: {p}", file=sys.stderr)
        return 1
    import cesped

    print(f"cesped {cesped.__version__} install OK ({Path(cesped.__file__).parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
