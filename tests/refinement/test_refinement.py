"""Projection-matching refinement on a tiny simulated entry (exact poses, origins and CTFs known)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cesped.geometry.errors import angular_distance
from cesped.geometry.rotations import axis_angle_to_matrix, euler_to_matrix
from cesped.io.mrc import read_map, write_map
from cesped.io.star import read_star, write_star
from cesped.refinement.api import image_limited_floor, read_particles, refine_star

from ._helpers import ANGLES, ORIGINS, perturbed_star, true_rotmats

MIRROR = euler_to_matrix(torch.tensor([0.0, 180.0, 0.0], dtype=torch.float64))
HALFTURN = euler_to_matrix(torch.tensor([180.0, 0.0, 0.0], dtype=torch.float64))


def _errors(entry_dir: Path, half: int, refined: Path):
    gt = read_star(entry_dir / f"particles_{half}.star")
    out = read_star(refined)
    err = angular_distance(true_rotmats(gt), true_rotmats(out)).numpy()
    d = gt.particles[ORIGINS].to_numpy(np.float64) - out.particles[ORIGINS].to_numpy(np.float64)
    return err, float(np.sqrt((d**2).sum(1).mean())), out


def _batch(entry_dir: Path, half: int, n: int, backend: str = "auto"):
    from cesped.physics.ctf import ctf_from_particles
    from cesped.refinement.api import estimate_noise
    from cesped.refinement.score import ImageBatch, Reference

    st, parts, images, px, box = read_particles(entry_dir / f"particles_{half}.star")
    parts = parts.iloc[:n]
    vol, _ = read_map(entry_dir / "gt_map.mrc")
    batch = ImageBatch(images.read(np.arange(n)), ctf_from_particles(parts), estimate_noise(images))
    r_true = euler_to_matrix(torch.from_numpy(parts[ANGLES].to_numpy(np.float64))).float()
    o_true = torch.from_numpy(parts[ORIGINS].to_numpy(np.float64) / px).float()
    return Reference(vol, backend=backend), batch, r_true, o_true, box


def test_score_is_maximal_at_the_true_pose(tiny_entry):
    from cesped.refinement.score import Band, score_poses, shift_search

    root, name = tiny_entry
    ref, batch, r_true, o_true, box = _batch(root / name, 1, 100)
    band = Band.make(box, box // 2)
    rows = torch.arange(100)
    alts = [r_true]
    for axis in ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]):
        alts.append(axis_angle_to_matrix(torch.tensor(axis), torch.tensor(3.0)) @ r_true)
    alts += [r_true @ MIRROR.float(), r_true @ HALFTURN.float()]
    g = score_poses(ref, batch, rows, torch.stack(alts, 1), o_true, band)
    assert (g[:, :1] > g[:, 1:]).all(1).float().mean() >= 0.95
    # a shifted origin scores lower than the true one
    for d in ([1.5, 0.0], [0.0, -1.5]):
        gs = score_poses(ref, batch, rows, r_true[:, None], o_true + torch.tensor(d), band)[:, 0]
        assert (g[:, 0] > gs).float().mean() >= 0.95
    # the FFT shift search finds the true origin at the true pose
    gains, origins = shift_search(ref, batch, rows, r_true, band, radius_px=6.0)
    assert (origins - o_true).norm(dim=1).median() < 0.2
    assert torch.allclose(gains, g[:, 0], rtol=0.02)


def test_numba_and_torch_kernels_agree(tiny_entry):
    from cesped.refinement.score import Band, score_poses, shift_search

    root, name = tiny_entry
    out = []
    for backend in ("numba", "torch"):
        ref, batch, r_true, o_true, box = _batch(root / name, 1, 20, backend)
        band = Band.make(box, 20)
        rows = torch.arange(20)
        rots = torch.stack([r_true, r_true @ MIRROR.float()], 1)
        out.append(
            (
                score_poses(ref, batch, rows, rots, o_true, band),
                *shift_search(ref, batch, rows, r_true, band, 5),
            )
        )
    for a, b in zip(out[0], out[1]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3)


def test_refinement_from_10_degree_jitter_true_map(tiny_entry, tmp_path):
    root, name = tiny_entry
    e = root / name
    pred = perturbed_star(e, 1, tmp_path / "pred.star", jitter_deg=10.0)
    err0, _, _ = _errors(e, 1, pred)
    assert np.allclose(err0, 10.0, atol=1e-6)
    out = tmp_path / "refined.star"
    refine_star(name, 1, pred, out, reference=e / "gt_map.mrc", band_limit_A=6.0, benchmark_dir=root)
    err, shift_rmse, st = _errors(e, 1, out)
    assert np.median(err) < 1.0
    assert shift_rmse < 1.0  # Å (0.33 px)
    conf = st.particles["rlnMaxValueProbDistribution"].to_numpy()
    assert ((conf >= 0) & (conf <= 1)).all()
    assert np.array_equal(conf, st.particles["rlnParticleFigureOfMerit"].to_numpy())
    meta = st.other_blocks["cesped_refinement"]
    assert "gt_map.mrc" in str(meta["cespedRefinementReference"])
    from cesped.refinement.api import DEFAULT_SURVIVORS

    assert int(meta["cespedRefinementSurvivors"]) == DEFAULT_SURVIVORS
    assert int(meta["cespedRefinementKeep"]) == max(4, DEFAULT_SURVIVORS)
    assert meta["cespedRefinementSearchSymmetry"] == "C1"  # the entry's point group


@pytest.mark.parametrize("right", ["mirror", "halfturn"])
def test_mirror_and_halfturn_starts_are_corrected(tiny_entry, tmp_path, right):
    root, name = tiny_entry
    e = root / name
    pred = perturbed_star(
        e, 1, tmp_path / "pred.star", jitter_deg=10.0, right={"mirror": MIRROR, "halfturn": HALFTURN}[right]
    )
    err0, _, _ = _errors(e, 1, pred)
    assert np.median(err0) > 150
    out = tmp_path / "refined.star"
    # the default reference: the other half-set's ground-truth map
    refine_star(name, 1, pred, out, benchmark_dir=root)
    err, _, _ = _errors(e, 1, out)
    assert np.median(err) < 2.0
    assert (err < 30).all()


def test_no_label_of_the_refined_half_is_read(tiny_entry, tmp_path):
    root, name = tiny_entry
    bench = tmp_path / "bench"
    shutil.copytree(root / name, bench / name)
    e = bench / name
    pred = perturbed_star(e, 0, tmp_path / "pred.star", jitter_deg=10.0)
    outs = []
    for i in range(3):
        if i == 1:  # random labels in the refined half's own star
            st = read_star(e / "particles_0.star")
            rng = np.random.default_rng(7)
            st.particles[ANGLES] = rng.uniform(0, 180, (len(st.particles), 3))
            st.particles[ORIGINS] = rng.uniform(-20, 20, (len(st.particles), 2))
            write_star(e / "particles_0.star", st)
        if i == 2:  # control: the reference half's labels do matter
            st = read_star(e / "particles_1.star")
            st.particles["rlnAnglePsi"] = st.particles["rlnAnglePsi"] + 40.0
            write_star(e / "particles_1.star", st)
        out = tmp_path / f"refined_{i}.star"
        refine_star(name, 0, pred, out, benchmark_dir=bench, use_cache=False)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_floor_global_search(tiny_entry):
    root, name = tiny_entry
    for true_shifts in (True, False):
        f = image_limited_floor(name, 1, true_shifts=true_shifts, limit=40, benchmark_dir=root)
        assert f["median_deg"] < 1.0 and f["frac_above_150"] == 0.0, f
        again = image_limited_floor(name, 1, true_shifts=true_shifts, limit=40, benchmark_dir=root)
        assert again["cached"] and again["MAnE_deg"] == f["MAnE_deg"]
    assert f["shift_rmse_A"] < 1.0


def test_floor_answers_are_refined_poses_not_the_truth(tiny_entry):
    """The true pose is one of the floor's starts, never its answer: every answer is a refined
    pose (non-zero error), the floor is at or below the grid search's own figure, and the
    answers' origins were searched."""
    root, name = tiny_entry
    f = image_limited_floor(name, 1, limit=40, benchmark_dir=root, use_cache=False)
    assert (f["errors_deg"] > 1e-3).all()
    assert f["MAnE_deg"] <= f["search_only_MAnE_deg"] + 1e-9
    assert 0.0 <= f["truth_basin_fraction"] <= 1.0
    assert f["shift_rmse_A"] > 0.0


def test_floor_truth_start_is_no_back_door(tiny_entry, tmp_path):
    """Wrong 'true' poses in the star (the floor's second start) do not pull the answers: those
    particles are still answered at their real poses, found by the likelihood."""
    root, name = tiny_entry
    bench = tmp_path / "bench"
    shutil.copytree(root / name, bench / name)
    e = bench / name
    n = 40
    real = true_rotmats(read_star(e / "particles_1.star"))[:n]
    st = read_star(e / "particles_1.star")
    rng = np.random.default_rng(11)
    bad = np.arange(n) % 2 == 0
    st.particles.loc[np.flatnonzero(bad), ANGLES] = rng.uniform(0, 180, (int(bad.sum()), 3))
    write_star(e / "particles_1.star", st)
    f = image_limited_floor(name, 1, limit=n, benchmark_dir=bench, use_cache=False)
    to_real = angular_distance(real, torch.from_numpy(f["rotmats"])).numpy()
    assert np.median(to_real) < 1.5 and (to_real < 10).all(), to_real
    # measured against the corrupted labels, those particles are far off (no pull towards them)
    assert np.median(f["errors_deg"][bad]) > 30


def test_more_survivors_never_end_at_a_lower_likelihood(tiny_entry):
    """Tracks kept through every level (``survivors``) contain the single-survivor path, so the
    answer's gain is at least as high; with random starts beside a good one it matters."""
    from cesped.refinement.local import LocalConfig, refine_batch

    root, name = tiny_entry
    ref, batch, r_true, o_true, box = _batch(root / name, 1, 60)
    rng = np.random.default_rng(2)
    rand = euler_to_matrix(torch.from_numpy(rng.uniform(0, 180, (60 * 3, 3)))).float().reshape(60, 3, 3, 3)
    jit = axis_angle_to_matrix(torch.from_numpy(rng.normal(size=(60, 3))), torch.full((60,), 12.0)).float()
    cand = torch.cat([(jit @ r_true)[:, None], rand], 1)
    res = {}
    for surv in (1, 4):
        cfg = LocalConfig(band_radius=box // 2, shift_radius_px=5.0, keep=4, survivors=surv)
        res[surv] = refine_batch(ref, batch, cand, cfg)
    assert (res[4].gain >= res[1].gain - 1e-3 * res[1].gain.abs()).all()
    err = {s: angular_distance(r_true.double(), r.rotmats).numpy() for s, r in res.items()}
    assert np.median(err[4]) < 2.0 and err[4].mean() <= err[1].mean() + 1e-6


def test_tracks_are_distinct_modes_not_neighbouring_candidates(tiny_entry, monkeypatch):
    """Five near-duplicate candidates (a network's neighbouring top-5 cells): with the default
    track separation the kept tracks are the best start of each distinct mode (identity, mirror,
    half-turn: pairwise > 16° apart) and then the next best; with 0 they are the plain best starts,
    i.e. four neighbours of one mode. The answers are right both ways; 0 reproduces the plain
    top-k selection exactly when no start is suppressed."""
    import cesped.geometry.selection as selection
    from cesped.refinement.local import LocalConfig, refine_batch

    root, name = tiny_entry
    ref, batch, r_true, o_true, box = _batch(root / name, 1, 40)
    g = torch.Generator().manual_seed(3)
    jit = axis_angle_to_matrix(torch.randn(40, 3, generator=g, dtype=torch.float64), torch.full((40,), 8.0))
    first = jit.float() @ r_true
    near = axis_angle_to_matrix(
        torch.randn(40 * 4, 3, generator=g, dtype=torch.float64), torch.full((160,), 1.5)
    )
    cand = torch.cat([first[:, None], near.float().reshape(40, 4, 3, 3) @ first[:, None]], 1)  # (40, 5)
    picks = []
    real = selection.distinct_top

    def spy(scores, rotmats, k, min_deg, fill="best", group=None):
        pos = real(scores, rotmats, k, min_deg, fill, group=group)
        picks.append(torch.gather(rotmats, 1, pos[:, :, None, None].expand(-1, -1, 3, 3)))
        return pos

    monkeypatch.setattr(selection, "distinct_top", spy)
    cfg = LocalConfig(
        band_radius=box // 2, shift_radius_px=5.0, keep=4, survivors=4, track_separation_deg=16.0
    )
    res = refine_batch(ref, batch, cand, cfg)
    tracks = picks[0].double()  # (40, 4, 3, 3) the kept starts
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert (angular_distance(tracks[:, i], tracks[:, j]) > 16.0).all()
    err = angular_distance(r_true.double(), res.rotmats).numpy()
    assert np.median(err) < 2.0
    plain = refine_batch(ref, batch, cand, LocalConfig(band_radius=box // 2, shift_radius_px=5.0))
    assert np.median(angular_distance(r_true.double(), plain.rotmats).numpy()) < 2.0
    tiny = LocalConfig(band_radius=box // 2, shift_radius_px=5.0, track_separation_deg=1e-4)
    same = refine_batch(ref, batch, cand, tiny)
    assert torch.equal(same.rotmats, plain.rotmats) and torch.equal(same.start, plain.start)
    with pytest.raises(ValueError, match="track_separation_deg"):
        LocalConfig(band_radius=10.0, track_separation_deg=float("nan")).check()


def test_top_k_candidates_from_npz(tiny_entry, tmp_path):
    root, name = tiny_entry
    e = root / name
    pred = perturbed_star(e, 1, tmp_path / "pred.star", jitter_deg=10.0)
    st = read_star(pred)
    n = len(st.particles)
    good = true_rotmats(st).numpy()
    bad = euler_to_matrix(torch.from_numpy(np.random.default_rng(0).uniform(0, 180, (n, 3)))).numpy()
    # the random candidate comes first: only the second one leads to the truth
    np.savez(
        tmp_path / "pred_topk.npz",
        ids=st.particles["rlnImageName"].to_numpy().astype(str)[::-1],
        rotmats=np.stack([bad, good], 1)[::-1],
    )
    out = tmp_path / "refined.star"
    refine_star(name, 1, pred, out, top_k=2, reference=e / "gt_map.mrc", band_limit_A=6.0, benchmark_dir=root)
    err, _, _ = _errors(e, 1, out)
    assert np.median(err) < 1.0


def test_global_starts_recover_particles_whose_candidates_are_all_wrong(tiny_entry, tmp_path):
    """Candidates all random (beyond the local search's reach): the candidates-only search stays
    wrong; with global-search starts the particles are found, and the star says so per particle."""
    root, name = tiny_entry
    e = root / name
    n = 40
    st = read_star(perturbed_star(e, 1, tmp_path / "all.star", jitter_deg=10.0))
    st.particles = st.particles.iloc[:n].reset_index(drop=True)
    pred = tmp_path / "pred.star"
    write_star(pred, st)
    rng = np.random.default_rng(5)
    bad = euler_to_matrix(torch.from_numpy(rng.uniform(0, 180, (n * 2, 3)))).numpy().reshape(n, 2, 3, 3)
    np.savez(tmp_path / "pred_topk.npz", ids=st.particles["rlnImageName"].to_numpy().astype(str), rotmats=bad)
    gt = read_star(e / "particles_1.star")
    r_true = true_rotmats(gt)[:n]
    runs = {}
    for gtop in (0, 4):
        out = tmp_path / f"refined_{gtop}.star"
        summary = refine_star(name, 1, pred, out, top_k=2, global_top=gtop, benchmark_dir=root)
        ref = read_star(out)
        err = angular_distance(r_true, true_rotmats(ref)).numpy()
        runs[gtop] = (err, ref, summary)
    err0, st0, s0 = runs[0]
    err4, st4, s4 = runs[4]
    assert (err0 > 30).mean() >= 0.5  # random candidates: the local search cannot reach the pose
    assert np.median(err4) < 2.0 and (err4 < 5).mean() >= 0.95
    # the choice is recorded: per particle and in the parameter block
    start0 = st0.particles["cespedRefinementStart"].astype(str)
    start4 = st4.particles["cespedRefinementStart"].astype(str)
    assert start0.str.startswith("candidate").all()
    assert start0.isin(
        [
            "candidate1",
            "candidate1+mirror",
            "candidate1+halfturn",
            "candidate2",
            "candidate2+mirror",
            "candidate2+halfturn",
        ]
    ).all()
    assert start4[err4 < 5].str.startswith("global").mean() >= 0.9
    meta0, meta4 = st0.other_blocks["cesped_refinement"], st4.other_blocks["cesped_refinement"]
    assert int(meta0["cespedRefinementGlobalTop"]) == 0 and int(meta4["cespedRefinementGlobalTop"]) == 4
    assert int(meta0["cespedRefinementGlobalOrder"]) == -1 and int(meta4["cespedRefinementGlobalOrder"]) == 2
    assert float(meta4["cespedRefinementFromGlobal"]) == pytest.approx(start4.str.startswith("global").mean())
    assert s4["from_global"] == pytest.approx(float(meta4["cespedRefinementFromGlobal"]))
    assert float(meta0["cespedRefinementFromGlobal"]) == 0.0


# ----------------------------------------------------------------------------------- bad input


def _bad_inputs(root, name, tmp_path):
    e = root / name
    pred = perturbed_star(e, 1, tmp_path / "pred.star")
    vol, px = read_map(e / "gt_map.mrc")
    write_map(tmp_path / "small.mrc", vol[::2, ::2, ::2].copy(), px * 2)
    write_map(tmp_path / "otherpx.mrc", vol, px * 1.1)
    st = read_star(pred)
    st.particles = st.particles.drop(columns=["rlnDefocusU"])
    write_star(tmp_path / "noctf.star", st)
    st = read_star(pred)
    st.particles.loc[3, "rlnAngleTilt"] = 12345.5
    write_star(tmp_path / "nan.star", st)
    (tmp_path / "nan.star").write_text((tmp_path / "nan.star").read_text().replace("12345.5", "nan"))
    write_star(tmp_path / "two.star", read_star(pred))
    ids = read_star(pred).particles["rlnImageName"].to_numpy().astype(str)
    np.savez(tmp_path / "two_topk.npz", ids=ids, rotmats=np.tile(np.eye(3), (len(ids), 2, 1, 1)))
    rot = np.tile(np.eye(3), (len(ids), 2, 1, 1))
    rot[5, 1, 0, 0] = np.inf
    np.savez(tmp_path / "inf.npz", ids=ids, rotmats=rot)
    shutil.copytree(e, tmp_path / "bench" / name, ignore=shutil.ignore_patterns("gt_map.mrc"))
    return {
        "other box": (
            dict(star=pred, reference=tmp_path / "small.mrc", band_limit_A=8.0),
            ValueError,
            "small.mrc",
        ),
        "other pixel size": (
            dict(star=pred, reference=tmp_path / "otherpx.mrc", band_limit_A=8.0),
            ValueError,
            "voxel size",
        ),
        "no CTF": (dict(star=tmp_path / "noctf.star"), ValueError, "rlnDefocusU"),
        "nan angles": (dict(star=tmp_path / "nan.star"), ValueError, "rlnAngleTilt"),
        "inf candidates": (dict(star=pred, top_k=2, candidates=tmp_path / "inf.npz"), ValueError, "inf.npz"),
        "K > held (npz)": (dict(star=tmp_path / "two.star", top_k=3), ValueError, "holds only 2"),
        "K > held (star)": (dict(star=pred, top_k=2), FileNotFoundError, "holds 1 candidate"),
        "global, no true map": (
            dict(star=pred, global_search=True, benchmark_dir=tmp_path / "bench"),
            FileNotFoundError,
            "gt_map.mrc",
        ),
        "same-half reference": (dict(star=pred, reference_from_half=1), ValueError, "other half-set"),
        "negative global top": (dict(star=pred, global_top=-1), ValueError, "--global-top"),
        "global top with --global": (
            dict(star=pred, global_search=True, global_top=2),
            ValueError,
            "--global-top",
        ),
        "three rounds": (dict(star=pred, rounds=3), ValueError, "--rounds must be 1 or 2"),
        "two rounds with a user's map": (
            dict(star=pred, rounds=2, reference=root / name / "gt_map.mrc", band_limit_A=8.0),
            ValueError,
            "--rounds 2",
        ),
        "two rounds with --global": (dict(star=pred, rounds=2, global_search=True), ValueError, "--rounds 2"),
        "unknown weighting": (dict(star=pred, weighting="wiener"), ValueError, "--weighting"),
        "unknown mask": (dict(star=pred, reference_mask="sphere"), ValueError, "--reference-mask"),
        "no survivors": (dict(star=pred, survivors=0), ValueError, "--survivors"),
        "fractional survivors": (dict(star=pred, survivors=2.5), ValueError, "--survivors"),
        "negative track separation": (
            dict(star=pred, track_separation_deg=-1.0),
            ValueError,
            "track_separation",
        ),
        "missing star": (dict(star=tmp_path / "nope.star"), FileNotFoundError, "nope.star"),
        "missing map": (
            dict(star=pred, reference=tmp_path / "nope.mrc", band_limit_A=8.0),
            FileNotFoundError,
            "nope.mrc",
        ),
    }


def test_bad_inputs_give_clear_errors_and_write_nothing(tiny_entry, tmp_path):
    root, name = tiny_entry
    for what, (kw, exc, text) in _bad_inputs(root, name, tmp_path).items():
        out = tmp_path / "out" / "refined.star"
        kw = {"benchmark_dir": root, **kw}
        with pytest.raises(exc, match=text):
            refine_star(name, 1, kw.pop("star"), out, **kw)
        assert not out.exists(), what
        assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True, what


def test_cli(tiny_entry, tmp_path, capsys):
    from cesped.refine import main

    root, name = tiny_entry
    e = root / name
    pred = perturbed_star(e, 1, tmp_path / "pred.star", jitter_deg=5.0)
    out = tmp_path / "refined.star"
    args = ["--entry", name, "--halfset", "1", "--star", str(pred), "--benchmark-dir", str(root)]
    assert main(args + ["--out", str(out), "--reference", str(e / "gt_map.mrc"), "--band-limit", "6"]) == 0
    err, _, _ = _errors(e, 1, out)
    assert np.median(err) < 1.0
    assert main(args + ["--out", str(tmp_path / "x.star"), "--top-k", "4"]) == 2
    assert "--top-k 4" in capsys.readouterr().err
    assert not (tmp_path / "x.star").exists()


@pytest.mark.gpu
def test_cuda_and_cpu_give_the_same_poses(tiny_entry):
    from cesped.refinement.api import refine_particles
    from cesped.refinement.local import LocalConfig

    root, name = tiny_entry
    e = root / name
    st, parts, images, px, box = read_particles(e / "particles_1.star")
    vol, _ = read_map(e / "gt_map.mrc")
    g = torch.Generator().manual_seed(0)
    n = len(parts)
    r = true_rotmats(st)
    start = (
        axis_angle_to_matrix(
            torch.randn(n, 3, generator=g, dtype=torch.float64), torch.full((n,), 10.0, dtype=torch.float64)
        )
        @ r
    )
    cfg = LocalConfig(band_radius=box // 2, shift_radius_px=5.0)
    cpu = refine_particles(images, parts, vol, px, start[:, None], cfg, device="cpu")
    gpu = refine_particles(images, parts, vol, px, start[:, None], cfg, device="cuda")
    d = angular_distance(torch.from_numpy(cpu["rotmats"]), torch.from_numpy(gpu["rotmats"])).numpy()
    assert np.mean(d < 1e-3) >= 0.98
    assert np.abs(cpu["origins_A"] - gpu["origins_A"]).max() < 0.5


def test_default_refinement_records_rounds_and_weighting(tiny_entry, tmp_path):
    """The default (other half's map): FSC-weighted, two rounds, solvent masked, all recorded;
    rounds=1, weighting='none' and reference_mask='none' give other answers and say so; a user's
    map is one round, unweighted."""
    root, name = tiny_entry
    e = root / name
    pred = perturbed_star(e, 1, tmp_path / "pred.star", jitter_deg=10.0)
    outs = {}
    for key, kw in {
        "default": {},
        "one round": {"rounds": 1},
        "unweighted": {"weighting": "none", "rounds": 1},
        "unmasked": {"reference_mask": "none"},
        "user map": {"reference": e / "gt_map.mrc", "band_limit_A": 6.0},
    }.items():
        out = tmp_path / f"{key.replace(' ', '_')}.star"
        summary = refine_star(name, 1, pred, out, benchmark_dir=root, **kw)
        block = read_star(out).other_blocks["cesped_refinement"]
        outs[key] = (summary, block, out.read_bytes())
        err, _, _ = _errors(e, 1, out)
        assert np.median(err) < 1.5, key
    s, b, _ = outs["default"]
    assert s["rounds"] == 2 and s["weighting"] == "fsc"
    assert int(b["cespedRefinementRounds"]) == 2 and b["cespedRefinementReferenceWeighting"] == "fsc"
    assert float(b["cespedRefinementTrackSeparationDeg"]) == 16.0
    assert "first-round poses" in b["cespedRefinementRound2Reference"]
    s1, b1, _ = outs["one round"]
    assert s1["rounds"] == 1 and "cespedRefinementRound2Reference" not in b1
    su, bu, _ = outs["unweighted"]
    assert su["weighting"] == "none" and bu["cespedRefinementReferenceWeighting"] == "none"
    mask1, mask2 = b["cespedRefinementReferenceMask"], b["cespedRefinementRound2ReferenceMask"]
    assert mask1.startswith("auto") and "% of the box" in mask1
    assert mask2.startswith("auto") and s["reference_mask"] == mask1
    sn, bn, _ = outs["unmasked"]
    assert bn["cespedRefinementReferenceMask"] == "none" == bn["cespedRefinementRound2ReferenceMask"]
    assert len({v[2] for v in outs.values()}) == 5  # each choice changes the answer
    sm, bm, _ = outs["user map"]
    assert sm["rounds"] == 1 and sm["weighting"] == "none"  # a user's map has no FSC
    assert bm["cespedRefinementReferenceMask"].startswith("auto")  # a user's map is masked too


def test_fsc_weighted_is_the_wiener_filter_of_the_split_fsc():
    from cesped.refinement.reference import fsc_curve, fsc_weighted

    rng = np.random.default_rng(0)
    vol = rng.normal(size=(16, 16, 16)).astype(np.float32)
    n = 16
    # FSC 1 everywhere: the map unchanged; FSC 1/3: C = 2f/(1+f) = 1/2 in every shell
    assert np.allclose(fsc_weighted(vol, np.ones(n // 2 + 1)), vol, atol=1e-5)
    assert np.allclose(fsc_weighted(vol, np.full(n // 2 + 1, 1 / 3)), 0.5 * vol, atol=1e-5)
    # a step: shells <= 4 kept, the others removed (independent check: FSC of input and output
    # is 1 where kept, and the output has no power beyond)
    f = np.where(np.arange(n // 2 + 1) <= 4, 1.0, 0.0)
    out = fsc_weighted(vol, f)
    c = fsc_curve(vol, out)
    assert np.allclose(c[:5], 1.0, atol=1e-6)
    k = np.fft.fftfreq(n, 1.0 / n)
    r = np.round(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2))
    fo, fv = np.fft.fftn(out), np.fft.fftn(vol)
    assert np.abs(fo[r > 4]).max() < 1e-4 * np.abs(fv).max()
    assert np.allclose(fo[r <= 4], fv[r <= 4], atol=1e-3)
    with pytest.raises(ValueError, match="shells"):
        fsc_weighted(vol, np.ones(5))


def test_second_round_reference_is_closer_to_the_truth(tiny_entry):
    """The other half's map plus this half's particles at good poses (here: their true ones, as a
    refinement would give) correlates better with the true map than the other half's map alone."""
    from cesped.refinement.reference import fsc_curve, reference_from_half, reference_with_refined

    root, name = tiny_entry
    e = root / name
    truth, _ = read_map(e / "gt_map.mrc")
    one = reference_from_half(e, 0, use_cache=False)
    both = reference_with_refined(e, 0, read_star(e / "particles_1.star"))
    c1, c2 = fsc_curve(truth, one.volume), fsc_curve(truth, both.volume)
    n = truth.shape[0]
    assert c2[1 : n // 2].mean() > c1[1 : n // 2].mean() + 0.01
    assert len(both.fsc) == n // 2 + 1 and both.band_limit_A <= one.band_limit_A + 1e-9
    # the same optics in another column order is accepted; another optics table is refused
    st = read_star(e / "particles_1.star")
    st.optics = st.optics[list(reversed(st.optics.columns))]
    reference_with_refined(e, 0, st)
    st.optics["rlnVoltage"] = st.optics["rlnVoltage"] + 100.0
    with pytest.raises(ValueError, match="optics table differs"):
        reference_with_refined(e, 0, st)


def test_global_starts_on_a_symmetric_map_are_not_symmetry_mates(tiny_entry):
    """A C2-symmetrised map scores ``g · R`` exactly as ``R``: searched as C1, the best grid
    rotations of many particles come in mate pairs (two of the four starts spent on one pose);
    searched with the map's point group they never do, and the true pose's basin (up to the
    symmetry) is still among them."""
    from cesped.geometry.errors import symmetry_aware_error
    from cesped.refinement.global_search import global_candidates, grid_step_deg
    from cesped.refinement.score import Band, Reference

    root, name = tiny_entry
    _, batch, r_true, _, box = _batch(root / name, 1, 24)
    vol, _ = read_map(root / name / "gt_map.mrc")
    half_turn = np.roll(vol[:, ::-1, ::-1], 1, axis=(1, 2))  # 180° about z through the box centre n/2
    ref = Reference(0.5 * (vol + half_turn))
    band = Band.make(batch.n, 8.0)
    near = 2 * grid_step_deg(2)

    def mate_pairs(starts):  # (N, 4, 3, 3): per particle, pairs that are mates but not neighbours
        s = starts.double()
        count = torch.zeros(len(s), dtype=torch.long)
        for i in range(4):
            for j in range(i + 1, 4):
                plain = angular_distance(s[:, i], s[:, j])
                sym = symmetry_aware_error(s[:, i], s[:, j], "C2")
                count += ((sym <= near) & (plain > near)).long()
        return count

    c1 = global_candidates(ref, batch, band, order=2, top=4)
    c2 = global_candidates(ref, batch, band, order=2, top=4, symmetry="C2")
    assert (mate_pairs(c1) > 0).float().mean() > 0.5
    assert (mate_pairs(c2) == 0).all()
    for i in range(4):
        for j in range(i + 1, 4):
            assert (symmetry_aware_error(c2[:, i].double(), c2[:, j].double(), "C2") > near - 1e-3).all()
    best = torch.stack(
        [symmetry_aware_error(r_true.double(), c2[:, i].double(), "C2") for i in range(4)], 1
    ).amin(1)
    assert (best < near).float().mean() > 0.9


@pytest.fixture(scope="module")
def tiny_c2_entry(tmp_path_factory):
    """``(benchmark_dir, name)`` of a C2 entry (4E43, HIV-1 protease dimer): 2 x 120 particles."""
    from cesped.simulation import simulate_entry

    root = tmp_path_factory.mktemp("refine_c2")
    simulate_entry(
        root / "tiny4e43",
        structure="4e43",
        symmetry="C2",
        n_particles=240,
        pixel_size=3.0,
        box=64,
        snr=2.0,
        seed=5,
        progress=False,
    )
    return root, "tiny4e43"


def test_refine_star_searches_with_the_entrys_point_group(tiny_c2_entry, tmp_path):
    """On a C2 entry the default search is the entry's group (recorded), ``symmetric_search=False``
    the C1 search (recorded); both refine poses 10° off to the truth up to the symmetry, from
    the other half's C2 map."""
    from cesped.geometry.errors import symmetry_aware_error

    root, name = tiny_c2_entry
    e = root / name
    pred = perturbed_star(e, 1, tmp_path / "pred.star", jitter_deg=10.0)
    gt = true_rotmats(read_star(e / "particles_1.star"))
    for flag, want in ((True, "C2"), (False, "C1")):
        out = tmp_path / f"refined_{want}.star"
        summary = refine_star(
            name, 1, pred, out, benchmark_dir=root, global_top=2, rounds=1, symmetric_search=flag
        )
        st = read_star(out)
        assert summary["search_symmetry"] == want
        assert st.other_blocks["cesped_refinement"]["cespedRefinementSearchSymmetry"] == want
        err = symmetry_aware_error(gt, true_rotmats(st), "C2").numpy()
        assert np.median(err) < 2.0 and (err > 30).mean() < 0.05, (want, np.median(err))
