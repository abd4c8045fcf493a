"""Cache of the ground-truth half-maps in ``cesped.settings.cache_dir()/gt_maps``.

A map is stored under a key that changes whenever the reconstruction could give a different
map: the star file's bytes, the identity (path, size, mtime) of its image stacks, the symmetry,
padding and weighting options, the backend with its kernel (numba, torch, the RELION binary or
Singularity image) and device, the versions of cesped and of the kernel's library, and a hash of
the source files of the reconstruction code (``cesped/reconstruction/*.py`` and the CTF in
``cesped/physics/*.py``). Nothing is bumped by hand. A corrupt entry is rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from cesped.evaluation.predictions import IMAGE

__all__ = ["gt_cache_key", "source_hash", "reconstruction_kernel", "cache_path", "load_cached", "store"]

# the code a ground-truth map is a function of (relative to the cesped package)
SOURCE_GLOBS = ("reconstruction/*.py", "physics/*.py")


@functools.lru_cache(maxsize=4)
def source_hash(root: str | None = None) -> str:
    """sha256 over the names and bytes of the reconstruction's source files (:data:`SOURCE_GLOBS`).

    Parameters
    ----------
    root : str, optional
        Package directory (default: the installed ``cesped``); for tests.
    """
    import cesped

    base = Path(root) if root is not None else Path(cesped.__file__).parent
    h = hashlib.sha256()
    for pattern in SOURCE_GLOBS:
        for f in sorted(base.glob(pattern)):
            h.update(f.relative_to(base).as_posix().encode() + b"\0")
            h.update(f.read_bytes())
    return h.hexdigest()


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def reconstruction_kernel(backend: str, device: str, relion_bin=None, singularity_img=None) -> dict:
    """What computes the map: backend, kernel, device and the kernel library's version.

    The native backend runs the numba kernel on CPU when numba is installed, else torch (as
    :func:`cesped.reconstruction.fourier.reconstruct` with ``kernel="auto"``).
    """
    if backend == "native":
        from cesped.reconstruction.numba_grid import numba_available

        dev = str(getattr(device, "type", device))
        kernel = "numba" if dev.split(":")[0] == "cpu" and numba_available() else "torch"
        return {"backend": backend, "kernel": kernel, "device": dev, "library": _version(kernel)}
    if singularity_img is not None:
        img = Path(singularity_img).expanduser().resolve()
        st = img.stat() if img.exists() else None
        return {"backend": backend, "kernel": "singularity", "image": [str(img), st and st.st_mtime_ns]}
    from cesped.reconstruction.relion import find_relion_binary

    try:
        exe = find_relion_binary("relion_reconstruct", relion_bin)
    except FileNotFoundError:
        exe = None
    return {"backend": backend, "kernel": "relion", "binary": exe}


def stack_identity(star) -> list:
    """[path, size, mtime_ns] of each image stack the star's ``rlnImageName`` refers to."""
    from cesped.io.stack import parse_image_name

    root = Path(star.path).parent if star.path is not None else Path(".")
    files = sorted({parse_image_name(str(n))[1] for n in star.particles[IMAGE].astype(str)})
    ident = []
    for f in files:
        fp = (root / f).resolve()
        st = fp.stat() if fp.exists() else None
        ident.append([str(fp), st.st_size if st else None, st.st_mtime_ns if st else None])
    return ident


def gt_cache_key(
    star_path: Path,
    star,
    symmetry: str,
    kernel: dict,
    pad: int,
    weights: bool,
    code: str | None = None,
    ctf: bool = True,
) -> str:
    """Cache key (32 hex digits) of the ground-truth map of one half-set.

    Parameters
    ----------
    star_path : path
        The entry's star file (its bytes are hashed).
    star : StarFile
        Its table (for the image stacks).
    symmetry : str
    kernel : dict
        :func:`reconstruction_kernel`.
    pad : int
        Padding factor.
    weights : bool
        Particles weighted by ``rlnParticleFigureOfMerit``.
    code : str, optional
        Hash of the reconstruction code (default :func:`source_hash`).
    ctf : bool
        The CTF applied (False: a map without it, cached apart).
    """
    import cesped

    h = hashlib.sha256()
    h.update(Path(star_path).read_bytes())
    h.update(
        json.dumps(
            {
                "stacks": stack_identity(star),
                "symmetry": symmetry,
                "kernel": kernel,
                "pad": pad,
                "fom": weights,
                **({} if ctf else {"ctf": False}),
                "cesped": cesped.__version__,
                "code": code if code is not None else source_hash(),
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:32]


def cache_path(key: str) -> Path:
    """Where the map of ``key`` is cached."""
    from cesped import settings

    return settings.cache_dir() / "gt_maps" / f"{key}.mrc"


def load_cached(key: str):
    """The cached ``(volume, voxel_size)`` of ``key``, or None (absent or corrupt: rebuild)."""
    from cesped.io.mrc import read_map

    cpath = cache_path(key)
    if not cpath.is_file():
        return None
    try:
        return read_map(cpath)
    except (ValueError, OSError):
        return None


def store(key: str, vol, voxel_size: float) -> None:
    """Cache a map (atomically); a failure to write is reported and otherwise ignored."""
    from cesped.io.mrc import write_map

    cpath = cache_path(key)
    try:
        write_map(cpath, vol, voxel_size)
    except OSError as e:
        print(f"[cesped] could not cache the GT map in {cpath}: {e}")
