"""A self-contained HTML report of one evaluation: metrics table and every plot, images embedded.

The report adds two figures to the evaluation's own plots (FSC curves, angular-error
histogram, central slices, see :mod:`cesped.evaluation.plots`):

* an orientation-coverage map: the density of true and of predicted viewing directions on
  the sphere (equal-area cells drawn on matplotlib's Mollweide projection, one colour scale), and
* a confidence-vs-error plot: per confidence decile, the mean and median angular error, to
  show whether the predicted confidence is calibrated (a useful confidence has the error
  decreasing with it).

Viewing direction convention: for a pose label ``R = Aᵀ`` (see :mod:`cesped.geometry`), the
projection integrates the volume along ``R · e_z`` (the third column of ``R``), a unit vector
in the volume's frame ``(x, y, z)``; longitude ``atan2(y, x)``, latitude ``asin(z)``.

Example usage::

    from cesped.evaluation.report import write_report
    write_report("evaluation/", metrics, per_particle, title="synth_6msm, SO3")
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cesped.evaluation.style import page_head
from cesped.io.atomic import atomic_open

__all__ = [
    "metric_meaning",
    "ground_truth_pose_values",
    "viewing_directions",
    "direction_density",
    "plot_orientation_coverage",
    "plot_confidence_vs_error",
    "render_particle_plots",
    "write_report",
]

COVERAGE_PNG = "orientation_coverage.png"
COVERAGE_CAPTION = (
    "Orientation coverage: density of true (left) and predicted (right) viewing directions on "
    "the sphere, Mollweide projection (1 = uniform)."
)
CONFIDENCE_PNG = "confidence_vs_error.png"
CONFIDENCE_CAPTION = (
    "Predicted confidence vs angular error: is the confidence calibrated? Right: mean error of "
    "the particles kept when selecting by confidence."
)


def viewing_directions(rotmats) -> np.ndarray:
    """Unit viewing directions ``R · e_z`` of pose labels.

    Parameters
    ----------
    rotmats : array-like (n, 3, 3)
        Pose labels ``R = Aᵀ``.

    Returns
    -------
    np.ndarray (n, 3) float64
        Directions in the volume's frame ``(x, y, z)``.
    """
    r = np.asarray(rotmats, dtype=np.float64)
    if r.ndim != 3 or r.shape[1:] != (3, 3):
        raise ValueError(f"rotmats: expected shape (n, 3, 3), got {r.shape}")
    d = r[:, :, 2]
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def direction_density(directions, n_bands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density of unit directions on equal-area cells of the sphere (1 = uniform coverage).

    The cells are ``n_bands`` bands uniform in ``z`` (equal area) times ``2 * n_bands`` sectors
    uniform in longitude, so every cell covers ``4π / (2 n_bands²)`` sr.

    Parameters
    ----------
    directions : array-like (n, 3)
        Unit vectors ``(x, y, z)`` in the volume's frame.
    n_bands : int
        Number of latitude bands (>= 1).

    Returns
    -------
    density : np.ndarray (n_bands, 2 * n_bands) float64
        Particles per cell divided by the uniform expectation ``n / n_cells``; rows go from
        south (``z = -1``) to north.
    lon_edges : np.ndarray (2 * n_bands + 1,) float64
        Longitude edges, radians in ``[-π, π]`` (``atan2(y, x)``).
    lat_edges : np.ndarray (n_bands + 1,) float64
        Latitude edges, radians in ``[-π/2, π/2]`` (``asin`` of the equal-``z`` edges).
    """
    d = np.asarray(directions, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 3:
        raise ValueError(f"directions: expected shape (n, 3), got {d.shape}")
    if int(n_bands) != n_bands or n_bands < 1:
        raise ValueError(f"n_bands must be a positive integer, got {n_bands!r}")
    n_bands = int(n_bands)
    n_lon = 2 * n_bands
    z = np.clip(d[:, 2], -1.0, 1.0)
    lon = np.arctan2(d[:, 1], d[:, 0])
    zi = np.clip(np.floor((z + 1.0) / 2.0 * n_bands), 0, n_bands - 1).astype(np.int64)
    li = np.clip(np.floor((lon + np.pi) / (2 * np.pi) * n_lon), 0, n_lon - 1).astype(np.int64)
    counts = np.bincount(zi * n_lon + li, minlength=n_bands * n_lon).astype(np.float64)
    density = counts.reshape(n_bands, n_lon) / max(len(d), 1) * (n_bands * n_lon)
    lon_edges = np.linspace(-np.pi, np.pi, n_lon + 1)
    lat_edges = np.arcsin(np.linspace(-1.0, 1.0, n_bands + 1))
    return density, lon_edges, lat_edges


def _auto_bands(n: int, per_cell: int = 20) -> int:
    """Most latitude bands in [1, 32] with at least ``per_cell`` particles per cell on average."""
    bands = 1
    while bands < 32 and n / (2 * (bands + 1) ** 2) >= per_cell:
        bands += 1
    return bands


def plot_orientation_coverage(
    true_rotmats, pred_rotmats, path, n_bands: int | None = None, title: str = ""
) -> Path:
    """Mollweide maps of true and predicted viewing-direction density (1 = uniform).

    Parameters
    ----------
    true_rotmats, pred_rotmats : array-like (n, 3, 3)
        Ground-truth and predicted pose labels ``R = Aᵀ``.
    path : path-like or binary file object
        PNG file to write (atomically).
    n_bands : int, optional
        Latitude bands of the equal-area cells (``2 n_bands²`` cells, see
        :func:`direction_density`); by default the finest with about 20 particles per cell or
        more, so that the map shows coverage, not noise.
    title : str
        Figure title.
    """
    from cesped.evaluation.plots import figure

    if n_bands is None:
        n_bands = _auto_bands(len(true_rotmats))
    maps = []
    for rotmats in (true_rotmats, pred_rotmats):
        dens, lon_e, lat_e = direction_density(viewing_directions(rotmats), n_bands)
        maps.append((dens, len(rotmats)))
    vmax = float(max(np.percentile(maps[0][0], 99), np.percentile(maps[1][0], 99), 1.0))
    fig = figure((11, 3.8))
    mesh = None
    for i, ((dens, count), name) in enumerate(zip(maps, ("true", "predicted"), strict=True)):
        ax = fig.add_axes((0.02 + 0.49 * i, 0.27, 0.46, 0.62), projection="mollweide")
        mesh = ax.pcolormesh(lon_e, lat_e, dens, vmin=0.0, vmax=vmax, cmap="viridis", shading="flat")
        ax.set_title(f"{name} viewing directions (n={count})", fontsize=10, pad=12)
        ax.set_xticklabels([])
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    cax = fig.add_axes((0.3, 0.17, 0.4, 0.04))
    fig.colorbar(mesh, cax=cax, orientation="horizontal", label="density (1 = uniform)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confidence_vs_error(confidence, errors_deg, path, n_bins: int = 10, title: str = "") -> Path:
    """Angular error against predicted confidence, binned by confidence quantile.

    Parameters
    ----------
    confidence : array-like (n,)
        Predicted confidence per particle (e.g. ``rlnParticleFigureOfMerit``).
    errors_deg : array-like (n,)
        Symmetry-aware angular error per particle, degrees.
    path : path-like or binary file object
        PNG file to write (atomically).
    n_bins : int
        Number of confidence quantile bins.
    """
    from cesped.evaluation.plots import figure

    c = np.asarray(confidence, dtype=np.float64).ravel()
    e = np.asarray(errors_deg, dtype=np.float64).ravel()
    if c.shape != e.shape:
        raise ValueError(f"confidence {c.shape} and errors_deg {e.shape} differ in length")
    stats = calibration_table(c, e, n_bins)
    fig = figure((11, 4))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.88 if title else 0.92, wspace=0.22)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    ax = axes[0]
    idx = np.random.default_rng(0).permutation(len(c))[:5000]
    ax.scatter(c[idx], e[idx], s=3, alpha=0.3, color="tab:gray", label="particles")
    ax.plot(stats["conf_mean"], stats["err_mean"], "o-", color="tab:red", label="mean error per decile")
    ax.plot(stats["conf_mean"], stats["err_median"], "s--", color="tab:blue", label="median error per decile")
    ax.set_xlabel("predicted confidence")
    ax.set_ylabel("angular error (deg)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("error vs confidence")
    ax = axes[1]
    frac = np.arange(1, len(c) + 1) / max(len(c), 1)
    order = np.argsort(-c, kind="stable")
    ax.plot(frac, np.cumsum(e[order]) / np.arange(1, len(c) + 1), color="tab:red", label="by confidence")
    ax.axhline(float(e.mean()) if len(e) else 0.0, color="k", ls=":", label="all particles")
    ax.set_xlabel("fraction of particles kept (most confident first)")
    ax.set_ylabel("mean angular error of kept (deg)")
    ax.set_title("selection by confidence")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def calibration_table(confidence, errors_deg, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Mean confidence and mean/median error in ``n_bins`` confidence-quantile bins.

    Returns
    -------
    dict of (k,) arrays: ``conf_mean``, ``err_mean``, ``err_median``, ``count`` with
    ``k <= n_bins`` (bins merge when confidences tie).
    """
    c = np.asarray(confidence, dtype=np.float64).ravel()
    e = np.asarray(errors_deg, dtype=np.float64).ravel()
    if len(c) == 0:
        return {k: np.zeros(0) for k in ("conf_mean", "err_mean", "err_median", "count")}
    edges = np.unique(np.quantile(c, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, max(len(edges) - 2, 0))
    out = {"conf_mean": [], "err_mean": [], "err_median": [], "count": []}
    for b in np.unique(which):
        sel = which == b
        out["conf_mean"].append(c[sel].mean())
        out["err_mean"].append(e[sel].mean())
        out["err_median"].append(np.median(e[sel]))
        out["count"].append(sel.sum())
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def render_particle_plots(per_particle: Mapping[str, Sequence]) -> list[tuple[str, str, bytes]]:
    """Render the report's per-particle plots in memory (no file is written).

    Parameters
    ----------
    per_particle : mapping
        ``true_rotmats`` (n, 3, 3), ``pred_rotmats`` (n, 3, 3), ``errors_deg`` (n,) degrees,
        ``confidence`` (n,) or None, as in :func:`write_report`.

    Returns
    -------
    list of (caption, file name, PNG bytes)
        The orientation coverage, then the confidence-vs-error plot when the confidence is known.
    """
    import io

    out = []
    buf = io.BytesIO()
    plot_orientation_coverage(per_particle["true_rotmats"], per_particle["pred_rotmats"], buf)
    out.append((COVERAGE_CAPTION, COVERAGE_PNG, buf.getvalue()))
    if per_particle.get("confidence") is not None:
        buf = io.BytesIO()
        plot_confidence_vs_error(per_particle["confidence"], per_particle["errors_deg"], buf)
        out.append((CONFIDENCE_CAPTION, CONFIDENCE_PNG, buf.getvalue()))
    return out


def _save(fig, path):
    from cesped.evaluation.plots import save

    return save(fig, path)


def _fmt_value(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    return html.escape(str(v))


def _img_tag(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


# ------------------------------------------------------------------------------ meanings
_PAIRS = {
    "GT0,GT1": "the two ground-truth half-maps GT0 and GT1 (reconstructed with the entry's own poses)",
    "V0,V1": "the two half-maps V0 and V1 reconstructed with the predicted poses",
    "GT,V": "the ground-truth map GT = (GT0+GT1)/2 and the predicted-pose map V = (V0+V1)/2",
}
_FLAVOURS = {"masked": "inside the entry's mask (maps multiplied by it)", "unmasked": "over the whole box"}
_FIXED_MEANINGS = {
    "target": "The entry evaluated.",
    "predictionType": "What the predictions hold: S2 (viewing direction), SO3 (rotation) or SO3xR2 "
    "(rotation and in-plane shifts).",
    "symmetry": "Point group of the entry; every angular error is the smallest over its operators.",
    "usePredConfidence": "Whether the predicted confidence (rlnParticleFigureOfMerit) weighted the "
    "particles in the predicted-pose reconstruction.",
    "backend": "Reconstruction program: native (cesped's direct Fourier inversion) or relion "
    "(relion_reconstruct).",
    "ctf": "Whether the images' CTF was applied in the reconstructions (false only when the entry "
    "declares that its images carry none).",
    "mask": "Mask used for the masked metrics (path relative to this report).",
    "voxel_size_A": "Voxel size of the maps (Å).",
    "box_px": "Side of the maps (voxels).",
    "MAnE_deg": "Mean angular error between predicted and true poses, symmetry-aware (°); mean of the "
    "two half-sets. Lower is better, 0 is perfect.",
    "wMAnE_deg": "Mean angular error weighted by the ground-truth pose confidence "
    "(rlnMaxValueProbDistribution), so that well-defined particles count more (°). Lower is better.",
    "MAnE_half0_deg": "Mean angular error of half-set 0 (°).",
    "MAnE_half1_deg": "Mean angular error of half-set 1 (°).",
    "median_angular_error_deg": "Median angular error over both half-sets (°).",
    "shiftsRMSE_A": "Root mean square error of the predicted in-plane shifts (Å); SO3xR2 predictions only.",
    "paper_columns_use": "Which flavour (masked or unmasked) fills the paper's columns.",
    "n_particles": "Number of particles evaluated.",
    "mask_md5": "MD5 checksum of the mask file (which mask the masked metrics used).",
    "frame": "fixed: poses scored in the entry's frame; free: each half-set first aligned to the truth "
    "by one global rotation (methods whose poses live in their own map's frame).",
    "frame_allow_mirror": "Whether the frame-free alignment could also flip the hand of the map.",
}


def metric_meaning(key: str) -> str:
    """One sentence saying what a metric key of :func:`cesped.evaluation.evaluate.evaluate` means
    ("" for a key this module does not know)."""
    import re

    if key in _FIXED_MEANINGS:
        return _FIXED_MEANINGS[key]
    m = re.fullmatch(r"PCC\((.+)\)_(masked|unmasked)", key)
    if m and m.group(1) in _PAIRS:
        return f"Pearson correlation of {_PAIRS[m.group(1)]}, {_FLAVOURS[m.group(2)]}. Higher is better."
    m = re.fullmatch(r"FSCR(0\.143|0\.5)\((.+)\)_(masked|unmasked)_A", key)
    if m and m.group(2) in _PAIRS:
        return (
            f"Resolution (Å) where the Fourier shell correlation of {_PAIRS[m.group(2)]} first drops "
            f"below {m.group(1)}, {_FLAVOURS[m.group(3)]}. Lower is better."
        )
    m = re.fullmatch(r"dPCC_(masked|unmasked)", key)
    if m:
        return (
            f"PCC(GT0,GT1) − PCC(GT,V), {_FLAVOURS[m.group(1)]}: the correlation lost to the pose "
            "errors, relative to the agreement of the ground-truth half-maps. Lower is better."
        )
    m = re.fullmatch(r"dFSCR(0\.143|0\.5)_(masked|unmasked)_A", key)
    if m:
        t = m.group(1)
        return (
            f"FSCR{t}(GT,V) − FSCR{t}(GT0,GT1) (Å), {_FLAVOURS[m.group(2)]}: the resolution lost to "
            "the pose errors. Lower is better."
        )
    if key.startswith("paper_columns_masked."):
        return f"Whether the paper's column {key.split('.', 1)[1]} holds a masked value."
    if key.startswith("references."):
        ref, _, metric = key[len("references.") :].partition(".")
        return f"{metric} of {ref} for this entry: a reference value, not a prediction."
    m = re.fullmatch(r"(frame_.+|MAnE_unaligned)_half([01])(_deg)?", key)
    if m:
        return f"Frame-free alignment of half-set {m.group(2)}: {m.group(1)} (see cesped.evaluation.frames)."
    if key.startswith("heterogeneity."):
        from cesped.evaluation.heterogeneity import key_meaning

        return key_meaning(key)
    if key.startswith("paper_compatible."):
        from cesped.evaluation.paper_compat import ORIGINAL_KEYS

        col = key.split(".", 1)[1]
        if col == "mask_used":
            return "Whether the original package's definitions below used a mask."
        if col in ORIGINAL_KEYS:
            return (
                f"The paper's column {col} with the original package's definition (its "
                f"{ORIGINAL_KEYS[col]}), see cesped.evaluation.paper_compat."
            )
    return ""


# ------------------------------------------------------------------------------- summary
# (label, metric key template ({f}: masked/unmasked), unit, one-line meaning)
_SUMMARY_ROWS = (
    ("MAnE", "MAnE_deg", "°", "mean angular error of the predicted poses (symmetry-aware); lower is better"),
    ("wMAnE", "wMAnE_deg", "°", "MAnE weighted by the ground-truth pose confidence; lower is better"),
    (
        "PCC(V0,V1)",
        "PCC(V0,V1)_{f}",
        "",
        "correlation of the two predicted-pose half-maps; higher is better, about PCC(GT0,GT1) at best",
    ),
    (
        "FSCR0.143(V0,V1)",
        "FSCR0.143(V0,V1)_{f}_A",
        "Å",
        "half-map resolution of the predicted-pose reconstruction (FSC 0.143); lower is better",
    ),
    (
        "PCC(GT,V)",
        "PCC(GT,V)_{f}",
        "",
        "correlation of the predicted-pose map with the ground-truth map; 1 is identical",
    ),
    (
        "FSCR0.143(GT,V)",
        "FSCR0.143(GT,V)_{f}_A",
        "Å",
        "resolution to which the predicted-pose map matches the ground-truth map (FSC 0.143); "
        "lower is better",
    ),
    ("FSCR0.5(GT,V)", "FSCR0.5(GT,V)_{f}_A", "Å", "the same at FSC 0.5; lower is better"),
    ("dPCC", "dPCC_{f}", "", "PCC(GT0,GT1) − PCC(GT,V): correlation lost to pose errors; lower is better"),
    (
        "dFSCR0.143",
        "dFSCR0.143_{f}_A",
        "Å",
        "FSCR0.143(GT,V) − FSCR0.143(GT0,GT1): resolution lost to pose errors; lower is better",
    ),
)
RANDOM_POSES = "random poses"
GT_POSES = "ground-truth poses"


def _flavour(metrics: Mapping[str, object]) -> str:
    fl = metrics.get("paper_columns_use")
    if fl in ("masked", "unmasked"):
        return str(fl)
    return "masked" if metrics.get("PCC(GT,V)_masked") is not None else "unmasked"


def _num(v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    return float(v)


def ground_truth_pose_values(metrics: Mapping[str, object]) -> dict[str, float]:
    """What each summary metric would be with the ground-truth poses (V0 = GT0, V1 = GT1),
    from the evaluation's own ground-truth maps: the best a pose predictor can reach."""
    f = _flavour(metrics)
    gt_pcc = _num(metrics.get(f"PCC(GT0,GT1)_{f}"))
    gt_res = _num(metrics.get(f"FSCR0.143(GT0,GT1)_{f}_A"))
    px = _num(metrics.get("voxel_size_A"))
    nyquist = 2.0 * px if px else None
    out = {"MAnE": 0.0, "wMAnE": 0.0, "PCC(GT,V)": 1.0}
    if gt_pcc is not None:
        out["PCC(V0,V1)"] = gt_pcc
        out["dPCC"] = gt_pcc - 1.0
    if gt_res is not None:
        out["FSCR0.143(V0,V1)"] = gt_res
    if nyquist is not None:  # FSC(GT, GT) = 1 at every shell: the last shell, Nyquist
        out["FSCR0.143(GT,V)"] = nyquist
        out["FSCR0.5(GT,V)"] = nyquist
        if gt_res is not None:
            out["dFSCR0.143"] = nyquist - gt_res
    return out


def _summary_table(metrics, references: Mapping[str, Mapping[str, float]]) -> str:
    f = _flavour(metrics)
    columns = dict(references)
    columns[GT_POSES] = ground_truth_pose_values(metrics)
    head = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    rows = []
    for label, template, unit, meaning in _SUMMARY_ROWS:
        key = template.format(f=f)
        if key not in metrics:
            continue
        refs = []
        for col in columns.values():
            v = col.get(label, col.get(key))
            refs.append(f"<td class=num>{_fmt_value(v) if v is not None else '—'}</td>")
        name = f"{label} ({unit})" if unit else label
        rows.append(
            f"<tr><th>{html.escape(name)}</th><td class='num value'>{_fmt_value(metrics[key])}</td>"
            f"{''.join(refs)}<td>{html.escape(meaning)}</td></tr>"
        )
    region = "masked (inside the entry's mask)" if f == "masked" else "unmasked (whole box)"
    return (
        '<table id="summary"><thead><tr><th>metric</th><th>this evaluation</th>'
        f"{head}<th>meaning</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<p class="note">Map metrics are {html.escape(region)}. '
        "The reference columns say where a value sits: random poses are the no-skill end "
        "(computed for this entry's poses and symmetry); the image-limited floor, when computed, "
        "is the error of an exhaustive search against the entry's true map, about the smallest "
        "error any estimator can reach on these images; ground-truth poses are the best "
        "reachable, from this evaluation's ground-truth half-maps. — : not computed.</p>"
    )


# ------------------------------------------------------------------------------ full table
def _display(v, outdir: Path) -> str:
    """A value for the page; absolute paths become paths relative to the report."""
    if isinstance(v, (str, os.PathLike)) and os.path.isabs(str(v)):
        try:
            v = os.path.relpath(str(v), str(outdir))
        except ValueError:  # another drive (Windows): the name only
            v = os.path.basename(str(v))
    return _fmt_value(v)


def _full_rows(metrics: Mapping[str, object], descriptions: Mapping[str, str]) -> list[tuple]:
    """(key, value, meaning) of every scalar metric, nested blocks flattened to ``block.key``;
    the paper's column aliases that repeat a metric already listed are left out."""
    try:
        from cesped.evaluation.evaluate import PAPER_COLUMNS
    except ImportError:  # pragma: no cover - the evaluation module is always there
        PAPER_COLUMNS = {}
    f = _flavour(metrics)
    flat: dict[str, object] = {}
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                flat[f"{k}.{k2}"] = v2
        else:
            flat[k] = v
    rows = []
    for k, v in flat.items():
        if isinstance(v, (list, tuple, dict, np.ndarray)):
            continue
        alias_of = PAPER_COLUMNS.get(k)
        if alias_of is not None:
            target = alias_of.format(m=f)
            if target in flat and flat[target] == v:
                continue
        rows.append((k, v, descriptions.get(k) or metric_meaning(k)))
    return rows


def write_report(
    outdir,
    metrics: Mapping[str, object],
    per_particle: Mapping[str, Sequence] | None = None,
    plots: Sequence[tuple[str, str | os.PathLike]] = (),
    title: str = "cesped evaluation",
    descriptions: Mapping[str, str] | None = None,
    references: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Write ``<outdir>/report.html``: a summary, every plot, then the full metrics table.

    The page opens with the paper's headline metrics, each with a one-line meaning, beside
    reference values (random poses for this entry, and the values the ground-truth poses give,
    from the evaluation's own GT half-maps); then the plots (embedded, base64); then every
    metric with its meaning behind a fold. No absolute path of the machine appears: paths in
    the metrics are shown relative to the report.

    Parameters
    ----------
    outdir : path-like
        Evaluation output directory; the two report plots are written there too
        (``orientation_coverage.png``, ``confidence_vs_error.png``).
    metrics : mapping
        Metric name -> value (as in ``metrics.json``); a nested mapping (e.g. a
        ``paper_compatible`` block) is listed as ``block.key`` rows.
    per_particle : mapping, optional
        Arrays over all evaluated particles: ``true_rotmats`` (n, 3, 3), ``pred_rotmats``
        (n, 3, 3), ``errors_deg`` (n,), ``confidence`` (n,) or None (the predictions carry no
        confidence). When given, the coverage plot is made, and the calibration plot when the
        confidence is known; without ``references``, the random-pose reference is computed from
        ``true_rotmats`` (MAnE and median only: the GT confidence of wMAnE is not among them).
    plots : sequence of (caption, png path)
        Further plots to embed (e.g. the evaluation's FSC curves), in this order.
    title : str
        Page title.
    descriptions : mapping, optional
        Metric name -> what it measures, overriding :func:`metric_meaning` in the full table.
    references : mapping, optional
        Reference column name -> {summary label (e.g. ``"MAnE"``) or metric key -> value}, shown
        in the summary in this order, e.g. ``{"random poses": random_pose_reference(...)}``
        (:func:`cesped.evaluation.references.random_pose_reference`; its ``MAnE_deg`` and
        ``wMAnE_deg`` keys are the metric keys) and, with ``evaluateEntry --floor``, the
        image-limited floor (:func:`cesped.evaluation.floor.floor_reference`).

    Returns
    -------
    Path of the written ``report.html``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Path]] = [(cap, Path(p)) for cap, p in plots]
    missing = [os.path.basename(str(p)) for _, p in figures if not Path(p).is_file()]
    if missing:
        raise ValueError(f"write_report: plot files not found: {', '.join(missing)}")
    if per_particle is not None:
        from cesped.evaluation.plots import write_png

        for caption, name, data in render_particle_plots(per_particle):
            figures.append((caption, write_png(outdir / name, data)))
    if references is None:
        references = {}
        if per_particle is not None:
            from cesped.evaluation.references import random_pose_reference

            kind = "S2" if metrics.get("predictionType") == "S2" else "SO3"
            sym = str(metrics.get("symmetry") or "C1")
            references = {RANDOM_POSES: random_pose_reference(per_particle["true_rotmats"], sym, kind=kind)}
    rows = "\n".join(
        f"<tr><th>{html.escape(str(k))}</th><td class=num>{_display(v, outdir)}</td>"
        f"<td>{html.escape(meaning)}</td></tr>"
        for k, v, meaning in _full_rows(metrics, dict(descriptions or {}))
    )
    context = [
        f"{name}: {_display(metrics[key], outdir)}"
        for name, key in (
            ("entry", "target"),
            ("predictions", "predictionType"),
            ("symmetry", "symmetry"),
            ("reconstruction", "backend"),
            ("CTF", "ctf"),
            ("mask", "mask"),
        )
        if key in metrics
    ]
    body = [
        page_head(title),
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{" · ".join(context)}</p>' if context else "",
        '<h2 id="summary-title">Summary</h2>',
        _summary_table(metrics, references),
        "<h2>Plots</h2>",
        *[_img_tag(p, cap) for cap, p in figures],
        "<h2>All metrics</h2>",
        "<details><summary>Every metric of this evaluation, with its meaning</summary>",
        f"<table id=all-metrics><thead><tr><th>metric</th><th>value</th><th>meaning</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>",
        '<p class="note">Angles in degrees, resolutions in Å, correlations are Pearson coefficients.</p>',
        "</details>",
        "</body></html>",
    ]
    out = outdir / "report.html"
    with atomic_open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(body))
    return out
