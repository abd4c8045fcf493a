"""Evaluation of heterogeneous entries (cesped.evaluation.heterogeneity).

Independent references: the per-state / per-bin errors are set by construction (the ground truth
for one state and poses turned by a known angle for the other; a known angle per morph
coordinate, grouped into bins with ``np.digitize`` here), the per-state maps must recognise their
own true map (written by the simulator from the atoms), and RELION's ``relion_reconstruct`` of
each state's particles gives the same ordering as cesped's per-state evaluation.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from cesped.evaluateEntry import evaluate, main
from cesped.io.mrc import read_map
from cesped.io.star import read_star, write_star
from cesped.simulation import simulate_entry
from cesped.simulation.hetero import MORPH_COLUMN, STATE_COLUMN

from ._entries import make_entry
from .test_evaluate import _preds

ADK = ("adk_open", "adk_closed")
ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
# ADK spans ~72 Å: 32 px of 6 Å hold it
SMALL = dict(pixel_size=6.0, box=32, snr=2.0, seed=3, progress=False)


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    return simulate_entry(tmp_path_factory.mktemp("het") / "states", ADK, n_particles=240, **SMALL)


def _turn(st, sel, angle_deg, seed=0):
    """Predicted = true pose times a rotation of angle_deg[i] about a random axis (C1: the error
    is exactly angle_deg[i]); the axes differ per particle, so the map blurs."""
    R = Rotation.from_euler("ZYZ", st.particles[ANGLES].to_numpy(np.float64), degrees=True)
    axes = np.random.default_rng(seed).normal(size=(len(st), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    turn = Rotation.from_rotvec(axes * np.radians(np.where(sel, angle_deg, 0.0))[:, None])
    st.particles[ANGLES] = (R * turn).as_euler("ZYZ", degrees=True)


def test_states_per_state_errors_maps_csv_and_report(states, tmp_path):
    # state 1: the true poses; state 2: every pose turned by 30°
    def edit(h, st):
        _turn(st, st.particles[STATE_COLUMN].to_numpy() == 2, np.full(len(st), 30.0))

    p0, p1 = _preds(states, tmp_path, edit=edit)
    out = tmp_path / "out"
    m = evaluate(str(states), p0, p1, outdir=out, use_cache=False)
    het = m["heterogeneity"]
    assert het["kind"] == "states" and het["column"] == STATE_COLUMN and het["groups"] == ["state1", "state2"]
    assert het["state1.n_particles"] == het["state2.n_particles"] == 120
    assert het["state1.MAnE_deg"] == pytest.approx(0.0, abs=1e-4)
    assert het["state2.MAnE_deg"] == pytest.approx(30.0, abs=1e-4)
    assert het["state2.median_angular_error_deg"] == pytest.approx(30.0, abs=1e-4)
    assert het["state2.wMAnE_deg"] == pytest.approx(30.0, abs=1e-4)
    for fl in ("masked", "unmasked"):
        for k, other in ((1, 2), (2, 1)):
            # the ground-truth-pose map of each state is closer to its own true map than to the other
            assert het[f"state{k}.PCC(GT,true{k})_{fl}"] > het[f"state{k}.PCC(GT,true{other})_{fl}"] + 0.05
            assert (
                het[f"state{k}.FSCR0.5(GT,true{k})_{fl}_A"] < het[f"state{k}.FSCR0.5(GT,true{other})_{fl}_A"]
            )
        # state 1's predicted poses are its true poses: the same map; state 2's 30° errors blur it
        assert het[f"state1.PCC(V,true1)_{fl}"] == pytest.approx(het[f"state1.PCC(GT,true1)_{fl}"], abs=1e-6)
        assert het[f"state2.PCC(V,true2)_{fl}"] < het[f"state2.PCC(GT,true2)_{fl}"] - 0.03
        assert het[f"state2.FSCR0.5(V,true2)_{fl}_A"] > het[f"state2.FSCR0.5(GT,true2)_{fl}_A"]
    # the maps written are the ones scored: own true map read back and correlated here
    true1 = read_map(states / "gt_map_state1.mrc")[0].ravel()
    v1 = read_map(out / "pred_state1.mrc")[0].ravel()
    assert np.corrcoef(v1, true1)[0, 1] == pytest.approx(het["state1.PCC(V,true1)_unmasked"], abs=1e-4)
    # metrics.json and metrics.csv carry the same flat keys
    saved = json.loads((out / "metrics.json").read_text())["heterogeneity"]
    row = pd.read_csv(out / "metrics.csv").iloc[0]
    for key in ("state1.MAnE_deg", "state2.MAnE_deg", "state2.FSCR0.5(V,true2)_masked_A"):
        assert row[f"heterogeneity.{key}"] == pytest.approx(saved[key], rel=1e-5, abs=1e-5)
    from cesped.evaluation.outputs import summary_table

    assert "MAnE state2 (deg, n=120)          30.000" in summary_table(m)
    html = (out / "report.html").read_text()
    assert (out / "error_by_conformation.png").is_file()
    assert "Angular error per conformational state" in html
    assert "heterogeneity.state2.MAnE_deg" in html and "Particles of state 2" in html


@pytest.fixture(scope="module")
def morph(tmp_path_factory):
    return simulate_entry(
        tmp_path_factory.mktemp("het") / "morph",
        ADK,
        morph=True,
        morph_frames=9,
        n_particles=200,
        **{**SMALL, "snr": None},
    )


def test_morph_per_bin_errors(morph, tmp_path):
    # error = 40·t degrees: each bin's MAnE is 40 × the mean t of its particles
    def edit(h, st):
        t = st.particles[MORPH_COLUMN].to_numpy(np.float64)
        _turn(st, np.ones(len(st), bool), 40.0 * t)

    p0, p1 = _preds(morph, tmp_path, edit=edit)
    m = evaluate(str(morph), p0, p1, mask="none", plots=True, outdir=tmp_path / "o", use_cache=False)
    het = m["heterogeneity"]
    assert het["kind"] == "morph" and het["column"] == MORPH_COLUMN
    assert het["bin_edges"] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    t = np.concatenate([read_star(morph / f"particles_{h}.star").particles[MORPH_COLUMN] for h in (0, 1)])
    b = np.digitize(t, [0.2, 0.4, 0.6, 0.8])  # 0..4, t = 1 in the last bin
    for k in range(5):
        sel = b == k
        assert het[f"bin{k + 1}.n_particles"] == int(sel.sum())
        if sel.any():
            assert het[f"bin{k + 1}.MAnE_deg"] == pytest.approx(40.0 * t[sel].mean(), abs=1e-3)
    # the end bins' maps: each closer to its own end point's true map
    assert het["bin1.PCC(GT,true1)_unmasked"] > het["bin1.PCC(GT,true2)_unmasked"]
    assert het["bin5.PCC(GT,true2)_unmasked"] > het["bin5.PCC(GT,true1)_unmasked"]
    assert "bin3.PCC(GT,true1)_unmasked" not in het  # only the end bins have a true map
    assert "Angular error against the morph coordinate" in (tmp_path / "o" / "report.html").read_text()


def _copy_entry(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_declared_heterogeneous_entry_without_its_column_is_refused(states, tmp_path):
    d = _copy_entry(states, tmp_path / "nocol")
    st = read_star(d / "particles_1.star")
    st.particles = st.particles.drop(columns=[STATE_COLUMN])
    write_star(d / "particles_1.star", st)
    p0, p1 = _preds(states, tmp_path)
    with pytest.raises(ValueError, match=r"particles_1\.star: column rlnClassNumber missing"):
        evaluate(str(d), p0, p1, plots=False)
    args = ["--targetName", str(d), "--half0PredsFname", str(p0), "--half1PredsFname", str(p1)]
    assert main([*args, "--outdir", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_bad_state_labels_and_missing_true_map(states, tmp_path, capsys):
    d = _copy_entry(states, tmp_path / "bad")
    st = read_star(d / "particles_0.star")
    st.particles.loc[3, STATE_COLUMN] = 3  # two states declared
    write_star(d / "particles_0.star", st)
    p0, p1 = _preds(states, tmp_path)
    with pytest.raises(
        ValueError, match=r"particles_0\.star: column rlnClassNumber must hold integers 1\.\.2; row 3"
    ):
        evaluate(str(d), p0, p1, plots=False)
    d2 = _copy_entry(states, tmp_path / "nomap")
    (d2 / "gt_map_state2.mrc").unlink()
    with pytest.raises(ValueError, match=r"true map .*gt_map_state2\.mrc .* not found"):
        evaluate(str(d2), p0, p1, plots=False)


def test_undeclared_class_numbers_are_not_conformations(tmp_path):
    # a homogeneous entry whose star has RELION class numbers (as real entries do)
    d = make_entry(tmp_path, "withClasses", n_per_half=30)
    for h in (0, 1):
        st = read_star(d / f"particles_{h}.star")
        st.particles[STATE_COLUMN] = 1 + np.arange(len(st)) % 2
        write_star(d / f"particles_{h}.star", st)
    p0, p1 = _preds(d, tmp_path)
    m = evaluate(str(d), p0, p1, mask="none", plots=False)
    assert "heterogeneity" not in m


def test_frame_free_with_fewer_than_three_particles_names_the_file(tmp_path, capsys):
    d = make_entry(tmp_path, "twoParticles", n_per_half=2)
    p0, p1 = _preds(d, tmp_path)
    with pytest.raises(ValueError, match=r"half-set 0 \(.*p_0\.star\): .*at least 3 particles, got 2"):
        evaluate(str(d), p0, p1, mask="none", plots=False, frame="free")
    args = ["--targetName", str(d), "--half0PredsFname", str(p0), "--half1PredsFname", str(p1)]
    assert main([*args, "--mask", "none", "--frame", "free"]) == 2
    err = capsys.readouterr().err
    assert "at least 3 particles" in err and "p_0.star" in err


# ------------------------------------------------------------------------------ RELION
def _pcc(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _fsc05_shell(a, b):
    """First Fourier shell (index) where the FSC of a and b drops below 0.5 (numpy, here)."""
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    n = a.shape[0]
    f = np.fft.fftfreq(n) * n
    r = np.rint(np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2)).astype(int)
    for s in range(1, n // 2):
        sh = r == s
        num = np.real((fa[sh] * np.conj(fb[sh])).sum())
        den = np.sqrt((np.abs(fa[sh]) ** 2).sum() * (np.abs(fb[sh]) ** 2).sum())
        if num / den < 0.5:
            return s
    return n // 2


@pytest.mark.relion
def test_relion_state_maps_match_their_own_true_map_as_cesped_says(states, tmp_path):
    truths = {k: read_map(states / f"gt_map_state{k}.mrc")[0].astype(np.float64) for k in (1, 2)}
    for k in (1, 2):
        # both half-sets' particles of state k, GT poses, reconstructed by RELION
        parts = []
        for h in (0, 1):
            st = read_star(states / f"particles_{h}.star")
            p = st.particles[st.particles[STATE_COLUMN] == k].copy()
            p["rlnImageName"] = [n.replace("@", f"@{states}/") for n in p["rlnImageName"]]
            parts.append(p)
        st.particles = pd.concat(parts, ignore_index=True)
        write_star(tmp_path / f"state{k}.star", st)
        res = subprocess.run(
            ["relion_reconstruct", "--i", f"state{k}.star", "--o", f"r{k}.mrc", "--ctf", "--sym", "C1"],
            cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        rmap = read_map(tmp_path / f"r{k}.mrc")[0].astype(np.float64)
        other = 3 - k
        assert _pcc(rmap, truths[k]) > _pcc(rmap, truths[other]) + 0.05
        assert _fsc05_shell(rmap, truths[k]) > _fsc05_shell(rmap, truths[other])
    p0, p1 = _preds(states, tmp_path)
    het = evaluate(str(states), p0, p1, mask="none", plots=False, use_cache=False)["heterogeneity"]
    # with the RELION backend the per-state ground-truth-pose map is RELION's map of those particles
    out = tmp_path / "relion_eval"
    evaluate(str(states), p0, p1, mask="none", plots=False, use_cache=False, backend="relion", outdir=out)
    for k in (1, 2):
        assert _pcc(read_map(out / f"gt_state{k}.mrc")[0], read_map(tmp_path / f"r{k}.mrc")[0]) > 0.999
    for k in (1, 2):
        other = 3 - k
        assert het[f"state{k}.PCC(GT,true{k})_unmasked"] > het[f"state{k}.PCC(GT,true{other})_unmasked"]
        assert (
            het[f"state{k}.FSCR0.5(GT,true{k})_unmasked_A"]
            < het[f"state{k}.FSCR0.5(GT,true{other})_unmasked_A"]
        )
