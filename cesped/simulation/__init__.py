"""cesped.simulation: synthetic benchmark entries with exact ground truth.

``simulate_entry(out_dir, structure, n_particles, pixel_size, box, snr, ...)`` writes an entry
(see :mod:`cesped.simulation.entry`); ``PRESETS`` holds the arguments of the built-in entries
``synth_6msm`` (C1) and ``synth_4e43`` (C2).

The names are resolved on first use (PEP 562): importing :mod:`cesped.simulation.presets`,
which the entry registry does, must not import torch through :mod:`cesped.simulation.entry`.
"""

from __future__ import annotations

import importlib

__all__ = ["simulate_entry", "PRESETS", "BUILTIN_STRUCTURES", "ENTRY_FILES", "resolve_structure"]

_HOME = {
    "simulate_entry": "cesped.simulation.entry",
    "ENTRY_FILES": "cesped.simulation.entry",
    "PRESETS": "cesped.simulation.presets",
    "BUILTIN_STRUCTURES": "cesped.simulation.presets",
    "resolve_structure": "cesped.simulation.presets",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'cesped.simulation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
