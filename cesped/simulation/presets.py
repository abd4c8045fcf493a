"""Built-in structures and the presets of the synthetic benchmark entries.

``PRESETS[name]`` holds the keyword arguments of :func:`cesped.simulation.entry.simulate_entry`
(everything except ``out_dir``) that generate the entry ``name``::

    simulate_entry(out_dir, **PRESETS["synth_6msm"])
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUILTIN_STRUCTURES", "PRESETS", "resolve_structure"]

#: Built-in atomic models (package data under ``cesped/simulation/structures/``).
BUILTIN_STRUCTURES: dict[str, str] = {
    "6msm": "6msm.pdb.bz2",  # CFTR, cryo-EM, C1
    "4e43": "4e43.pdb.gz",  # HIV-1 protease dimer, X-ray, C2
    "adk_open": "adk_open.pdb.gz",  # adenylate kinase (4AKE), open, same atoms as adk_closed
    "adk_closed": "adk_closed.pdb.gz",  # adenylate kinase (1AKE), closed
}

_COMMON = {
    "n_particles": 8000,
    "pixel_size": 3.0,
    "box": 64,
    "snr": 0.05,
    "defocus_range": (10000.0, 25000.0),  # Å (1.0-2.5 µm underfocus)
    "seed": 0,
}

#: Synthetic entries: name -> keyword arguments of ``simulate_entry``.
PRESETS: dict[str, dict] = {
    "synth_6msm": {**_COMMON, "structure": "6msm", "symmetry": "C1"},
    "synth_4e43": {**_COMMON, "structure": "4e43", "symmetry": "C2"},
    # heterogeneous entries (cesped.simulation.hetero): two discrete states 50/50, and a linear morph
    "synth_adk_states": {
        **_COMMON,
        "structure": ("adk_open", "adk_closed"),
        "symmetry": "C1",
        "weights": (0.5, 0.5),
    },
    "synth_adk_motion": {**_COMMON, "structure": ("adk_open", "adk_closed"), "symmetry": "C1", "morph": True},
    # the paper's sampling (1.5 Å/px); larger and slower, opt-in
    "synth_6msm_large": {**_COMMON, "structure": "6msm", "symmetry": "C1", "pixel_size": 1.5, "box": 128},
    "synth_4e43_large": {**_COMMON, "structure": "4e43", "symmetry": "C2", "pixel_size": 1.5, "box": 64},
}


def resolve_structure(structure) -> Path:
    """Path of a built-in model name (``"6msm"``, ``"adk_open"`` ..., case-insensitive) or of a file.

    Raises
    ------
    FileNotFoundError
        Neither a built-in name nor an existing file.
    """
    key = str(structure).lower()
    if key in BUILTIN_STRUCTURES:
        return Path(str(resources.files("cesped.simulation") / "structures" / BUILTIN_STRUCTURES[key]))
    path = Path(structure)
    if not path.exists():
        raise FileNotFoundError(
            f"structure {structure!r} is neither a built-in model ({sorted(BUILTIN_STRUCTURES)}) "
            "nor an existing file"
        )
    return path
