"""Evaluation of heterogeneous entries: angular errors and maps per conformation.

Which entries. An entry is heterogeneous when its ``info_0.json``/``info_1.json`` declare it
(``"heterogeneity": {"kind": "states" | "morph", "column": ..., "state_maps": [...]}``, written by
:mod:`cesped.simulation.hetero`). Nothing is guessed from the star's columns: a real entry's
``rlnClassNumber`` is a 2D/3D class of a refinement, not a conformation, and an entry without the
declaration is evaluated as homogeneous. A declared entry whose star lacks the column, holds
labels outside the declared states, or lacks a state's true map is refused (``ValueError`` naming
the file and the column).

Groups of particles.

* ``states``: one group per state ``k`` (the 1-based label in ``rlnClassNumber``), named
  ``state{k}``, whose true map is ``gt_map_state{k}.mrc``.
* ``morph``: :data:`N_MORPH_BINS` (5) equal-width bins of the coordinate ``t`` in [0, 1]
  (``cespedMorphCoordinate``): ``bin{b}`` holds ``(b-1)/5 <= t < b/5`` (the last bin includes
  ``t = 1``); the edges are recorded (``bin_edges``). Only the end points of a linear morph have
  a true map (``gt_map_state1.mrc`` at ``t = 0``, ``gt_map_state2.mrc`` at ``t = 1``): the maps of
  the first and the last bin are compared with them. Those bins hold ``t`` within 0.2 of the end
  point, so the comparison tells the own end from the other, it is not an exact reference.

Angular metrics per group, over the particles of both half-sets together (pooled, the errors of
:mod:`cesped.evaluation.predictions`, after frame alignment for ``frame="free"``):
``n_particles``, ``MAnE_deg``, ``median_angular_error_deg``, ``wMAnE_deg`` (weighted by the GT
``rlnMaxValueProbDistribution``); None for an empty group.

Maps per group (states: every state; morph: the first and last bin): reconstructed from all the
group's particles of both half-sets, with the ground-truth poses (``GT``) and with the predicted
poses (``V``), with the evaluation's backend and confidence weighting; each is compared with
every true state map ``true{j}``: ``PCC(V,true{j})_{flavour}``, ``FSCR0.143(V,true{j})_{flavour}_A``
and ``FSCR0.5(V,true{j})_{flavour}_A`` (flavour ``unmasked``, and ``masked`` with the
evaluation's mask), likewise for ``GT``. The own map is ``true{k}`` for ``state{k}``, ``true1``
for the first bin and ``true2`` for the last.

All keys are flat, prefixed with the group (``state1.MAnE_deg``, ``bin5.PCC(V,true2)_masked``),
in ``metrics["heterogeneity"]`` beside ``kind``, ``column``, ``groups`` and ``bin_edges`` (morph);
``metrics.csv`` has them as ``heterogeneity.<key>`` columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cesped.evaluation.predictions import FOM, IMAGE

__all__ = [
    "N_MORPH_BINS",
    "Heterogeneity",
    "read_heterogeneity",
    "group_labels",
    "pose_metrics_by_group",
    "group_maps",
    "evaluate_heterogeneity",
    "write_group_outputs",
    "key_meaning",
]

#: Equal-width bins of the morph coordinate t in [0, 1] for the per-bin metrics.
N_MORPH_BINS = 5
_KINDS = ("states", "morph")


@dataclass
class Heterogeneity:
    """A heterogeneous entry's declaration, checked against its files.

    Attributes
    ----------
    kind : {"states", "morph"}
    column : str
        Star column of the conformation (``rlnClassNumber`` or ``cespedMorphCoordinate``).
    state_maps : list of Path
        True maps, ``state_maps[j - 1]`` of state ``j`` (morph: the two end points).
    labels : list of 2 np.ndarray
        Per half-set, per particle (star order): the state (int, 1-based) or ``t`` (float).
    """

    kind: str
    column: str
    state_maps: list
    labels: list = field(default_factory=list)

    @property
    def groups(self) -> list[str]:
        if self.kind == "states":
            return [f"state{k + 1}" for k in range(len(self.state_maps))]
        return [f"bin{b + 1}" for b in range(N_MORPH_BINS)]

    @property
    def map_groups(self) -> dict[str, int]:
        """Group -> 1-based index of its own true map, for the groups whose maps are compared."""
        if self.kind == "states":
            return {f"state{k + 1}": k + 1 for k in range(len(self.state_maps))}
        return {"bin1": 1, f"bin{N_MORPH_BINS}": 2}


def _declarations(directory: Path) -> dict:
    found = {}
    for h in (0, 1):
        p = directory / f"info_{h}.json"
        if not p.is_file():
            continue
        try:
            info = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{p}: not readable JSON ({exc})") from exc
        if isinstance(info, dict) and "heterogeneity" in info:
            found[p] = info["heterogeneity"]
    return found


def read_heterogeneity(directory, gts) -> Heterogeneity | None:
    """The entry's heterogeneity declaration, checked against its stars and maps (None: homogeneous).

    Parameters
    ----------
    directory : path-like
        Entry directory (``info_{0,1}.json``, ``gt_map_state{k}.mrc``).
    gts : list of 2 StarFile
        The entry's half-sets (their ``path`` names them in errors).

    Raises
    ------
    ValueError
        A malformed or inconsistent declaration, a missing conformation column, labels outside
        the declared states (or ``t`` outside [0, 1]), a missing true map or one whose box
        differs from the particles'.
    """
    directory = Path(directory)
    decl = _declarations(directory)
    if not decl:
        return None
    (first_path, d), *rest = decl.items()
    for p, other in rest:
        if other != d:
            raise ValueError(
                f"heterogeneity declarations of {first_path} and {p} disagree: {d!r} vs {other!r}"
            )
    if not isinstance(d, dict) or d.get("kind") not in _KINDS or not isinstance(d.get("column"), str):
        raise ValueError(
            f"{first_path}: 'heterogeneity' must hold kind (one of {_KINDS}) and column, got {d!r}"
        )
    names = d.get("state_maps")
    if not isinstance(names, list) or len(names) < 2:
        raise ValueError(f"{first_path}: heterogeneity.state_maps must list >= 2 maps, got {names!r}")
    maps = [directory / str(n) for n in names]
    box = int(pd.to_numeric(gts[0].optics["rlnImageSize"]).iloc[0])
    import mrcfile

    for m in maps:
        if not m.is_file():
            raise ValueError(f"{first_path}: true map {m} of heterogeneity.state_maps not found")
        with mrcfile.open(m, header_only=True, permissive=True) as fh:
            shape = (int(fh.header.nz), int(fh.header.ny), int(fh.header.nx))
        if shape != (box,) * 3:
            raise ValueError(f"true map {m}: shape {shape}, the particles' box is {box}")
    het = Heterogeneity(kind=d["kind"], column=d["column"], state_maps=maps)
    for g in gts:
        where = g.path if g.path is not None else "half-set star"
        if het.column not in g.particles.columns:
            raise ValueError(
                f"{where}: column {het.column} missing; the entry is declared heterogeneous "
                f"({d['kind']}) in {first_path}"
            )
        vals = pd.to_numeric(g.particles[het.column], errors="coerce").to_numpy(dtype=np.float64)
        if het.kind == "states":
            ok = np.isfinite(vals) & (vals == np.round(vals)) & (vals >= 1) & (vals <= len(maps))
            what = f"integers 1..{len(maps)}"
        else:
            ok = np.isfinite(vals) & (vals >= 0) & (vals <= 1)
            what = "numbers in [0, 1]"
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise ValueError(
                f"{where}: column {het.column} must hold {what}; row {i} has "
                f"{g.particles[het.column].iloc[i]!r}"
            )
        het.labels.append(vals.astype(np.int64) if het.kind == "states" else vals)
    return het


def group_labels(het: Heterogeneity, labels: np.ndarray) -> np.ndarray:
    """0-based group index of each particle (state - 1, or the morph bin)."""
    if het.kind == "states":
        return np.asarray(labels, dtype=np.int64) - 1
    inner = np.linspace(0.0, 1.0, N_MORPH_BINS + 1)[1:-1]
    return np.digitize(np.asarray(labels, dtype=np.float64), inner).astype(np.int64)


def pose_metrics_by_group(het: Heterogeneity, halves) -> dict:
    """``{group}.n_particles``, ``.MAnE_deg``, ``.median_angular_error_deg``, ``.wMAnE_deg``."""
    from cesped.geometry.numpy_ops import mean_angular_error, weighted_mean_angular_error

    idx = np.concatenate([group_labels(het, lab) for lab in het.labels])
    err = np.concatenate([h.errors for h in halves])
    conf = np.concatenate([h.gt_conf for h in halves])
    out: dict = {}
    for g, name in enumerate(het.groups):
        sel = idx == g
        n = int(sel.sum())
        out[f"{name}.n_particles"] = n
        out[f"{name}.MAnE_deg"] = mean_angular_error(err[sel]) if n else None
        out[f"{name}.median_angular_error_deg"] = float(np.median(err[sel])) if n else None
        w = conf[sel]
        out[f"{name}.wMAnE_deg"] = weighted_mean_angular_error(err[sel], w) if n and w.sum() > 0 else None
    return out


def _absolute_names(star) -> list[str]:
    from cesped.io.stack import parse_image_name

    root = Path(star.path).parent if star.path is not None else Path(".")
    out = []
    for n in star.particles[IMAGE].astype(str):
        i, f = parse_image_name(n)
        out.append(f"{i + 1:06d}@{(root / f).resolve()}")
    return out


def _subset(stars, selections):
    """One StarFile of the selected rows of several half-set stars (image names made absolute)."""
    from cesped.io.star import StarFile

    parts = []
    for st, sel in zip(stars, selections):
        rows = np.flatnonzero(sel)
        p = st.particles.iloc[rows].copy()
        p[IMAGE] = np.asarray(_absolute_names(st), dtype=object)[rows]
        parts.append(p)
    return StarFile(particles=pd.concat(parts, ignore_index=True), optics=stars[0].optics.copy(), path=None)


def group_maps(het, gts, halves, symmetry, backend, device, n_cpus, use_pred_conf, **kw) -> dict:
    """Ground-truth-pose and predicted-pose maps of each compared group (see the module docstring).

    Returns
    -------
    dict
        group -> (GT map, V map), float64 (n, n, n); a group without particles is left out.
    """
    from cesped.evaluation.reconstruct import gt_and_pred_maps

    for g in gts[1:]:
        if not g.optics.reset_index(drop=True).equals(gts[0].optics.reset_index(drop=True)):
            raise ValueError(
                f"{gts[0].path} and {g.path}: different optics tables; the per-conformation maps "
                "pool both half-sets and need the same optics groups"
            )
    idx = [group_labels(het, lab) for lab in het.labels]
    out = {}
    for name in het.map_groups:
        g = het.groups.index(name)
        sels = [i == g for i in idx]
        if sum(int(s.sum()) for s in sels) == 0:
            continue
        gt = _subset(list(gts), sels)
        pred = _subset([h.pred for h in halves], sels)
        gt_fom = use_pred_conf and FOM in gt.particles.columns
        out[name] = gt_and_pred_maps(gt, pred, symmetry, backend, device, n_cpus, gt_fom, use_pred_conf, **kw)
    return out


def map_metrics_by_group(het, maps: dict, mask, voxel_size, workers=None) -> dict:
    """PCC and FSC resolutions of each group's GT and V map against every true state map."""
    from cesped.evaluation.metrics import map_transform
    from cesped.evaluation.scores import pair_from_transforms
    from cesped.io.mrc import read_map

    flavours = [("unmasked", None)] + ([("masked", mask)] if mask is not None else [])
    truths = [read_map(p)[0].astype(np.float64) for p in het.state_maps]
    t_tr = {fl: [map_transform(t, m, workers=workers) for t in truths] for fl, m in flavours}
    out: dict = {}
    for name, (gv, pv) in maps.items():
        for label, vol in (("GT", gv), ("V", pv)):
            v_tr = {fl: map_transform(vol, m, workers=workers) for fl, m in flavours}
            for j, truth in enumerate(truths):
                res: dict = {}
                pair_from_transforms(
                    vol,
                    truth,
                    {fl: (v_tr[fl], t_tr[fl][j]) for fl, _ in flavours},
                    mask,
                    voxel_size,
                    f"{label},true{j + 1}",
                    res,
                    {},
                )
                out.update({f"{name}.{k}": v for k, v in res.items()})
    return out


def evaluate_heterogeneity(het, gts, halves, maps_kw: dict, mask, voxel_size, workers=None):
    """Everything of the module docstring: ``(metrics block, {group: (GT map, V map)})``."""
    block: dict = {"kind": het.kind, "column": het.column, "groups": het.groups}
    if het.kind == "morph":
        block["bin_edges"] = np.linspace(0.0, 1.0, N_MORPH_BINS + 1).tolist()
    block["state_maps"] = [p.name for p in het.state_maps]
    block["map_groups"] = {g: f"true{j}" for g, j in het.map_groups.items()}
    block.update(pose_metrics_by_group(het, halves))
    maps = group_maps(het, gts, halves, **maps_kw)
    block.update(map_metrics_by_group(het, maps, mask, voxel_size, workers))
    return block, maps


def write_group_outputs(outdir, het, halves, block, maps, voxel_size, plots: bool) -> list:
    """Write ``gt_{group}.mrc``, ``pred_{group}.mrc`` and (``plots``) ``error_by_conformation.png``.

    Returns
    -------
    list of (caption, Path)
        The plot for the report (empty without ``plots``).
    """
    from cesped.io.mrc import write_map

    outdir = Path(outdir)
    for name, (gv, pv) in maps.items():
        write_map(outdir / f"gt_{name}.mrc", gv.astype(np.float32), voxel_size)
        write_map(outdir / f"pred_{name}.mrc", pv.astype(np.float32), voxel_size)
    if not plots:
        return []
    from cesped.evaluation.plots import plot_error_by_conformation

    path = plot_error_by_conformation(
        outdir / "error_by_conformation.png",
        het.kind,
        np.concatenate(het.labels),
        np.concatenate([h.errors for h in halves]),
        bin_edges=block.get("bin_edges"),
    )
    if het.kind == "states":
        cap = f"Angular error per conformational state ({het.column}): mean and median over both half-sets."
    else:
        cap = (
            f"Angular error against the morph coordinate ({het.column}); mean and median per bin "
            f"of width {1 / N_MORPH_BINS:g}."
        )
    return [(cap, path)]


def key_meaning(key: str) -> str:
    """What a ``heterogeneity.*`` key of ``metrics.json`` means ("" when unknown)."""
    import re

    k = key[len("heterogeneity.") :] if key.startswith("heterogeneity.") else key
    fixed = {
        "kind": "Heterogeneous entry: discrete states or a linear morph (cesped.evaluation.heterogeneity).",
        "column": "Star column holding each particle's conformation.",
    }
    if k in fixed:
        return fixed[k]
    m = re.fullmatch(r"(state|bin)(\d+)\.(.+)", k)
    if not m:
        return ""
    who = f"state {m.group(2)}" if m.group(1) == "state" else f"morph-coordinate bin {m.group(2)}"
    metric = m.group(3)
    simple = {
        "n_particles": "number of particles (both half-sets)",
        "MAnE_deg": "mean angular error (°), both half-sets pooled",
        "median_angular_error_deg": "median angular error (°)",
        "wMAnE_deg": "angular error weighted by the GT confidence (°)",
    }
    if metric in simple:
        return f"Particles of {who}: {simple[metric]}."
    m2 = re.fullmatch(r"(PCC|FSCR0\.143|FSCR0\.5)\((GT|V),true(\d+)\)_(masked|unmasked)(_A)?", metric)
    if m2:
        poses = "ground-truth" if m2.group(2) == "GT" else "predicted"
        return (
            f"{m2.group(1)} of the map of {who}'s particles reconstructed with the {poses} poses "
            f"against the true map of state {m2.group(3)} ({m2.group(4)})."
        )
    return ""
