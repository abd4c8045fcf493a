#!/usr/bin/env bash
# Listing 3 of the CESPED paper: evaluate predictions of both half-sets from the command line.
#
# Example usage (after listings 1 and 2 made a prediction file for each half-set):
#   bash examples/listing3_evaluate_cli.sh synth_6msm examples_output/preds_0.star examples_output/preds_1.star
# Extra arguments are passed on, e.g. --benchmarkDir DIR.
set -euo pipefail
target=${1:-synth_6msm}
p0=${2:-examples_output/preds_0.star}
p1=${3:-examples_output/preds_1.star}
shift $(( $# < 3 ? $# : 3 ))
python -m cesped.evaluateEntry --predictionType SO3 --targetName "$target" \
    --half0PredsFname "$p0" --half1PredsFname "$p1" --n_cpus 2 --outdir examples_output/evaluation "$@"
