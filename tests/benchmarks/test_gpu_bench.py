"""benchmarks/gpu_bench.py refine, run on the CPU (``--device cpu``): the code path of the GPU
figure, small.

Independent references: every start is at least 10° from the true pose (the stand-ins turn it by
10°, and a fifth of them further by a 180° turn), so a MAnE under 5° shows the refinement ran and
found the poses; the CPU reference runs refine the same particles with the same noise estimate, so
the device's poses must equal theirs exactly.
"""

from __future__ import annotations

import json

from ._scripts import BENCH, load_script


def test_refine_figures_on_the_cpu(capsys):
    bench = load_script(BENCH / "gpu_bench.py", "gpu_bench")
    rc = bench.main(
        ["refine", "--device", "cpu", "--n", "160", "--box", "64", "--px", "3", "--band-limit-A", "8",
         "--cpu-n", "32", "--chunk", "64"]
    )  # fmt: skip
    assert rc == 0
    figs = {f["name"]: f for f in map(json.loads, capsys.readouterr().out.splitlines())}
    rate = figs["cpu_refine_particles_per_s_64px"]
    assert rate["n_refined"] == 160 and rate["reference"] > 0
    assert abs(rate["ratio"] - rate["value"] / rate["reference"]) < 0.06
    same = [f for name, f in figs.items() if "_vs_cpu" in name]
    assert same and all(f["max"] == 0.0 and f["n"] == 32 for f in same)
    err = figs["refine_MAnE_64px"]
    assert err["value"] < 5.0 and err["frac_above_150"] == 0.0
    assert figs["refine_shift_rmse_64px"]["value"] < 1.5
