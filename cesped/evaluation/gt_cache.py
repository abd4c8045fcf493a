"""Cache of the ground-truth half-maps in ``cesped.settings.cache_dir()/gt_maps``.

A map is stored under a key hashing everything it is a function of; a corrupt entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cesped.evaluation.predictions import IMAGE

__all__ = ["gt_cache_key", "cache_path", "load_cached", "store"]

GT_CACHE_VERSION = "native-dfi-1"


def stack_identity(star) -> list:
    from cesped.io.stack import parse_image_name

    root = Path(star.path).parent if star.path is not None else Path(".")
    files = sorted({parse_image_name(str(n))[1] for n in star.particles[IMAGE].astype(str)})
    ident = []
    for f in files:
        fp = (root / f).resolve()
        st = fp.stat() if fp.exists() else None
        ident.append([str(fp), st.st_size if st else None, st.st_mtime_ns if st else None])
    return ident


def gt_cache_key(star_path: Path, star, symmetry: str, backend: str, pad: int, weights: bool) -> str:
    h = hashlib.sha256()
    h.update(Path(star_path).read_bytes())
    h.update(
        json.dumps(
            {
                "stacks": stack_identity(star),
                "symmetry": symmetry,
                "backend": backend,
                "pad": pad,
                "fom": weights,
                "version": GT_CACHE_VERSION,
            }
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
