"""Registry of the CESPED benchmark entries.

Every entry is a pair of half-sets (0 and 1) of particle images with RELION poses. Real entries are
published on Zenodo (one record per half-set, plus one record holding all the masks); synthetic
entries are generated locally by :mod:`cesped.simulation` from a preset.

Facts (record ids, symmetries, boxes, particle counts) are those of the CESPED paper and of the
original package's ``zenodo/bechmarkUrls.py``. A value of ``None`` means "not stated there"; the
record itself (``info_<h>.json``, the star file) is authoritative.

Example usage
-------------
>>> from cesped.data.entries import get_entry, list_entries
>>> get_entry("10280").symmetry
'C2'
>>> ("TEST", 0) in list_entries()
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "EntryInfo",
    "MASK_RECORD_ID",
    "get_entry",
    "list_entries",
    "entry_names",
    "record_to_entry",
]

MASK_RECORD_ID = 11092291
"""Zenodo record that holds one ``<target>_mask.mrc`` per entry."""

_MASK_FILES_URL = f"https://zenodo.org/records/{MASK_RECORD_ID}/files/"


@dataclass(frozen=True)
class EntryInfo:
    """Facts about one benchmark entry.

    Attributes
    ----------
    name : str
        Target name, also the directory name ``<benchmark_dir>/<name>``.
    symmetry : str or None
        Point group (``"C1"``, ``"C2"``, ``"D2"``); ``None`` when only the record states it.
    box : int or None
        Image side in pixels.
    pixel_size : float
        Å/px of the images.
    zenodo_records : dict[int, str]
        Half-set (0 or 1) -> Zenodo record id; empty for synthetic entries.
    record_dependencies : dict[str, tuple[str, ...]]
        Record id -> record ids whose image stacks it uses (consensus_10648 reuses 10648's).
    mask_url : str or None
        URL of the entry's mask (record :data:`MASK_RECORD_ID`).
    mask_file : str or None
        File name of the mask inside the mask record, e.g. ``"10648_mask.mrc"``.
    n_particles : int or None
        Number of particles of both half-sets together, as published.
    synthetic_preset : str or None
        Name of a :data:`cesped.simulation.PRESETS` entry for locally generated entries.
    description : str
        One line for listings.
    """

    name: str
    symmetry: str | None
    box: int | None
    pixel_size: float
    zenodo_records: dict[int, str] = field(default_factory=dict)
    record_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mask_url: str | None = None
    mask_file: str | None = None
    n_particles: int | None = None
    synthetic_preset: str | None = None
    description: str = ""

    @property
    def is_synthetic(self) -> bool:
        """True for entries generated locally instead of downloaded."""
        return self.synthetic_preset is not None

    def record_id(self, halfset: int) -> str:
        """Zenodo record id of half-set ``halfset`` (0 or 1).

        Raises
        ------
        ValueError
            If ``halfset`` is not 0 or 1, or the entry is synthetic (no record).
        """
        halfset = check_halfset(halfset)
        if self.is_synthetic:
            raise ValueError(f"entry {self.name!r} is synthetic (generated locally); it has no Zenodo record")
        return self.zenodo_records[halfset]


def check_halfset(halfset) -> int:
    """Return ``halfset`` as an int, or raise ``ValueError`` unless it is 0 or 1."""
    if isinstance(halfset, bool) or str(halfset) not in ("0", "1"):
        raise ValueError(f"halfset must be 0 or 1, got {halfset!r}")
    return int(halfset)


def _real(name, symmetry, box, n_particles, rec0, rec1, mask_target=None, deps=None, description=""):
    mask_target = mask_target or name
    mask_file = f"{mask_target}_mask.mrc"
    return EntryInfo(
        name=name,
        symmetry=symmetry,
        box=box,
        pixel_size=1.5,
        zenodo_records={0: rec0, 1: rec1},
        record_dependencies=dict(deps or {}),
        mask_url=_MASK_FILES_URL + mask_file,
        mask_file=mask_file,
        n_particles=n_particles,
        description=description,
    )


def _build_registry() -> dict[str, EntryInfo]:
    entries = [
        _real(
            "TEST",
            "C1",
            232,
            None,
            "10998049",
            "10998591",
            mask_target="11120",
            description="small subset of EMPIAR-11120 for smoke tests",
        ),
        _real("10166", "C1", 284, 238631, "8353634", "8353702", description="EMPIAR-10166"),
        _real("10786", "C1", 184, 288659, "8352275", "8352281", description="EMPIAR-10786"),
        _real("10280", "C2", 182, 459504, "8353722", "8353737", description="EMPIAR-10280"),
        _real("11120", "C1", 232, 244973, "8352296", "8352300", description="EMPIAR-11120"),
        _real("10648", "D2", 222, 234956, "8387534", "8390711", description="EMPIAR-10648"),
        _real("10409", "C1", 240, 406001, "8386582", "8386660", description="EMPIAR-10409"),
        _real("10374", "C2", 216, 323681, "8386774", "8386881", description="EMPIAR-10374"),
        _real("10399", None, None, None, "11099225", "11093190", description="EMPIAR-10399"),
        _real(
            "consensus_10648",
            "D2",
            222,
            None,
            "11092025",
            "11092048",
            mask_target="10648",
            deps={"11092025": ("8387534",), "11092048": ("8390711",)},
            description="EMPIAR-10648 with consensus poses; images from the 10648 records",
        ),
        _real(
            "simulated_10648",
            "D2",
            222,
            None,
            "11098206",
            "11098270",
            mask_target="10648",
            description="simulated particles of EMPIAR-10648",
        ),
    ]
    return {e.name: e for e in entries + _synthetic_entries()}


def _synthetic_entries() -> list[EntryInfo]:
    """Entries simulated locally, one per ``cesped.simulation.PRESETS`` key starting with ``synth_``."""
    try:
        from cesped.simulation.presets import PRESETS
    except ImportError:  # simulation extras unavailable: keep the names, facts unknown
        PRESETS = {"synth_6msm": {"structure": "6msm"}, "synth_4e43": {"structure": "4e43"}}
    out = []
    for name, p in PRESETS.items():
        if not name.startswith("synth_"):
            continue
        out.append(
            EntryInfo(
                name=name,
                symmetry=p.get("symmetry"),
                box=p.get("box"),
                pixel_size=float(p.get("pixel_size", 1.5)),
                n_particles=p.get("n_particles"),
                synthetic_preset=name,
                description=f"synthetic entry simulated locally from PDB {p.get('structure', '?')}",
            )
        )
    return out


_REGISTRY: dict[str, EntryInfo] | None = None


def _registry() -> dict[str, EntryInfo]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _build_registry()
    return _REGISTRY


def entry_names() -> list[str]:
    """Names of all registered entries, real ones first."""
    return list(_registry())


def get_entry(name: str) -> EntryInfo:
    """Facts about entry ``name``.

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the known names.
    """
    reg = _registry()
    key = str(name)
    if key not in reg:
        raise ValueError(f"unknown CESPED entry {name!r}; known entries: {', '.join(reg)}")
    return reg[key]


def list_entries(include_synthetic: bool = True) -> list[tuple[str, int]]:
    """All ``(name, halfset)`` pairs, as ``ParticlesDataset.getCESPEDEntries()`` returns them."""
    return [
        (e.name, h) for e in _registry().values() if include_synthetic or not e.is_synthetic for h in (0, 1)
    ]


def record_to_entry(record_id: str) -> tuple[str, int]:
    """The ``(name, halfset)`` whose half-set is stored in Zenodo record ``record_id``.

    Raises
    ------
    ValueError
        If no registered entry uses that record.
    """
    for e in _registry().values():
        for h, rec in e.zenodo_records.items():
            if rec == str(record_id):
                return e.name, h
    raise ValueError(f"Zenodo record {record_id!r} belongs to no registered entry")
