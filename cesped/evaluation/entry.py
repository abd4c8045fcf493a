"""Which entry is evaluated: an entry directory or a registered entry name (made available).

The symmetry comes from the entry's ``info_0.json`` and ``info_1.json`` (which must agree, see
:func:`cesped.data.local.entry_symmetry`) or from an explicit ``symmetry`` argument; an entry
directory without info files and without the argument is refused (a silent C1 would change
every angular error and map of a symmetric entry).

Whether the images carry a CTF: yes, unless the info files declare ``"ctf": false`` or the
caller says so (``ctf=False``); a ground truth without CTF columns is then refused
(:func:`cesped.evaluation.ground_truth.read_ground_truth`) rather than evaluated without a CTF.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "resolve_entry"]


@dataclass
class Entry:
    """An entry on disk.

    Attributes
    ----------
    directory : Path
    stars : list of 2 Path
        ``particles_0.star``, ``particles_1.star``.
    symmetry : str
        Canonical point-group name.
    label : str
        How the entry is named in the outputs (its name, or the directory's name).
    name : str or None
        Registered entry name when given by name (its published mask can be downloaded);
        None for an entry given as a directory.
    ctf : bool
        Whether the images carry a CTF (the reconstructions apply it).
    """

    directory: Path
    stars: list
    symmetry: str
    label: str
    name: str | None = None
    ctf: bool = True

    @property
    def mask_file(self) -> Path:
        """Where the entry's mask is (or would be downloaded to)."""
        return self.directory / "mask.mrc"


def _symmetry(directory: Path, symmetry: str | None) -> str:
    from cesped.data.local import entry_symmetry
    from cesped.geometry.symmetry import normalize_symmetry

    given = None
    if symmetry is not None:
        try:
            given = normalize_symmetry(symmetry)
        except ValueError as e:
            raise ValueError(f"symmetry argument: {e}") from e
    try:
        from_info = entry_symmetry(directory)
    except FileNotFoundError:
        if given is None:
            raise ValueError(
                f"entry directory {directory} has neither info_0.json nor info_1.json: give its "
                "symmetry (symmetry='C1' in Python, --symmetry C1 on the command line)"
            ) from None
        return given
    if given is not None and given != from_info:
        raise ValueError(
            f"symmetry argument {given!r} contradicts the entry's info files "
            f"({directory / 'info_0.json'}, {directory / 'info_1.json'}: {from_info!r})"
        )
    return from_info


def _ctf(directory: Path, ctf: bool | None) -> bool:
    from cesped.data.local import entry_ctf

    declared = entry_ctf(directory)
    if ctf is None:
        return True if declared is None else declared
    if ctf and declared is False:
        raise ValueError(
            f"ctf=True contradicts the entry's info files ({directory / 'info_0.json'}, "
            f'{directory / "info_1.json"}: "ctf": false)'
        )
    return bool(ctf)


def resolve_entry(
    target: str, benchmark_dir=None, symmetry: str | None = None, ctf: bool | None = None
) -> Entry:
    """Find (or make available) the entry ``target``.

    Parameters
    ----------
    target : str or path
        An entry directory holding ``particles_{0,1}.star``, or a registered/local entry name
        under ``benchmark_dir`` (downloaded or simulated when missing).
    benchmark_dir : path, optional
    symmetry : str, optional
        Required when the entry has no info files; otherwise it must agree with them.
    ctf : bool, optional
        None: as the info files declare (``"ctf"``; a CTF when they say nothing). False: the
        images carry no CTF. True: a CTF (an error if the info files declare none).

    Raises
    ------
    FileNotFoundError
        A half-set star file is missing.
    ValueError
        Unknown entry, no symmetry known, info files that disagree (with each other or with
        ``symmetry``).
    """
    p = Path(os.path.expanduser(str(target)))
    if p.is_dir() and (p / "particles_0.star").is_file():
        stars = [p / "particles_0.star", p / "particles_1.star"]
        for s in stars:
            if not s.is_file():
                raise FileNotFoundError(f"entry directory {p} lacks {s.name}")
        return Entry(p, stars, _symmetry(p, symmetry), p.name, ctf=_ctf(p, ctf))
    from cesped.data.local import ensure_entry, entry_paths

    d = [ensure_entry(str(target), h, benchmark_dir) for h in (0, 1)][0]
    stars = [entry_paths(str(target), h, benchmark_dir)["star"] for h in (0, 1)]
    return Entry(
        Path(d), stars, _symmetry(Path(d), symmetry), str(target), name=str(target), ctf=_ctf(Path(d), ctf)
    )
