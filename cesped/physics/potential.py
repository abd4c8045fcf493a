"""Electrostatic (Coulomb) scattering potential of an atomic model, voxelised on a cubic grid.

Model
-----
Each atom contributes the potential whose electron scattering factor is Peng's five-Gaussian
fit (Peng, Ren, Dudarev & Whelan, Acta Cryst. A52, 257-276, 1996, Table 1: neutral atoms,
``0 <= s <= 6 Å⁻¹``; reprinted in International Tables Vol. C, Table 4.3.2.3)::

    f(s) = sum_i a_i exp(-b_i s^2),   s = sin(theta)/lambda = |q|/2   (a_i in Å, b_i in Å²)

Its Fourier transform gives the real-space potential (volts)::

    V(r) = C sum_i a_i (4 pi / b_i)^(3/2) exp(-4 pi^2 r^2 / b_i),   C = h^2 / (2 pi m0 e) = 47.878 V Å²

i.e. five isotropic Gaussians of standard deviation ``sigma_i = sqrt(b_i / (8 pi^2))`` whose
integrals are ``C a_i`` (V Å³). A B-factor ``B`` (Å²) is a Debye-Waller factor
``exp(-B s^2)`` and simply adds ``B`` to every ``b_i``.

Voxelisation: every voxel holds the **average** of ``V`` over its cube (the exact integral of
each Gaussian over the voxel, ``prod_d [erf(.) - erf(.)] / 2``, divided by the voxel volume),
so ``volume.sum() * pixel_size**3`` equals ``C sum_atoms sum_i a_i`` up to the truncation of
each Gaussian at 5 sigma. Voxel ``(k, j, i)`` (``z, y, x``) has its centre at
``((i, j, k) - box // 2) * pixel_size`` Å from the model's centre of mass.

Elements without tabulated factors (see :data:`PENG_FACTORS`) are **skipped with a
warning** (a :class:`UserWarning` naming the elements and the number of atoms).
"""

from __future__ import annotations

import bz2
import gzip
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # gemmi is imported lazily
    import gemmi

__all__ = [
    "PENG_FACTORS",
    "POTENTIAL_CONSTANT",
    "AtomicModel",
    "read_structure",
    "read_atoms",
    "voxelize_atoms",
    "potential_from_model",
    "potential_from_map",
    "required_box",
]

#: h² / (2 π m0 e) in V Å² (non-relativistic electron mass).
POTENTIAL_CONSTANT = 47.878

#: Peng et al. (1996) Table 1 (0 <= s <= 6 Å⁻¹): element -> ((a1..a5) Å, (b1..b5) Å²).
PENG_FACTORS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "H": ((0.0088, 0.0449, 0.1481, 0.2356, 0.0914), (0.1152, 1.0867, 4.9755, 16.5591, 43.2743)),
    "C": ((0.0489, 0.2091, 0.7537, 1.1420, 0.3555), (0.1140, 1.0825, 5.4281, 17.8811, 51.1341)),
    "N": ((0.0267, 0.1328, 0.5301, 1.1020, 0.4215), (0.0541, 0.5165, 2.8207, 10.6297, 34.3764)),
    "O": ((0.0365, 0.1729, 0.5805, 0.8814, 0.3121), (0.0652, 0.6184, 2.9449, 9.6298, 28.2194)),
    "F": ((0.0382, 0.1822, 0.5972, 0.7707, 0.2130), (0.0613, 0.5753, 2.6858, 8.8214, 25.6668)),
    "Na": ((0.1260, 0.6442, 0.8893, 1.8197, 1.2988), (0.1684, 1.7150, 8.8386, 50.8265, 147.2073)),
    "Mg": ((0.1130, 0.5575, 0.9046, 2.1580, 1.4735), (0.1356, 1.3579, 6.9255, 32.3165, 92.1138)),
    "P": ((0.1005, 0.4615, 1.0663, 2.5854, 1.2725), (0.0977, 0.9084, 4.9654, 18.5471, 54.3648)),
    "S": ((0.0915, 0.4312, 1.0847, 2.4671, 1.0852), (0.0838, 0.7788, 4.3462, 15.5846, 44.6365)),
    "Cl": ((0.0799, 0.3891, 1.0037, 2.3332, 1.0507), (0.0694, 0.6443, 3.5351, 12.5058, 35.8633)),
    "K": ((0.2149, 0.8703, 2.4999, 2.3591, 3.0318), (0.1660, 1.6906, 8.7447, 46.7825, 165.6923)),
    "Ca": ((0.2355, 0.9916, 2.3959, 3.7252, 2.5647), (0.1742, 1.8329, 8.8407, 47.4583, 134.9613)),
    "Mn": ((0.1943, 0.8190, 1.9296, 2.4968, 2.0625), (0.1135, 1.1313, 5.0341, 24.1798, 80.5598)),
    "Fe": ((0.1929, 0.8239, 1.8689, 2.3694, 1.9060), (0.1087, 1.0806, 4.7637, 22.8500, 76.7309)),
    "Co": ((0.2186, 0.9861, 1.8540, 2.3258, 1.4685), (0.1182, 1.2300, 5.4177, 25.7602, 80.8542)),
    "Ni": ((0.2313, 1.0657, 1.8229, 2.2609, 1.1883), (0.1210, 1.2691, 5.6870, 27.0917, 83.0285)),
    "Cu": ((0.3501, 1.6558, 1.9582, 0.2134, 1.4109), (0.1867, 1.9917, 11.3396, 53.2619, 63.2520)),
    "Zn": ((0.1780, 0.8096, 1.6744, 1.9499, 1.4495), (0.0876, 0.8650, 3.8612, 18.8726, 64.7016)),
    "Se": ((0.1574, 0.7614, 1.4834, 3.0016, 1.7978), (0.0686, 0.6808, 3.1163, 14.3458, 44.0455)),
    "Br": ((0.1899, 0.8983, 1.6358, 3.1845, 1.1518), (0.0810, 0.7957, 3.9054, 15.7701, 45.6124)),
    "I": ((0.2617, 1.0325, 2.8097, 4.4809, 2.3190), (0.0749, 0.6914, 3.4634, 16.3603, 48.2522)),
}

_TRUNCATE_SIGMAS = 5.0
_WATER_NAMES = {"HOH", "WAT", "H2O", "DOD", "SOL"}


@dataclass
class AtomicModel:
    """Atoms of a model as plain arrays.

    Attributes
    ----------
    coords : numpy.ndarray
        ``(N, 3)`` float64 positions ``[x, y, z]`` in Å.
    elements : numpy.ndarray
        ``(N,)`` element symbols (str, capitalised as in :data:`PENG_FACTORS`).
    bfactors : numpy.ndarray
        ``(N,)`` isotropic B-factors from the file (Å²).
    occupancies : numpy.ndarray
        ``(N,)`` occupancies.
    masses : numpy.ndarray
        ``(N,)`` atomic masses (Da), for the centre of mass.
    chains : numpy.ndarray
        ``(N,)`` chain names.
    source : str
        File name or ``"<gemmi.Structure>"``.
    """

    coords: np.ndarray
    elements: np.ndarray
    bfactors: np.ndarray
    occupancies: np.ndarray
    masses: np.ndarray
    chains: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.coords)

    def centre_of_mass(self) -> np.ndarray:
        """``(3,)`` mass-weighted centre (Å)."""
        w = self.masses * self.occupancies
        return (self.coords * w[:, None]).sum(0) / w.sum()

    def subset(self, keep: np.ndarray) -> AtomicModel:
        """A new model with the atoms selected by a boolean or index array."""
        return AtomicModel(
            self.coords[keep], self.elements[keep], self.bfactors[keep], self.occupancies[keep],
            self.masses[keep], self.chains[keep], self.source,
        )

    def with_coords(self, coords: np.ndarray) -> AtomicModel:
        """A copy with new ``(N, 3)`` coordinates."""
        return AtomicModel(
            np.asarray(coords, dtype=np.float64), self.elements, self.bfactors, self.occupancies,
            self.masses, self.chains, self.source,
        )


def read_structure(path) -> gemmi.Structure:
    """Read a PDB/mmCIF file (plain, ``.gz`` or ``.bz2``) with gemmi.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Unreadable or unparsable file.
    """
    import gemmi

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"atomic model not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes[-1] if suffixes and suffixes[-1] in (".gz", ".bz2") else None
    inner = suffixes[-2] if compression and len(suffixes) >= 2 else (suffixes[-1] if suffixes else "")
    try:
        if compression is None:
            text = path.read_text(errors="replace")
        else:
            opener = gzip.open if compression == ".gz" else bz2.open
            with opener(path, "rt", errors="replace") as fh:
                text = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read atomic model {path}: {exc}") from exc
    try:
        if inner in (".cif", ".mmcif") or text.lstrip().startswith("data_"):
            doc = gemmi.cif.read_string(text)
            st = gemmi.make_structure_from_block(doc.sole_block())
        else:
            st = gemmi.read_pdb_string(text)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"cannot parse atomic model {path}: {exc}") from exc
    st.setup_entities()
    return st


def read_atoms(source, hydrogens: bool = False, waters: bool = False, model_index: int = 0) -> AtomicModel:
    """Read the atoms of a PDB/mmCIF model (plain, ``.gz`` or ``.bz2``) with gemmi.

    Parameters
    ----------
    source : str, pathlib.Path or gemmi.Structure
        File (``.pdb``, ``.ent``, ``.cif``, ``.mmcif``, optionally ``.gz``/``.bz2``) or a
        structure already read by gemmi.
    hydrogens : bool
        Keep hydrogen (and deuterium) atoms (default: drop them).
    waters : bool
        Keep water molecules (default: drop them).
    model_index : int
        Which model of a multi-model file (default the first).

    Returns
    -------
    AtomicModel

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Unparsable file, or a model without atoms (after the filters).
    """
    import gemmi

    if isinstance(source, gemmi.Structure):
        st, name = source, "<gemmi.Structure>"
    else:
        path = Path(source)
        st, name = read_structure(path), str(path)
    if len(st) <= model_index:
        raise ValueError(f"atomic model {name} has no model number {model_index} (it has {len(st)})")
    coords, elements, bfac, occ, mass, chains = [], [], [], [], [], []
    for chain in st[model_index]:
        for res in chain:
            if not waters and (res.is_water() or res.name in _WATER_NAMES):
                continue
            for atom in res:
                el = atom.element
                if not hydrogens and el.is_hydrogen:
                    continue
                coords.append(atom.pos.tolist())
                symbol = el.name if el.name != "D" else "H"
                elements.append(symbol)
                bfac.append(atom.b_iso)
                occ.append(atom.occ)
                mass.append(el.weight if el.weight > 0 else 1.0)
                chains.append(chain.name)
    if not coords:
        raise ValueError(f"atomic model {name} contains no atoms (after removing waters/hydrogens)")
    return AtomicModel(
        coords=np.asarray(coords, dtype=np.float64),
        elements=np.asarray(elements),
        bfactors=np.asarray(bfac, dtype=np.float64),
        occupancies=np.asarray(occ, dtype=np.float64),
        masses=np.asarray(mass, dtype=np.float64),
        chains=np.asarray(chains),
        source=name,
    )


def _known_atoms(elements: np.ndarray, where: str) -> np.ndarray:
    known = np.array([e in PENG_FACTORS for e in elements], dtype=bool)
    if not known.all():
        unknown, counts = np.unique(elements[~known], return_counts=True)
        detail = ", ".join(f"{u} ({c} atoms)" for u, c in zip(unknown, counts))
        warnings.warn(
            f"{where}: no Peng scattering factors for {detail}; these atoms are skipped",
            UserWarning,
            stacklevel=3,
        )
    return known


def required_box(coords: np.ndarray, pixel_size: float, centre=None, margin_a: float = 0.0) -> int:
    """Smallest even box (px) that holds every atom in any orientation.

    Parameters
    ----------
    coords : numpy.ndarray
        ``(N, 3)`` positions in Å.
    pixel_size : float
        Å/px.
    centre : array-like (3,), optional
        Rotation centre in Å (default: the centroid of ``coords``).
    margin_a : float
        Extra radius in Å (e.g. the atoms' Gaussian width plus the largest particle shift).

    Returns
    -------
    int
        ``2 * ceil((r_max + margin_a) / pixel_size) + 2`` where ``r_max`` is the largest
        distance from ``centre``.
    """
    coords = np.asarray(coords, dtype=np.float64)
    centre = coords.mean(0) if centre is None else np.asarray(centre, dtype=np.float64)
    r_max = float(np.linalg.norm(coords - centre, axis=1).max()) if len(coords) else 0.0
    return 2 * math.ceil((r_max + margin_a) / pixel_size) + 2


def voxelize_atoms(
    coords,
    elements,
    pixel_size: float,
    box: int,
    bfactor=0.0,
    weights=None,
    chunk_size: int = 4096,
    dtype: torch.dtype = torch.float64,
) -> np.ndarray:
    """Voxelise atoms given relative to the box centre.

    Parameters
    ----------
    coords : array-like
        ``(N, 3)`` positions ``[x, y, z]`` in Å relative to the centre of voxel
        ``(box // 2,) * 3``.
    elements : sequence of str
        ``(N,)`` element symbols; unknown ones are skipped with a :class:`UserWarning`.
    pixel_size : float
        Å/px.
    box : int
        Side of the cubic output in voxels.
    bfactor : float or array-like (N,)
        B-factor(s) in Å² added to Peng's ``b_i`` (>= 0).
    weights : array-like (N,), optional
        Per-atom multipliers (e.g. occupancies, or ``1/|G|`` for symmetry copies).
    chunk_size : int
        At most this many atoms per vectorised step (lowered automatically so that the
        ``(n, 5, W, W, W)`` intermediate stays below ~16 M elements, ``W`` = window width).
    dtype : torch.dtype
        Accumulation dtype.

    Returns
    -------
    numpy.ndarray
        ``(box, box, box)`` float32 volume ``(z, y, x)``: voxel-averaged potential in volts.

    Raises
    ------
    ValueError
        Bad ``pixel_size``/``box``, negative B-factors, no known atom, or atoms whose
        Gaussians reach outside the box (the message gives the box needed).
    """
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be > 0 Å/px, got {pixel_size!r}")
    if int(box) != box or box < 2:
        raise ValueError(f"box must be an integer >= 2, got {box!r}")
    box = int(box)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    elements = np.asarray(elements)
    if len(elements) != len(coords):
        raise ValueError(f"{len(coords)} coordinates but {len(elements)} elements")
    bf = np.broadcast_to(np.asarray(bfactor, dtype=np.float64), (len(coords),))
    if (bf < 0).any():
        raise ValueError("bfactor must be >= 0 Å²")
    w = np.ones(len(coords)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = np.broadcast_to(w, (len(coords),))
    if len(coords) == 0:
        raise ValueError("the model contains no atoms")
    known = _known_atoms(elements, "voxelize_atoms")
    if not known.any():
        raise ValueError("the model contains no atom with known scattering factors")
    coords, elements, bf, w = coords[known], elements[known], bf[known], w[known]

    table_a = np.array([PENG_FACTORS[e][0] for e in elements])  # (N, 5)
    table_b = np.array([PENG_FACTORS[e][1] for e in elements]) + bf[:, None]  # (N, 5)
    sigma = np.sqrt(table_b / (8.0 * math.pi**2))  # Å
    amp = POTENTIAL_CONSTANT * table_a * w[:, None]  # integral of each Gaussian, V Å³

    centre = box // 2
    half_width = int(math.ceil(_TRUNCATE_SIGMAS * sigma.max() / pixel_size)) + 1
    pos = coords / pixel_size + centre  # fractional voxel index (x, y, z)
    reach = float(np.abs(coords).max(initial=0.0)) + _TRUNCATE_SIGMAS * float(sigma.max())
    lo_idx = np.floor(pos.min(0) + 0.5) - half_width
    hi_idx = np.floor(pos.max(0) + 0.5) + half_width
    if lo_idx.min() < 0 or hi_idx.max() > box - 1:
        # offsets of the nearest voxels from the centre voxel, as for an even box
        off = np.floor(coords / pixel_size + 0.5)
        needed = int(max(2 * (off.max() + half_width + 1), 2 * (half_width - off.min())))
        raise ValueError(
            f"box too small: the atoms extend {reach:.1f} Å from the box centre "
            f"(including {_TRUNCATE_SIGMAS:g} sigma of the atomic potential); a box of at least "
            f"{needed} px at {pixel_size} Å/px is needed, got {box}"
        )

    volume = torch.zeros(box**3, dtype=dtype)
    offsets = torch.arange(-half_width, half_width + 1)
    # bound the (n, 5, W, W, W) einsum intermediate to ~16 M elements
    chunk_size = max(1, min(chunk_size, 16_000_000 // (5 * len(offsets) ** 3)))
    sqrt2 = math.sqrt(2.0)
    for start in range(0, len(coords), chunk_size):
        p = torch.as_tensor(pos[start : start + chunk_size], dtype=dtype)  # (n, 3)
        s = torch.as_tensor(sigma[start : start + chunk_size], dtype=dtype)  # (n, 5)
        a = torch.as_tensor(amp[start : start + chunk_size], dtype=dtype)  # (n, 5)
        nearest = torch.floor(p + 0.5).long()  # (n, 3)
        idx = nearest[:, :, None] + offsets  # (n, 3, W) voxel indices per axis
        # voxel edges relative to the atom, in Å
        lower = (idx.to(dtype) - 0.5 - p[:, :, None]) * pixel_size  # (n, 3, W)
        denom = (sqrt2 * s)[:, None, :, None]  # (n, 1, 5, 1)
        frac = 0.5 * (
            torch.erf((lower[:, :, None, :] + pixel_size) / denom) - torch.erf(lower[:, :, None, :] / denom)
        )  # (n, 3, 5, W): fraction of each 1-D Gaussian in each voxel
        blocks = torch.einsum("ng,ngz,ngy,ngx->nzyx", a, frac[:, 2], frac[:, 1], frac[:, 0])  # (n, W, W, W)
        flat = (idx[:, 2, :, None, None] * box + idx[:, 1, None, :, None]) * box + idx[:, 0, None, None, :]
        volume.index_add_(0, flat.reshape(-1), blocks.reshape(-1))
    volume = volume.reshape(box, box, box) / pixel_size**3
    return volume.numpy().astype(np.float32)


def potential_from_model(
    source,
    pixel_size: float,
    box: int,
    bfactor: float = 0.0,
    hydrogens: bool = False,
    use_model_bfactors: bool = False,
    waters: bool = False,
) -> np.ndarray:
    """Voxelised potential of an atomic model, centred on its centre of mass.

    Parameters
    ----------
    source : str, pathlib.Path or gemmi.Structure
        PDB/mmCIF file (plain, ``.gz`` or ``.bz2``) or a gemmi structure.
    pixel_size : float
        Å/px.
    box : int
        Side of the cubic output (voxels).
    bfactor : float
        Global B-factor (Å²) added to every atom's Gaussians.
    hydrogens : bool
        Include hydrogen atoms present in the file.
    use_model_bfactors : bool
        Also add each atom's own B-factor from the file.
    waters : bool
        Include water molecules.

    Returns
    -------
    numpy.ndarray
        ``(box, box, box)`` float32 ``(z, y, x)`` potential in volts (voxel averages); the
        centre of mass sits at the centre of voxel ``box // 2``. Occupancies weight the atoms.
        Unknown elements are skipped with a warning.
    """
    model = read_atoms(source, hydrogens=hydrogens, waters=waters)
    coords = model.coords - model.centre_of_mass()
    bf = bfactor + (model.bfactors if use_model_bfactors else 0.0)
    return voxelize_atoms(coords, model.elements, pixel_size, box, bfactor=bf, weights=model.occupancies)


def _fourier_resample(volume: np.ndarray, new_size: int) -> np.ndarray:
    """Resample a cubic volume to ``new_size`` voxels per side by Fourier cropping/padding."""
    n = volume.shape[0]
    if new_size == n:
        return volume
    ft = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(volume)))
    out = np.zeros((new_size,) * 3, dtype=complex)
    m = min(n, new_size)
    src = slice(n // 2 - m // 2, n // 2 - m // 2 + m)
    dst = slice(new_size // 2 - m // 2, new_size // 2 - m // 2 + m)
    out[dst, dst, dst] = ft[src, src, src]
    res = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(out))).real
    return res * (new_size / n) ** 3


def potential_from_map(path, pixel_size: float, box: int) -> np.ndarray:
    """Use a density map (``.mrc``) as the potential: resample to ``pixel_size`` and fit in ``box``.

    Parameters
    ----------
    path : str or pathlib.Path
        Cubic MRC map. Its voxel size is taken from the header.
    pixel_size : float
        Target Å/px; the map is Fourier-resampled when its voxel size differs.
    box : int
        Target side; the (resampled) map is centre-cropped or zero-padded. Cropping is refused
        if it would cut density (more than 1 % of the absolute sum).

    Returns
    -------
    numpy.ndarray
        ``(box, box, box)`` float32 ``(z, y, x)``. The map is used as is (no centring, no
        symmetry alignment): its frame is the simulation frame.

    Raises
    ------
    ValueError
        Non-cubic map, or a box too small for its content.
    """
    import mrcfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"map not found: {path}")
    with mrcfile.open(path, permissive=True) as mrc:
        data = np.asarray(mrc.data, dtype=np.float64)
        voxel = float(mrc.voxel_size.x)
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise ValueError(f"map {path} must be cubic, got shape {data.shape}")
    if not voxel > 0:
        raise ValueError(f"map {path} has no valid voxel size in its header ({voxel})")
    n = data.shape[0]
    new_n = int(round(n * voxel / pixel_size))  # the physical size is kept up to this rounding
    data = _fourier_resample(data, new_n)
    if new_n > box:
        c0 = new_n // 2 - box // 2
        cropped = data[c0 : c0 + box, c0 : c0 + box, c0 : c0 + box]
        lost = 1.0 - np.abs(cropped).sum() / max(np.abs(data).sum(), 1e-30)
        if lost > 0.01:
            raise ValueError(
                f"box too small: map {path} is {new_n} px at {pixel_size} Å/px and cropping it to "
                f"{box} px removes {100 * lost:.1f} % of its density; use a box of at least {new_n} px"
            )
        data = cropped
    elif new_n < box:
        out = np.zeros((box,) * 3)
        c0 = box // 2 - new_n // 2
        out[c0 : c0 + new_n, c0 : c0 + new_n, c0 : c0 + new_n] = data
        data = out
    return data.astype(np.float32)
