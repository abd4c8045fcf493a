"""Is the predicted confidence informative? Mean angular error of the most and least confident
particles of a predictions star file (the README's demo figures).

The prediction (``rlnParticleFigureOfMerit``) is matched to the ground truth by ``rlnImageName``;
errors are symmetry-aware geodesic distances in degrees (:func:`cesped.evaluation.metrics.angular_errors`).
Prints one JSON line.

Example usage (the demo's half-1 model predicts half 0)::

    python benchmarks/confidence_quantiles.py demo_output/train/synth_6msm/half1/predictions_0.star \\
        "$CESPED_BENCHMARK_DIR/synth_6msm/particles_0.star" --symmetry C1 --fraction 0.2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cesped.evaluation.evaluate import ANGLES, FOM, IMAGE
from cesped.evaluation.metrics import angular_errors
from cesped.io.star import read_star, require_columns


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pred", help="predictions star file (with rlnParticleFigureOfMerit)")
    ap.add_argument("gt", help="ground-truth star file of the same half-set")
    ap.add_argument("--symmetry", default="C1")
    ap.add_argument("--fraction", type=float, default=0.2, help="share of most / least confident particles")
    a = ap.parse_args(argv)
    if not 0 < a.fraction <= 0.5:
        raise ValueError(f"--fraction must be in (0, 0.5], got {a.fraction}")
    pred, gt = read_star(a.pred), read_star(a.gt)
    require_columns(pred, [IMAGE, *ANGLES, FOM], "predictions")
    require_columns(gt, [IMAGE, *ANGLES], "ground truth")
    p = pred.particles.set_index(IMAGE)
    g = gt.particles.set_index(IMAGE).loc[p.index]
    err = angular_errors(g[ANGLES].to_numpy(), p[ANGLES].to_numpy(), a.symmetry)
    conf = p[FOM].to_numpy(dtype=np.float64)
    order = np.argsort(-conf, kind="stable")
    k = max(1, int(round(a.fraction * len(err))))
    line = {
        "name": "error_of_most_and_least_confident",
        "value": round(float(err[order[:k]].mean()), 2),  # the most confident fraction's mean error
        "unit": "deg",
        "reference": None,
        "ratio": None,
        "fraction": a.fraction,
        "mean_all": round(float(err.mean()), 2),
        "mean_most_confident": round(float(err[order[:k]].mean()), 2),
        "mean_least_confident": round(float(err[order[-k:]].mean()), 2),
        "n": int(len(err)),
        "pred": Path(a.pred).name,  # no machine path in the outputs
    }
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    main()
