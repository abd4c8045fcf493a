"""Parity with the original CESPED package: its PCC and FSC definitions applied to
``relion_reconstruct`` maps (what the original computes) against cesped's metrics on its own
native maps, on the same predictions (70 % jittered by 8°, 15 % random, 15 % mirrored).

The reference definitions below are re-implemented from reading the original's code
(``cesped/utils/volumeStats.py`` and ``cesped/utils/fsc.py`` of cesped 25.12.0); the original
package itself is not needed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cesped.evaluation.metrics import fsc, pcc, resolution_at
from cesped.evaluation.paper_compat import paper_compatible

from ._original_reference import original_run_evaluate, ref_fsc, ref_pcc, ref_resolution

pytestmark = [pytest.mark.relion, pytest.mark.slow]

BOX, PX, N_HALF = 64, 1.5, 500


# ------------------------------------------------------------------------------ the data
def _predictions(angles: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(angles)
    rot = Rotation.from_euler("ZYZ", angles, degrees=True)
    jitter = Rotation.from_rotvec(rng.normal(0.0, np.radians(8.0) / np.sqrt(3.0), (n, 3)))
    out = (jitter * rot).as_euler("ZYZ", degrees=True)
    u = rng.permutation(n)
    rand_idx, mirror_idx = u[: int(0.15 * n)], u[int(0.15 * n) : int(0.30 * n)]
    out[rand_idx] = Rotation.random(len(rand_idx), random_state=seed).as_euler("ZYZ", degrees=True)
    out[mirror_idx] = (rot[mirror_idx] * Rotation.from_euler("Y", 180.0, degrees=True)).as_euler(
        "ZYZ", degrees=True
    )
    return out


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """The four half-maps, reconstructed by relion_reconstruct and natively (both griddings)."""
    pytest.importorskip("numba")
    from cesped.io.star import read_star, write_star
    from cesped.reconstruction.fourier import reconstruct
    from cesped.reconstruction.relion import find_relion_binary, reconstruct_relion
    from cesped.reconstruction.synthetic import blob_map, write_particle_set

    try:
        find_relion_binary("relion_reconstruct")
    except FileNotFoundError:
        pytest.skip("relion_reconstruct not installed")
    d = tmp_path_factory.mktemp("parity")
    vol = blob_map(BOX, n_blobs=60, sigma=1.5, seed=0)
    stars = {}
    for h in (0, 1):
        gt = write_particle_set(
            d, vol, N_HALF, PX, snr=0.5, seed=10 + h, stack_name=f"p_{h}.mrcs", star_name=f"gt_{h}.star"
        )
        st = read_star(gt)
        cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
        st.particles[cols] = _predictions(st.particles[cols].to_numpy(), seed=20 + h)
        write_star(d / f"pred_{h}.star", st)
        stars[f"gt_{h}"], stars[f"pred_{h}"] = gt, d / f"pred_{h}.star"
    out = {"relion": {}, "native": {}, "skip": {}}
    for name, star in stars.items():
        out["relion"][name] = reconstruct_relion(star, "C1", None)[0].astype(np.float64)
        out["native"][name] = reconstruct(star, symmetry="C1")[0].astype(np.float64)
        out["skip"][name] = reconstruct(star, symmetry="C1", gridding="skip")[0].astype(np.float64)
    x = np.arange(BOX) - BOX // 2
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    out["mask"] = 0.5 + 0.5 * np.cos(np.pi * np.clip((r - BOX * 0.3) / 6.0, 0.0, 1.0))
    return out


def _pairs(m):
    gt, v = (m["gt_0"] + m["gt_1"]) / 2, (m["pred_0"] + m["pred_1"]) / 2
    return {"GT0,GT1": (m["gt_0"], m["gt_1"]), "V0,V1": (m["pred_0"], m["pred_1"]), "GT,V": (gt, v)}


def _reference_values(m, mask):
    out = {}
    for key, (a, b) in _pairs(m).items():
        for tag, mk in (("unmasked", None), ("masked", mask)):
            out[f"PCC({key}) {tag}"] = ref_pcc(a, b, mk)
            curve = ref_fsc(a, b, mk)
            for thr in (0.143, 0.5):
                out[f"FSC{thr}({key}) {tag}"] = ref_resolution(curve, thr, BOX, PX)
    return out


def _cesped_values(m, mask):
    out = {}
    for key, (a, b) in _pairs(m).items():
        for tag, mk in (("unmasked", None), ("masked", mask)):
            out[f"PCC({key}) {tag}"] = pcc(a, b, mask=mk)
            r143, r05 = resolution_at(fsc(a, b, mask=mk), [0.143, 0.5], PX)
            out[f"FSC0.143({key}) {tag}"], out[f"FSC0.5({key}) {tag}"] = r143, r05
    return out


def test_cesped_metrics_match_the_original_on_relion_maps(maps):
    ref = _reference_values(maps["relion"], maps["mask"])
    ours = _cesped_values(maps["native"], maps["mask"])
    assert set(ref) == set(ours) and len(ref) == 18
    for k, v in ref.items():
        tol = 0.005 if k.startswith("PCC") else 0.05
        assert abs(ours[k] - v) <= tol, f"{k}: cesped {ours[k]:.4f}, original + RELION {v:.4f}"


def test_skip_gridding_would_break_pcc_parity(maps):
    """The same comparison with RELION's --skip_gridding division: FSCs still agree, PCCs do not
    (the cause of the 0.015-0.021 gap of issue 14)."""
    ref = _reference_values(maps["relion"], maps["mask"])
    skip = _cesped_values(maps["skip"], maps["mask"])
    pcc_gap = max(abs(skip[k] - ref[k]) for k in ref if k.startswith("PCC"))
    assert pcc_gap > 0.01
    assert all(abs(skip[k] - ref[k]) <= 0.1 for k in ref if k.startswith("FSC") and "unmasked" in k)


def test_reference_definitions_agree_with_cesped_metrics_on_the_same_maps(maps):
    """The independent reference and cesped's metrics give the same numbers on the same maps."""
    ref = _reference_values(maps["native"], maps["mask"])
    ours = _cesped_values(maps["native"], maps["mask"])
    for k, v in ref.items():
        assert ours[k] == pytest.approx(v, abs=1e-9), k


def test_paper_columns_match_the_original_on_relion_maps(maps):
    """paper_compatible on cesped's metrics of its own maps against the original's runEvaluate
    values computed from relion_reconstruct maps."""
    from cesped.evaluation.paper_compat import ORIGINAL_KEYS

    from ._original_reference import cesped_map_metrics

    nat, rel, mask = maps["native"], maps["relion"], maps["mask"]
    names = ("gt_0", "gt_1", "pred_0", "pred_1")
    row = paper_compatible(
        {"MAnE_deg": 0.0, "wMAnE_deg": 0.0, **cesped_map_metrics(*(nat[k] for k in names), mask, PX)}
    )
    orig = original_run_evaluate(*(rel[k] for k in names), mask, PX)
    for col, key in ORIGINAL_KEYS.items():
        if key not in orig:
            continue
        tol = (
            0.01
            if col.startswith("dPCC")
            else 0.005
            if "PCC" in col
            else 0.1
            if col.startswith("d")
            else 0.05
        )
        assert abs(row[col] - orig[key]) <= tol, f"{col}: cesped {row[col]:.4f}, original {orig[key]:.4f}"
