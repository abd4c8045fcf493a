"""Tiny atomic models built with gemmi (tests only)."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import gemmi
import numpy as np


def make_structure(chains: dict[str, list[tuple[str, str, tuple[float, float, float]]]]) -> gemmi.Structure:
    """``{chain: [(atom_name, element, (x, y, z)), ...]}``; one residue (ALA) per atom, numbered 1, 2, ..."""
    st = gemmi.Structure()
    model = gemmi.Model("1")
    for cname, atoms in chains.items():
        ch = gemmi.Chain(cname)
        for i, (name, el, xyz) in enumerate(atoms):
            res = gemmi.Residue()
            res.name = "ALA"
            res.seqid = gemmi.SeqId(str(i + 1))
            res.het_flag = "A"
            atom = gemmi.Atom()
            atom.name = name
            atom.element = gemmi.Element(el)
            atom.pos = gemmi.Position(*xyz)
            atom.occ = 1.0
            atom.b_iso = 20.0
            res.add_atom(atom)
            ch.add_residue(res)
        model.add_chain(ch)
    st.add_model(model)
    st.setup_entities()
    return st


def write_structure(st: gemmi.Structure, path: Path) -> Path:
    """Write as .pdb/.cif, optionally compressed (.gz/.bz2), chosen by the suffixes of ``path``."""
    suffixes = path.suffixes
    text = st.make_mmcif_document().as_string() if ".cif" in suffixes else st.make_pdb_string()
    if suffixes[-1] == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    elif suffixes[-1] == ".bz2":
        with bz2.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def random_chain(n: int, seed: int, spread: float = 8.0) -> list[tuple[str, str, tuple[float, float, float]]]:
    rng = np.random.default_rng(seed)
    pts = rng.normal(0, spread, (n, 3))
    els = rng.choice(["C", "N", "O", "S"], n, p=[0.6, 0.2, 0.17, 0.03])
    return [("CA", str(e), tuple(float(v) for v in p)) for e, p in zip(els, pts)]
