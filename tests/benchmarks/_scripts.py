"""Load a script of ``benchmarks/`` (not a package) as a module, for the tests of this folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(path: Path, name: str):
    """The module of the Python file ``path`` (executed once per call), named ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
