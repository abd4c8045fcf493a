"""Proper point-symmetry groups as rotation matrices, in RELION's axis conventions.

Supported names (case-insensitive): ``Cn`` (n >= 1), ``Dn`` (n >= 2), ``T``, ``O``, ``I`` and
``I1`` .. ``I4``. Each group is generated, as in RELION's ``src/symmetries.cpp``, from these
rotation axes and closed under multiplication:

=========  ==========================================================================
group      generators (fold, axis)
=========  ==========================================================================
``Cn``     n about z
``Dn``     n about z; 2 about x
``T``      3 about z; 2 about (0, 0.816496, 0.577350)
``O``      3 about (1, 1, 1)/√3; 4 about z
``I``      = ``I2``
``I1``     2 about x; 5 about (0.850651, 0, -0.525731); 3 about (0.934172, 0.356822, 0)
``I2``     2 about z; 5 about (0.525731, 0, 0.850651); 3 about (0, 0.356822, 0.934172)
``I3``     2 about (-0.525731, 0, 0.850651); 5 about z; 3 about (-0.491123, 0.356822, 0.794654)
``I4``     2 about (0.525731, 0, 0.850651); 5 about z; 3 about (0.491123, 0.356822, 0.794654)
=========  ==========================================================================

The element sets agree with ``relion_refine --print_symmetry_ops --sym <name>`` (RELION 3.1;
see ``tests/geometry/test_symmetry.py``). Improper groups (``Cnv``, ``Cnh``, ``Dnh``, ``Sn``,
``Ih``...) contain mirrors and are not pose symmetries; they raise ``ValueError``.

A symmetric volume ``V(S x) = V(x)`` makes the labels ``R`` and ``S · R`` equivalent (left
multiplication). The group is closed under inversion, so ``S`` and ``Sᵀ`` give the same set.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

__all__ = ["normalize_symmetry", "symmetry_matrices", "symmetry_matrices_np", "symmetry_order"]

_PHI = (1.0 + math.sqrt(5.0)) / 2.0
_GOLD_A = 1.0 / math.sqrt(1.0 + _PHI * _PHI)  # 0.525731...
_GOLD_B = _PHI / math.sqrt(1.0 + _PHI * _PHI)  # 0.850651...

# RELION also lists a three-fold axis for the icosahedral settings; the two-fold and five-fold
# below (31.72 degrees apart) already generate the 60 elements, and leaving the three-fold out
# avoids its 9-digit constants.
_GENERATORS: dict[str, list[tuple[int, tuple[float, float, float]]]] = {
    "T": [(3, (0.0, 0.0, 1.0)), (2, (0.0, math.sqrt(2.0 / 3.0), math.sqrt(1.0 / 3.0)))],
    "O": [(3, (1.0, 1.0, 1.0)), (4, (0.0, 0.0, 1.0))],
    "I1": [(2, (1.0, 0.0, 0.0)), (5, (_GOLD_B, 0.0, -_GOLD_A))],
    "I2": [(2, (0.0, 0.0, 1.0)), (5, (_GOLD_A, 0.0, _GOLD_B))],
    "I3": [(2, (-_GOLD_A, 0.0, _GOLD_B)), (5, (0.0, 0.0, 1.0))],
    "I4": [(2, (_GOLD_A, 0.0, _GOLD_B)), (5, (0.0, 0.0, 1.0))],
}
_ORDERS = {"T": 12, "O": 24, "I1": 60, "I2": 60, "I3": 60, "I4": 60}
_NAME_RE = re.compile(r"^([CD])([1-9][0-9]*)$")


def normalize_symmetry(name: str) -> str:
    """Canonical symmetry name: upper case, ``"I"`` kept as ``"I"`` (it means ``I2``).

    Parameters
    ----------
    name : str
        e.g. ``"c2"``, ``"D7"``, ``"t"``, ``"i"``, ``"I3"``.

    Returns
    -------
    str
        ``"C2"``, ``"D7"``, ``"T"``, ``"I"``, ``"I3"``...

    Raises
    ------
    ValueError
        Unknown or unsupported (improper, e.g. ``"C2v"``) name, or ``D1`` / ``C0``.
    """
    if not isinstance(name, str):
        raise ValueError(f"symmetry: expected a string such as 'C1', 'D2', 'I', got {name!r}")
    s = name.strip().upper()
    if s in ("T", "O", "I", "I1", "I2", "I3", "I4"):
        return s
    m = _NAME_RE.match(s)
    if m and not (m.group(1) == "D" and int(m.group(2)) < 2):
        return s
    raise ValueError(
        f"symmetry: unknown or unsupported symmetry {name!r}; expected Cn (n>=1), Dn (n>=2), T, O, I, I1-I4"
    )


def symmetry_order(name: str) -> int:
    """Number of elements of the group ``name`` (C4: 4, D7: 14, T: 12, O: 24, I: 60)."""
    s = normalize_symmetry(name)
    if s[0] == "C" and s[1:].isdigit():
        return int(s[1:])
    if s[0] == "D" and s[1:].isdigit():
        return 2 * int(s[1:])
    return _ORDERS["I2" if s == "I" else s]


def _axis_rotation(fold: int, axis, k: int) -> np.ndarray:
    u = np.asarray(axis, dtype=np.float64)
    u = u / np.linalg.norm(u)
    a = 2.0 * math.pi * k / fold
    ux = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return np.cos(a) * np.eye(3) + np.sin(a) * ux + (1.0 - np.cos(a)) * np.outer(u, u)


def _close(generators: list[np.ndarray], order: int) -> np.ndarray:
    """Close a set of rotations under multiplication (breadth-first, identity first)."""
    elems = [np.eye(3)]
    keys = {tuple(np.round(elems[0], 6).ravel() + 0.0)}
    frontier = list(elems)
    while frontier:
        new = []
        for a in frontier:
            for g in generators:
                m = g @ a
                key = tuple(np.round(m, 6).ravel() + 0.0)
                if key not in keys:
                    keys.add(key)
                    elems.append(m)
                    new.append(m)
        frontier = new
        if len(elems) > order:
            break
    if len(elems) != order:  # cannot happen for the tables above; guards against a bad edit
        raise RuntimeError(f"symmetry: generated {len(elems)} elements, expected {order}")
    out = np.stack(elems)
    # project back onto SO(3) to remove the rounding accumulated along products
    u, _, vt = np.linalg.svd(out)
    return u @ vt


@functools.lru_cache(maxsize=64)
def _matrices_np(canonical: str) -> np.ndarray:
    kind = canonical[0]
    if kind in "CD" and canonical[1:].isdigit():
        n = int(canonical[1:])
        cyc = np.stack([_axis_rotation(n, (0, 0, 1), k) for k in range(n)])
        if kind == "C":
            return cyc
        flip = _axis_rotation(2, (1, 0, 0), 1)
        return np.concatenate([cyc, cyc @ flip])
    key = "I2" if canonical == "I" else canonical
    gens = [_axis_rotation(f, ax, 1) for f, ax in _GENERATORS[key]]
    return _close(gens, _ORDERS[key])


def symmetry_matrices_np(name: str) -> np.ndarray:
    """:func:`symmetry_matrices` as a float64 numpy array (G, 3, 3), without importing torch.

    Returns a fresh copy (the cached group is not exposed to in-place edits).
    """
    return _matrices_np(normalize_symmetry(name)).copy()


def symmetry_matrices(name: str, dtype=None, device=None):
    """Rotation matrices of a point group in RELION's axis convention.

    Parameters
    ----------
    name : str
        Symmetry name (see :func:`normalize_symmetry`).
    dtype : torch.dtype, optional
        float32 or float64 (default).
    device : torch.device, optional

    Returns
    -------
    torch.Tensor (G, 3, 3)
        Element 0 is the identity. ``Cn``: rotations by 360k/n about z; ``Dn``: those, then the
        same composed with the two-fold about x.
    """
    import torch  # here, not at import: the evaluation uses this module without torch

    mats = _matrices_np(normalize_symmetry(name))
    return torch.tensor(mats, dtype=torch.float64 if dtype is None else dtype, device=device)
