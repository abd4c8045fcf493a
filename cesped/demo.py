"""The whole benchmark end to end on a built-in synthetic entry (what ``make demo`` runs).

Steps, each reused when its output already exists (a second run only re-evaluates):

1. simulate the entry (default ``synth_6msm``: CFTR, C1, 8000 particles of 64 px at 3 Å/px),
2. train Image2Sphere on half-set 0 and predict half-set 1, then the reverse
   (``python -m cesped.train experiment=demo halfset=h``),
3. evaluate both prediction files (``python -m cesped.evaluateEntry``): metrics table,
   reconstructions, plots and ``report.html``.

Example usage::

    python -m cesped.demo                              # outputs in ./demo_output
    python -m cesped.demo --workdir runs/demo_4e43 --entry synth_4e43
    python -m cesped.demo --train-override trainer.max_time=00:00:02:00   # a quicker, worse demo
    python -m cesped.demo --fresh                      # redo training and evaluation

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

__all__ = ["run_demo", "main"]


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
        Device of the native reconstruction in the evaluation.
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

    t0 = time.time()
    _log("evaluating both prediction files (native reconstruction)")
    metrics = evaluate(
        targetName=entry,
        half0PredsFname=str(preds[0]),
        half1PredsFname=str(preds[1]),
        predictionType="SO3",
        usePredConfidence=True,
        n_cpus=2,
        outdir=str(workdir / "evaluation"),
        benchmarkDir=None if benchmark_dir is None else str(benchmark_dir),
        device=device,
    )
    timings["evaluate_s"] = time.time() - t0
    from cesped.evaluation.evaluate import summary_table

    print(summary_table(metrics), flush=True)
    timings["total_s"] = time.time() - t_start
    with atomic_open(workdir / "timings.json") as fh:
        json.dump(timings, fh, indent=1)
    report = workdir / "evaluation" / "report.html"
    _log(f"done in {timings['total_s'] / 60:.1f} min; timings in {workdir / 'timings.json'}")
    if report.is_file():
        _log(f"report: {report}")
    _log(f"metrics: {workdir / 'evaluation' / 'metrics.json'}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m cesped.demo", description=__doc__, formatter_class=fmt)
    parser.add_argument("--entry", default="synth_6msm", help="entry to run on (default synth_6msm)")
    parser.add_argument("--workdir", default="demo_output", help="output directory (default ./demo_output)")
    parser.add_argument("--benchmarkDir", default=None, help="benchmark directory holding the entry")
    parser.add_argument("--train-override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Hydra override for training (repeatable)")
    parser.add_argument("--device", default="cpu", help="device of the reconstruction (cpu, cuda)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier training/evaluation outputs")
    args = parser.parse_args(argv)
    run_demo(args.entry, args.workdir, args.benchmarkDir, tuple(args.train_override), args.fresh, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
