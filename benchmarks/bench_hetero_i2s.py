"""The demo's Image2Sphere on the two-state entry ``synth_adk_states``: pose error and RELION maps per state.

Issue 17's goal: "the demo Image2Sphere configuration trained on ``synth_adk_states`` for the same
epochs as the demo: MAnE per state reported; RELION reconstructs each state's particles back to
its own true map (FSC0.5 against it better than against the other state's map)".

Steps (each a child process, as a user runs them; outputs in ``--workdir``, reused when present):

1. ``python -m cesped.simulate --preset synth_adk_states --out BENCH/synth_adk_states``
   (open and closed adenylate kinase 50/50, 8,000 particles of 64 px at 3 Å/px, CTF, C1);
2. for h = 0, 1: ``python -m cesped.train experiment=demo entry=synth_adk_states halfset=h``
   (the demo's configuration and epoch budget, 22 epochs; it trains on half h and predicts the
   other half, as ``make demo`` does for both halves; ``--train-override`` only for smoke runs:
   the figures then say ``demo_config: false``);
3. ``python -m cesped.evaluateEntry --backend relion --n_cpus 1 --no-cache`` on both prediction
   files: every map of the evaluation, the per-state ones included, is made by the real
   ``relion_reconstruct`` binary (``cesped.evaluation.heterogeneity``: each state's particles of
   both half-sets, once with the predicted poses -- weighted by the predicted confidence, as the
   demo evaluates -- and once with the true poses, the control).

``--halves 0`` trains on half-set 0 only and scores its prediction of half-set 1 alone with the
same functions (:func:`evaluate_one_half`; ``evaluateEntry`` needs both half-sets' predictions):
half the training time, half the particles per state map.

Figures (one JSON line each, read from the evaluation's ``metrics.json``):

* ``hetero_i2s_MAnE`` (overall) and ``hetero_i2s_MAnE_state{k}``: reference = MAnE of uniformly
  random poses for the same particles (the evaluation's ``references``), same run;
* ``hetero_i2s_FSC0.5_state{k}_{pred,true}poses_vs_true{j}``: FSC 0.5 resolution (Å, masked with
  the entry's mask; the unmasked value and the PCCs ride along) of state k's RELION map against
  state j's true map (``against``: ``own`` or ``other``); the predicted-pose figures have the
  true-pose control as reference. ``own_better_than_other`` on the ``own`` lines: the map's
  FSC0.5 against its own true map is finer (smaller Å) than against the other state's.
* ``hetero_i2s_<step>_wall``: minutes of each step (``train_half{h}``, ``evaluate``) and the
  epochs each training actually ran (``epochs_trained``, against the demo's ``max_epochs``).

``ratio`` is ``value / reference`` (for FSC resolutions and MAnE smaller is better).

Not in ``run_all.py``'s plan (it trains two demo models: 4-9 min each on 2 cores, 27 min under load).

Usage::

    nice .venv/bin/python benchmarks/bench_hetero_i2s.py --workdir runs/hetero_i2s > out.jsonl
    nice .venv/bin/python benchmarks/bench_hetero_i2s.py --workdir runs/hetero_i2s --halves 0  # one half
    # evaluate existing prediction files of an entry instead of training:
    python benchmarks/bench_hetero_i2s.py --target ENTRY_DIR --preds p0.star p1.star
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENTRY = "synth_adk_states"


def _ratio(value, reference):
    return value / reference if (reference and value is not None) else None


def emit(name, value, unit, reference=None, **extra):
    fig = {
        "name": name,
        "value": value,
        "unit": unit,
        "reference": reference,
        "ratio": _ratio(value, reference),
    }
    print(json.dumps({**fig, **extra}), flush=True)


def _run(cmd: list[str], env: dict, cwd: Path) -> float:
    """Run ``cmd``; its wall time in s; RuntimeError with the end of its output on failure."""
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout[-1500:] + "\n" + proc.stderr[-3000:]).strip()
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{tail}")
    return time.time() - t0


def epochs_trained(run_dir: Path) -> tuple[int | None, int | None]:
    """(epochs the run logged, the config's ``trainer.max_epochs``) of a training directory."""
    import pandas as pd
    import yaml

    cfg = yaml.safe_load((run_dir / "checkpoints" / "config.yaml").read_text())
    max_epochs = cfg.get("trainer", {}).get("max_epochs")
    csv = run_dir / "csv" / "metrics.csv"
    done = None
    if csv.is_file():
        ep = pd.read_csv(csv).get("epoch")
        done = None if ep is None or ep.dropna().empty else int(ep.dropna().max()) + 1
    return done, max_epochs


def figures(metrics: dict, source: str = "metrics.json") -> list[dict]:
    """The benchmark's figures from an evaluation's metrics (see the module docstring).

    Parameters
    ----------
    metrics : dict
        ``metrics.json`` of ``evaluateEntry`` on an entry declared heterogeneous (kind ``states``).
    source : str
        Named in errors.

    Raises
    ------
    ValueError
        No ``heterogeneity`` block of kind ``states`` (the entry is not a two-or-more-state entry),
        or a state's map metrics missing.
    """
    het = metrics.get("heterogeneity")
    if not isinstance(het, dict) or het.get("kind") != "states":
        raise ValueError(f"{source}: no heterogeneity block of kind 'states' (is the entry {ENTRY}-like?)")
    rnd = metrics["references"]["random poses"]
    out = [
        {
            "name": "hetero_i2s_MAnE",
            "value": metrics["MAnE_deg"],
            "unit": "deg",
            "reference": rnd["MAnE_deg"],
            "reference_name": "uniformly random poses, same particles",
            "n": rnd["n_particles"],
            "median_deg": metrics.get("median_angular_error_deg"),
            **{k: metrics.get(k) for k in ("backend", "symmetry", "ctf", "usePredConfidence")},
        }
    ]
    states = [int(g[len("state") :]) for g in het["groups"]]
    flavour = "masked" if metrics.get("mask") else "unmasked"
    for k in states:
        out.append(
            {
                "name": f"hetero_i2s_MAnE_state{k}",
                "value": het[f"state{k}.MAnE_deg"],
                "unit": "deg",
                "reference": rnd["MAnE_deg"],
                "reference_name": "uniformly random poses, all particles",
                "n": het[f"state{k}.n_particles"],
                "median_deg": het[f"state{k}.median_angular_error_deg"],
            }
        )
    scored = metrics.get("halves_scored", [0, 1])
    which = "both half-sets" if len(scored) == 2 else f"half-set {scored[0]}"
    how = (
        f"relion_reconstruct of the state's particles, {which}"
        if metrics.get("backend") == "relion"
        else f"{metrics.get('backend')} backend"
    )
    for k in states:
        for poses, label in (("true", "GT"), ("pred", "V")):
            fsc = {}
            for j in states:
                key = f"state{k}.FSCR0.5({label},true{j})_{flavour}_A"
                if key not in het:
                    raise ValueError(f"{source}: heterogeneity.{key} missing")
                fsc[j] = het[key]
            for j in states:
                fig = {
                    "name": f"hetero_i2s_FSC0.5_state{k}_{poses}poses_vs_true{j}",
                    "value": fsc[j],
                    "unit": "A",
                    "reference": None,
                    "against": "own" if j == k else "other",
                    "poses": "predicted (Image2Sphere)" if poses == "pred" else "true (control)",
                    "mask": flavour,
                    "unmasked_A": het.get(f"state{k}.FSCR0.5({label},true{j})_unmasked_A"),
                    f"PCC_{flavour}": het.get(f"state{k}.PCC({label},true{j})_{flavour}"),
                    "reconstruction": how,
                }
                if poses == "pred":
                    fig["reference"] = het[f"state{k}.FSCR0.5(GT,true{j})_{flavour}_A"]
                    fig["reference_name"] = "same particles, true poses (control), same run"
                if j == k:
                    others = [fsc[i] for i in states if i != k]
                    fig["own_better_than_other"] = bool(all(fsc[k] < o for o in others))
                out.append(fig)
    for fig in out:
        fig["ratio"] = _ratio(fig["value"], fig.get("reference"))
    return out


def evaluate_one_half(target, benchmark_dir, half: int, pred_path, n_cpus: int = 1) -> dict:
    """``evaluateEntry``'s figures of this benchmark for ONE predicted half-set (the other untrained).

    ``evaluateEntry`` needs both half-sets' predictions; when only one half was trained (``--halves
    0``: half-set 1 predicted), the same steps run here on the predicted half alone, with the same
    functions (:mod:`cesped.evaluation.heterogeneity`, backend ``relion``: ``relion_reconstruct``
    of each state's particles of that half, predicted poses weighted by the predicted confidence,
    and true poses), the entry's mask and the random-pose reference of those particles.

    Returns
    -------
    dict
        The keys of ``metrics.json`` that :func:`figures` reads (``MAnE_deg`` is this half's).
    """
    from dataclasses import replace

    import numpy as np
    import pandas as pd

    from cesped.evaluation.entry import resolve_entry
    from cesped.evaluation.ground_truth import read_ground_truth
    from cesped.evaluation.heterogeneity import evaluate_heterogeneity, read_heterogeneity
    from cesped.evaluation.masks import select_mask
    from cesped.evaluation.predictions import IMAGE, prepare_predictions
    from cesped.evaluation.references import random_reference
    from cesped.geometry.numpy_ops import mean_angular_error
    from cesped.io.star import read_star

    entry = resolve_entry(str(target), benchmark_dir)
    gts = [read_ground_truth(s, ctf=entry.ctf) for s in entry.stars]
    het = read_heterogeneity(entry.directory, gts)
    if het is None:
        raise ValueError(f"{entry.directory}: not declared heterogeneous in its info files")
    other = set(gts[1 - half].particles[IMAGE].astype(str))
    hs = prepare_predictions(gts[half], read_star(pred_path), "SO3", True, entry.symmetry, half,
                             other_half_names=other, pred_path=pred_path)  # fmt: skip
    box = int(pd.to_numeric(gts[half].optics["rlnImageSize"]).iloc[0])
    voxel = float(pd.to_numeric(gts[half].optics["rlnImagePixelSize"]).iloc[0])
    mask = select_mask(None, entry, box, voxel)
    kw = dict(symmetry=entry.symmetry, backend="relion", device="cpu", n_cpus=n_cpus, use_pred_conf=True,
              ctf=entry.ctf)  # fmt: skip
    one = replace(het, labels=[het.labels[half]])
    block, _ = evaluate_heterogeneity(one, [gts[half]], [hs], kw, None if mask is None else mask.array, voxel)
    return {
        "MAnE_deg": mean_angular_error(hs.errors),
        "median_angular_error_deg": float(np.median(hs.errors)),
        "references": {"random poses": random_reference([hs], entry.symmetry)},
        "heterogeneity": block,
        "mask": None if mask is None else mask.path.name,
        "backend": "relion",
        "symmetry": entry.symmetry,
        "ctf": entry.ctf,
        "usePredConfidence": True,
        "halves_scored": [half],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="outputs (reused when present); default: a temporary dir")
    ap.add_argument("--benchmark-dir", default=None, help="holds the entry (default: WORKDIR/benchmark)")
    ap.add_argument("--target", default=None, help="entry name or directory to evaluate (default: the entry)")
    ap.add_argument("--halves", nargs="+", type=int, default=[0, 1], choices=[0, 1], help="half-sets to "
                    "train on (default both, then evaluateEntry); one: its prediction of the other half-set "
                    "is scored alone (evaluate_one_half)")  # fmt: skip
    ap.add_argument("--preds", nargs="+", default=None, help="score these prediction files instead of "
                    "training: of half-sets 0 and 1, or (one --halves H) of half-set 1-H")  # fmt: skip
    ap.add_argument("--train-override", action="append", default=[], help="extra Hydra override of "
                    "both trainings (smoke runs only: not the demo then)")  # fmt: skip
    ap.add_argument("--n-cpus", type=int, default=1, help="evaluateEntry --n_cpus (1: relion_reconstruct)")
    args = ap.parse_args(argv)
    env = {**os.environ}
    tmp = tempfile.TemporaryDirectory(prefix="bench_hetero_i2s_") if args.workdir is None else None
    work = Path(tmp.name if tmp else args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    bench = Path(args.benchmark_dir).resolve() if args.benchmark_dir else work / "benchmark"
    py = sys.executable
    try:
        shown = " ".join(["bench_hetero_i2s.py", *(argv if argv is not None else sys.argv[1:])])
        print(
            json.dumps({"command": shown, "loadavg_before": list(os.getloadavg()), "entry": ENTRY}),
            flush=True,
        )
        walls: dict[str, float] = {}
        epochs: dict[int, tuple] = {}
        halves = sorted(set(args.halves))
        if args.preds is not None and len(args.preds) != (2 if len(halves) == 2 else 1):
            ap.error("--preds: two files (half-sets 0 and 1), or one with a single --halves")
        preds = {}
        if args.preds is not None:
            scored = [0, 1] if len(halves) == 2 else [1 - halves[0]]
            preds = {h: Path(p).resolve() for h, p in zip(scored, args.preds)}
        else:
            edir = bench / ENTRY
            if not (edir / "generation.json").is_file():
                cmd = [py, "-m", "cesped.simulate", "--preset", ENTRY, "--out", str(edir), "--overwrite"]
                walls["simulate"] = _run(cmd + ["--no-progress"], env, work)
            for h in halves:
                run_dir = work / "train" / f"half{h}"
                pred = run_dir / f"predictions_{1 - h}.star"
                if not pred.is_file():
                    cmd = [py, "-m", "cesped.train", "experiment=demo", f"entry={ENTRY}", f"halfset={h}",
                           f"output_dir={run_dir}", f"benchmark_dir={bench}", "resume=true",
                           "trainer.enable_progress_bar=false", *args.train_override]  # fmt: skip
                    walls[f"train_half{h}"] = _run(cmd, env, work)
                epochs[h] = epochs_trained(run_dir)
                preds[1 - h] = pred
        target = args.target or ENTRY
        outdir = work / "evaluation"
        if len(preds) == 2:
            cmd = [
                py, "-m", "cesped.evaluateEntry", "--targetName", str(target), "--predictionType", "SO3",
                "--half0PredsFname", str(preds[0]), "--half1PredsFname", str(preds[1]), "--no-cache",
                "--backend", "relion", "--n_cpus", str(args.n_cpus), "--outdir", str(outdir),
                "--benchmarkDir", str(bench),
            ]  # fmt: skip
            walls["evaluate"] = _run(cmd, env, work)
            source = outdir / "metrics.json"
            metrics = json.loads(source.read_text())
        else:
            (h, pred), t0 = next(iter(preds.items())), time.time()
            metrics = evaluate_one_half(target, bench, h, pred, args.n_cpus)
            walls["evaluate"], source = time.time() - t0, f"evaluation of half-set {h}"
        demo = not args.train_override and args.preds is None
        for fig in figures(metrics, str(source)):
            fig["demo_config"] = demo
            print(json.dumps(fig), flush=True)
        for step, sec in walls.items():
            extra = {}
            if step.startswith("train_half"):
                done, max_ep = epochs[int(step[-1])]
                extra = {"epochs_trained": done, "max_epochs": max_ep, "overrides": args.train_override}
            emit(f"hetero_i2s_{step}_wall", sec / 60, "min", **extra)
        for h, (done, max_ep) in epochs.items():
            if f"train_half{h}" not in walls:  # reused training: still say how many epochs it ran
                print(json.dumps({"half": h, "epochs_trained": done, "max_epochs": max_ep, "reused": True}))
        print(json.dumps({"loadavg_after": list(os.getloadavg())}), flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
