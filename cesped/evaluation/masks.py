"""The entry's mask: download of a registered entry's mask, loading and checking a mask file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["try_download_mask", "load_mask"]


def try_download_mask(name: str, dest: Path):
    try:
        from cesped.data.entries import get_entry
        from cesped.data.zenodo import download_mask

        info = get_entry(name)
        if info.mask_file is None:
            return None
        download_mask(name, dest)
        return dest if dest.is_file() else None
    except Exception as e:  # offline or unknown: evaluate without a mask, and say so
        print(f"[cesped] no mask for {name} ({type(e).__name__}: {e}); metrics are computed unmasked")
        return None


def load_mask(mask, box: int, voxel_size: float):
    from cesped.io.mrc import read_map

    path = Path(os.path.expanduser(str(mask)))
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} not found")
    m, mpx = read_map(path)
    if m.shape != (box,) * 3:
        raise ValueError(f"mask {path} has shape {m.shape}, the entry's maps are {(box,) * 3}")
    if abs(float(mpx) - voxel_size) > 1e-3 * voxel_size:
        raise ValueError(f"mask {path} has voxel size {mpx} Å, the entry's is {voxel_size} Å")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"mask {path} has non-finite values")
    return m.astype(np.float64), path
