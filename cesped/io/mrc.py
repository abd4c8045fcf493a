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

    Notes
    -----
    A file whose axis order (MAPC, MAPR, MAPS) is not (1, 2, 3) is transposed to (z, y, x). A
    file with a non-zero origin (``ORIGIN`` or ``NXSTART``/``NYSTART``/``NZSTART``) is refused:
    its voxels are not on the grid of cesped's maps (whose origin is 0), and using it as if they
    were would misplace it (a mask, for instance).

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Unreadable or truncated file, data that is not 3-D, an invalid axis order or a non-zero
        origin.
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
            h = mrc.header
            axes = (int(h.mapc), int(h.mapr), int(h.maps))
            origin = (float(h.origin.x), float(h.origin.y), float(h.origin.z))
            start = (int(h.nxstart), int(h.nystart), int(h.nzstart))
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: cannot read MRC map: {exc}") from exc
    if vol.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D map, got data of shape {vol.shape}")
    if axes != (1, 2, 3):
        if sorted(axes) != [1, 2, 3]:
            raise ValueError(f"{path}: invalid axis order MAPC/MAPR/MAPS = {axes}")
        # the data block is (sections, rows, columns); column, row and section run along the
        # axes MAPC, MAPR, MAPS (1 = x, 2 = y, 3 = z): bring it to (z, y, x)
        data_axis = {axes[0]: 2, axes[1]: 1, axes[2]: 0}
        vol = np.ascontiguousarray(vol.transpose(data_axis[3], data_axis[2], data_axis[1]))
    if any(origin) or any(start):
        raise ValueError(
            f"{path}: the map's origin is not 0 (ORIGIN {origin} Å, NXSTART/NYSTART/NZSTART {start}); "
            "cesped compares maps on the grid of its reconstructions, whose origin is 0: shift the "
            "map onto that grid (e.g. relion_image_handler --shift_com or a box with origin 0) and "
            "set the origin to 0"
        )
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
