"""Native direct Fourier inversion, the equivalent of ``relion_reconstruct --ctf --pad 2``.

Algorithm (RELION's ``BackProjector``):

1. each image is transformed (``rfft2`` with the centre at ``n // 2``) and translated by
   ``+origin / pixel_size`` so that the particle is centred (RELION: ``image(x) = proj(x + origin)``);
   its DC term is set to zero, as RELION does (the weight keeps ``CTF(0)²``);
2. ``CTF·F`` and ``CTF²`` (both times an optional per-particle weight, e.g. the figure of merit)
   are splatted trilinearly into a half (``x >= 0``) Fourier grid padded ``pad`` times, at the
   central slice ``S·R·(kx, ky, 0)`` for every symmetry operator ``S``, with ``R = Aᵀ`` the
   pose label (points that land at negative ``x`` go, conjugated, to their Friedel mate);
3. the ``x = 0`` plane is made Hermitian, and the data are multiplied by RELION's iterative
   gridding weights (``relion_reconstruct``'s default, :mod:`cesped.reconstruction.gridding`)
   or, with ``gridding="skip"``, divided by ``max(weight, radial_mean(weight) / 1000)``
   (``--skip_gridding``), inside the sphere of radius ``n/2`` (Nyquist);
4. inverse FFT of the padded grid, window to ``n³``, division by the trilinear gridding kernel
   ``sinc²(r / (n·pad))`` and RELION's soft spherical mask (radius ``n/2``, 3-voxel cosine edge,
   background filled with the mean around it).

Images are streamed in chunks: memory depends on the box and the chunk size, never on the
number of particles. On CPU with numba installed (the default) the work runs in compiled loops
on numpy arrays (:mod:`cesped.reconstruction.numba_grid`) and torch is never imported; on other
torch devices (``device="cuda"``), or with ``kernel="torch"``, the splat is a ``scatter_add_``
of the eight trilinear corners (:mod:`cesped.reconstruction.accumulator`).

Example usage::

    from cesped.reconstruction.fourier import reconstruct
    volume, voxel_size = reconstruct("entry/particles_0.star", symmetry="C2", device="cpu")
"""

from __future__ import annotations

import numpy as np

from cesped.reconstruction._inputs import (
    AUTO_POINTS_PER_CHUNK,
    Variant,
    load_star,
    particle_weights,
    pose_arrays,
    slice_plane_order,
)
from cesped.reconstruction.numba_grid import NumbaGrid, insert_star_chunks, numba_available

# also available here, imported on first use (they need torch): FourierAccumulator,
# soft_mask_outside_map (see cesped.reconstruction.accumulator)
__all__ = ["reconstruct", "reconstruct_many"]


def reconstruct(
    star,
    images=None,
    symmetry: str = "C1",
    weights=None,
    device="cpu",
    batch_size: int | None = None,
    pad: int = 2,
    n_threads: int | None = None,
    ctf: bool = True,
    kernel: str = "auto",
    gridding: str = "iterative",
):
    """Reconstruct a map from particle images, poses, shifts and CTFs of a RELION star file.

    Parameters
    ----------
    star : StarFile or path
        Particles with ``rlnImageName``, ``rlnAngleRot/Tilt/Psi`` (degrees),
        ``rlnOriginXAngst/YAngst`` (Å, optional) and CTF columns; optics with
        ``rlnImagePixelSize`` (Å/px) and ``rlnImageSize``.
    images : ImageSource, optional
        Where the images are read; default ``ImageSource.from_star(star)``.
    symmetry : str
        Point group, e.g. "C1", "C2", "D2".
    weights : array-like (n_particles,) or str, optional
        Per-particle weights (or the name of a column, e.g. ``"rlnParticleFigureOfMerit"``)
        multiplying both ``CTF·F`` and ``CTF²`` (RELION's ``--fom_weighting``).
    device : str or torch.device
        "cpu" (default; compiled numba loops, no torch) or a torch device such as "cuda".
    batch_size : int, optional
        Images per chunk (default: about 2**20 Fourier points per chunk).
    pad : int
        Fourier padding factor (RELION ``--pad``).
    n_threads : int, optional
        CPU threads (numba default: ``OMP_NUM_THREADS`` or the usable CPUs; on the torch path
        torch's intra-op threads during the call, default unchanged).
    ctf : bool
        Apply CTF weighting (RELION ``--ctf``).
    kernel : {"auto", "numba", "torch"}
        "auto": numba on CPU when installed, else torch; "numba" fails unless it can run.
    gridding : {"iterative", "skip"}
        "iterative" (default): RELION's iterative gridding weights, as ``relion_reconstruct``
        runs by default (and as the original CESPED package ran it);
        "skip": ``data / weight``, RELION's ``--skip_gridding`` (faster; same FSC, but Pearson
        correlations over the whole box about 0.02 higher). See
        :mod:`cesped.reconstruction.gridding`.

    Returns
    -------
    volume : np.ndarray float32 (n, n, n)
        Indexed ``(z, y, x)``, centre at ``n // 2``, on the scale of the source map.
    voxel_size : float
        Å/voxel (the pixel size of the first optics group).
    """
    vols, voxel_size = reconstruct_many(
        star,
        [{"weights": weights}],
        images=images,
        symmetry=symmetry,
        device=device,
        batch_size=batch_size,
        pad=pad,
        n_threads=n_threads,
        ctf=ctf,
        kernel=kernel,
        gridding=gridding,
    )
    return vols[0], voxel_size


def reconstruct_many(
    star,
    poses,
    images=None,
    symmetry: str = "C1",
    device="cpu",
    batch_size: int | None = None,
    pad: int = 2,
    n_threads: int | None = None,
    ctf: bool = True,
    kernel: str = "auto",
    gridding: str = "iterative",
):
    """Several maps from the same images and CTFs with different poses, reading the images once.

    E.g. the ground-truth and the predicted-pose half-map of one half-set: each chunk of images
    is read, transformed, centred and CTF-weighted once (once per distinct shifts/weights) and
    inserted into one accumulator per pose set. Memory: one accumulator per map, independent
    of the number of particles.

    Parameters
    ----------
    star, images, symmetry, device, batch_size, pad, n_threads, ctf, kernel, gridding
        As in :func:`reconstruct`.
    poses : sequence of dict
        One per map, with optional keys ``"angles"`` (n_particles, 3) ZYZ Euler angles in
        degrees (RELION's rot, tilt, psi), ``"shifts_A"`` (n_particles, 2) origin shifts
        ``[x, y]`` in Å, and ``"weights"`` (array (n_particles,) or column name, as in
        :func:`reconstruct`). A missing key takes the star file's values (no weights).

    Returns
    -------
    volumes : list of np.ndarray float32 (n, n, n)
        One per entry of ``poses``, as :func:`reconstruct` returns them.
    voxel_size : float
        Å/voxel.
    """
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.geometry.symmetry import symmetry_matrices_np
    from cesped.io.stack import ImageSource
    from cesped.io.star import particle_optics

    st = load_star(star)
    parts = particle_optics(st)
    n_part = len(parts)
    if n_part == 0:
        raise ValueError("reconstruct: the star file has no particles")
    poses = list(poses)
    if not poses:
        raise ValueError("reconstruct_many: poses is empty")
    for p in poses:
        if not isinstance(p, dict) or set(p) - {"angles", "shifts_A", "weights"}:
            raise ValueError("reconstruct_many: each pose set must be a dict of angles/shifts_A/weights")
    if kernel not in ("auto", "torch", "numba"):
        raise ValueError(f"kernel must be 'auto', 'torch' or 'numba', got {kernel!r}")
    if gridding not in ("iterative", "skip"):
        raise ValueError(f"gridding must be 'iterative' or 'skip', got {gridding!r}")
    src = images if images is not None else ImageSource.from_star(st)
    if len(src) != n_part:
        raise ValueError(f"reconstruct: image source has {len(src)} images for {n_part} particles")
    ny, nx = src.image_shape
    if ny != nx:
        raise ValueError(f"reconstruct: images must be square, got {ny}x{nx}")
    box = int(nx)
    px = np.unique(parts["rlnImagePixelSize"].to_numpy(dtype=np.float64))
    if px.size != 1:
        raise ValueError(f"reconstruct: particles have different pixel sizes {px.tolist()}")
    voxel_size = float(px[0])
    variants = []
    for p in poses:
        angles, shifts = pose_arrays(parts, p.get("angles"), p.get("shifts_A"))
        w = particle_weights(parts, p.get("weights"))
        if w is not None and np.all(w == 1.0):
            w = None  # the same values as no weights: lets variants share their prepared values
        variants.append(Variant(euler_to_matrix(angles), shifts / voxel_size, w))
    sym = symmetry_matrices_np(symmetry)
    on_cpu = str(getattr(device, "type", device)).split(":")[0] == "cpu"
    use_numba = kernel != "torch" and on_cpu and numba_available()
    if kernel == "numba" and not use_numba:
        raise ValueError("kernel='numba' needs numba installed and device='cpu'")
    order = slice_plane_order(variants[0].rotmats)
    vols = []
    if use_numba:
        grids = [NumbaGrid(box, pad, sym, n_threads) for _ in variants]
        batch_size = _chunk_size(batch_size, grids[0].n_points, sym.shape[0])
        insert_star_chunks(grids, src, parts, order, variants, batch_size, ctf, voxel_size)
        for i in range(len(grids)):
            vols.append(grids[i].finalize(gridding=gridding, release=True))
            grids[i] = None  # free the grid before the next map's finalize
        return vols, voxel_size
    import torch

    from cesped.reconstruction.accumulator import FourierAccumulator, insert_star_chunks_torch, torch_threads

    dev = torch.device(device)
    accs = [
        FourierAccumulator(box, pad=pad, symmetry_matrices=sym, device=dev, kernel="torch") for _ in variants
    ]
    batch_size = _chunk_size(batch_size, accs[0].n_points, sym.shape[0])
    with torch_threads(n_threads), torch.no_grad():
        insert_star_chunks_torch(accs, src, parts, order, variants, batch_size, ctf)
        for i in range(len(accs)):
            vols.append(accs[i].finalize(gridding=gridding).cpu().numpy())
            accs[i] = None
    return vols, voxel_size


def _chunk_size(batch_size: int | None, n_points: int, n_sym: int) -> int:
    """Images per chunk: as given, else about ``AUTO_POINTS_PER_CHUNK`` inserted points."""
    if batch_size is not None:
        return int(batch_size)
    return max(1, AUTO_POINTS_PER_CHUNK // max(1, n_points * n_sym))


def __getattr__(name: str):
    # the torch classes live in cesped.reconstruction.accumulator; imported on first use so that
    # importing this module (the evaluation does) does not import torch
    if name in ("FourierAccumulator", "soft_mask_outside_map"):
        from cesped.reconstruction import accumulator

        return getattr(accumulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
