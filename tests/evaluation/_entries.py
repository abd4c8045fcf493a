"""Tiny synthetic benchmark entries (both half-sets, info files, mask) for evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cesped.io.mrc import write_map
from cesped.reconstruction.synthetic import blob_map, write_particle_set


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
    """``root/name/particles_{0,1}.star`` + ``.mrcs``, ``info_{0,1}.json``, ``mask.mrc``."""
    d = Path(root) / name
    vol = blob_map(box, n_blobs=16 if symmetry == "C1" else 8, sigma=1.3, seed=seed, symmetry=symmetry)
    for h in (0, 1):
        conf = np.random.default_rng(seed + 100 + h).uniform(0.05, 1.0, n_per_half)
        write_particle_set(
            d,
            vol,
            n_per_half,
            pixel_size,
            snr=snr,
            seed=seed + 10 + h,
            stack_name=f"particles_{h}.mrcs",
            star_name=f"particles_{h}.star",
            extra_columns={"rlnMaxValueProbDistribution": conf},
        )
        (d / f"info_{h}.json").write_text(json.dumps({"symmetry": symmetry}))
    x = np.arange(box) - box // 2
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    mask = 0.5 + 0.5 * np.cos(np.pi * np.clip((r - box * 0.3) / 4.0, 0.0, 1.0))
    write_map(d / "mask.mrc", mask.astype(np.float32), pixel_size)
    return d
