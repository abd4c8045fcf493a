"""Place an atomic model in RELION's symmetry frame (``Cn`` about Z) and centre it.

For a cyclic symmetry ``Cn`` (n > 1) the model must contain at least two chains related by the
symmetry. The Cα atoms (residue numbers common to both chains) of the first chain are
superposed onto those of the second (Kabsch); the rotation must be a multiple of 360°/n
(within ``angle_tolerance``). Its axis (the eigenvector of the symmetric part of the rotation
with eigenvalue 1) and a point on it (least squares solution of ``(I - R) p = t``) define the
symmetry axis, which is rotated onto +Z and moved through the origin. The atom list can then be
symmetrised: all ``n`` copies ``Rz(360 k / n) x`` are kept with weight ``1/n`` each, which makes
the potential exactly ``Cn``-symmetric (parts that break the symmetry, such as an asymmetric
ligand, are averaged). Finally the model is translated so that its centre of mass is at the
origin (for a symmetrised model this is a translation along Z only).
"""

from __future__ import annotations

import math

import numpy as np

from cesped.geometry.symmetry import normalize_symmetry, symmetry_order
from cesped.physics.potential import AtomicModel

__all__ = ["kabsch", "find_cyclic_axis", "rotation_to_z", "align_and_symmetrize"]


def kabsch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Rigid transform minimising ``|| R a + t - b ||`` over paired points.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(N, 3)`` paired positions (Å), N >= 3.

    Returns
    -------
    (R, t, rmsd) : (3, 3) proper rotation, (3,) translation (Å), RMS deviation (Å).
    """
    ca, cb = a.mean(0), b.mean(0)
    h = (a - ca).T @ (b - cb)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    t = cb - rot @ ca
    rmsd = float(np.sqrt(((a @ rot.T + t - b) ** 2).sum(1).mean()))
    return rot, t, rmsd


def _ca_by_residue(chain) -> dict:
    import gemmi

    out = {}
    for res in chain:
        atom = res.find_atom("CA", "*", gemmi.Element("C"))
        if atom is not None and res.het_flag != "H":
            out[(res.seqid.num, res.seqid.icode)] = np.array(atom.pos.tolist())
    return out


def find_cyclic_axis(structure, order: int, angle_tolerance: float = 10.0) -> dict:
    """Symmetry axis of a ``C{order}`` oligomer from the superposition of its first two chains.

    Parameters
    ----------
    structure : gemmi.Structure
        Model whose first model has >= 2 protein chains with common residue numbers.
    order : int
        n of ``Cn`` (>= 2).
    angle_tolerance : float
        Allowed deviation (degrees) of the superposition angle from a multiple of 360/n.

    Returns
    -------
    dict
        ``axis`` (3,) unit vector, ``point`` (3,) Å on the axis, ``angle`` (degrees),
        ``rmsd`` (Å), ``chains`` (the two chain names), ``n_pairs``.

    Raises
    ------
    ValueError
        Fewer than two chains with >= 3 common Cα, or an angle that does not fit ``Cn``.
    """
    chains = []
    for ch in structure[0]:
        ca = _ca_by_residue(ch)
        if len(ca) >= 3:
            chains.append((ch.name, ca))
    if len(chains) < 2:
        raise ValueError(
            f"C{order} alignment needs at least two protein chains; found {len(chains)} with Cα atoms"
        )
    (name_a, ca_a), (name_b, ca_b) = chains[0], chains[1]
    common = sorted(set(ca_a) & set(ca_b))
    if len(common) < 3:
        raise ValueError(f"chains {name_a} and {name_b} share fewer than 3 residue numbers")
    a = np.stack([ca_a[k] for k in common])
    b = np.stack([ca_b[k] for k in common])
    rot, t, rmsd = kabsch(a, b)
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rot) - 1.0) / 2.0))))
    step = 360.0 / order
    k = round(angle / step)
    if k == 0 or abs(angle - k * step) > angle_tolerance:
        raise ValueError(
            f"chains {name_a}/{name_b} are related by a {angle:.1f}° rotation, not a multiple of "
            f"{step:.1f}° (C{order})"
        )
    sym = (rot + rot.T) / 2.0
    w, v = np.linalg.eigh(sym)
    axis = v[:, int(np.argmax(w))]
    if axis[int(np.argmax(np.abs(axis)))] < 0:
        axis = -axis
    point, *_ = np.linalg.lstsq(np.eye(3) - rot, t, rcond=None)
    point = point - axis * float(point @ axis)  # closest point to the origin on the axis
    # keep the point near the molecule: move it to the projection of the CA centroid
    centroid = np.concatenate([a, b]).mean(0)
    point = point + axis * float((centroid - point) @ axis)
    return {
        "axis": axis,
        "point": point,
        "angle": angle,
        "rmsd": rmsd,
        "chains": [name_a, name_b],
        "n_pairs": len(common),
    }


def rotation_to_z(axis: np.ndarray) -> np.ndarray:
    """Proper rotation ``Q`` (3, 3) with ``Q @ axis = [0, 0, 1]`` (smallest rotation)."""
    u = np.asarray(axis, dtype=np.float64)
    u = u / np.linalg.norm(u)
    z = np.array([0.0, 0.0, 1.0])
    c = float(u @ z)
    v = np.cross(u, z)
    s = float(np.linalg.norm(v))
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]]) / s
    angle = math.atan2(s, c)
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def align_and_symmetrize(
    model: AtomicModel,
    symmetry: str,
    structure=None,
    symmetrize: bool = True,
    angle_tolerance: float = 10.0,
) -> tuple[AtomicModel, dict]:
    """Put a model in the simulation frame: symmetry axis on Z, centre of mass at the origin.

    Parameters
    ----------
    model : AtomicModel
        Atoms read from ``structure`` (same file).
    symmetry : str
        ``"C1"`` or ``"Cn"``; other groups raise ``ValueError`` (no automatic alignment).
    structure : gemmi.Structure, optional
        Needed for ``Cn`` with n > 1 (chain superposition).
    symmetrize : bool
        For ``Cn``, replace the atoms by their n symmetry copies with weight ``1/n``.
    angle_tolerance : float
        See :func:`find_cyclic_axis`.

    Returns
    -------
    (model, info)
        Transformed model (for symmetry copies the occupancies carry the ``1/n`` weight) and a
        JSON-serialisable dict describing the alignment.
    """
    sym = normalize_symmetry(symmetry)
    info: dict = {"symmetry": sym}
    if sym == "C1":
        com = model.centre_of_mass()
        info.update({"aligned": False, "centre_of_mass_A": com.tolist()})
        return model.with_coords(model.coords - com), info
    if not sym.startswith("C"):
        raise ValueError(
            f"symmetry {sym}: automatic alignment supports only C1 and Cn; give a model or map already "
            "in RELION's frame for dihedral/cubic groups"
        )
    order = symmetry_order(sym)
    if structure is None:
        raise ValueError(f"symmetry {sym}: the gemmi structure is needed to find the symmetry axis")
    found = find_cyclic_axis(structure, order, angle_tolerance)
    q = rotation_to_z(found["axis"])
    coords = (model.coords - found["point"]) @ q.T
    if symmetrize:
        copies, elements, bfac, occ, mass, chains = [], [], [], [], [], []
        for k in range(order):
            a = 2 * math.pi * k / order
            c, sn = math.cos(a), math.sin(a)
            rz = np.array([[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]])
            copies.append(coords @ rz.T)
            elements.append(model.elements)
            bfac.append(model.bfactors)
            occ.append(model.occupancies / order)
            mass.append(model.masses)
            chains.append(model.chains)
        model = AtomicModel(
            np.concatenate(copies),
            np.concatenate(elements),
            np.concatenate(bfac),
            np.concatenate(occ),
            np.concatenate(mass),
            np.concatenate(chains),
            model.source,
        )
    else:
        model = model.with_coords(coords)
    com = model.centre_of_mass()
    model = model.with_coords(model.coords - com)
    info.update(
        {
            "aligned": True,
            "symmetrized": bool(symmetrize),
            "axis_in_model_frame": found["axis"].tolist(),
            "axis_point_A": found["point"].tolist(),
            "chain_superposition_angle_deg": found["angle"],
            "chain_superposition_rmsd_A": found["rmsd"],
            "chains": found["chains"],
            "n_ca_pairs": found["n_pairs"],
            "rotation_to_z": q.tolist(),
        }
    )
    return model, info
