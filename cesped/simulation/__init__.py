"""cesped.simulation: synthetic benchmark entries with exact ground truth.

``simulate_entry(out_dir, structure, n_particles, pixel_size, box, snr, ...)`` writes an entry
(see :mod:`cesped.simulation.entry`); ``PRESETS`` holds the arguments of the built-in entries
``synth_6msm`` (C1) and ``synth_4e43`` (C2).
"""

from cesped.simulation.entry import ENTRY_FILES, simulate_entry
from cesped.simulation.presets import BUILTIN_STRUCTURES, PRESETS, resolve_structure

__all__ = ["simulate_entry", "PRESETS", "BUILTIN_STRUCTURES", "ENTRY_FILES", "resolve_structure"]
