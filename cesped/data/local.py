"""Entries on disk: the layout, making an entry available (download or simulate), user entries.

Layout (shared by downloaded, simulated and user entries; compatible with the original package)::

    <benchmark_dir>/<target>/particles_<h>.star   RELION 3.1 star, rlnImageName relative to this dir
                             particles_<h>.mrcs   image stack
                             info_<h>.json        {"symmetry": "C1", ...}
                             mask.mrc             (optional) the entry's mask

Example usage
-------------
>>> from cesped.data.local import ensure_entry                 # doctest: +SKIP
>>> entry_dir = ensure_entry("TEST", 0, benchmark_dir="~/cesped")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cesped import settings
from cesped.data.entries import check_halfset, entry_names, get_entry

__all__ = [
    "EntryElsewhereError",
    "entry_paths",
    "is_available",
    "ensure_entry",
    "locally_available_entries",
    "read_info",
    "entry_symmetry",
    "add_local_entry",
    "check_stack_pixel_size",
]


class EntryElsewhereError(FileNotFoundError):
    """The entry is not in the benchmark directory but the original package's folder has it."""


def _original_copy_message(name: str, halfset: int, root: Path) -> str | None:
    """Say so when the original package's folder holds (part of) this half-set; None otherwise."""
    orig = settings.original_benchmark_dir()
    if orig is None:
        return None
    try:
        if orig.resolve() == root.resolve():
            return None
    except OSError:
        return None
    d = orig / name
    if not (d / f"particles_{halfset}.star").is_file():
        return None
    info = get_entry(name)
    done = (d / f"SUCCESSFUL_DOWNLOAD_{info.record_id(halfset)}.txt").exists()
    state = "downloaded" if done else "partly downloaded (no SUCCESSFUL_DOWNLOAD marker: it will be resumed)"
    return (
        f"entry {name!r} half-set {halfset} is not in {root} but the original cesped package {state} it "
        f"in {d}. Use that copy instead of downloading it again: ParticlesDataset(..., "
        f"benchmarkDir='{orig}') or the environment variable CESPED_BENCHMARK_DIR={orig} (or move "
        f"{d} into {root}/). To download a new copy into {root} anyway, set "
        "CESPED_ORIGINAL_BENCHMARK_DIR='' (empty)."
    )


def check_stack_pixel_size(source, pixel_size: float, star_path) -> dict | None:
    """Warn when a stack's header disagrees with the star's pixel size; return the record of it.

    The star's ``rlnImagePixelSize`` is used either way (RELION's convention: the header is not
    read for the pixel size), so the disagreement is reported, with both values, instead of
    being resolved silently.

    Parameters
    ----------
    source : cesped.io.stack.ImageSource
    pixel_size : float
        The star's pixel size in Å/px.
    star_path : path
        For the message.

    Returns
    -------
    dict or None
        ``{"star_pixel_size", "header_pixel_size", "stack", "used"}`` or None when every stack
        header that states a pixel size agrees within 0.1 %.
    """
    import warnings

    found = source.pixel_size_mismatch(pixel_size)
    if found is None:
        return None
    stack, header_px = found
    warnings.warn(
        f"{star_path}: rlnImagePixelSize {pixel_size:g} Å/px disagrees with the header of {stack} "
        f"({header_px:g} Å/px); the star's value is used",
        UserWarning,
        stacklevel=3,
    )
    return {"star_pixel_size": pixel_size, "header_pixel_size": header_px, "stack": stack, "used": "star"}


def entry_paths(name: str, halfset: int, benchmark_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Paths of one half-set of entry ``name``: keys ``dir``, ``star``, ``mrcs``, ``info``, ``mask``."""
    h = check_halfset(halfset)
    d = settings.benchmark_dir(benchmark_dir) / str(name)
    return {
        "dir": d,
        "star": d / f"particles_{h}.star",
        "mrcs": d / f"particles_{h}.mrcs",
        "info": d / f"info_{h}.json",
        "mask": d / "mask.mrc",
    }


def is_available(name: str, halfset: int, benchmark_dir: str | os.PathLike | None = None) -> bool:
    """Whether the half-set is complete on disk.

    The star and info files must exist, and:

    * a registered real entry needs a completion marker: ``.complete_<h>.json`` (written by the
      downloader once every file verified, and by :func:`add_local_entry`) or the original
      package's ``SUCCESSFUL_DOWNLOAD_<record>.txt``. A stack without one may be half-downloaded
      (the original package appended to ``particles_<h>.mrcs`` directly) and is resumed and
      verified by :func:`ensure_entry`, never used as it is;
    * a synthetic entry needs ``generation.json`` (the simulator writes it last);
    * any other (user) entry needs ``particles_<h>.mrcs`` or ``.complete_<h>.json``.
    """
    p = entry_paths(name, halfset, benchmark_dir)
    if not (p["star"].is_file() and p["info"].is_file()):
        return False
    try:
        info = get_entry(name)
    except ValueError:
        info = None
    if info is not None and info.is_synthetic:  # the simulator writes generation.json last
        return (p["dir"] / "generation.json").is_file()
    if (p["dir"] / f".complete_{halfset}.json").exists():
        return True
    if info is None:
        return p["mrcs"].exists()
    return (p["dir"] / f"SUCCESSFUL_DOWNLOAD_{info.record_id(halfset)}.txt").exists()


def read_info(name: str, halfset: int, benchmark_dir: str | os.PathLike | None = None) -> dict:
    """Contents of ``info_<h>.json`` (``symmetry`` upper-cased)."""
    path = entry_paths(name, halfset, benchmark_dir)["info"]
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"entry info file not found: {path}") from None
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(info, dict) or "symmetry" not in info:
        raise ValueError(f"{path}: expected a JSON object with a 'symmetry' field")
    info["symmetry"] = str(info["symmetry"]).upper()
    return info


def _info_files(directory) -> tuple[list[Path], dict[Path, object]]:
    """The paths of the entry's ``info_{0,1}.json`` and the parsed content of those present."""
    d = Path(os.path.expanduser(str(directory)))
    paths = [d / f"info_{h}.json" for h in (0, 1)]
    infos: dict[Path, object] = {}
    for path in paths:
        try:
            infos[path] = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
    return paths, infos


def entry_symmetry(directory: str | os.PathLike) -> str:
    """Point symmetry of the entry in ``directory``, from its ``info_0.json`` and ``info_1.json``.

    Both info files are read when present (an entry of which only one half-set is on disk has
    one); they must agree.

    Parameters
    ----------
    directory : path-like
        Entry directory (``<benchmark_dir>/<target>``).

    Returns
    -------
    str
        Canonical symmetry name (:func:`cesped.geometry.symmetry.normalize_symmetry`), e.g. ``"C1"``.

    Raises
    ------
    FileNotFoundError
        Neither info file exists (both names in the message).
    ValueError
        An info file is not a JSON object with a valid ``symmetry`` field, or the two files
        disagree (both files and values named).
    """
    from cesped.geometry.symmetry import normalize_symmetry

    paths, infos = _info_files(directory)
    found: dict[Path, str] = {}
    for path, info in infos.items():
        if not isinstance(info, dict) or "symmetry" not in info:
            raise ValueError(f"{path}: expected a JSON object with a 'symmetry' field")
        try:
            found[path] = normalize_symmetry(info["symmetry"])
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
    if not found:
        raise FileNotFoundError(f"entry info files not found: {paths[0]} nor {paths[1]}")
    if len(set(found.values())) > 1:
        raise ValueError(
            "the entry's info files disagree on the symmetry: "
            + ", ".join(f"{p} says {v!r}" for p, v in found.items())
        )
    return next(iter(found.values()))


def entry_ctf(directory: str | os.PathLike) -> bool | None:
    """Whether the entry's images carry a CTF, as its ``info_{0,1}.json`` declare (``"ctf"``).

    Parameters
    ----------
    directory : path-like
        Entry directory.

    Returns
    -------
    bool or None
        The declared value (``"ctf": false`` for images simulated or processed without a CTF);
        None when no info file declares it (an entry has a CTF unless it says otherwise).

    Raises
    ------
    ValueError
        A ``"ctf"`` field that is not true/false, or info files that disagree (files named).
    """
    found: dict[Path, bool] = {}
    for path, info in _info_files(directory)[1].items():
        if not isinstance(info, dict) or "ctf" not in info:
            continue
        if not isinstance(info["ctf"], bool):
            raise ValueError(f"{path}: 'ctf' must be true or false, got {info['ctf']!r}")
        found[path] = info["ctf"]
    if len(set(found.values())) > 1:
        raise ValueError(
            "the entry's info files disagree on 'ctf': "
            + ", ".join(f"{p} says {v}" for p, v in found.items())
        )
    return next(iter(found.values()), None)


def _simulate(name: str, benchmark_dir: Path, progress: bool = True) -> None:
    from cesped.simulation import PRESETS, simulate_entry

    preset = get_entry(name).synthetic_preset
    if preset not in PRESETS:
        raise ValueError(
            f"synthetic entry {name!r}: simulation preset {preset!r} not found (known: {', '.join(PRESETS)})"
        )
    simulate_entry(benchmark_dir / name, **{**PRESETS[preset], "overwrite": True, "progress": progress})


def ensure_entry(
    name: str,
    halfset: int,
    benchmark_dir: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str | None = None,
    progress: bool = True,
) -> Path:
    """Make one half-set of an entry available locally and return the entry directory.

    An entry already on disk (downloaded by this or the original package, simulated, or added
    with :func:`add_local_entry`) is used as it is. Otherwise a registered real entry is
    downloaded from Zenodo (checksummed, resumable) and a synthetic one is simulated.

    Parameters
    ----------
    name : str
        Entry (target) name.
    halfset : {0, 1}
    benchmark_dir : path, optional
        Default :func:`cesped.settings.benchmark_dir` (env ``CESPED_BENCHMARK_DIR``).
    download : bool
        When False, a missing entry raises ``FileNotFoundError`` saying what to download.
    base_url : str, optional
        Zenodo records API (env ``CESPED_ZENODO_URL``).
    progress : bool
        Progress bars.

    Raises
    ------
    ValueError
        ``halfset`` not 0/1; unknown entry name that is not on disk either.
    FileNotFoundError
        Missing and ``download=False``; an unknown entry whose directory lacks some files (named).
    EntryElsewhereError
        A registered entry missing here but present in the original package's folder
        (:func:`cesped.settings.original_benchmark_dir`): the message says how to use it; nothing
        is downloaded.
    cesped.data.zenodo.OfflineError, cesped.data.zenodo.DownloadError
    """
    h = check_halfset(halfset)
    root = settings.benchmark_dir(benchmark_dir)
    p = entry_paths(name, h, root)
    if is_available(name, h, root):
        return p["dir"]
    try:
        info = get_entry(name)
    except ValueError:
        present = [f.name for f in (p["star"], p["info"], p["mrcs"]) if f.exists()]
        if present:
            absent = [f.name for f in (p["star"], p["info"], p["mrcs"]) if not f.exists()]
            raise FileNotFoundError(
                f"entry {name!r} half-set {h} in {p['dir']} is incomplete: {', '.join(absent)} missing "
                f"(found {', '.join(present)}); it is not a known CESPED entry either, so nothing can "
                "be downloaded"
            ) from None
        raise ValueError(
            f"entry {name!r} half-set {h} is neither in {p['dir']} nor a known CESPED entry "
            f"({', '.join(entry_names())}); add your own data with ParticlesDataset.addNewEntryLocally"
        ) from None
    if info.is_synthetic:
        _simulate(name, root, progress)
        if not is_available(name, h, root):
            raise RuntimeError(f"simulation of {name!r} did not produce {p['star']} and {p['info']}")
        return p["dir"]
    from cesped.data import zenodo

    started_here = any(p["dir"].glob(f"particles_{h}.*"))
    elsewhere = None if started_here else _original_copy_message(name, h, root)
    if elsewhere is not None:
        raise EntryElsewhereError(elsewhere)
    if not download:
        raise FileNotFoundError(
            f"entry {name!r} half-set {h} not found in {p['dir']}.\n"
            + zenodo.offline_instructions(name, h, root, base_url)
        )
    return zenodo.download_halfset(name, h, root, base_url=base_url, progress=progress)


def locally_available_entries(benchmark_dir: str | os.PathLike | None = None) -> list[tuple[str, int]]:
    """``(name, halfset)`` pairs present in ``benchmark_dir`` (sorted)."""
    root = settings.benchmark_dir(benchmark_dir)
    if not root.is_dir():
        return []
    return [
        (d.name, h)
        for d in sorted(root.iterdir())
        if d.is_dir()
        for h in (0, 1)
        if is_available(d.name, h, root)
    ]


def add_local_entry(
    star_fname: str | os.PathLike,
    particles_root_dir: str | os.PathLike | None,
    name: str,
    halfset: int,
    symmetry: str,
    benchmark_dir: str | os.PathLike | None = None,
    copy_images: bool = True,
    chunk: int = 1024,
    labelled: bool = True,
) -> Path:
    """Add a user's particles (star + stacks) as entry ``name`` half ``halfset``.

    Parameters
    ----------
    star_fname : path
        RELION particle star file with poses (``rlnAngleRot/Tilt/Psi``, ``rlnOriginX/YAngst``) and CTF.
    particles_root_dir : path, optional
        Directory the ``rlnImageName`` paths are relative to (e.g. the RELION project directory);
        default: the star file's directory.
    name : str
        New entry name (a directory under ``benchmark_dir``).
    halfset : {0, 1}
    symmetry : str
        Point group, e.g. ``"C1"``, ``"D2"``.
    copy_images : bool
        True: copy the images into ``particles_<h>.mrcs`` (float32, read and written in chunks of
        ``chunk`` images). False: keep the user's stacks and point ``rlnImageName`` at them by
        absolute path.
    labelled : bool
        True: the star must hold the pose labels (``rlnAngleRot/Tilt/Psi``, ``rlnOriginX/YAngst``;
        a missing one is an error naming the file and the column). False (explicit opt-in, e.g. to
        predict poses of new data): the entry is recorded as unlabelled (``"labelled": false`` in
        ``info_<h>.json``), every pose and refinement column is dropped from its star
        (:func:`cesped.data.columns.is_ground_truth_column`) and the dataset returns NaN labels.

    Returns
    -------
    Path
        The entry directory. The star, stack and info files appear only when complete.
    """
    import mrcfile

    from cesped.data.columns import is_ground_truth_column
    from cesped.geometry.symmetry import normalize_symmetry
    from cesped.io.atomic import atomic_open, atomic_path
    from cesped.io.stack import ImageSource
    from cesped.io.star import (
        ANGLE_COLUMNS,
        SHIFT_COLUMNS,
        pixel_size,
        read_star,
        require_columns,
        write_star,
    )

    h = check_halfset(halfset)
    sym = normalize_symmetry(symmetry)
    if not name or "/" in str(name) or str(name) in (".", ".."):
        raise ValueError(f"entry name must be a plain directory name, got {name!r}")
    star = read_star(star_fname)
    if labelled:
        require_columns(
            star,
            list(ANGLE_COLUMNS) + list(SHIFT_COLUMNS),
            "the pose labels; add data without poses with labelled=False",
        )
    root = Path(particles_root_dir) if particles_root_dir is not None else Path(star_fname).parent
    src = ImageSource.from_star(star, root=root)  # validates every stack and index
    px = pixel_size(star)
    mismatch = check_stack_pixel_size(src, px, star_fname)
    p = entry_paths(name, h, benchmark_dir)
    p["dir"].mkdir(parents=True, exist_ok=True)
    parts = star.particles.copy()
    if not labelled:
        parts = parts[
            [c for c in parts.columns if c == "rlnImageName" or not is_ground_truth_column(c)]
        ].copy()
    if "rlnImageOriginalName" not in parts.columns:
        parts["rlnImageOriginalName"] = parts["rlnImageName"]
    n = len(src)
    if copy_images:
        ny, nx = src.image_shape
        with atomic_path(p["mrcs"]) as tmp:
            with mrcfile.new_mmap(tmp, shape=(n, ny, nx), mrc_mode=2, overwrite=True) as mrc:
                for i in range(0, n, chunk):
                    mrc.data[i : i + chunk] = src.read(np.arange(i, min(n, i + chunk)))
                mrc.set_image_stack()
                mrc.voxel_size = px
        parts["rlnImageName"] = [f"{i + 1:06d}@{p['mrcs'].name}" for i in range(n)]
    else:
        parts["rlnImageName"] = [
            f"{s + 1:06d}@{src.files[f]}" for f, s in zip(src.file_index, src.slice_index)
        ]
    star.particles = parts
    write_star(p["star"], star)
    with atomic_open(p["info"], "w") as fh:
        json.dump(
            {
                "symmetry": sym,
                "source": str(Path(star_fname).resolve()),
                "n_particles": n,
                "labelled": labelled,
                **({"pixel_size_mismatch": mismatch} if mismatch else {}),
            },
            fh,
        )
    with atomic_open(p["dir"] / f".complete_{h}.json", "w") as fh:
        json.dump({"record": None, "local": True}, fh)
    return p["dir"]
