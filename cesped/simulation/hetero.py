"""Conformational heterogeneity of synthetic entries: discrete states and a linear morph.

Two kinds of heterogeneous entries are simulated by :func:`cesped.simulation.entry.simulate_entry`
when it is given several structures:

* **states** (``weights``): each particle is one of ``K`` structures, in exact proportions
  ``weights`` (largest-remainder rounding, random assignment). Its 1-based state is written to
  ``rlnClassNumber`` (:data:`STATE_COLUMN`).
* **morph** (``morph=True``, two structures with the same atoms in the same order): each particle
  has a coordinate ``t`` in [0, 1], written to :data:`MORPH_COLUMN` (``cespedMorphCoordinate``;
  0 = first structure, 1 = second), and its atoms are at ``(1 - t)·x_first + t·x_second``. This
  is a **simple linear morph** of the coordinates, not a physical transition path (atoms move on
  straight lines; bond lengths are not kept). ``t`` is drawn uniformly from ``n_frames`` evenly
  spaced values (frames, default 33: a step of 1/32) so that every image is the exact projection
  of its particle's potential with one potential per frame (as CryoBench's IgG-1D draws from
  100 frames). The largest atom step between frames is recorded
  (``max_atom_step_between_frames_A``, 0.6 Å for adenylate kinase with 33 frames).

Frames. The structures are read in the files' frames; when they have the same atoms, every
structure after the first is superposed on the first (Kabsch, all atoms kept, equal weights);
then all are translated by one common vector so that the mean of their centres of mass is at
the box centre. Heterogeneous entries support point group C1 only.

The built-in adenylate kinase models (``adk_open``, ``adk_closed``) are CHARMM-prepared PDB files
without element columns and with left-justified atom names; gemmi's guess from columns 13-14
would make ``CD1`` cadmium, so their elements are taken from the first letter of the atom name
(all atoms are H, C, N, O or S).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cesped.physics.potential import AtomicModel, read_atoms, read_structure
from cesped.simulation.alignment import kabsch
from cesped.simulation.presets import BUILTIN_STRUCTURES, resolve_structure

__all__ = [
    "STATE_COLUMN",
    "MORPH_COLUMN",
    "Conformation",
    "check_weights",
    "read_conformations",
    "state_counts",
]

#: Star column of the 1-based state of each particle (discrete heterogeneity).
STATE_COLUMN = "rlnClassNumber"
#: Star column of the morph coordinate t in [0, 1] of each particle (continuous heterogeneity).
MORPH_COLUMN = "cespedMorphCoordinate"

#: Built-in models whose elements come from the first letter of the atom name (no element column).
_ELEMENTS_FROM_NAMES = {"adk_open", "adk_closed"}
_WATERS = {"HOH", "WAT", "H2O", "DOD", "SOL"}


@dataclass
class Conformation:
    """One structure of a heterogeneous entry, in the common simulation frame."""

    name: str  # as given (built-in name or file name)
    source: Path
    model: AtomicModel
    identities: list  # (chain, residue number, insertion code, residue name, atom name) per atom


def check_weights(weights, n_structures: int) -> np.ndarray:
    """Mixture weights of the states: ``n_structures`` non-negative numbers summing to one.

    Raises
    ------
    ValueError
        Wrong count, negative or non-finite values, or a sum that is not 1 (within 1e-6).
    """
    try:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"weights must be numbers, got {weights!r}") from exc
    if w.size != n_structures:
        raise ValueError(f"weights has {w.size} values for {n_structures} structures: {weights!r}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be finite and >= 0, got {weights!r}")
    if abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights {tuple(w.tolist())} sum to {w.sum():.6g}, not 1")
    return w


def state_counts(weights: np.ndarray, n: int) -> np.ndarray:
    """Particles per state, ``round(w·n)`` by largest remainders (the counts sum to ``n``)."""
    raw = weights * n
    counts = np.floor(raw).astype(np.int64)
    rest = n - int(counts.sum())
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts


def _read(structure, hydrogens: bool) -> Conformation:
    source = resolve_structure(structure)
    key = str(structure).lower()
    if source.suffix.lower() in (".mrc", ".map", ".ccp4"):
        raise ValueError(f"structure {structure!r}: heterogeneous entries need atomic models, not maps")
    st = read_structure(source)
    if key in _ELEMENTS_FROM_NAMES:
        import gemmi

        for cra in st[0].all():
            cra.atom.element = gemmi.Element(cra.atom.name[0])
    # the same filters, in the same order, as cesped.physics.potential.read_atoms
    ids = []
    for chain in st[0]:
        for res in chain:
            if res.is_water() or res.name in _WATERS:
                continue
            for atom in res:
                if not hydrogens and atom.element.is_hydrogen:
                    continue
                ids.append((chain.name, res.seqid.num, res.seqid.icode, res.name, atom.name))
    model = read_atoms(st, hydrogens=hydrogens)
    if len(ids) != len(model):  # pragma: no cover - guards the filters above against drift
        raise RuntimeError(f"{source.name}: atom identities and coordinates disagree")
    name = str(structure) if key in BUILTIN_STRUCTURES else source.name
    return Conformation(name=name, source=source, model=model, identities=ids)


def _first_difference(a: list, b: list) -> str:
    if len(a) != len(b):
        return f"{len(a)} atoms against {len(b)}"
    i = next(k for k in range(len(a)) if a[k] != b[k])
    return f"atom {i} is {a[i]} against {b[i]}"


def read_conformations(structures, hydrogens: bool = False, morph: bool = False) -> tuple[list, dict]:
    """Read the structures and put them in one frame (see the module docstring).

    Parameters
    ----------
    structures : sequence of str or path
        Built-in names or PDB/mmCIF files (at least 2).
    hydrogens : bool
        Keep hydrogens.
    morph : bool
        Exactly two structures with the same atoms are required.

    Returns
    -------
    (list[Conformation], dict)
        The conformations (coordinates in Å about the common centre) and a JSON-able description.

    Raises
    ------
    ValueError
        Fewer than 2 structures, a map, two structures instead of one for a morph, or structures
        with different atoms for a morph (the message names both files and the first difference).
    FileNotFoundError
        Unknown structure.
    """
    structures = list(structures)
    if len(structures) < 2:
        raise ValueError(f"a heterogeneous entry needs at least 2 structures, got {structures!r}")
    if morph and len(structures) != 2:
        raise ValueError(f"a morph needs exactly 2 structures, got {len(structures)}: {structures!r}")
    confs = [_read(s, hydrogens) for s in structures]
    first = confs[0]
    same = [c.identities == first.identities for c in confs[1:]]
    if morph and not same[0]:
        raise ValueError(
            f"morph: structures {confs[0].name} and {confs[1].name} must have the same atoms in the "
            f"same order; {_first_difference(first.identities, confs[1].identities)}"
        )
    info: dict = {"superposed_on": first.name, "superposition_rmsd_A": {}}
    for c, s in zip(confs[1:], same):
        if s:  # superpose on the first structure
            rot, t, rmsd = kabsch(c.model.coords, first.model.coords)
            c.model = c.model.with_coords(c.model.coords @ rot.T + t)
            info["superposition_rmsd_A"][c.name] = rmsd
        else:
            info["superposition_rmsd_A"][c.name] = None  # different atoms: file frame kept
    centre = np.mean([c.model.centre_of_mass() for c in confs], axis=0)
    for c in confs:
        c.model = c.model.with_coords(c.model.coords - centre)
    info["common_centre_in_first_file_frame_A"] = centre.tolist()
    info["n_atoms"] = [len(c.model) for c in confs]
    info["radius_A"] = [float(np.linalg.norm(c.model.coords, axis=1).max()) for c in confs]
    return confs, info


def morph_frames(a: AtomicModel, b: AtomicModel, n_frames: int) -> tuple[np.ndarray, list, float]:
    """Coordinates of ``n_frames`` evenly spaced frames of the linear morph ``a -> b``.

    Returns
    -------
    (t (n_frames,), list of (N, 3) coordinates, largest atom step between frames in Å)
    """
    if int(n_frames) != n_frames or n_frames < 2:
        raise ValueError(f"morph_frames must be an integer >= 2, got {n_frames!r}")
    t = np.linspace(0.0, 1.0, int(n_frames))
    coords = [(1.0 - tk) * a.coords + tk * b.coords for tk in t]
    step = float(np.linalg.norm(b.coords - a.coords, axis=1).max()) / (int(n_frames) - 1)
    return t, coords, step
