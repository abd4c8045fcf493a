"""The mask of the masked metrics: chosen, downloaded for a registered entry, loaded and checked.

``mask`` argument of the evaluation:

* ``"none"``: no mask; only unmasked metrics (nothing is looked up or downloaded);
* a path: that mask;
* None (default): the entry's ``mask.mrc``; for an entry given by a registered name whose mask
  is published and not on disk, the mask is downloaded, and a failed download is an error
  (the paper's metrics are masked: silently unmasked numbers would not be comparable). An entry
  without a mask (a directory without ``mask.mrc``, a registered entry with no published mask)
  is evaluated unmasked.

The mask used is recorded in ``metrics.json``: ``"mask"`` (file name), ``"mask_md5"``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Mask", "MaskUnavailableError", "select_mask", "load_mask", "download_entry_mask"]


class MaskUnavailableError(RuntimeError):
    """The entry's published mask could not be obtained (and ``mask="none"`` was not given)."""


@dataclass
class Mask:
    """A loaded mask: values (n, n, n) float64, its file and the file's md5."""

    array: np.ndarray
    path: Path
    md5: str


def download_entry_mask(name: str, dest: Path) -> Path | None:
    """The published mask of registered entry ``name`` at ``dest`` (downloaded when missing).

    Returns None when the entry is not registered or has no published mask.

    Raises
    ------
    MaskUnavailableError
        The download failed (offline, server error, checksum); the message says how to proceed.
    """
    from cesped.data.entries import get_entry

    try:
        info = get_entry(name)
    except ValueError:
        return None
    if info.mask_file is None:
        return None
    if dest.is_file():
        return dest
    from cesped.data.zenodo import download_mask

    try:
        download_mask(name, dest)
    except Exception as e:  # noqa: BLE001 -- any failure of the download is reported the same way
        raise MaskUnavailableError(
            f"could not download the mask of entry {name!r} to {dest} ({type(e).__name__}: {e}); "
            "the paper's metrics are masked: retry online, give a mask file (mask=PATH, --mask PATH) "
            "or evaluate unmasked with mask='none' (--mask none)"
        ) from e
    if not dest.is_file():
        raise MaskUnavailableError(f"the mask download of entry {name!r} did not produce {dest}")
    return dest


def load_mask(mask, box: int, voxel_size: float) -> Mask:
    """Read a mask file and check it against the entry's box (px) and voxel size (Å)."""
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
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return Mask(m.astype(np.float64), path, md5)


def select_mask(mask, entry, box: int, voxel_size: float) -> Mask | None:
    """The mask to use (see the module docstring), loaded and checked, or None for no mask.

    Parameters
    ----------
    mask : path, "none" or None
    entry : cesped.evaluation.entry.Entry
    box : int
    voxel_size : float
    """
    if mask is not None:
        return None if str(mask).lower() == "none" else load_mask(mask, box, voxel_size)
    path = entry.mask_file
    if not path.is_file() and entry.name is not None:
        path = download_entry_mask(entry.name, path)
    if path is None or not path.is_file():
        return None
    return load_mask(path, box, voxel_size)
