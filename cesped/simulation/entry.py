"""Simulate a benchmark entry: particles with exact poses from an atomic model (or a map).

Image formation, per particle ``i`` (all in the box of ``box`` pixels at ``pixel_size`` Å/px)::

    signal_i = IFFT( CTF_i · shift_{-o_i/px}( FFT( P(V, R_i) ) ) )
    image_i  = scale · signal_i + n_i,      n_i ~ N(0, 1) white, i.i.d. per pixel

* ``V``: the potential (:mod:`cesped.physics.potential`, volts, voxel averages), centred on
  the model's centre of mass (after symmetry alignment, see :mod:`cesped.simulation.alignment`).
* ``P(V, R)``: the projection at the pose label ``R = Aᵀ`` (:func:`cesped.physics.projection.project`).
* ``o_i``: the RELION origin (``rlnOriginXAngst/YAngst``), so ``image(x) = projection(x + o)``.
* ``CTF_i``: RELION's CTF (:func:`cesped.physics.ctf.compute_ctf`) applied in the box (no
  padding, the same model ``relion_reconstruct --ctf`` inverts).

**SNR.** ``snr = mean_i var(scale · signal_i) / var(n)``, where ``var(signal_i)`` is the
variance of the noiseless, CTF-modulated, shifted projection over **all** ``box²`` pixels of
the image (so it depends on the box: a larger box with the same particle lowers it), and the
mean runs over all particles of the entry. The noise is the same for every particle
(``var(n) = 1``); ``scale = sqrt(snr / mean_i var(signal_i))`` is computed exactly in a first
pass over the noiseless signals. ``snr=None`` writes noiseless images with
``scale = 1 / sqrt(mean_i var(signal_i))``.

Random numbers: every parameter comes from ``numpy.random.default_rng(seed)`` drawn in a fixed
order, and the noise of chunk ``c`` of half ``h`` from ``default_rng([seed, h, c])`` (the
effective ``chunk_size`` is recorded in ``generation.json``); so the same arguments give
byte-identical files (on the same software stack).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cesped.geometry.rotations import axis_angle_to_matrix, matrix_to_euler, quaternion_to_matrix
from cesped.geometry.symmetry import normalize_symmetry
from cesped.io.atomic import atomic_open
from cesped.io.mrc import write_map
from cesped.io.stack import StackWriter
from cesped.io.star import StarFile, write_star
from cesped.physics.ctf import compute_ctf
from cesped.physics.fourier import centered_irfft2, shift_images
from cesped.physics.potential import (
    PENG_FACTORS,
    potential_from_map,
    read_atoms,
    read_structure,
    voxelize_atoms,
)
from cesped.physics.projection import Projector
from cesped.simulation.alignment import align_and_symmetrize
from cesped.simulation.masks import soft_mask_from_map
from cesped.simulation.presets import BUILTIN_STRUCTURES, resolve_structure

__all__ = ["simulate_entry", "ENTRY_FILES"]

#: Files of an entry; ``generation.json`` is written last and marks a complete entry.
ENTRY_FILES = (
    "particles_0.star",
    "particles_1.star",
    "particles_0.mrcs",
    "particles_1.mrcs",
    "info_0.json",
    "info_1.json",
    "gt_map.mrc",
    "mask.mrc",
    "generation.json",
)

_MAP_SUFFIXES = (".mrc", ".map", ".ccp4")
_CORRUPTION_NAMES = ("none", "jitter", "random")


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def _check_range(name: str, rng_, low_min: float = 0.0) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in rng_)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a (min, max) pair, got {rng_!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < low_min or hi < lo:
        raise ValueError(f"{name} must satisfy {low_min} <= min <= max, got {rng_!r}")
    return lo, hi


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _random_rotations(rng: np.random.Generator, n: int) -> torch.Tensor:
    q = torch.from_numpy(rng.standard_normal((n, 4)))
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return quaternion_to_matrix(q)


def _voxelize_model(model, name: str, pixel_size: float, box: int, bfactor: float, margin_a: float):
    """Potential of atoms given about the box centre; refuses a box too small for them."""
    known = np.array([e in PENG_FACTORS for e in model.elements])
    b_max = max((max(PENG_FACTORS[e][1]) for e in set(model.elements[known].tolist())), default=0.0) + bfactor
    sigma_max = math.sqrt(b_max / (8 * math.pi**2))
    r_max = float(np.linalg.norm(model.coords, axis=1).max())
    reach = r_max + 3.0 * sigma_max + margin_a
    if reach > box * pixel_size / 2:
        needed = 2 * math.ceil(reach / pixel_size)
        raise ValueError(
            f"box too small: {name} extends {r_max:.1f} Å from its centre of mass (plus "
            f"{3 * sigma_max:.1f} Å of atomic potential and {margin_a:.1f} Å of particle shifts); "
            f"a box of at least {needed} px at {pixel_size} Å/px is needed, got {box}"
        )
    return voxelize_atoms(
        model.coords, model.elements, pixel_size, box, bfactor=bfactor, weights=model.occupancies
    )


def _structure_list(structure) -> list:
    """One structure (str or path) or a sequence of them -> a list."""
    if isinstance(structure, (str, Path)):
        return [structure]
    try:
        items = list(structure)
    except TypeError:
        return [structure]
    if not items:
        raise ValueError("structure: an empty list of structures")
    return items


def _structure_label(structure) -> str:
    if str(structure).lower() in BUILTIN_STRUCTURES:
        return str(structure)
    return resolve_structure(structure).name


def _build_potential(
    source: Path,
    sym: str,
    pixel_size: float,
    box: int,
    bfactor: float,
    hydrogens: bool,
    symmetrize: bool,
    margin_a: float,
) -> tuple[np.ndarray, dict]:
    """Potential in the simulation frame and a description of how it was made."""
    if source.suffix.lower() in _MAP_SUFFIXES:
        vol = potential_from_map(source, pixel_size, box)
        return vol, {
            "kind": "map",
            "aligned": False,
            "symmetry": sym,
            "note": "map used in its own frame (no centring or symmetry alignment)",
        }
    structure = read_structure(source)
    model = read_atoms(structure, hydrogens=hydrogens)
    model, info = align_and_symmetrize(model, sym, structure=structure, symmetrize=symmetrize)
    r_max = float(np.linalg.norm(model.coords, axis=1).max())
    vol = _voxelize_model(model, source.name, pixel_size, box, bfactor, margin_a)
    info.update({"kind": "atomic_model", "n_atoms": int(len(model)), "radius_A": r_max})
    return vol, info


def simulate_entry(
    out_dir,
    structure,
    n_particles: int,
    pixel_size: float,
    box: int,
    snr: float | None,
    symmetry: str = "C1",
    seed: int = 0,
    defocus_range: tuple[float, float] = (10000.0, 25000.0),
    astigmatism_max: float = 1000.0,
    voltage: float = 300.0,
    spherical_aberration: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_range: tuple[float, float] = (0.0, 0.0),
    ctf_bfactor: float = 0.0,
    max_shift: float | None = None,
    rotations=None,
    bfactor: float = 0.0,
    hydrogens: bool = False,
    symmetrize: bool = True,
    jitter_fraction: float = 0.0,
    jitter_deg: float = 0.0,
    jitter_confidence: float = 0.5,
    random_fraction: float = 0.0,
    random_confidence: float = 0.1,
    pad: float = 2.0,
    chunk_size: int = 1024,
    overwrite: bool = False,
    progress: bool = True,
    weights=None,
    morph: bool = False,
    morph_frames: int = 33,
) -> Path:
    """Simulate a benchmark entry with exact ground-truth poses.

    Parameters
    ----------
    out_dir : path-like
        Entry directory (created). Files: ``particles_{0,1}.star``, ``particles_{0,1}.mrcs``,
        ``info_{0,1}.json``, ``gt_map.mrc``, ``mask.mrc``, ``generation.json`` (written last:
        its presence marks a complete entry), and ``true_poses_{0,1}.star`` when labels are
        corrupted.
    structure : str or path-like, or a sequence of them
        Built-in model name (``"6msm"``, ``"4e43"``, ``"adk_open"``, ``"adk_closed"``), a
        PDB/mmCIF file (plain, ``.gz``, ``.bz2``) or a cubic ``.mrc`` map (used in its own
        frame). Several atomic models make a heterogeneous entry (C1 only): discrete states
        mixed by ``weights``, or with ``morph`` a linear morph between two; see
        :mod:`cesped.simulation.hetero` for the frames and the star columns.
    n_particles : int
        Total number of particles (>= 2), split at random into two half-sets of
        ``ceil(n/2)`` and ``floor(n/2)``.
    pixel_size : float
        Å/px.
    box : int
        Image and map side in pixels (even, >= 16).
    snr : float or None
        Signal-to-noise ratio (> 0) as defined in the module docstring; ``None`` = no noise.
    symmetry : str
        Point group of the model. ``Cn`` models are aligned (n-fold on Z) and, with
        ``symmetrize``, made exactly symmetric; other groups need a model already in RELION's
        frame and are refused for atomic models.
    seed : int
        Seed of every random choice.
    defocus_range : (float, float)
        Range (Å) of the mean defocus ``(U + V) / 2``, drawn uniformly (default 1.0-2.5 µm).
    astigmatism_max : float
        ``U - V`` is uniform in ``[0, astigmatism_max]`` Å; the angle is uniform in [0°, 180°).
    voltage, spherical_aberration, amplitude_contrast : float
        kV, mm, fraction (written to the optics table).
    phase_shift_range : (float, float)
        Uniform range of the phase-plate shift in degrees, written as RELION's ``rlnPhaseShift``
        (column written only if non-zero).
    ctf_bfactor : float
        ``rlnCtfBfactor`` (Å², >= 0) of every particle (column written only if non-zero).
    max_shift : float, optional
        ``rlnOriginXAngst`` and ``rlnOriginYAngst`` are uniform in ``[-max_shift, max_shift]`` Å
        (default 3 pixels).
    rotations : array-like (n_particles, 3, 3), optional
        Pose labels ``R = Aᵀ`` to use instead of Haar-uniform random rotations.
    bfactor : float
        Global B-factor (Å²) of the atoms.
    hydrogens : bool
        Keep hydrogens present in the model.
    symmetrize : bool
        Average the symmetry copies of a ``Cn`` model (exact symmetry).
    jitter_fraction, jitter_deg, jitter_confidence : float
        Label corruption: a fraction of the particles gets a label rotated by a random axis and
        an angle uniform in ``[-jitter_deg, jitter_deg]``; their ``rlnMaxValueProbDistribution``
        is ``jitter_confidence`` (1.0 for clean labels).
    random_fraction, random_confidence : float
        Another fraction gets a fully random label and this confidence.
    pad : float
        Padding factor of the projector.
    chunk_size : int
        Particles per batch (memory stays flat; lowered automatically for large boxes).
    overwrite : bool
        Replace an existing complete entry instead of raising ``FileExistsError``.
    progress : bool
        Show a tqdm progress bar.
    weights : sequence of float, optional
        Several structures, discrete states: fraction of the particles in each state (non-negative,
        summing to 1; default equal). The state (1-based) is written to ``rlnClassNumber``, each
        state's noiseless map to ``gt_map_state{k}.mrc``, and ``gt_map.mrc`` is the particle
        average of the state maps.
    morph : bool
        Two structures with the same atoms: each particle's atoms are linearly interpolated at
        its coordinate ``t``, uniform over the ``morph_frames`` values ``k / (morph_frames - 1)``
        (written to ``cespedMorphCoordinate``); ``gt_map_state1.mrc`` and ``gt_map_state2.mrc``
        are the maps at t = 0 and 1, ``gt_map.mrc`` the particle average.
    morph_frames : int
        Number of values of ``t`` (>= 2; one potential each; see :mod:`cesped.simulation.hetero`).

    Returns
    -------
    pathlib.Path
        The entry directory.

    Raises
    ------
    ValueError
        Bad arguments (non-positive SNR, sizes, ranges, fractions), an empty model, a box too
        small for the model (the message gives the box needed), a non-cubic map; for several
        structures: weights not summing to 1 or of the wrong count, a morph of structures with
        different atoms or of other than two structures, a symmetry other than C1, a map.
    FileNotFoundError
        Unknown structure.
    FileExistsError
        ``out_dir`` already holds a complete entry and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    # ------------------------------------------------------------------ validation
    if int(n_particles) != n_particles or n_particles < 2:
        raise ValueError(f"n_particles must be an integer >= 2, got {n_particles!r}")
    n = int(n_particles)
    pixel_size = _check_positive("pixel_size", pixel_size)
    if int(box) != box or box < 16 or box % 2:
        raise ValueError(f"box must be an even integer >= 16, got {box!r}")
    box = int(box)
    if snr is not None:
        snr = _check_positive("snr", snr)
    sym = normalize_symmetry(symmetry)
    seed = int(seed)
    d_lo, d_hi = _check_range("defocus_range", defocus_range, low_min=0.0)
    astigmatism_max = _check_positive("astigmatism_max", astigmatism_max, allow_zero=True)
    if astigmatism_max / 2 > d_lo:
        raise ValueError("astigmatism_max must be at most twice the smallest defocus")
    voltage = _check_positive("voltage", voltage)
    spherical_aberration = _check_positive("spherical_aberration", spherical_aberration, allow_zero=True)
    amplitude_contrast = _check_positive("amplitude_contrast", amplitude_contrast, allow_zero=True)
    if amplitude_contrast >= 1:
        raise ValueError(f"amplitude_contrast must be < 1, got {amplitude_contrast}")
    ph_lo, ph_hi = _check_range("phase_shift_range", phase_shift_range, low_min=-360.0)
    ctf_bfactor = _check_positive("ctf_bfactor", ctf_bfactor, allow_zero=True)
    max_shift = 3.0 * pixel_size if max_shift is None else _check_positive("max_shift", max_shift, True)
    bfactor = _check_positive("bfactor", bfactor, allow_zero=True)
    fractions = {}
    for name, value in (
        ("jitter_fraction", jitter_fraction),
        ("random_fraction", random_fraction),
        ("jitter_confidence", jitter_confidence),
        ("random_confidence", random_confidence),
    ):
        v = _check_positive(name, value, allow_zero=True)
        if v > 1:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        fractions[name] = v
    if fractions["jitter_fraction"] + fractions["random_fraction"] > 1:
        raise ValueError("jitter_fraction + random_fraction must be <= 1")
    jitter_deg = _check_positive("jitter_deg", jitter_deg, allow_zero=True)
    pad = _check_positive("pad", pad)
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    chunk = max(1, min(int(chunk_size), (1 << 22) // (box * box)))

    structures = _structure_list(structure)
    hetero = None
    if len(structures) == 1:
        structure = structures[0]
        if weights is not None or morph:
            raise ValueError(f"weights and morph need several structures, got one: {structure!r}")
    else:
        from cesped.simulation import hetero as het

        if sym != "C1":
            raise ValueError(f"heterogeneous entries support symmetry C1 only, got {sym}")
        if morph:
            if weights is not None:
                raise ValueError("weights and morph are exclusive (a morph draws t uniformly)")
            if int(morph_frames) != morph_frames or morph_frames < 2:
                raise ValueError(f"morph_frames must be an integer >= 2, got {morph_frames!r}")
            hetero = {"kind": "morph", "column": het.MORPH_COLUMN}
        else:
            w = het.check_weights(
                np.full(len(structures), 1.0 / len(structures)) if weights is None else weights,
                len(structures),
            )
            hetero = {"kind": "states", "column": het.STATE_COLUMN, "weights": w.tolist()}

    out_dir = Path(out_dir)
    if (out_dir / "generation.json").exists() and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a simulated entry (generation.json); use overwrite=True"
        )
    # ------------------------------------------------------------------ potential and mask
    margin = math.sqrt(2.0) * max_shift
    if hetero is None:
        source = resolve_structure(structure)
        volume, model_info = _build_potential(
            source, sym, pixel_size, box, bfactor, hydrogens, symmetrize, margin_a=margin
        )
        volumes = [volume]
        mask = soft_mask_from_map(volume, pixel_size)
    else:
        confs, model_info = het.read_conformations(structures, hydrogens=hydrogens, morph=morph)
        model_info["kind"] = "atomic_models"
        if morph:
            t_frames, coords, step = het.morph_frames(confs[0].model, confs[1].model, int(morph_frames))
            models = [
                (f"{confs[0].name}->{confs[1].name} t={tk:.3f}", confs[0].model.with_coords(c))
                for tk, c in zip(t_frames, coords)
            ]
            hetero.update(
                {
                    "n_frames": int(morph_frames),
                    "max_atom_step_between_frames_A": step,
                    "t_grid": t_frames.tolist(),
                    "note": "linear morph of the atom coordinates; each particle's t is one of the "
                    "frames' (uniform over them) and its image is that frame's exact potential",
                }
            )
        else:
            models = [(c.name, c.model) for c in confs]
        volumes = [_voxelize_model(m, name, pixel_size, box, bfactor, margin) for name, m in models]
        hetero["structures"] = [c.name for c in confs]
        mask = soft_mask_from_map(np.max(volumes, axis=0), pixel_size)

    # ------------------------------------------------------------------ per-particle parameters
    rng = np.random.default_rng(seed)
    if rotations is None:
        true_rot = _random_rotations(rng, n)
    else:
        true_rot = torch.as_tensor(np.asarray(rotations, dtype=np.float64))
        if true_rot.shape != (n, 3, 3):
            raise ValueError(f"rotations must have shape ({n}, 3, 3), got {tuple(true_rot.shape)}")
    origins = rng.uniform(-max_shift, max_shift, size=(n, 2))  # Å, [x, y]
    mean_df = rng.uniform(d_lo, d_hi, size=n)
    astig = rng.uniform(0.0, astigmatism_max, size=n)
    defocus_u, defocus_v = mean_df + astig / 2, mean_df - astig / 2
    defocus_angle = rng.uniform(0.0, 180.0, size=n)
    phase = rng.uniform(ph_lo, ph_hi, size=n) if ph_hi > ph_lo else np.full(n, ph_lo)
    perm = rng.permutation(n)
    n0 = (n + 1) // 2
    halves = [np.sort(perm[:n0]), np.sort(perm[n0:])]
    # label corruption: kind 0 = clean, 1 = jitter, 2 = random
    kind = np.zeros(n, dtype=np.int64)
    order = rng.permutation(n)
    n_rand = int(round(fractions["random_fraction"] * n))
    n_jit = int(round(fractions["jitter_fraction"] * n))
    kind[order[:n_rand]] = 2
    kind[order[n_rand : n_rand + n_jit]] = 1
    label_rot = true_rot.clone()
    jit_axes = torch.from_numpy(rng.standard_normal((n, 3)))
    jit_angles = torch.from_numpy(rng.uniform(-jitter_deg, jitter_deg, size=n))
    rand_rot = _random_rotations(rng, n)
    is_jit = torch.from_numpy(kind == 1)
    is_rand = torch.from_numpy(kind == 2)
    if bool(is_jit.any()):
        delta = axis_angle_to_matrix(jit_axes[is_jit], jit_angles[is_jit])
        label_rot[is_jit] = delta @ true_rot[is_jit]
    label_rot[is_rand] = rand_rot[is_rand]
    # conformations (drawn last: homogeneous entries keep their random stream)
    vol_lo = np.zeros(n, dtype=np.int64)
    vol_hi = np.zeros(n, dtype=np.int64)
    blend = np.zeros(n)
    if hetero is not None and hetero["kind"] == "states":
        counts = het.state_counts(np.asarray(hetero["weights"]), n)
        vol_lo = vol_hi = np.repeat(np.arange(len(counts)), counts)[rng.permutation(n)]
        hetero["n_per_state"] = counts.tolist()
    elif hetero is not None:  # t uniform on the frames' grid
        vol_lo = vol_hi = rng.integers(0, len(volumes), size=n)
        morph_t = t_frames[vol_lo]
    coef = np.zeros((len(volumes), n))  # share of each volume in each particle's potential
    coef[vol_lo, np.arange(n)] += 1.0 - blend
    coef[vol_hi, np.arange(n)] += blend
    confidence = np.where(
        kind == 0, 1.0, np.where(kind == 1, fractions["jitter_confidence"], fractions["random_confidence"])
    )

    # ------------------------------------------------------------------ image formation
    projectors = [Projector(v, pad=pad, dtype=torch.float32) for v in volumes]
    if len(volumes) > 1:  # larger chunks: each volume's projections in batches of useful size
        chunk = max(chunk, min(chunk * len(volumes), (1 << 24) // (box * box)))
    rot32 = true_rot.to(torch.float32)
    shifts_px = torch.from_numpy(-origins / pixel_size).to(torch.float32)

    def projected(idx: np.ndarray) -> torch.Tensor:
        if len(projectors) == 1:
            return projectors[0].project_rfft(rot32[idx])
        out = None
        for v, proj in enumerate(projectors):  # projection is linear: blend the volumes' projections
            sel = np.flatnonzero(coef[v, idx] > 0)
            if sel.size == 0:
                continue
            part = proj.project_rfft(rot32[idx[sel]])
            part = part * torch.from_numpy(coef[v, idx[sel]]).to(torch.float32)[:, None, None]
            if out is None:
                out = torch.zeros((len(idx),) + tuple(part.shape[1:]), dtype=part.dtype)
            out[torch.from_numpy(sel)] += part
        return out

    def signal(idx: np.ndarray) -> torch.Tensor:
        ctf = compute_ctf(
            defocus_u[idx],
            defocus_v[idx],
            defocus_angle[idx],
            voltage,
            spherical_aberration,
            amplitude_contrast,
            pixel_size,
            box,
            phase_shift=phase[idx],
            bfactor=ctf_bfactor,
        )
        ft = shift_images(projected(idx) * ctf, shifts_px[idx], n=box)
        return centered_irfft2(ft, box)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "generation.json").unlink(missing_ok=True)
    bar = tqdm(total=2 * n, desc=f"simulating {out_dir.name}", unit="img", disable=not progress)
    signal_var = np.zeros(n)
    measured_noise_var = []
    with contextlib.ExitStack() as stack:  # both stacks appear only when both are complete
        writers = [
            stack.enter_context(StackWriter(out_dir / f"particles_{h}.mrcs", len(m), (box, box), pixel_size))
            for h, m in enumerate(halves)
        ]
        # pass 1: noiseless signals into the stacks, and their variances
        for h, members in enumerate(halves):
            for start in range(0, len(members), chunk):
                idx = members[start : start + chunk]
                sig = signal(idx).numpy()
                signal_var[idx] = sig.reshape(len(idx), -1).astype(np.float64).var(axis=1)
                writers[h].write(start, sig)
                bar.update(len(idx))
        mean_var = float(signal_var.mean())
        if not mean_var > 0:
            raise ValueError(f"{source.name}: the projections are empty (zero signal variance)")
        scale = math.sqrt((snr if snr is not None else 1.0) / mean_var)
        # pass 2: scale and add the noise in place
        for h, members in enumerate(halves):
            noise_sq, noise_count = 0.0, 0
            for c, start in enumerate(range(0, len(members), chunk)):
                img = np.float32(scale) * writers[h].read(start, chunk)
                if snr is not None:
                    noise = np.random.default_rng([seed, h, c]).standard_normal(img.shape, dtype=np.float32)
                    noise_sq += float(np.square(noise, dtype=np.float64).sum())
                    noise_count += noise.size
                    img += noise
                writers[h].write(start, img)
                bar.update(len(img))
            measured_noise_var.append(noise_sq / noise_count if noise_count else 0.0)
    bar.close()

    euler = matrix_to_euler(label_rot).numpy()
    true_euler = matrix_to_euler(true_rot).numpy()
    if hetero is None:
        state_maps = {}
    elif hetero["kind"] == "states":
        state_maps = {f"gt_map_state{k + 1}.mrc": v for k, v in enumerate(volumes)}
    else:  # the morph's end points
        state_maps = {"gt_map_state1.mrc": volumes[0], "gt_map_state2.mrc": volumes[-1]}
    state_map_names = sorted(state_maps)
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnAmplitudeContrast": [amplitude_contrast],
            "rlnSphericalAberration": [spherical_aberration],
            "rlnVoltage": [voltage],
            "rlnImagePixelSize": [pixel_size],
            "rlnImageSize": [box],
            "rlnImageDimensionality": [2],
        }
    )
    for h, members in enumerate(halves):
        stack_name = f"particles_{h}.mrcs"
        particles = pd.DataFrame(
            {
                "rlnImageName": [f"{k + 1:06d}@{stack_name}" for k in range(len(members))],
                "rlnAngleRot": euler[members, 0],
                "rlnAngleTilt": euler[members, 1],
                "rlnAnglePsi": euler[members, 2],
                "rlnOriginXAngst": origins[members, 0],
                "rlnOriginYAngst": origins[members, 1],
                "rlnDefocusU": defocus_u[members],
                "rlnDefocusV": defocus_v[members],
                "rlnDefocusAngle": defocus_angle[members],
            }
        )
        if ph_hi != 0 or ph_lo != 0:
            particles["rlnPhaseShift"] = phase[members]
        if hetero is not None and hetero["kind"] == "states":
            particles[het.STATE_COLUMN] = vol_lo[members] + 1
        elif hetero is not None:
            particles[het.MORPH_COLUMN] = morph_t[members]
        if ctf_bfactor != 0:
            particles["rlnCtfBfactor"] = np.full(len(members), ctf_bfactor)
        particles["rlnOpticsGroup"] = 1
        particles["rlnRandomSubset"] = h + 1
        particles["rlnMaxValueProbDistribution"] = confidence[members]
        write_star(out_dir / f"particles_{h}.star", StarFile(particles=particles, optics=optics.copy()))
        if (kind != 0).any():
            truth = pd.DataFrame(
                {
                    "rlnImageName": particles["rlnImageName"],
                    "rlnAngleRot": true_euler[members, 0],
                    "rlnAngleTilt": true_euler[members, 1],
                    "rlnAnglePsi": true_euler[members, 2],
                    "rlnOriginXAngst": origins[members, 0],
                    "rlnOriginYAngst": origins[members, 1],
                    "rlnOpticsGroup": 1,
                    "cespedLabelCorruption": [_CORRUPTION_NAMES[k] for k in kind[members]],
                }
            )
            write_star(out_dir / f"true_poses_{h}.star", StarFile(particles=truth, optics=optics.copy()))
        else:
            (out_dir / f"true_poses_{h}.star").unlink(missing_ok=True)
        info = {
            "symmetry": sym,
            "n_particles": int(len(members)),
            "image_size": box,
            "sampling_rate": pixel_size,
            "synthetic": True,
        }
        if hetero is not None:
            info["heterogeneity"] = {
                "kind": hetero["kind"],
                "column": hetero["column"],
                "state_maps": state_map_names,
            }
        with atomic_open(out_dir / f"info_{h}.json") as fh:
            json.dump(info, fh, indent=2, sort_keys=True)
            fh.write("\n")

    if hetero is not None:  # the particle average of the conformations' potentials
        volume = np.tensordot(coef.mean(axis=1), np.asarray(volumes), axes=1)
    write_map(out_dir / "gt_map.mrc", volume, pixel_size)
    write_map(out_dir / "mask.mrc", mask, pixel_size)
    for name, v in state_maps.items():
        write_map(out_dir / name, v, pixel_size)
    for stale in out_dir.glob("gt_map_state*.mrc"):
        if stale.name not in state_maps:
            stale.unlink()

    from cesped import __version__

    noise_var = float(np.average(measured_noise_var, weights=[len(m) for m in halves])) if snr else 0.0
    generation = {
        "cesped_version": __version__,
        "structure": _structure_label(structure) if hetero is None else hetero["structures"],
        "structure_sha256": _sha256(resolve_structure(structure))
        if hetero is None
        else [_sha256(c.source) for c in confs],
        "n_particles": n,
        "pixel_size": pixel_size,
        "box": box,
        "snr": snr,
        "symmetry": sym,
        "seed": seed,
        "defocus_range": [d_lo, d_hi],
        "astigmatism_max": astigmatism_max,
        "voltage": voltage,
        "spherical_aberration": spherical_aberration,
        "amplitude_contrast": amplitude_contrast,
        "phase_shift_range": [ph_lo, ph_hi],
        "ctf_bfactor": ctf_bfactor,
        "max_shift": max_shift,
        "rotations": "uniform" if rotations is None else "given",
        "bfactor": bfactor,
        "hydrogens": bool(hydrogens),
        "symmetrize": bool(symmetrize),
        "jitter_deg": jitter_deg,
        **fractions,
        "pad": pad,
        "chunk_size": chunk,
        "n_per_half": [int(len(m)) for m in halves],
        "n_jittered": int((kind == 1).sum()),
        "n_random": int((kind == 2).sum()),
        "model": model_info,
        **({"heterogeneity": hetero} if hetero is not None else {}),
        "image_scale": scale,
        "mean_signal_variance": mean_var * scale**2,
        "noise_variance": 1.0 if snr else 0.0,
        "sample_noise_variance": noise_var,
        "snr_definition": "mean over particles of the variance (over all box^2 pixels) of the noiseless "
        "CTF-modulated shifted projection, divided by the noise variance",
        "image_model": "image = image_scale * IFFT(CTF * shift(FFT(project(gt_map, R)), -origin/px))"
        " + N(0, 1)",
    }
    with atomic_open(out_dir / "generation.json") as fh:
        json.dump(generation, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return out_dir
