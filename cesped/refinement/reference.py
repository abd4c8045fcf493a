"""The reference map of a refinement, built without any label of the refined half-set.

* :func:`reference_from_half`: the map reconstructed (native backend) from the OTHER half-set's
  ground-truth poses (the data a model is trained on), and its band limit from that half alone:
  the FSC of two maps of a random split of its particles, at 0.143.
* :func:`load_reference_map`: a user's map, its box and pixel size checked against the particles.

Both are cached under ``cesped.settings.cache_dir()/refinement`` keyed by the content of the
files they are made from (never by the refined half's files).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ReferenceMap", "fsc_curve", "fsc_resolution", "reference_from_half", "load_reference_map"]

_VERSION = 1


@dataclass
class ReferenceMap:
    """A map for projection matching.

    Attributes
    ----------
    volume : numpy.ndarray
        ``(n, n, n)`` float32, ``(z, y, x)``.
    pixel_size : float
        Å/voxel.
    band_limit_A : float or None
        Resolution (Å) to which the map is trusted (None: not measured).
    source : str
        How it was made (recorded in the output star file).
    fsc : list of float
        FSC of the split maps per shell (empty when not measured).
    """

    volume: np.ndarray
    pixel_size: float
    band_limit_A: float | None
    source: str
    fsc: list = field(default_factory=list)


def fsc_curve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fourier shell correlation of two cubic maps, per integer shell ``0 .. n // 2``."""
    n = a.shape[0]
    fa, fb = np.fft.rfftn(a.astype(np.float64)), np.fft.rfftn(b.astype(np.float64))
    k = np.fft.fftfreq(n, 1.0 / n)
    kr = np.fft.rfftfreq(n, 1.0 / n)
    shell = np.round(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kr[None, None, :] ** 2))
    shell = shell.astype(np.int64).ravel()
    keep = shell <= n // 2
    s = shell[keep]
    num = np.bincount(s, (fa * fb.conj()).real.ravel()[keep], n // 2 + 1)
    da = np.bincount(s, (np.abs(fa) ** 2).ravel()[keep], n // 2 + 1)
    db = np.bincount(s, (np.abs(fb) ** 2).ravel()[keep], n // 2 + 1)
    return num / np.sqrt(np.maximum(da * db, 1e-300))


def fsc_resolution(curve: np.ndarray, box: int, pixel_size: float, threshold: float = 0.143) -> float:
    """Resolution (Å) of the last shell before the FSC first drops below ``threshold``
    (``2 · pixel_size`` when it never does; the first shell when shell 1 is already below)."""
    below = np.flatnonzero(np.asarray(curve[1:]) < threshold)
    # curve[1:][j] = curve[j + 1] is the first shell below: the last one above is j
    shell = max(int(below[0]) if below.size else len(curve) - 1, 1)
    return float(box * pixel_size / shell)


def _file_identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def reference_from_half(
    entry_dir,
    half: int,
    symmetry: str = "C1",
    device="cpu",
    seed: int = 0,
    use_cache: bool = True,
    n_threads: int | None = None,
) -> ReferenceMap:
    """The map of half-set ``half`` of an entry from its ground-truth poses, and its band limit.

    Parameters
    ----------
    entry_dir : path
        Entry directory (``particles_<half>.star`` and its stack).
    half : {0, 1}
        The half-set the map is made from (the OTHER half of the one refined).
    symmetry : str
        Point group used in the reconstruction.
    device : str
        Reconstruction device ("cpu": numba).
    seed : int
        Seed of the random split that measures the band limit.
    use_cache : bool
        Read/write ``cache_dir()/refinement/ref_<key>.{mrc,json}``.

    Returns
    -------
    ReferenceMap
        The map of all particles of the half; ``band_limit_A`` where the FSC of two maps of a
        random split of them falls below 0.143.
    """
    from cesped import settings
    from cesped.io.mrc import read_map, write_map
    from cesped.io.stack import parse_image_name
    from cesped.io.star import read_star
    from cesped.reconstruction.fourier import reconstruct_many

    entry_dir = Path(entry_dir)
    star_path = entry_dir / f"particles_{int(half)}.star"
    if not star_path.is_file():
        raise FileNotFoundError(f"reference half-set star file not found: {star_path}")
    star = read_star(star_path)
    stacks = sorted({parse_image_name(str(v))[1] for v in star.particles["rlnImageName"]})
    h = hashlib.sha256(star_path.read_bytes())
    ident = [_file_identity(entry_dir / s) for s in stacks if (entry_dir / s).exists()]
    h.update(json.dumps({"stacks": ident, "sym": symmetry, "seed": seed, "v": _VERSION}).encode())
    key = h.hexdigest()[:32]
    cdir = settings.cache_dir() / "refinement"
    mpath, jpath = cdir / f"ref_{key}.mrc", cdir / f"ref_{key}.json"
    source = f"native reconstruction of {star_path} (ground-truth poses, symmetry {symmetry})"
    if use_cache and mpath.is_file() and jpath.is_file():
        try:
            vol, px = read_map(mpath)
            meta = json.loads(jpath.read_text())
            return ReferenceMap(vol, px, meta["band_limit_A"], source, meta["fsc"])
        except (OSError, ValueError, KeyError):
            pass  # rebuild a corrupt cache entry
    n = len(star.particles)
    split = np.random.default_rng(seed).permutation(n) < n // 2
    vols, px = reconstruct_many(
        star,
        [{}, {"weights": split.astype(np.float64)}, {"weights": (~split).astype(np.float64)}],
        symmetry=symmetry,
        device=device,
        n_threads=n_threads,
    )
    curve = fsc_curve(vols[1], vols[2])
    band = fsc_resolution(curve, vols[0].shape[0], px)
    ref = ReferenceMap(vols[0], px, band, source, [round(float(c), 5) for c in curve])
    if use_cache:
        try:
            write_map(mpath, vols[0], px)
            from cesped.io.atomic import atomic_open

            with atomic_open(jpath) as fh:
                json.dump({"band_limit_A": band, "fsc": ref.fsc, "source": source}, fh)
        except OSError as e:
            print(f"[cesped] could not cache the reference map in {mpath}: {e}")
    return ref


def load_reference_map(path, box: int, pixel_size: float, band_limit_A: float | None = None) -> ReferenceMap:
    """A user's reference map, checked against the particles' box and pixel size.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a cubic map of ``box`` voxels, or a voxel size that differs from ``pixel_size`` by
        more than 0.1 %.
    """
    from cesped.io.mrc import read_map

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--reference: map file not found: {path}")
    vol, px = read_map(path)
    if vol.ndim != 3 or vol.shape != (box, box, box):
        raise ValueError(
            f"--reference {path}: map has shape {tuple(vol.shape)}, the particles need ({box}, {box}, {box})"
        )
    if not (math.isfinite(px) and abs(px - pixel_size) <= 1e-3 * pixel_size):
        raise ValueError(
            f"--reference {path}: voxel size {px:.4f} Å differs from the particles' pixel size "
            f"{pixel_size:.4f} Å"
        )
    if not np.isfinite(vol).all():
        raise ValueError(f"--reference {path}: map has non-finite values")
    return ReferenceMap(vol, float(pixel_size), band_limit_A, f"user map {path.resolve()}")
