"""benchmarks/bench_hetero_i2s.py: its figures on a tiny two-state entry, evaluated with RELION.

Independent references: the per-state errors are set by construction (state 1 predicted with its
true poses, state 2 with every pose turned by 30°); the MAnE of uniformly random rotations is
analytic (pi/2 + 2/pi rad = 126.5°, C1); each state's particles at their true poses, reconstructed
by ``relion_reconstruct``, must match their own true map (written by the simulator from the
atoms) better than the other state's.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cesped.io.star import read_star
from cesped.simulation import simulate_entry
from cesped.simulation.hetero import STATE_COLUMN
from tests.evaluation.test_evaluate import _preds
from tests.evaluation.test_heterogeneity import ADK, SMALL, _turn

from ._scripts import BENCH, load_script


def _bench():
    return load_script(BENCH / "bench_hetero_i2s.py", "bench_hetero_i2s")


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    return simulate_entry(tmp_path_factory.mktemp("bench_het") / "states", ADK, n_particles=240, **SMALL)


@pytest.mark.relion
@pytest.mark.parametrize("mode", ["both halves (evaluateEntry)", "half-set 1 alone"])
def test_figures_of_a_two_state_entry_with_relion_maps(states, mode, tmp_path, capsys):
    def edit(h, st):
        _turn(st, st.particles[STATE_COLUMN].to_numpy() == 2, np.full(len(st), 30.0))

    p0, p1 = _preds(states, tmp_path, edit=edit)
    args = ["--target", str(states), "--workdir", str(tmp_path / "w")]
    if mode.startswith("both"):
        args += ["--preds", str(p0), str(p1)]
        which = "both half-sets"
        labels = np.concatenate(
            [read_star(states / f"particles_{h}.star").particles[STATE_COLUMN] for h in (0, 1)]
        )
    else:
        args += ["--halves", "0", "--preds", str(p1)]
        which = "half-set 1"
        labels = read_star(states / "particles_1.star").particles[STATE_COLUMN].to_numpy()
    assert _bench().main(args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    figs = {f["name"]: f for f in lines if "name" in f}
    # uniformly random rotations: mean angle pi/2 + 2/pi rad, standard deviation sqrt(pi^2/3 + 2 -
    # (pi/2 + 2/pi)^2) rad = 37°
    random_mane = math.degrees(math.pi / 2 + 2 / math.pi)
    assert figs["hetero_i2s_MAnE"]["n"] == len(labels)
    assert figs["hetero_i2s_MAnE"]["reference"] == pytest.approx(random_mane, abs=4 * 37 / len(labels) ** 0.5)
    assert figs["hetero_i2s_MAnE_state1"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert figs["hetero_i2s_MAnE_state2"]["value"] == pytest.approx(30.0, abs=1e-3)
    for k in (1, 2):
        assert figs[f"hetero_i2s_MAnE_state{k}"]["n"] == int((labels == k).sum())
    for k, other in ((1, 2), (2, 1)):
        own = figs[f"hetero_i2s_FSC0.5_state{k}_trueposes_vs_true{k}"]
        oth = figs[f"hetero_i2s_FSC0.5_state{k}_trueposes_vs_true{other}"]
        assert own["against"] == "own" and oth["against"] == "other" and own["mask"] == "masked"
        assert own["reconstruction"] == f"relion_reconstruct of the state's particles, {which}"
        # the true-pose control: each state's RELION map is its own state's, not the other's
        assert own["value"] < oth["value"] and own["own_better_than_other"] is True
    # state 1's predicted poses are its true poses: RELION gives the control's map again (up to
    # rounding: the predicted-pose run passes --fom_weighting, with every weight 1)
    for j in (1, 2):
        pred = figs[f"hetero_i2s_FSC0.5_state1_predposes_vs_true{j}"]
        assert pred["value"] == pytest.approx(pred["reference"], rel=1e-3)
        assert pred["reference"] == figs[f"hetero_i2s_FSC0.5_state1_trueposes_vs_true{j}"]["value"]
    # state 2's 30° errors blur its map: coarser than the control against its own true map
    pred2 = figs["hetero_i2s_FSC0.5_state2_predposes_vs_true2"]
    assert pred2["value"] > pred2["reference"] and pred2["ratio"] > 1
    assert figs["hetero_i2s_evaluate_wall"]["unit"] == "min"
    assert all(f["demo_config"] is False for f in figs.values() if "demo_config" in f)


def test_metrics_without_states_are_refused():
    bench = _bench()
    with pytest.raises(ValueError, match="m.json: no heterogeneity block of kind 'states'"):
        bench.figures({"MAnE_deg": 10.0}, "m.json")
    with pytest.raises(ValueError, match="m.json: no heterogeneity block"):
        bench.figures({"heterogeneity": {"kind": "morph"}}, "m.json")
