"""Tiny synthetic benchmark entries (both half-sets, info files, mask) for evaluation tests."""

from __future__ import annotations

from pathlib import Path

from cesped.simulation.fixtures import write_synthetic_entry


def make_entry(
    root: Path,
    name: str,
    symmetry: str = "C1",
    n_per_half: int = 400,
    box: int = 32,
    pixel_size: float = 2.0,
    snr: float = 3.0,
    seed: int = 0,
) -> Path:
    """``root/name/particles_{0,1}.star`` + ``.mrcs``, ``info_{0,1}.json``, ``mask.mrc``
    (:func:`cesped.simulation.fixtures.write_synthetic_entry`)."""
    return write_synthetic_entry(
        root, name, symmetry, n_per_half=n_per_half, box=box, pixel_size=pixel_size, snr=snr, seed=seed
    )
