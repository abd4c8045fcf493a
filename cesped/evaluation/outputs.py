"""Writing one evaluation's outputs (maps, curves, plots, report, metrics) and its summary table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cesped.evaluation.scores import THRESHOLDS, jsonable

__all__ = ["write_outputs", "write_plots", "summary_table"]


def write_plots(outdir, metrics, freqs, curves, gt_avg, pred_avg, early_plots, title, extra_plots=()) -> None:
    """Map plots (FSC curves, central slices), the per-particle figures and report.html."""
    from cesped.evaluation import plots as pl
    from cesped.evaluation.report import write_report

    # matplotlib is not thread-safe (shared font objects): the thread ends before we plot here
    figures = {name: (cap, data) for cap, name, data in early_plots.result()}
    pl.plot_fsc_curves(outdir / "fsc.png", freqs, curves, THRESHOLDS)
    pl.plot_central_slices(outdir / "central_slices.png", gt_avg, pred_avg)
    for name, (_, data) in figures.items():
        pl.write_png(outdir / name, data)
    hist = figures.pop("angular_errors.png")[0]
    order = [
        (
            "Fourier shell correlation of GT0-GT1, V0-V1 and GT-V, thresholds 0.143 and 0.5.",
            outdir / "fsc.png",
        ),
        (hist, outdir / "angular_errors.png"),
        (
            "Central slices of the ground-truth map GT and the predicted-pose map V.",
            outdir / "central_slices.png",
        ),
        *list(extra_plots),
        *[(cap, outdir / name) for name, (cap, _) in figures.items()],
    ]
    write_report(outdir, metrics, None, plots=order, title=title, references=metrics.get("references"))


def write_outputs(
    outdir: Path,
    metrics,
    paper,
    curves,
    voxel_size,
    box,
    gt_maps,
    pred_maps,
    gt_avg,
    pred_avg,
    mask_arr,
    early_plots,
    title: str = "cesped evaluation",
    extra_plots=(),
) -> None:
    """Write maps, curves, plots, report and (last) the metrics into ``outdir``, each atomically.

    ``outdir`` is the staging directory of :class:`cesped.evaluation.staging.StagedOutdir` when
    called by the evaluation (it is swapped in when everything is written).

    ``early_plots`` is the :class:`BackgroundPlots` job of the per-particle figures, or None
    for no plots at all. ``extra_plots``: further (caption, png path) for the report, already
    written (the per-conformation plot of a heterogeneous entry).
    """
    from cesped.evaluation.metrics import fsc_frequencies
    from cesped.io.atomic import atomic_open
    from cesped.io.mrc import write_map

    outdir.mkdir(parents=True, exist_ok=True)
    maps = {
        "gt_0": gt_maps[0],
        "gt_1": gt_maps[1],
        "gt": gt_avg,
        "pred_0": pred_maps[0],
        "pred_1": pred_maps[1],
        "pred": pred_avg,
    }
    for name, vol in maps.items():
        write_map(outdir / f"{name}.mrc", vol.astype(np.float32), voxel_size)
    freqs = fsc_frequencies(box, voxel_size)
    table = pd.DataFrame({"frequency_1/A": freqs, **{k: v for k, v in curves.items()}})
    with atomic_open(outdir / "fsc_curves.csv") as fh:
        table.to_csv(fh, index=False, float_format="%.8g")
    if early_plots is not None:
        write_plots(outdir, metrics, freqs, curves, gt_avg, pred_avg, early_plots, title, extra_plots)
    row = {k: jsonable(v) for k, v in paper.items()}
    # the original package's exact definitions beside ours (see cesped.evaluation.paper_compat)
    row.update({f"paper_compatible.{k}": v for k, v in metrics.get("paper_compatible", {}).items()})
    # heterogeneous entries: the per-conformation metrics (scalars) as flat columns
    row.update(
        {
            f"heterogeneity.{k}": v
            for k, v in metrics.get("heterogeneity", {}).items()
            if not isinstance(v, (list, dict))
        }
    )
    with atomic_open(outdir / "metrics.csv") as fh:
        pd.DataFrame([row]).to_csv(fh, index=False, float_format="%.6g")
    with atomic_open(outdir / "metrics.json") as fh:
        json.dump(metrics, fh, indent=2)


def summary_table(metrics: dict) -> str:
    """Human-readable summary of :func:`evaluate`'s result (one metric per line)."""

    def f(v, nd=4):
        return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    lines = [
        f"> EVALUATION of {metrics.get('target')} ({metrics.get('predictionType')}, symmetry "
        f"{metrics.get('symmetry')}, backend {metrics.get('backend')}, "
        f"mask: {metrics.get('mask') or 'none'})",
        f"{'MAnE (deg)':<34}{f(metrics.get('MAnE_deg'), 3)}",
        f"{'wMAnE (deg)':<34}{f(metrics.get('wMAnE_deg'), 3)}",
        f"{'shifts RMSE (A)':<34}{f(metrics.get('shiftsRMSE_A'), 3)}",
        f"{'':<34}{'masked':>12}{'unmasked':>12}",
    ]
    rows = [
        "PCC(GT0,GT1)",
        "PCC(V0,V1)",
        "PCC(GT,V)",
        "dPCC",
        "FSCR0.143(GT0,GT1)",
        "FSCR0.143(V0,V1)",
        "FSCR0.143(GT,V)",
        "dFSCR0.143",
        "FSCR0.5(GT0,GT1)",
        "FSCR0.5(V0,V1)",
        "FSCR0.5(GT,V)",
        "dFSCR0.5",
    ]
    for r in rows:
        is_res = r.startswith(("FSCR", "dFSCR"))
        unit = " (A)" if is_res else ""
        vals = []
        for fl in ("masked", "unmasked"):
            if is_res:
                base = r if r.startswith("d") else r
                key = f"{base}_{fl}_A"
            else:
                key = f"{r}_{fl}"
            vals.append(f(metrics.get(key), 3 if is_res else 4))
        lines.append(f"{r + unit:<34}{vals[0]:>12}{vals[1]:>12}")
    het = metrics.get("heterogeneity") or {}
    for g in het.get("groups", []):
        n = het.get(f"{g}.n_particles")
        label = f"MAnE {g} (deg, n={n})"
        lines.append(f"{label:<34}{f(het.get(f'{g}.MAnE_deg'), 3)}")
    return "\n".join(lines)
