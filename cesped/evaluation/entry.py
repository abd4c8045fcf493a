"""Which entry is evaluated: an entry directory or a registered entry name (made available)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cesped.evaluation.masks import try_download_mask

__all__ = ["resolve_entry"]


def resolve_entry(target: str, benchmark_dir):
    """Return (entry_dir, star paths [2], symmetry, mask path or None, target label)."""
    p = Path(os.path.expanduser(str(target)))
    if p.is_dir() and (p / "particles_0.star").is_file():
        stars = [p / "particles_0.star", p / "particles_1.star"]
        for s in stars:
            if not s.is_file():
                raise FileNotFoundError(f"entry directory {p} lacks {s.name}")
        sym = None
        for h in (0, 1):
            info = p / f"info_{h}.json"
            if info.is_file():
                sym = str(json.loads(info.read_text()).get("symmetry", "C1")).upper()
                break
        return p, stars, sym or "C1", (p / "mask.mrc") if (p / "mask.mrc").is_file() else None, p.name
    from cesped.data.local import ensure_entry, entry_paths, read_info

    dirs = [ensure_entry(str(target), h, benchmark_dir) for h in (0, 1)]
    stars = [entry_paths(str(target), h, benchmark_dir)["star"] for h in (0, 1)]
    sym = read_info(str(target), 0, benchmark_dir)["symmetry"]
    mask = entry_paths(str(target), 0, benchmark_dir)["mask"]
    if not mask.is_file():
        mask = try_download_mask(str(target), mask)
    return dirs[0], stars, sym, mask, str(target)
