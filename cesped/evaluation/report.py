"""A self-contained HTML report of one evaluation: metrics table and every plot, images embedded.

The report adds two figures to the evaluation's own plots (FSC curves, angular-error
histogram, central slices, see :mod:`cesped.evaluation.plots`):

* an orientation-coverage map: the density of true and of predicted viewing directions on
  the sphere (healpy Mollweide projections, the same colour scale), and
* a confidence-vs-error plot: per confidence decile, the mean and median angular error, to
  show whether the predicted confidence is calibrated (a useful confidence has the error
  decreasing with it).

Viewing direction convention: for a pose label ``R = Aᵀ`` (see :mod:`cesped.geometry`), the
projection integrates the volume along ``R · e_z`` (the third column of ``R``), a unit vector
in the volume's frame ``(x, y, z)``. healpy's ``vec2pix`` uses the same ``(x, y, z)``.

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

from cesped.io.atomic import atomic_open, atomic_path

__all__ = [
    "viewing_directions",
    "plot_orientation_coverage",
    "plot_confidence_vs_error",
    "write_report",
]


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


def _direction_density(directions: np.ndarray, nside: int) -> np.ndarray:
    import healpy as hp

    npix = hp.nside2npix(nside)
    pix = hp.vec2pix(nside, directions[:, 0], directions[:, 1], directions[:, 2])
    counts = np.bincount(pix, minlength=npix).astype(np.float64)
    return counts / max(len(directions), 1) * npix  # 1.0 = uniform coverage


def _auto_nside(n: int, per_pixel: int = 20) -> int:
    """Largest power-of-two nside in [1, 16] with at least ``per_pixel`` particles per pixel."""
    nside = 1
    while nside < 16 and n / (12 * (2 * nside) ** 2) >= per_pixel:
        nside *= 2
    return nside


def plot_orientation_coverage(
    true_rotmats, pred_rotmats, path, nside: int | None = None, title: str = ""
) -> Path:
    """Mollweide maps of true and predicted viewing-direction density (1 = uniform).

    Parameters
    ----------
    true_rotmats, pred_rotmats : array-like (n, 3, 3)
        Ground-truth and predicted pose labels ``R = Aᵀ``.
    path : path-like
        PNG file to write (atomically).
    nside : int, optional
        HEALPix resolution of the density maps (``12 nside²`` pixels); by default the finest
        with about 20 particles per pixel or more, so that the map shows coverage, not noise.
    """
    import healpy as hp
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if nside is None:
        nside = _auto_nside(len(true_rotmats))
    true_d = _direction_density(viewing_directions(true_rotmats), nside)
    pred_d = _direction_density(viewing_directions(pred_rotmats), nside)
    vmax = float(max(np.percentile(true_d, 99), np.percentile(pred_d, 99), 1.0))
    fig = plt.figure(figsize=(11, 3.8))
    for i, (m, name) in enumerate(((true_d, "true"), (pred_d, "predicted"))):
        hp.mollview(
            m, fig=fig.number, sub=(1, 2, i + 1), min=0.0, max=vmax, cmap="viridis",
            title=f"{name} viewing directions (n={len(true_rotmats) if i == 0 else len(pred_rotmats)})",
            unit="density (1 = uniform)", notext=True,
        )
        hp.graticule(dpar=30, dmer=30, alpha=0.3)
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
    path : path-like
        PNG file to write (atomically).
    n_bins : int
        Number of confidence quantile bins.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    c = np.asarray(confidence, dtype=np.float64).ravel()
    e = np.asarray(errors_deg, dtype=np.float64).ravel()
    if c.shape != e.shape:
        raise ValueError(f"confidence {c.shape} and errors_deg {e.shape} differ in length")
    stats = calibration_table(c, e, n_bins)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
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
    fig.tight_layout()
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


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _fmt_value(v) -> str:
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


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0} img{max-width:100%} figcaption{font-size:.85em;color:#555}
.note{font-size:.85em;color:#555}
"""


def write_report(
    outdir,
    metrics: Mapping[str, object],
    per_particle: Mapping[str, Sequence] | None = None,
    plots: Sequence[tuple[str, str | os.PathLike]] = (),
    title: str = "cesped evaluation",
    descriptions: Mapping[str, str] | None = None,
) -> Path:
    """Write ``<outdir>/report.html``: metrics table and all plots, images embedded (base64).

    Parameters
    ----------
    outdir : path-like
        Evaluation output directory; the two report plots are written there too
        (``orientation_coverage.png``, ``confidence_vs_error.png``).
    metrics : mapping
        Metric name -> value (as in ``metrics.json``).
    per_particle : mapping, optional
        Arrays over all evaluated particles: ``true_rotmats`` (n, 3, 3), ``pred_rotmats``
        (n, 3, 3), ``errors_deg`` (n,), ``confidence`` (n,) or None (the predictions carry no
        confidence). When given, the coverage plot is made, and the calibration plot when the
        confidence is known.
    plots : sequence of (caption, png path)
        Further plots to embed (e.g. the evaluation's FSC curves), in this order.
    title : str
        Page title.
    descriptions : mapping, optional
        Metric name -> what it measures, shown in the table.

    Returns
    -------
    Path of the written ``report.html``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Path]] = [(cap, Path(p)) for cap, p in plots]
    if per_particle is not None:
        cov = plot_orientation_coverage(
            per_particle["true_rotmats"], per_particle["pred_rotmats"], outdir / "orientation_coverage.png"
        )
        figures.append(("Orientation coverage: density of true (left) and predicted (right) viewing "
                        "directions on the sphere, Mollweide projection (1 = uniform).", cov))
        if per_particle.get("confidence") is not None:
            cal = plot_confidence_vs_error(
                per_particle["confidence"], per_particle["errors_deg"], outdir / "confidence_vs_error.png"
            )
            figures.append(("Predicted confidence vs angular error: is the confidence calibrated? "
                            "Right: mean error of the particles kept when selecting by confidence.", cal))
    missing = [str(p) for _, p in figures if not Path(p).is_file()]
    if missing:
        raise ValueError(f"write_report: plot files not found: {', '.join(missing)}")
    descriptions = dict(descriptions or {})
    rows = "\n".join(
        f"<tr><th>{html.escape(str(k))}</th><td class=num>{_fmt_value(v)}</td>"
        f"<td>{html.escape(descriptions.get(k, ''))}</td></tr>"
        for k, v in metrics.items()
        if not isinstance(v, (list, tuple, dict, np.ndarray))
    )
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2>",
        f"<table><thead><tr><th>metric</th><th>value</th><th>meaning</th></tr></thead><tbody>{rows}</tbody></table>",
        '<p class="note">Angles in degrees, resolutions in Å, correlations are Pearson coefficients.</p>',
        "<h2>Plots</h2>",
        *[_img_tag(p, cap) for cap, p in figures],
        "</body></html>",
    ]
    out = outdir / "report.html"
    with atomic_open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(body))
    return out
