"""The reference map of a refinement, built without any label of the refined half-set.

* :func:`reference_from_half`: the map reconstructed (native backend) from the OTHER half-set's
  ground-truth poses (the data a model is trained on), and its band limit from that half alone:
  the FSC of two maps of a random split of its particles, at 0.143.
* :func:`load_reference_map`: a user's map, its box and pixel size checked against the particles.
* :func:`fsc_weighted`: a map's shells weighted by the FSC of the full map (a Wiener filter from
  the split FSC), so that shells the map's own noise dominates count less in the score.
* :func:`reference_with_refined`: the map of the other half-set's ground-truth poses together with
  the refined half's images at their refined poses (the second round of a refinement).

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

__all__ = [
    "ReferenceMap",
    "fsc_curve",
    "fsc_resolution",
    "fsc_weighted",
    "reference_from_half",
    "reference_with_refined",
    "load_reference_map",
]

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


def fsc_weighted(volume: np.ndarray, fsc_split) -> np.ndarray:
    """The map with each Fourier shell multiplied by the FSC of the full map.

    ``fsc_split`` is the FSC of two maps of a random split of the map's particles (per integer
    shell ``0 .. n // 2``, as :func:`fsc_curve`); the full map's correlation with the truth is
    estimated from it as ``C = 2 f / (1 + f)`` (Rosenthal & Henderson 2003, clipped to [0, 1]),
    which is also ``SNR / (1 + SNR)`` of the map in that shell: the Wiener filter of the map's
    own noise. Frequencies past shell ``n // 2`` (the corners) take its weight.

    Parameters
    ----------
    volume : numpy.ndarray (n, n, n)
    fsc_split : sequence of float (n // 2 + 1,)

    Returns
    -------
    numpy.ndarray (n, n, n) float32
    """
    f = np.clip(np.asarray(fsc_split, dtype=np.float64), 0.0, 1.0)
    n = volume.shape[0]
    if f.shape != (n // 2 + 1,):
        raise ValueError(f"fsc_split has {f.size} shells, a map of {n} voxels needs {n // 2 + 1}")
    c = 2.0 * f / (1.0 + f)
    k = np.fft.fftfreq(n, 1.0 / n)
    kr = np.fft.rfftfreq(n, 1.0 / n)
    shell = np.round(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kr[None, None, :] ** 2))
    shell = shell.astype(np.int64)
    w = c[np.minimum(shell, n // 2)]
    out = np.fft.irfftn(np.fft.rfftn(volume.astype(np.float64)) * w, s=volume.shape, axes=(0, 1, 2))
    return out.astype(np.float32)


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
    ref = _map_and_split_fsc(star, source, symmetry, device, seed, n_threads)
    if use_cache:
        try:
            write_map(mpath, ref.volume, ref.pixel_size)
            from cesped.io.atomic import atomic_open

            with atomic_open(jpath) as fh:
                json.dump({"band_limit_A": ref.band_limit_A, "fsc": ref.fsc, "source": source}, fh)
        except OSError as e:
            print(f"[cesped] could not cache the reference map in {mpath}: {e}")
    return ref


def reference_with_refined(
    entry_dir,
    half: int,
    refined,
    symmetry: str = "C1",
    device="cpu",
    seed: int = 0,
    n_threads: int | None = None,
) -> ReferenceMap:
    """The map of half-set ``half``'s ground-truth poses plus the refined half's refined poses.

    The second round of a refinement: the refined half-set's own images enter the reference at
    the poses the first round gave them (predictions, never its labels), doubling the particles
    of the reference and so lowering its noise. Not cached (it depends on the refined poses).

    Parameters
    ----------
    entry_dir : path
        Entry directory (``particles_<half>.star`` and the stacks of both half-sets).
    half : {0, 1}
        The OTHER half-set (its ground-truth poses are used).
    refined : StarFile
        The refined half-set's particles with the first round's angles and origins; images named
        relative to the entry directory; the same optics table as ``particles_<half>.star``.
    symmetry, device, seed, n_threads
        As in :func:`reference_from_half` (the split that measures the band limit and the FSC
        weighting is over all particles of both).

    Returns
    -------
    ReferenceMap
        With ``band_limit_A`` and ``fsc`` of the split of all particles.

    Raises
    ------
    ValueError
        The two star files have different optics tables or lack a column the other has.
    """
    import pandas as pd

    from cesped.io.star import read_star

    entry_dir = Path(entry_dir)
    star_path = entry_dir / f"particles_{int(half)}.star"
    if not star_path.is_file():
        raise FileNotFoundError(f"reference half-set star file not found: {star_path}")
    other = read_star(star_path)
    if not _same_optics(other.optics, refined.optics):
        raise ValueError(
            f"second round: the refined star's optics table differs from {star_path}'s; refine with rounds=1"
        )
    cols = [c for c in other.particles.columns if c in refined.particles.columns]
    needed = [
        "rlnImageName",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnOriginXAngst",
        "rlnOriginYAngst",
    ]
    needed += [c for c in other.particles.columns if c.startswith(("rlnDefocus", "rlnCtf", "rlnPhaseShift"))]
    needed += [c for c in ("rlnOpticsGroup",) if c in other.particles.columns]
    missing = [c for c in needed if c not in cols]
    if missing:
        raise ValueError(
            f"second round: the refined star lacks column(s) {', '.join(missing)} of {star_path}"
        )
    both = other.copy()
    both.particles = pd.concat([other.particles[cols], refined.particles[cols]], ignore_index=True)
    source = (
        f"native reconstruction of {star_path} (ground-truth poses) and the refined half-set's "
        f"{len(refined.particles)} particles at their first-round poses (symmetry {symmetry})"
    )
    return _map_and_split_fsc(both, source, symmetry, device, seed, n_threads)


def _same_optics(a, b) -> bool:
    """Whether two optics tables hold the same groups and values (column order and dtypes aside)."""
    import pandas as pd

    if set(a.columns) != set(b.columns) or len(a) != len(b):
        return False
    for c in a.columns:
        x, y = a[c].reset_index(drop=True), b[c].reset_index(drop=True)
        xn, yn = pd.to_numeric(x, errors="coerce"), pd.to_numeric(y, errors="coerce")
        if xn.notna().all() and yn.notna().all():
            if not np.allclose(xn.to_numpy(np.float64), yn.to_numpy(np.float64), rtol=1e-9, atol=0):
                return False
        elif not (x.astype(str) == y.astype(str)).all():
            return False
    return True


def _map_and_split_fsc(star, source: str, symmetry, device, seed, n_threads) -> ReferenceMap:
    """The map of all particles of ``star`` and, from two maps of a random split of them (one
    pass over the images), its FSC curve and band limit (FSC 0.143)."""
    from cesped.reconstruction.fourier import reconstruct_many

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
    return ReferenceMap(vols[0], px, band, source, [round(float(c), 5) for c in curve])


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
