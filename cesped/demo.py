"""The whole benchmark end to end on a built-in synthetic entry (what ``make demo`` runs).

Steps, each reused when its output already exists (a second run only re-evaluates):

1. simulate the entry (default ``synth_6msm``: CFTR, C1, 8000 particles of 64 px at 3 Å/px),
2. train Image2Sphere on half-set 0 and predict half-set 1, then the reverse
   (``python -m cesped.train experiment=demo halfset=h``),
3. refine both prediction files by projection matching against the map of the TRAINING half's
   ground-truth poses (``python -m cesped.refine``; no label of the refined half is read), from
   the network's top-5 cells and the best rotations of a global grid search against that map
   (``--global-top``): ``predictions_<h>_refined.star`` beside the raw predictions, with refined
   origins and, per particle, the start its pose was refined from (``cespedRefinementStart``);
4. the entry's image-limited floor (``evaluateEntry --floor``: global search + local refinement
   against the true map, cached per entry);
5. evaluate the raw predictions (``SO3``, with the floor and random-pose references) and the
   refined ones (``SO3xR2``: their own origins) (``python -m cesped.evaluateEntry``): metrics,
   reconstructions, plots and ``report.html`` in ``evaluation/`` and ``evaluation_refined/``;
   three rows (raw, refined, floor; and random poses) printed and written to ``summary.json``.

Example usage::

    python -m cesped.demo                              # outputs in ./demo_output
    python -m cesped.demo --workdir runs/demo_4e43 --entry synth_4e43
    python -m cesped.demo --train-override trainer.max_time=00:00:02:00   # a quicker, worse demo
    python -m cesped.demo --fresh                      # redo training and evaluation
    python -m cesped.demo --no-refine                  # raw predictions only (no refinement, no floor)

The entry itself lives in the benchmark directory (``--benchmarkDir`` or
``$CESPED_BENCHMARK_DIR``), like any entry, and is generated once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from cesped.io.atomic import atomic_open

__all__ = ["run_demo", "main", "summary_rows", "format_rows"]


def _log(msg: str) -> None:
    print(f"[cesped demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _compose_train_config(entry: str, halfset: int, workdir: Path, benchmark_dir, overrides):
    from hydra import compose, initialize_config_module

    ovr = [
        "experiment=demo",
        f"entry={entry}",
        f"halfset={halfset}",
        f"output_root={(workdir / 'train').as_posix()}",
        "resume=true",
    ]
    if benchmark_dir is not None:
        ovr.append(f"benchmark_dir={Path(benchmark_dir).as_posix()}")
    ovr.extend(overrides)
    with initialize_config_module(config_module="cesped.configs", version_base="1.3"):
        return compose(config_name="train", overrides=ovr)


def run_demo(
    entry: str = "synth_6msm",
    workdir: str | Path = "demo_output",
    benchmark_dir: str | Path | None = None,
    train_overrides: tuple[str, ...] = (),
    fresh: bool = False,
    device: str = "cpu",
    refine: bool = True,
) -> dict:
    """Simulate (once), train both halves, predict, evaluate; return the metrics dict.

    Parameters
    ----------
    entry : str
        A built-in synthetic entry (``synth_6msm`` or ``synth_4e43``) or any local entry.
    workdir : path-like
        Where training runs (``train/<entry>/half<h>/``) and the evaluation (``evaluation/``) go.
    benchmark_dir : path-like, optional
        Benchmark directory holding the entry (default ``$CESPED_BENCHMARK_DIR`` or per-user dir).
    train_overrides : tuple of str
        Extra Hydra overrides for both training runs (e.g. ``trainer.max_time=00:00:02:00``).
    fresh : bool
        Discard previous training and evaluation outputs in ``workdir`` first.
    device : str
        Device of the refinement, the floor and the native reconstruction in the evaluation.
    refine : bool
        Refine both prediction files, compute the floor and evaluate the refined predictions.
    """
    from cesped.data.local import ensure_entry
    from cesped.evaluation.evaluate import evaluate
    from cesped.training.train import train

    workdir = Path(workdir).resolve()
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    timings: dict[str, float] = {}

    t0 = time.time()
    for h in (0, 1):
        path = ensure_entry(entry, h, benchmark_dir)
    _log(f"entry {entry} ready in {path}")
    timings["entry_s"] = time.time() - t0

    preds: dict[int, Path] = {}
    for h in (0, 1):
        cfg = _compose_train_config(entry, h, workdir, benchmark_dir, train_overrides)
        out = Path(cfg.output_dir)
        pred = out / f"predictions_{1 - h}.star"
        t0 = time.time()
        if pred.is_file():
            _log(f"half-set {h}: reusing {pred} (delete it or use --fresh to retrain)")
        else:
            _log(f"half-set {h}: training Image2Sphere (experiment=demo), then predicting half-set {1 - h}")
            result = train(cfg)
            pred = Path(result.get("predictions") or pred)
            if not pred.is_file():
                raise RuntimeError(f"training of half-set {h} finished without writing {pred}")
        timings[f"train_half{h}_s"] = time.time() - t0
        preds[1 - h] = pred

    edir = Path(path)
    refined: dict[int, Path] = {}
    with_floor = refine and (edir / "gt_map.mrc").is_file()
    if refine:
        t0 = time.time()
        for h in (0, 1):
            refined[h] = _refine_half(entry, h, preds[h], benchmark_dir, device)
        timings["refine_s"] = time.time() - t0
    if with_floor:
        t0 = time.time()
        from cesped.evaluation.floor import floor_reference

        _log("image-limited floor of both halves (global search against the true map; cached per entry)")
        floor_reference(edir, device=device, verbose=True)
        timings["floor_s"] = time.time() - t0

    t0 = time.time()
    _log("evaluating both prediction files (native reconstruction)")
    common = {
        "targetName": entry,
        "usePredConfidence": True,
        "n_cpus": 2,
        "benchmarkDir": None if benchmark_dir is None else str(benchmark_dir),
        "device": device,
    }
    metrics = evaluate(
        half0PredsFname=str(preds[0]),
        half1PredsFname=str(preds[1]),
        predictionType="SO3",
        outdir=str(workdir / "evaluation"),
        floor=with_floor,
        **common,
    )
    timings["evaluate_s"] = time.time() - t0
    from cesped.evaluation.evaluate import summary_table

    print(summary_table(metrics), flush=True)
    refined_metrics = None
    if refine:
        t0 = time.time()
        _log("evaluating the refined predictions (SO3xR2: their refined origins)")
        refined_metrics = evaluate(
            half0PredsFname=str(refined[0]),
            half1PredsFname=str(refined[1]),
            predictionType="SO3xR2",
            outdir=str(workdir / "evaluation_refined"),
            floor=with_floor,
            **common,
        )
        timings["evaluate_refined_s"] = time.time() - t0
    timings["total_s"] = time.time() - t_start
    rows = summary_rows(metrics, refined_metrics)
    print(format_rows(rows), flush=True)
    with atomic_open(workdir / "timings.json") as fh:
        json.dump(timings, fh, indent=1)
    with atomic_open(workdir / "summary.json") as fh:
        json.dump({"entry": entry, "rows": rows, "timings_s": timings}, fh, indent=1)
    report = workdir / "evaluation" / "report.html"
    _log(f"done in {timings['total_s'] / 60:.1f} min; timings in {workdir / 'timings.json'}")
    if report.is_file():
        _log(f"report: {report}")
    _log(f"metrics: {workdir / 'evaluation' / 'metrics.json'}; rows: {workdir / 'summary.json'}")
    return metrics


def _refine_half(entry: str, half: int, pred: Path, benchmark_dir, device: str) -> Path:
    """``predictions_<half>_refined.star`` beside ``pred`` (reused when newer than ``pred`` and
    made with the current default search): top-K candidates when ``<stem>_topk.npz`` is there
    (K <= 5), else the predicted pose, and the default global-search starts."""
    import numpy as np

    from cesped import settings
    from cesped.data.local import entry_symmetry
    from cesped.io.star import read_star
    from cesped.refinement.api import (
        DEFAULT_GLOBAL_TOP,
        DEFAULT_REFERENCE_MASK,
        DEFAULT_ROUNDS,
        DEFAULT_SURVIVORS,
        DEFAULT_TRACK_SEPARATION,
        refine_star,
    )

    out = pred.with_name(f"{pred.stem}_refined.star")
    if out.is_file() and out.stat().st_mtime >= pred.stat().st_mtime:
        meta = read_star(out).other_blocks.get("cesped_refinement") or {}
        current = {
            "cespedRefinementGlobalTop": str(DEFAULT_GLOBAL_TOP),
            "cespedRefinementRounds": str(DEFAULT_ROUNDS),
            "cespedRefinementSurvivors": str(DEFAULT_SURVIVORS),
            "cespedRefinementReferenceWeighting": "fsc",
            "cespedRefinementTrackSeparationDeg": str(float(DEFAULT_TRACK_SEPARATION)),
            "cespedRefinementReferenceMask": DEFAULT_REFERENCE_MASK,  # its note starts with the mode
            "cespedRefinementSearchSymmetry": entry_symmetry(settings.benchmark_dir(benchmark_dir) / entry),
        }
        if all(str(meta.get(k)).split(" ")[0] == v for k, v in current.items()):
            _log(f"half-set {half}: reusing {out}")
            return out
        _log(f"half-set {half}: {out} was made with another search; refining again")
    topk = pred.with_name(f"{pred.stem}_topk.npz")
    k = 1
    if topk.is_file():
        with np.load(topk) as z:
            k = min(5, int(z["rotmats"].shape[1]))
    _log(f"half-set {half}: refining {pred.name} (top-{k}) against the map of half-set {1 - half}")
    summary = refine_star(
        entry,
        half,
        pred,
        out,
        reference_from_half=1 - half,
        top_k=k,
        device=device,
        benchmark_dir=benchmark_dir,
    )
    _log(
        f"half-set {half}: refined {summary['n']} particles in {summary['seconds']:.0f} s "
        f"({summary['from_global']:.1%} from the {summary['global_top']} global-search starts; "
        f"{summary['rounds']} rounds)"
    )
    return out


def summary_rows(raw: dict, refined: dict | None) -> dict:
    """The demo's rows: ``raw``, ``refined``, ``floor`` and ``random poses`` (pose metrics, degrees;
    ``shiftsRMSE_A`` for the refined origins)."""

    def pick(m, shifts=False):
        row = {"MAnE_deg": m.get("MAnE_deg"), "median_deg": m.get("median_angular_error_deg")}
        if shifts:
            row["shiftsRMSE_A"] = m.get("shiftsRMSE_A")
        return row

    refs = raw.get("references") or {}
    rows = {"raw": pick(raw)}
    if refined is not None:
        rows["refined"] = pick(refined, shifts=True)
    from cesped.evaluation.floor import FLOOR

    if FLOOR in refs:
        rows["floor"] = {**pick(refs[FLOOR]), "shiftsRMSE_A": refs[FLOOR].get("shift_rmse_A")}
    if "random poses" in refs:
        rows["random poses"] = pick(refs["random poses"])
    return rows


def format_rows(rows: dict) -> str:
    """The rows as a small text table."""

    def f(v):
        return "n/a" if v is None else f"{v:.2f}"

    lines = [f"{'poses':<14}{'MAnE (deg)':>12}{'median (deg)':>14}{'shifts RMSE (A)':>17}"]
    for name, r in rows.items():
        sh = f(r["shiftsRMSE_A"]) if "shiftsRMSE_A" in r else "-"
        lines.append(f"{name:<14}{f(r['MAnE_deg']):>12}{f(r['median_deg']):>14}{sh:>17}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m cesped.demo", description=__doc__, formatter_class=fmt)
    parser.add_argument("--entry", default="synth_6msm", help="entry to run on (default synth_6msm)")
    parser.add_argument("--workdir", default="demo_output", help="output directory (default ./demo_output)")
    parser.add_argument("--benchmarkDir", default=None, help="benchmark directory holding the entry")
    parser.add_argument(
        "--train-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override for training (repeatable)",
    )
    parser.add_argument("--device", default="cpu", help="device of the reconstruction (cpu, cuda)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier training/evaluation outputs")
    parser.add_argument(
        "--no-refine",
        dest="refine",
        action="store_false",
        help="no refinement, no floor: raw predictions only",
    )
    args = parser.parse_args(argv)
    run_demo(
        args.entry,
        args.workdir,
        args.benchmarkDir,
        tuple(args.train_override),
        args.fresh,
        args.device,
        args.refine,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
