"""Listing 4 of the CESPED paper: evaluate predictions from Python.

Example usage::

    python examples/listing4_evaluate_function.py --target synth_6msm \
        --half0 examples_output/preds_0.star --half1 examples_output/preds_1.star
"""

from __future__ import annotations

import argparse

from cesped.evaluateEntry import evaluate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="synth_6msm")
    p.add_argument("--half0", default="examples_output/preds_0.star")
    p.add_argument("--half1", default="examples_output/preds_1.star")
    p.add_argument("--benchmarkDir", default=None)
    p.add_argument("--outdir", default="examples_output/evaluation_fn")
    args = p.parse_args(argv)
    metrics = evaluate(targetName=args.target, half0PredsFname=args.half0, half1PredsFname=args.half1,
                       predictionType="SO3", usePredConfidence=True, n_cpus=2, outdir=args.outdir,
                       benchmarkDir=args.benchmarkDir)
    for k, v in metrics.items():
        if not isinstance(v, (list, dict)):
            print(f"{k:40s} {v}")
    return metrics


if __name__ == "__main__":
    main()
