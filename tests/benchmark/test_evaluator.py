"""cesped.Evaluator: equal to evaluateEntry's angular metrics, exact on known errors, clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from ._helpers import ANGLES, gt_star, perturbed, write_predictions


@pytest.fixture(scope="module")
def weighted_bench(tiny_bench, tmp_path_factory):
    """tinyB (C2) copied with non-uniform ground-truth confidences (so that wMAnE != MAnE)."""
    from cesped.io.star import write_star

    bench = tmp_path_factory.mktemp("wbench")
    shutil.copytree(tiny_bench / "tinyB", bench / "tinyW")
    rng = np.random.default_rng(5)
    for h in (0, 1):
        st = gt_star(bench, "tinyW", h)
        st.particles["rlnMaxValueProbDistribution"] = rng.uniform(0.05, 1.0, len(st.particles))
        write_star(bench / "tinyW" / f"particles_{h}.star", st)
    return bench


def _rotmats_of(path):
    from cesped.geometry.numpy_ops import euler_to_matrix
    from cesped.io.star import read_star

    p = read_star(path).particles
    return p["rlnImageName"].astype(str).to_numpy(), euler_to_matrix(p[ANGLES].to_numpy(dtype=np.float64))


def test_evaluator_equals_evaluate_entry_angular_metrics(weighted_bench, tmp_path):
    import cesped
    from cesped.evaluation.evaluate import evaluate

    rng = np.random.default_rng(0)
    files = {}
    for h in (0, 1):
        n = len(gt_star(weighted_bench, "tinyW", h).particles)
        files[h] = tmp_path / f"pred_{h}.star"
        # errors over the whole range: C2 symmetry folds those above 90 deg
        write_predictions(weighted_bench, "tinyW", h, files[h], rng.uniform(0, 179, n), seed=h)
    m = evaluate("tinyW", files[0], files[1], benchmarkDir=weighted_bench, n_cpus=1, plots=False)
    res, errs, weights = {}, [], []
    for h in (0, 1):
        ids, rot = _rotmats_of(files[h])
        order = np.random.default_rng(h).permutation(len(ids))  # the order of ids must not matter
        ev = cesped.Evaluator("tinyW", h, benchmarkDir=weighted_bench)
        res[h] = ev.eval(ids[order], rot[order], complete=True)
        assert res[h]["MAnE"] == pytest.approx(m[f"MAnE_half{h}_deg"], rel=1e-12)
        errs.append(ev.errors(ids[order], rot[order]))
        weights.append(ev.gt_confidence[ev._index.get_indexer(ids[order])])
        assert res[h]["gt_weight_sum"] == pytest.approx(weights[-1].sum())
    assert 0.5 * (res[0]["MAnE"] + res[1]["MAnE"]) == pytest.approx(m["MAnE_deg"], rel=1e-12)
    pooled = (res[0]["wMAnE"] * res[0]["gt_weight_sum"] + res[1]["wMAnE"] * res[1]["gt_weight_sum"]) / (
        res[0]["gt_weight_sum"] + res[1]["gt_weight_sum"]
    )
    assert pooled == pytest.approx(m["wMAnE_deg"], rel=1e-12)
    assert abs(m["wMAnE_deg"] - m["MAnE_deg"]) > 0.1  # the weights matter in this entry
    assert np.median(np.concatenate(errs)) == pytest.approx(m["median_angular_error_deg"], rel=1e-12)


def test_evaluator_fractions_on_known_errors(tiny_bench):
    """Predictions turned by known angles (and by a symmetry operation) have exactly those errors."""
    import torch

    from cesped.benchmark.evaluator import Evaluator
    from cesped.geometry.symmetry import symmetry_matrices_np

    for entry in ("tinyA", "tinyB"):
        ev = Evaluator(entry, 1, benchmarkDir=tiny_bench)
        n = len(ev)
        # C2 folds errors above 90 deg, C1 does not: keep C2's below 90
        top = 179.0 if ev.symmetry == "C1" else 89.0
        angles = np.linspace(0.5, top, n)
        rng = np.random.default_rng(1)
        pred = perturbed(ev.true_rotmats, angles, rng)
        g = symmetry_matrices_np(ev.symmetry)
        pred = g[np.arange(n) % len(g)] @ pred  # the symmetry-equivalent pose is as good
        sub = np.arange(0, n, 2)  # a subset (e.g. a validation split) is accepted
        r = ev.eval(ev.ids[sub], torch.as_tensor(pred[sub]), confidence=np.linspace(1, 0, sub.size))
        a = angles[sub]
        assert r["n"] == sub.size
        assert r["MAnE"] == pytest.approx(a.mean(), abs=1e-7)
        assert r["wMAnE"] == pytest.approx(a.mean(), abs=1e-7)  # GT confidences are 1
        assert r["median"] == pytest.approx(np.median(a), abs=1e-7)
        for t in (5, 10, 30):
            assert r[f"frac_below_{t}deg"] == pytest.approx(np.mean(a < t))
        assert r["frac_above_150deg"] == pytest.approx(np.mean(a > 150))
        if ev.symmetry == "C1":
            assert r["frac_above_150deg"] > 0
        c = np.linspace(1, 0, sub.size)
        assert r["predconf_weighted_MAnE"] == pytest.approx((c * a).sum() / c.sum(), abs=1e-7)
        # the same ids again (a validation set every epoch): the same numbers; completeness still checked
        assert ev.eval(list(ev.ids[sub]), pred[sub], confidence=np.linspace(1, 0, sub.size)) == r
        with pytest.raises(
            ValueError, match=f"{n - sub.size} particle\\(s\\) of half-set 1 .* no prediction"
        ):
            ev.eval(ev.ids[sub], pred[sub], complete=True)
        # the half-set's own order, complete
        assert ev.eval(ev.ids, pred, complete=True)["MAnE"] == pytest.approx(angles.mean(), abs=1e-7)
        # float32 predictions (a network's output) are accepted
        r32 = ev.eval(ev.ids[sub], torch.as_tensor(pred[sub], dtype=torch.float32))
        assert r32["MAnE"] == pytest.approx(a.mean(), abs=0.05)


@pytest.mark.parametrize(
    "case, match",
    [
        ("unknown_id", "not in half-set 0 of tinyA"),
        ("other_half_id", "not in half-set 0 of tinyA"),
        ("duplicated", "duplicated id"),
        ("scaled", "not rotations"),
        ("reflection", "not rotations"),
        ("nan", "non-finite"),
        ("rot_shape", r"rotmats: expected shape \(24, 3, 3\)"),
        ("rot_count", r"rotmats: expected shape \(23, 3, 3\)"),
        ("ids_2d", "ids: expected a 1-D"),
        ("ids_str", "single string"),
        ("empty", "ids: empty"),
        ("conf_shape", r"confidence: expected shape \(24,\)"),
        ("conf_negative", "confidence: negative"),
        ("incomplete", "have no prediction"),
    ],
)
def test_evaluator_bad_input(tiny_bench, case, match):
    from cesped.benchmark.evaluator import Evaluator

    ev = Evaluator("tinyA", 0, benchmarkDir=tiny_bench)
    ids, rot = ev.ids.copy(), ev.true_rotmats.copy()
    kw = {}
    if case == "unknown_id":
        ids[3] = "000999@nowhere.mrcs"
    elif case == "other_half_id":
        ids[0] = str(gt_star(tiny_bench, "tinyA", 1).particles["rlnImageName"].iloc[0])
    elif case == "duplicated":
        ids[1] = ids[0]
    elif case == "scaled":
        rot[2] *= 1.01
    elif case == "reflection":
        rot[2] = rot[2] @ np.diag([1.0, 1.0, -1.0])
    elif case == "nan":
        rot[4, 0, 0] = np.nan
    elif case == "rot_shape":
        rot = rot[:, :, 0]
    elif case == "rot_count":
        ids = ids[:-1]
    elif case == "ids_2d":
        ids = ids.reshape(2, -1)
    elif case == "ids_str":
        ids = ids[0]
    elif case == "empty":
        ids, rot = ids[:0], rot[:0]
    elif case == "conf_shape":
        kw["confidence"] = np.ones(3)
    elif case == "conf_negative":
        kw["confidence"] = -np.ones(len(ids))
    elif case == "incomplete":
        ids, rot = ids[:-2], rot[:-2]
        kw["complete"] = True
    with pytest.raises(ValueError, match=match):
        ev.eval(ids, rot, **kw)


def test_evaluator_id_forms_give_the_rows_of_a_dict_lookup(tiny_bench):
    """A list, a numpy str array and a shuffled object array find the rows a dict finds; ids that
    are not strings are unknown (not an Arrow type error)."""
    from cesped.benchmark.evaluator import Evaluator

    ev = Evaluator("tinyA", 0, benchmarkDir=tiny_bench)
    where = {name: i for i, name in enumerate(ev.ids)}
    order = np.random.default_rng(3).permutation(len(ev))[:17]
    for ids in (list(ev.ids[order]), ev.ids[order].astype(str), ev.ids[order][::-1].copy()):
        want = [where[str(i)] for i in ids]
        np.testing.assert_array_equal(ev._rows(ids, complete=False), want)
        np.testing.assert_allclose(
            ev.errors(ids, ev.true_rotmats[want]), 0.0, atol=1e-12
        )  # each prediction met its own ground truth
    with pytest.raises(ValueError, match="2 id\\(s\\) not in half-set 0"):
        ev.eval([ev.ids[0], 7, 8.5], ev.true_rotmats[:3])


def test_evaluator_id_lookup_without_pyarrow(tiny_bench, monkeypatch):
    """Without pyarrow, pandas' hash lookup finds the same rows and refuses the same unknown ids."""
    import sys

    from cesped.benchmark.evaluator import Evaluator

    ev = Evaluator("tinyA", 0, benchmarkDir=tiny_bench)
    ids = ev.ids[np.random.default_rng(4).permutation(len(ev))]
    with_arrow = ev._lookup(ids)
    fresh = Evaluator("tinyA", 0, benchmarkDir=tiny_bench)  # (reading the star file uses pyarrow)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # from here, import pyarrow raises ImportError
    np.testing.assert_array_equal(fresh._lookup(ids), with_arrow)
    assert fresh._lookup(np.array(["000999@nowhere.mrcs"], dtype=object)).tolist() == [-1]


def test_evaluator_unknown_entry_and_halfset(tiny_bench):
    from cesped.benchmark.evaluator import Evaluator

    with pytest.raises(ValueError, match="'no_such_entry'"):
        Evaluator("no_such_entry", 0, benchmarkDir=tiny_bench)
    with pytest.raises(ValueError, match="halfset must be 0 or 1"):
        Evaluator("tinyA", 2, benchmarkDir=tiny_bench)
    ev = Evaluator(str(tiny_bench / "tinyB"), 1)  # an entry directory works too
    assert ev.symmetry == "C2" and len(ev) == 24


def test_lazy_export_does_no_work_at_import():
    code = (
        "import sys, cesped; assert 'cesped.benchmark' not in sys.modules; "
        "assert 'numpy' not in sys.modules; E = cesped.Evaluator; "
        "assert E.__module__ == 'cesped.benchmark.evaluator'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import cesped

        cesped.nope  # noqa: B018
