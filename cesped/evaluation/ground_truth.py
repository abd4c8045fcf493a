"""The entry's half-set star files (the ground truth), read and checked before any map is made.

A ground-truth star that cannot give the maps it is meant to give is refused with a one-line
error naming the file (and the column or row): missing ``rlnImageName`` or angle columns,
non-finite angles, shifts or CTF parameters (a NaN defocus would give a NaN map and meaningless
resolutions), an amplitude contrast outside ``[0, 1)``, and missing CTF columns unless the entry
declares that its images carry no CTF (``"ctf": false`` in its info files, ``ctf=False``,
``--no-ctf``): a star without them is never evaluated without a CTF by default.

A pixel size in the star that differs from the image stack's header is not an error (RELION and
the reconstruction use the star's value, as the original package did) but is returned as a
warning that the evaluation prints and records in ``metrics.json`` (``"warnings"``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cesped.evaluation.predictions import ANGLES, IMAGE, SHIFTS

__all__ = ["read_ground_truth", "check_ctf", "require_ctf_columns", "stack_pixel_size_warnings"]

# CTF columns (particle or optics table) whose values must be finite
CTF_COLUMNS = (
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnPhaseShift",
    "rlnCtfBfactor",
)
# the columns a CTF needs (the others default to 0)
CTF_REQUIRED = CTF_COLUMNS[:6]


def read_ground_truth(path, ctf: bool = True):
    """Read one half-set star of the entry and check it (see the module docstring).

    Parameters
    ----------
    path : path-like
        ``particles_<h>.star`` of the entry.
    ctf : bool
        The images carry a CTF: the CTF columns are required (:func:`require_ctf_columns`) and
        checked. False: they are not read (the maps are made without a CTF).

    Returns
    -------
    cesped.io.star.StarFile

    Raises
    ------
    ValueError
        Missing ``rlnImageName``/angle/origin columns (never read as identity poses or 0
        shifts), non-finite angles, shifts or CTF values, an
        amplitude contrast outside [0, 1), missing CTF columns (with ``ctf``); the message
        names the file, column and row.
    """
    from cesped.io.star import check_finite, read_star, require_columns

    star = read_star(path)
    require_columns(star, [IMAGE, *ANGLES, *SHIFTS], "the evaluation's ground truth")
    check_finite(star, [*ANGLES, *SHIFTS])
    if ctf:
        require_ctf_columns(star)
        check_ctf(star)
    return star


def require_ctf_columns(star) -> None:
    """Raise ``ValueError`` naming the file and the missing columns unless the star has a CTF.

    The columns of :data:`CTF_REQUIRED` must each be in the particle or the optics table."""
    where = star.path if star.path is not None else "<in-memory star>"
    missing = [c for c in CTF_REQUIRED if c not in star.particles.columns and c not in star.optics.columns]
    if missing:
        raise ValueError(
            f"{where}: no CTF columns {', '.join(missing)}: the ground-truth maps need the images' CTF. "
            'If the images carry no CTF, say so: "ctf": false in the entry\'s info_0.json and '
            "info_1.json, ctf=False in evaluate() or --no-ctf on the command line"
        )


def _row_name(star, i: int) -> str:
    name = star.particles[IMAGE].iloc[i] if IMAGE in star.particles.columns else "?"
    return f"row {i} (0-based; particle {i + 1}, {name})"


def check_ctf(star) -> None:
    """Raise ``ValueError`` naming the file and first bad row unless the CTF values are usable.

    Every present CTF column (per particle or per optics group, see :data:`CTF_COLUMNS`) must be
    finite and ``rlnAmplitudeContrast`` must lie in ``[0, 1)`` (the CTF's phase term is
    ``atan(Q0 / sqrt(1 - Q0²))``). Missing columns are :func:`require_ctf_columns`'s job.
    """
    from cesped.io.star import particle_optics

    where = star.path if star.path is not None else "<in-memory star>"
    present = [c for c in CTF_COLUMNS if c in star.particles.columns or c in star.optics.columns]
    if not present:
        return
    rows = particle_optics(star) if "rlnOpticsGroup" in star.particles.columns else star.particles
    for col in present:
        if col not in rows.columns:
            continue
        vals = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vals)
        if col == "rlnAmplitudeContrast":
            bad |= (vals < 0) | (vals >= 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "outside [0, 1)" if col == "rlnAmplitudeContrast" else "non-finite or non-numeric"
            raise ValueError(
                f"{where}: {col} is {what} in {int(bad.sum())} row(s), first at {_row_name(star, i)}: "
                f"{rows[col].iloc[i]}"
            )


def stack_pixel_size_warnings(star, tol: float = 1e-3) -> list[str]:
    """Warnings for image stacks whose header pixel size differs from the star's.

    Parameters
    ----------
    star : StarFile
        With ``path`` set (the image names are relative to its folder).
    tol : float
        Relative tolerance.

    Returns
    -------
    list of str
        One message per stack whose header sets a pixel size (> 0) different from the star's
        ``rlnImagePixelSize``, with both values; the star's value is the one used.
    """
    from pathlib import Path

    import mrcfile

    from cesped.io.stack import parse_image_name
    from cesped.io.star import pixel_size

    star_px = float(pixel_size(star))
    root = Path(star.path).parent if star.path is not None else Path(".")
    files = sorted({parse_image_name(str(n))[1] for n in star.particles[IMAGE].astype(str)})
    out = []
    for f in files:
        fp = root / f
        try:
            with mrcfile.open(fp, mode="r", permissive=True, header_only=True) as mrc:
                header_px = float(mrc.voxel_size.x)
        except (ValueError, OSError):
            continue  # the reconstruction reports unreadable stacks with their own message
        if header_px > 0 and abs(header_px - star_px) > tol * star_px:
            out.append(
                f"pixel size: {star.path} gives rlnImagePixelSize {star_px} Å but the header of {fp} "
                f"says {header_px} Å; the star's value is used"
            )
    return out
