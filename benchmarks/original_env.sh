#!/usr/bin/env bash
# Creates benchmarks/.venv-original with the original cesped release (25.12.0) for the
# side-by-side benchmarks. It has our import name, so it never shares our environment.
#
# Running the original on today's stack (e3nn 0.6, torch 2.14) needs three things, all
# outside its files (see benchmarks/original_support/):
#   * sitecustomize.py imports e3nn.nn (its image2sphere module uses it without importing it)
#   * configs/ without `verbose` in ReduceLROnPlateau (CESPED_CONFIGDIR points there)
#   * a float-safe JSON dump around its evaluate() (done by the benchmark drivers)
# Source `benchmarks/original_env.sh --print-env` output to get PYTHONPATH / CESPED_CONFIGDIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-original"
support="$here/original_support"
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

if [ "${1:-}" = "--print-env" ]; then
    echo "export PYTHONPATH=$support"
    echo "export CESPED_CONFIGDIR=$support/configs"
    exit 0
fi

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -P -c "import cesped" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet $TORCH_SPEC
    "$venv/bin/pip" install --quiet "cesped==25.12.0"
fi
# An edited copy of its configs (ReduceLROnPlateau lost `verbose` in recent torch).
if [ ! -f "$support/configs/defaultOptimizerConfig.yaml" ]; then
    src=$("$venv/bin/python" -P -c "import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec('cesped').origin),'configs'))")
    mkdir -p "$support/configs"
    cp "$src"/*.yaml "$support/configs/"
    sed -i '/verbose/d' "$support/configs/defaultOptimizerConfig.yaml"
fi
echo "original cesped ready in $venv"
