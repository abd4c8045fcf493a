"""Synthetic particle sets made from a given map (moved to :mod:`cesped.simulation.fixtures`).

Kept as an import path: ``blob_map`` and ``write_particle_set`` are those of
:mod:`cesped.simulation.fixtures`, the one writer of synthetic sets and entries.

Example usage::

    from cesped.simulation.fixtures import blob_map, write_particle_set
    vol = blob_map(32, seed=0)
    star_path = write_particle_set("tmp/set", vol, n_particles=500, pixel_size=2.0, snr=10.0)
"""

from __future__ import annotations

from cesped.simulation.fixtures import blob_map, write_particle_set

__all__ = ["blob_map", "write_particle_set"]
