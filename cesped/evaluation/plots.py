"""Evaluation plots (matplotlib, Agg canvas; no global backend change), written atomically.

Example usage::

    from cesped.evaluation.plots import plot_fsc_curves
    plot_fsc_curves("fsc.png", freqs, {"FSC(GT0,GT1)_masked": curve}, thresholds=(0.143, 0.5))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "plot_fsc_curves",
    "plot_angular_errors",
    "plot_central_slices",
    "plot_error_by_conformation",
    "figure",
    "save",
    "write_png",
]


def figure(figsize):
    """A matplotlib ``Figure`` on its own Agg canvas (no pyplot, no global backend change).

    Parameters
    ----------
    figsize : (float, float)
        Width and height in inches (100 dpi).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path):
    """Render ``fig`` once as PNG to ``path``, atomically (temporary name, then rename).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like or binary file object
        A file object (e.g. ``io.BytesIO``) receives the PNG bytes as they are.

    Returns
    -------
    The path (as a ``Path``) or the file object.

    Notes
    -----
    The layout is the figure's own (fixed margins): no ``bbox_inches="tight"``, which would
    render the figure twice.
    """
    if hasattr(path, "write"):
        fig.savefig(path, format="png", dpi=100)
        return path
    from cesped.io.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def write_png(path, data: bytes) -> Path:
    """Write PNG bytes (e.g. rendered in memory by :func:`save`) to ``path`` atomically."""
    from cesped.io.atomic import atomic_path

    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"write_png: the data for {path} is not a PNG image")
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return path


def plot_fsc_curves(path, freqs, curves: dict, thresholds=(0.143, 0.5)) -> None:
    """FSC curves against spatial frequency (1/Å) with the threshold lines.

    Parameters
    ----------
    path : path
        PNG destination.
    freqs : array (k,)
        Shell frequencies in 1/Å.
    curves : dict[str, array (k,)]
        Label -> FSC values.
    thresholds : sequence of float
    """
    fig = figure((7, 4.5))
    fig.subplots_adjust(left=0.1, right=0.94, bottom=0.12, top=0.86)
    ax = fig.add_subplot(1, 1, 1)
    for label, c in curves.items():
        style = "-" if label.endswith("_masked") else "--"
        ax.plot(freqs, c, style, label=label)
    for t in thresholds:
        ax.axhline(t, color="grey", lw=0.8, ls=":")
        ax.text(freqs[-1], t, f" {t}", va="center", fontsize=8, color="grey")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlim(0, freqs[-1])
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    res = [r for r in (50, 20, 10, 8, 6, 5, 4, 3, 2.5, 2) if freqs[-1] > 0 and 1.0 / r <= freqs[-1]]
    top.set_xticks([1.0 / r for r in res])
    top.set_xticklabels([f"{r:g}" for r in res])
    top.set_xlabel("resolution (Å)")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_angular_errors(path, errors_deg) -> None:
    """Histogram of per-particle angular errors (degrees, both half-sets)."""
    e = np.asarray(errors_deg, dtype=np.float64)
    fig = figure((6, 4))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.96)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(e, bins=np.linspace(0, 180, 73), color="tab:blue", alpha=0.8)
    ax.axvline(float(np.mean(e)), color="k", ls="--", label=f"mean {np.mean(e):.2f}°")
    ax.axvline(float(np.median(e)), color="tab:red", ls=":", label=f"median {np.median(e):.2f}°")
    ax.set_xlabel("angular error (degrees)")
    ax.set_ylabel("particles")
    ax.legend()
    save(fig, path)


def plot_central_slices(path, gt, pred) -> None:
    """Central z, y and x slices of the ground-truth map GT (top) and the predicted map V (bottom)."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    n = gt.shape[0]
    c = n // 2
    fig = figure((9, 6))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.94, wspace=0.05, hspace=0.12)
    slices = {name: (v[c], v[:, c], v[:, :, c]) for name, v in (("GT", gt), ("V", pred))}
    for row, name in enumerate(("GT", "V")):
        for col, axis in enumerate(("z", "y", "x")):
            sl = slices[name][col]
            # each slice z-scored, then one display range for all panels (GT and V comparable)
            ax = fig.add_subplot(2, 3, 3 * row + col + 1)
            ax.imshow((sl - sl.mean()) / (sl.std() + 1e-30), cmap="gray", origin="lower", vmin=-2, vmax=6)
            ax.set_title(f"{name}, central {axis} slice", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    save(fig, path)


def plot_error_by_conformation(path, kind: str, labels, errors_deg, bin_edges=None) -> Path:
    """Angular error against conformation (heterogeneous entries).

    Parameters
    ----------
    path : path
        PNG destination.
    kind : {"states", "morph"}
        ``states``: bars of the mean and median error per state (particle counts on top);
        ``morph``: each particle's error against its coordinate ``t`` (dots) with the mean and
        median per bin (steps over ``bin_edges``).
    labels : array (n,)
        1-based states (int) or morph coordinates in [0, 1].
    errors_deg : array (n,)
        Per-particle angular errors (degrees).
    bin_edges : array (b + 1,), optional
        Morph bins (required for ``morph``).
    """
    lab = np.asarray(labels)
    e = np.asarray(errors_deg, dtype=np.float64)
    fig = figure((7, 4))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.93)
    ax = fig.add_subplot(1, 1, 1)
    if kind == "states":
        states = np.unique(lab.astype(np.int64))
        x = np.arange(len(states))
        means = [float(e[lab == s].mean()) for s in states]
        medians = [float(np.median(e[lab == s])) for s in states]
        ax.bar(x - 0.2, means, 0.4, label="mean (MAnE)", color="tab:blue")
        ax.bar(x + 0.2, medians, 0.4, label="median", color="tab:orange")
        for xi, s, m in zip(x, states, means):
            ax.text(xi - 0.2, m, f"n={int((lab == s).sum())}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels([f"state {int(s)}" for s in states])
        ax.set_xlabel("conformational state (rlnClassNumber)")
    else:
        edges = np.asarray(bin_edges, dtype=np.float64)
        ax.scatter(lab, e, s=3, alpha=0.25, color="grey", label="particles")
        idx = np.clip(np.searchsorted(edges, lab, side="right") - 1, 0, len(edges) - 2)
        for stat, name, color in (
            (np.mean, "mean per bin", "tab:blue"),
            (np.median, "median per bin", "tab:red"),
        ):
            vals = [float(stat(e[idx == b])) if (idx == b).any() else np.nan for b in range(len(edges) - 1)]
            ax.stairs(vals, edges, label=name, color=color, lw=2)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("morph coordinate t (0: first structure, 1: second)")
    ax.set_ylabel("angular error (degrees)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save(fig, path)
