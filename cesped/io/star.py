"""RELION STAR files: particles + optics tables (RELION 3.1+), legacy files, atomic writes.

A RELION 3.1+ particle file has a ``data_optics`` loop (one row per optics group, linked by the
1-based ``rlnOpticsGroup``) and a ``data_particles`` loop (one row per particle). Older files
(RELION <= 3.0) have a single particle loop with per-particle optics columns; :func:`read_star`
gives them a synthesised optics table (see :func:`read_star`).

Reading uses the ``starfile`` library. Writing uses a small vectorised writer of our own
(``starfile.write`` maps a Python function over every cell: 13 s for 300k particles x 16
columns). Every column and every other block is kept and written back; floats are written with
their shortest round-trip representation, so float64 values read back bit-identical and stay
floats (``300.0``, not ``300``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cesped.io.atomic import atomic_open

__all__ = [
    "StarFile",
    "read_star",
    "write_star",
    "particle_optics",
    "require_columns",
    "check_finite",
    "pixel_size",
    "ANGLE_COLUMNS",
    "SHIFT_COLUMNS",
]

ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
SHIFT_COLUMNS = ("rlnOriginXAngst", "rlnOriginYAngst")

# per-particle columns of legacy files that RELION 3.1 keeps in the optics table
_LEGACY_OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize")


@dataclass
class StarFile:
    """Contents of a RELION particle STAR file.

    Attributes
    ----------
    particles : pandas.DataFrame
        One row per particle, RELION column names (``rlnImageName``, ``rlnAngleRot``, ...).
    optics : pandas.DataFrame
        One row per optics group: ``rlnOpticsGroup`` (1-based), ``rlnImagePixelSize`` (Å/px),
        ``rlnImageSize`` (px), ``rlnVoltage`` (kV), ``rlnSphericalAberration`` (mm),
        ``rlnAmplitudeContrast``, ... (whatever the file has).
    path : pathlib.Path or None
        File it was read from (image paths are resolved relative to its directory).
    other_blocks : dict
        Blocks we do not interpret (``name -> DataFrame`` for loops, ``dict`` for simple
        blocks), written back unchanged.
    """

    particles: pd.DataFrame
    optics: pd.DataFrame
    path: Path | None = None
    other_blocks: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.particles)

    def copy(self) -> StarFile:
        """Deep copy of the tables."""
        return StarFile(
            particles=self.particles.copy(),
            optics=self.optics.copy(),
            path=self.path,
            other_blocks={k: (v.copy() if hasattr(v, "copy") else v) for k, v in self.other_blocks.items()},
        )


def _where(star_or_path, block: str) -> str:
    path = star_or_path.path if isinstance(star_or_path, StarFile) else star_or_path
    return f"{path if path is not None else '<in-memory star>'}: data_{block}"


def require_columns(star: StarFile, columns: Iterable[str], what: str = "", block: str = "particles") -> None:
    """Raise ``ValueError`` unless the ``block`` table of ``star`` has all ``columns``.

    Parameters
    ----------
    star : StarFile
    columns : iterable of str
        Required RELION column names.
    what : str
        What the columns are needed for (appears in the message).
    block : {"particles", "optics"}
    """
    if block not in ("particles", "optics"):
        raise ValueError(f"require_columns: block must be 'particles' or 'optics', got {block!r}")
    df = star.particles if block == "particles" else star.optics
    missing = [c for c in columns if c not in df.columns]
    if missing:
        why = f" (needed for {what})" if what else ""
        raise ValueError(f"{_where(star, block)} lacks column(s) {', '.join(missing)}{why}")


def check_finite(star: StarFile, columns: Iterable[str], block: str = "particles") -> None:
    """Raise ``ValueError`` naming the first offending row if a present column is not finite.

    Columns that are absent are ignored (use :func:`require_columns` to demand them). Rows are
    reported 0-based (the table row) and 1-based (the line within the loop).
    """
    df = star.particles if block == "particles" else star.optics
    for c in columns:
        if c not in df.columns:
            continue
        vals = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{_where(star, block)}: column {c} has {int(bad.sum())} non-finite or non-numeric value(s); "
                f"first at row {i} (0-based; particle {i + 1}): {df[c].iloc[i]}"
            )


def _synthesise_optics(particles: pd.DataFrame, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Optics table for a legacy particle table; returns (particles, optics)."""
    p = particles.copy()
    px = None
    if "rlnImagePixelSize" in p.columns:
        px = pd.to_numeric(p["rlnImagePixelSize"], errors="coerce").to_numpy(np.float64)
    elif "rlnDetectorPixelSize" in p.columns and "rlnMagnification" in p.columns:
        det = pd.to_numeric(p["rlnDetectorPixelSize"], errors="coerce").to_numpy(np.float64)
        mag = pd.to_numeric(p["rlnMagnification"], errors="coerce").to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            px = det * 1e4 / mag  # µm * 1e4 / magnification = Å / px
    if px is not None and not np.isfinite(px).all():
        i = int(np.flatnonzero(~np.isfinite(px))[0])
        raise ValueError(f"{where}: cannot derive the pixel size of row {i} (0-based) of a legacy star file")
    if px is not None:
        p["rlnImagePixelSize"] = px
    group_cols = [c for c in _LEGACY_OPTICS_COLUMNS if c in p.columns]
    if group_cols:
        keys = p[group_cols].round(9)
        uniq = keys.drop_duplicates().reset_index(drop=True)
        uniq["rlnOpticsGroup"] = np.arange(1, len(uniq) + 1, dtype=np.int64)
        merged = keys.merge(uniq, on=group_cols, how="left")
        groups = merged["rlnOpticsGroup"].to_numpy()
        optics = (
            p[group_cols]
            .iloc[[int(np.flatnonzero(groups == g)[0]) for g in uniq["rlnOpticsGroup"]]]
            .reset_index(drop=True)
        )
        optics.insert(0, "rlnOpticsGroup", uniq["rlnOpticsGroup"].to_numpy())
        p = p.drop(columns=group_cols)
    else:
        groups = np.ones(len(p), dtype=np.int64)
        optics = pd.DataFrame({"rlnOpticsGroup": np.array([1], dtype=np.int64)})
    optics.insert(0, "rlnOpticsGroupName", [f"opticsGroup{g}" for g in optics["rlnOpticsGroup"]])
    optics["rlnImageDimensionality"] = 2
    p["rlnOpticsGroup"] = groups.astype(np.int64)
    # legacy origins are in pixels; RELION 3.1 uses Å
    if "rlnImagePixelSize" in optics.columns:
        px_row = optics.set_index("rlnOpticsGroup")["rlnImagePixelSize"].reindex(groups).to_numpy(np.float64)
        for old, new in (("rlnOriginX", "rlnOriginXAngst"), ("rlnOriginY", "rlnOriginYAngst")):
            if old in p.columns and new not in p.columns:
                p[new] = pd.to_numeric(p[old], errors="coerce").to_numpy(np.float64) * px_row
                p = p.drop(columns=[old])
    return p.reset_index(drop=True), optics


def _legacy_image_size(particles: pd.DataFrame, root: Path) -> int | None:
    """Box size from the header of the first particle's stack (best effort; None if unreadable)."""
    from cesped.io.stack import parse_image_name, stack_info  # lazy: stack imports this module

    if "rlnImageName" not in particles.columns or len(particles) == 0:
        return None
    try:
        _, rel = parse_image_name(str(particles["rlnImageName"].iloc[0]))
        _, ny, nx, _, _ = stack_info(root / rel)
    except (ValueError, OSError):
        return None
    return int(nx) if nx == ny else None


def read_star(path: str | os.PathLike) -> StarFile:
    """Read a RELION particle STAR file.

    Parameters
    ----------
    path : path-like
        RELION 3.1+ file (``data_optics`` + ``data_particles``) or a legacy file (one loop with
        ``rlnImageName``, no optics table).

    Returns
    -------
    StarFile
        For legacy files the optics table is synthesised: one group per distinct combination of
        ``rlnVoltage``, ``rlnSphericalAberration``, ``rlnAmplitudeContrast`` and the pixel size
        (``rlnImagePixelSize``, or ``rlnDetectorPixelSize`` [µm] · 1e4 / ``rlnMagnification``);
        those columns move to the optics table, ``rlnOpticsGroup`` is added, and pixel origins
        ``rlnOriginX/Y`` become ``rlnOriginX/YAngst``. ``rlnImageSize`` is taken from the
        header of the first particle's stack when that file can be read. Without any
        pixel-size information the optics table has no ``rlnImagePixelSize`` and
        :func:`pixel_size` raises.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        No particle block, a particle refers to an optics group that does not exist, or the
        angle/shift columns hold non-finite values (message names file, column and row).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"star file not found: {path}")
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=["rlnImageName", "rlnMicrographName"])
    except Exception as exc:  # starfile raises assorted errors on malformed text
        raise ValueError(f"{path}: cannot parse STAR file: {exc}") from exc
    if not isinstance(blocks, dict) or not blocks:
        raise ValueError(f"{path}: no data blocks found")
    blocks = dict(blocks)
    where_p = f"{path}: data_particles"
    if "particles" in blocks:
        particles = blocks.pop("particles")
        if not isinstance(particles, pd.DataFrame):
            particles = pd.DataFrame([particles])
        optics = blocks.pop("optics", None)
        legacy = optics is None
    else:
        candidates = [
            k for k, v in blocks.items() if isinstance(v, pd.DataFrame) and "rlnImageName" in v.columns
        ]
        if not candidates:
            raise ValueError(
                f"{path}: no data_particles block (and no legacy loop with rlnImageName); "
                f"blocks found: {', '.join('data_' + k for k in blocks) or 'none'}"
            )
        particles = blocks.pop(candidates[0])
        optics = blocks.pop("optics", None)
        legacy = optics is None
    particles = particles.reset_index(drop=True)
    if legacy:
        particles, optics = _synthesise_optics(particles, where_p)
        box = _legacy_image_size(particles, path.parent)
        if box is not None:
            optics["rlnImageSize"] = box
    else:
        if not isinstance(optics, pd.DataFrame):
            optics = pd.DataFrame([optics])
        optics = optics.reset_index(drop=True)
        if "rlnOpticsGroup" not in optics.columns:
            raise ValueError(f"{path}: data_optics lacks column rlnOpticsGroup")
        if "rlnOpticsGroup" not in particles.columns:
            if len(optics) != 1:
                raise ValueError(
                    f"{where_p} lacks column rlnOpticsGroup (data_optics has {len(optics)} groups)"
                )
            particles["rlnOpticsGroup"] = np.int64(optics["rlnOpticsGroup"].iloc[0])
    star = StarFile(particles=particles, optics=optics, path=path, other_blocks=blocks)
    _check_groups(star)
    check_finite(star, ANGLE_COLUMNS + SHIFT_COLUMNS)
    return star


def _check_groups(star: StarFile) -> None:
    known = set(pd.to_numeric(star.optics["rlnOpticsGroup"], errors="coerce").tolist())
    groups = pd.to_numeric(star.particles["rlnOpticsGroup"], errors="coerce")
    bad = ~groups.isin(known)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        group = star.particles["rlnOpticsGroup"].iloc[i]
        raise ValueError(
            f"{_where(star, 'particles')}: row {i} (0-based) has rlnOpticsGroup {group} "
            f"which is not in data_optics (groups {sorted(known)})"
        )


def write_star(path: str | os.PathLike, star: StarFile) -> None:
    """Write ``star`` as a RELION 3.1 STAR file, atomically.

    Blocks are written in the order ``data_optics``, ``data_particles``, then
    ``star.other_blocks`` unchanged. All columns are kept; floats are written exactly
    (shortest round-trip representation).

    Parameters
    ----------
    path : path-like
        Destination (parent directories are created).
    star : StarFile

    Raises
    ------
    ValueError
        Non-finite angles or shifts, a missing ``rlnOpticsGroup``, a particle group absent
        from the optics table, or block names that clash with ``optics`` / ``particles``.
        Nothing is written in that case.
    """
    path = Path(path)
    target = StarFile(star.particles, star.optics, path, star.other_blocks)
    require_columns(target, ["rlnOpticsGroup"], "linking particles to optics")
    require_columns(target, ["rlnOpticsGroup"], "linking particles to optics", block="optics")
    _check_groups(target)
    check_finite(target, ANGLE_COLUMNS + SHIFT_COLUMNS)
    clash = {"optics", "particles"} & set(star.other_blocks)
    if clash:
        raise ValueError(f"{path}: other_blocks may not contain {sorted(clash)}")
    data = {"optics": star.optics, "particles": star.particles}
    data.update(star.other_blocks)
    with atomic_open(path, "w") as fh:
        fh.write(_STAR_HEADER)
        for name, block in data.items():
            fh.write(_format_block(name, block))


_STAR_HEADER = "\n# version 30001 (written by cesped)\n"


def _quote_strings(col: pd.Series) -> pd.Series:
    s = col.astype(str)
    needs = s.str.contains(r"\s", regex=True) | (s == "")
    if needs.any():
        s = s.where(~needs, '"' + s + '"')
    return s


def _format_value(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return _quote_strings(pd.Series([v])).iloc[0]


def _format_block(name: str, block) -> str:
    """One STAR data block as text: loops for DataFrames, key/value pairs for dicts.

    Floats are written with Python's shortest round-trip representation (``repr``), so every
    float64 reads back bit-identical and integral floats keep their ``.0``; strings with white
    space are quoted.
    """
    head = f"\ndata_{name}\n\n"
    if isinstance(block, dict):
        lines = [f"_{k}\t{_format_value(v)}\n" for k, v in block.items()]
        return head + "".join(lines) + "\n"
    if not isinstance(block, pd.DataFrame):
        kind = type(block).__name__
        raise ValueError(f"write_star: block {name!r} must be a DataFrame or a dict, got {kind}")
    df = block.reset_index(drop=True)
    out = {}
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_bool_dtype(col.dtype):
            out[c] = col.astype(np.int64)
        elif pd.api.types.is_float_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype):
            out[c] = col
        else:
            out[c] = _quote_strings(col)
    out = pd.DataFrame(out, columns=df.columns)
    header = "loop_\n" + "".join(f"_{c} #{i + 1}\n" for i, c in enumerate(df.columns))
    body = out.to_csv(
        sep="\t", header=False, index=False, na_rep="nan", quoting=csv.QUOTE_NONE, lineterminator="\n"
    )
    return head + header + body + "\n"


def particle_optics(star: StarFile) -> pd.DataFrame:
    """Particles with their optics-group columns joined, same row order as ``star.particles``.

    Columns present in both tables keep the per-particle value.

    Returns
    -------
    pandas.DataFrame
        ``len(star.particles)`` rows.
    """
    require_columns(star, ["rlnOpticsGroup"], "joining optics")
    _check_groups(star)
    extra = [c for c in star.optics.columns if c not in star.particles.columns or c == "rlnOpticsGroup"]
    opt = star.optics[extra].drop_duplicates("rlnOpticsGroup")
    out = star.particles.merge(opt, on="rlnOpticsGroup", how="left", sort=False)
    out.index = star.particles.index
    return out


def pixel_size(star: StarFile, group: int | None = None) -> float:
    """Pixel size in Å/px from the optics table.

    Parameters
    ----------
    star : StarFile
    group : int, optional
        Optics group (1-based ``rlnOpticsGroup``). When omitted, all groups must share one
        pixel size.

    Raises
    ------
    ValueError
        The optics table has no ``rlnImagePixelSize`` (e.g. a legacy file without pixel
        information), the group does not exist, groups disagree, or the value is not positive.
    """
    require_columns(star, ["rlnImagePixelSize"], "the pixel size", block="optics")
    opt = star.optics
    if group is not None:
        sel = opt[pd.to_numeric(opt["rlnOpticsGroup"]) == int(group)]
        if sel.empty:
            raise ValueError(f"{_where(star, 'optics')}: no optics group {group}")
        vals = sel["rlnImagePixelSize"].to_numpy(np.float64)
    else:
        vals = pd.to_numeric(opt["rlnImagePixelSize"], errors="coerce").to_numpy(np.float64)
        if len(np.unique(vals)) > 1:
            raise ValueError(
                f"{_where(star, 'optics')}: optics groups have different pixel sizes {np.unique(vals)}"
            )
    v = float(vals[0])
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{_where(star, 'optics')}: rlnImagePixelSize must be positive, got {v}")
    return v
