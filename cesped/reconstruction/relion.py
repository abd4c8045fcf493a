"""External backend: ``relion_reconstruct`` (or ``mpirun -np N relion_reconstruct_mpi``).

The command is the one the original package runs::

    relion_reconstruct --i particles.star --o out.mrc --ctf --sym c1 --pad 2 [--fom_weighting]

with the working directory set to the star file's directory (image paths in ``rlnImageName``
are relative to it). The binaries are looked up only when this backend runs, in this order:
the ``relion_bin`` argument (a directory or the binary itself, e.g. from a config file), the
environment variable ``CESPED_RELION_BIN`` (same forms), then ``PATH``. With
``singularity_img`` the command runs inside that image (``singularity exec`` or
``apptainer exec``), see ``singularity/cesped.def``.

Example usage::

    from cesped.reconstruction.relion import reconstruct_relion
    vol, voxel_size = reconstruct_relion("entry/particles_0.star", "C2", "gt_0.mrc", n_cpus=2)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["find_relion_binary", "relion_command", "reconstruct_relion"]


def find_relion_binary(name: str = "relion_reconstruct", relion_bin: str | os.PathLike | None = None) -> str:
    """Absolute path of a RELION binary.

    Parameters
    ----------
    name : str
        Binary name, e.g. ``relion_reconstruct`` or ``relion_reconstruct_mpi``.
    relion_bin : path, optional
        A directory holding the binaries, or a path to a binary (its directory is used).
        Default: ``$CESPED_RELION_BIN``, then ``PATH``.

    Raises
    ------
    FileNotFoundError
        When the binary is nowhere to be found; the message says where it looked.
    """
    looked = []
    for origin, value in (
        ("relion_bin", relion_bin),
        ("CESPED_RELION_BIN", os.environ.get("CESPED_RELION_BIN")),
    ):
        if value is None or str(value) == "":
            continue
        p = Path(os.path.expanduser(str(value)))
        d = p if p.is_dir() else p.parent
        cand = d / name
        looked.append(f"{origin}={value}")
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which(name)
    if found:
        return found
    looked.append("PATH")
    raise FileNotFoundError(
        f"RELION binary {name!r} not found (looked in: {', '.join(looked)}). Install RELION "
        "(e.g. Debian/Ubuntu package 'relion'), set CESPED_RELION_BIN to its bin directory, pass "
        "--singularityImgFile with an image built from singularity/cesped.def, or use --backend native."
    )


def _container_runtime() -> str:
    for exe in ("singularity", "apptainer"):
        found = shutil.which(exe)
        if found:
            return found
    raise FileNotFoundError("singularity image given but neither 'singularity' nor 'apptainer' is on PATH")


def relion_command(
    star_name: str,
    out_path: str,
    symmetry: str,
    n_cpus: int = 1,
    fom_weighting: bool = False,
    relion_bin=None,
    singularity_img=None,
    mpirun: str = "mpirun",
    pad: int = 2,
    bind_dirs=(),
    ctf: bool = True,
) -> list[str]:
    """The command line (a list) that reconstructs ``star_name`` into ``out_path`` (``--ctf``
    unless ``ctf`` is False)."""
    from cesped.geometry.symmetry import normalize_symmetry

    sym = normalize_symmetry(symmetry).lower()
    mpi = int(n_cpus) > 1
    name = "relion_reconstruct_mpi" if mpi else "relion_reconstruct"
    args = ["--i", str(star_name), "--o", str(out_path), *(["--ctf"] if ctf else []), "--sym", sym]
    args += ["--pad", str(float(pad))]
    if fom_weighting:
        args.append("--fom_weighting")
    if singularity_img is not None:
        img = Path(os.path.expanduser(str(singularity_img)))
        if not img.is_file():
            raise FileNotFoundError(f"singularity image {img} not found")
        prefix = [_container_runtime(), "exec"]
        for d in bind_dirs:
            prefix += ["--bind", str(d)]
        prefix.append(str(img))
        launcher = [mpirun, "-np", str(int(n_cpus))] if mpi else []
        return prefix + launcher + [name] + args
    exe = find_relion_binary(name, relion_bin)
    if mpi:
        mpirun_exe = shutil.which(mpirun)
        if mpirun_exe is None:
            raise FileNotFoundError(f"{mpirun!r} not found on PATH (needed for n_cpus > 1); use n_cpus=1")
        extra = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        return [mpirun_exe, *extra, "--oversubscribe", "-np", str(int(n_cpus)), exe] + args
    return [exe] + args


def reconstruct_relion(
    star_path,
    symmetry: str,
    out_path=None,
    n_cpus: int = 1,
    fom_weighting: bool = False,
    relion_bin=None,
    singularity_img=None,
    mpirun: str = "mpirun",
    pad: int = 2,
    verbose: bool = False,
    ctf: bool = True,
):
    """Reconstruct with RELION and return the map.

    Parameters
    ----------
    star_path : path
        Particles star file; its directory is the working directory (image paths relative to it).
    symmetry : str
        Point group ("C1", "C2", "D2", ...).
    out_path : path, optional
        Where the map is written (atomically). None: not kept.
    n_cpus : int
        1 runs ``relion_reconstruct``; more runs ``mpirun -np n_cpus relion_reconstruct_mpi``.
    fom_weighting : bool
        Pass ``--fom_weighting`` (weights particles by ``rlnParticleFigureOfMerit``).
    relion_bin, singularity_img, mpirun
        Where RELION comes from (see the module docstring).
    pad : int
        ``--pad``.
    ctf : bool
        Pass ``--ctf`` (the images carry a CTF).

    Returns
    -------
    volume : np.ndarray float32 (n, n, n)
    voxel_size : float (Å)

    Raises
    ------
    FileNotFoundError
        Missing star file, RELION binary, mpirun or container runtime.
    RuntimeError
        RELION failed; the message holds the end of its output.
    """
    from cesped.io.mrc import read_map, write_map

    star_path = Path(os.path.expanduser(str(star_path))).resolve()
    if not star_path.is_file():
        raise FileNotFoundError(f"star file {star_path} not found")
    wdir = star_path.parent
    with tempfile.TemporaryDirectory(prefix="cesped_relion_") as tmp:
        tmp_out = Path(tmp) / "reconstruction.mrc"
        cmd = relion_command(
            star_path.name,
            str(tmp_out),
            symmetry,
            n_cpus=n_cpus,
            fom_weighting=fom_weighting,
            relion_bin=relion_bin,
            singularity_img=singularity_img,
            mpirun=mpirun,
            pad=pad,
            bind_dirs=(wdir, tmp),
            ctf=ctf,
        )
        if verbose:
            print(" ".join(cmd))
        proc = subprocess.run(cmd, cwd=wdir, capture_output=True, text=True)
        if proc.returncode != 0 or not tmp_out.is_file():
            tail = (proc.stdout[-2000:] + "\n" + proc.stderr[-2000:]).strip()
            raise RuntimeError(f"RELION failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
        vol, voxel_size = read_map(tmp_out)
    vol = np.asarray(vol, dtype=np.float32)
    if out_path is not None:
        write_map(out_path, vol, voxel_size)
    return vol, float(voxel_size)
