"""MRC maps (3-D volumes): read with voxel size, write atomically."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from cesped.io.atomic import atomic_path

__all__ = ["read_map", "write_map", "write_mrc_array", "clear_labels"]


def read_map(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a 3-D MRC map.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    volume : np.ndarray float32 (z, y, x)
    voxel_size : float
        Å/voxel from the header (x spacing); 0.0 when the header does not set it.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Unreadable or truncated file, or data that is not 3-D.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"map not found: {path}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mrc = mrcfile.open(path, mode="r", permissive=True)
        with mrc:
            data = mrc.data
            if data is None:
                why = "; ".join(str(w.message) for w in caught) or "no data block"
                raise ValueError(f"file truncated or corrupt ({why})")
            vol = np.array(data, dtype=np.float32)
            voxel = float(mrc.voxel_size.x)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: cannot read MRC map: {exc}") from exc
    if vol.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D map, got data of shape {vol.shape}")
    return vol, voxel


def clear_labels(mrc) -> None:
    """Drop mrcfile's "Created by mrcfile.py <timestamp>" header label.

    Every file cesped writes is then a function of its data alone (same input, same bytes).
    """
    mrc.header.nlabl = 0
    mrc.header.label[:] = b""


def write_map(path: str | os.PathLike, volume, voxel_size: float) -> None:
    """Write a 3-D map as float32 MRC (mode 2), atomically.

    Parameters
    ----------
    path : path-like
    volume : np.ndarray or torch.Tensor (z, y, x)
    voxel_size : float
        Å/voxel, stored for x, y and z.

    Raises
    ------
    ValueError
        Volume not 3-D or voxel size not positive.
    """
    if hasattr(volume, "detach"):
        volume = volume.detach().cpu().numpy()
    vol = np.asarray(volume)
    if vol.ndim != 3 or 0 in vol.shape:
        raise ValueError(f"write_map({path}): volume must be (z, y, x), got shape {vol.shape}")
    vs = float(voxel_size)
    if not (np.isfinite(vs) and vs > 0):
        raise ValueError(f"write_map({path}): voxel_size must be positive, got {voxel_size}")
    write_mrc_array(path, vol, vs, stack=False)


def write_mrc_array(path: str | os.PathLike, data: np.ndarray, voxel_size: float, stack: bool) -> None:
    """Write a validated 3-D array as float32 MRC (mode 2), atomically, without a timestamp label.

    Parameters
    ----------
    path : path-like
    data : np.ndarray (z, y, x) or (n, ny, nx)
    voxel_size : float
        Å/voxel (positive, already checked by the caller).
    stack : bool
        Mark the file as an image stack (``.mrcs``) instead of a volume.
    """
    arr = np.ascontiguousarray(data, dtype=np.float32)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(arr)
            if stack:
                mrc.set_image_stack()
            else:
                mrc.set_volume()
            mrc.voxel_size = float(voxel_size)
            mrc.update_header_stats()
            clear_labels(mrc)
