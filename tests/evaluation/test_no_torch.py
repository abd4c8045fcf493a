"""The CPU evaluation never imports torch (about 1.6 s of a few-second run on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cesped.io.star import read_star, write_star

from ._entries import make_entry

_SCRIPT = r"""
import json, sys
from cesped.evaluateEntry import evaluate
a = json.loads(sys.argv[1])
m = evaluate(a["entry"], a["p0"], a["p1"], predictionType="SO3", outdir=a["out"], n_cpus=1)
print(json.dumps({"torch": "torch" in sys.modules, "mane": m["MAnE_deg"]}))
"""


def test_evaluate_entry_runs_without_importing_torch(tmp_path):
    entry = make_entry(tmp_path / "bench", "tinyNoTorch", "C1", n_per_half=60, seed=4)
    preds = []
    for h in (0, 1):
        st = read_star(entry / f"particles_{h}.star")
        st.particles["rlnAnglePsi"] = st.particles["rlnAnglePsi"] + 10.0  # a 10 degree error
        p = tmp_path / f"p_{h}.star"
        write_star(p, st)
        preds.append(str(p))
    arg = {"entry": str(entry), "p0": preds[0], "p1": preds[1], "out": str(tmp_path / "out")}
    env_cache = {"CESPED_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(arg)],
        capture_output=True,
        text=True,
        env={**os.environ, **env_cache},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(out["mane"] - 10.0) < 1e-6  # the evaluation did run
    assert out["torch"] is False
