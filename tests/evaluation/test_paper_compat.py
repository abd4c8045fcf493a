"""paper_compatible: the original package's column definitions from cesped's metrics, checked
against an independent re-implementation of the original's runEvaluate on the same maps."""

from __future__ import annotations

import numpy as np
import pytest

from cesped.evaluation.paper_compat import ORIGINAL_KEYS, REQUIRED_KEYS, paper_compatible

from ._original_reference import cesped_map_metrics, original_run_evaluate

N, PX = 24, 2.0


@pytest.fixture(scope="module")
def four_maps():
    from cesped.reconstruction.synthetic import blob_map

    rng = np.random.default_rng(3)
    truth = blob_map(N, n_blobs=12, sigma=1.3, seed=1).astype(np.float64)
    wrong = blob_map(N, n_blobs=12, sigma=1.3, seed=2).astype(np.float64)

    def noisy(v, s):
        return v + s * rng.standard_normal(v.shape)

    gt0, gt1 = noisy(truth, 0.05), noisy(truth, 0.05)
    v0, v1 = noisy(0.8 * truth + 0.2 * wrong, 0.15), noisy(0.8 * truth + 0.2 * wrong, 0.15)
    x = np.arange(N) - N // 2
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    mask = 0.5 + 0.5 * np.cos(np.pi * np.clip((r - 6.0) / 3.0, 0.0, 1.0))
    return gt0, gt1, v0, v1, mask


@pytest.mark.parametrize("masked", [True, False])
def test_columns_equal_the_originals_definitions(four_maps, masked):
    gt0, gt1, v0, v1, mask = four_maps
    m = mask if masked else None
    metrics = {"MAnE_deg": 12.5, "wMAnE_deg": 10.25, **cesped_map_metrics(gt0, gt1, v0, v1, m, PX)}
    row = paper_compatible(metrics)
    orig = original_run_evaluate(gt0, gt1, v0, v1, m, PX, mane=12.5, wmane=10.25)
    assert row["mask_used"] is masked
    for col, key in ORIGINAL_KEYS.items():
        if not masked and key in ("mapVsGT_correlaton_masked", "mapVsGT_correlaton_diff_masked"):
            assert np.isnan(orig[key])  # the original writes NaN; the column takes the unmasked value
            continue
        assert row[col] == pytest.approx(orig[key], abs=1e-9), (col, key)
    if not masked:
        assert row["PCC(GT,V)"] == row["PCC(GT,V)_unmasked"] and row["dPCC"] == row["dPCC_unmaskedV"]


def test_with_a_mask_the_gt_v_resolution_is_unmasked_and_dfscr_mixes(four_maps):
    gt0, gt1, v0, v1, mask = four_maps
    metrics = {"MAnE_deg": 1.0, "wMAnE_deg": 1.0, **cesped_map_metrics(gt0, gt1, v0, v1, mask, PX)}
    row = paper_compatible(metrics)
    assert row["FSCR0.143(GT,V)"] == metrics["FSCR0.143(GT,V)_unmasked_A"]
    assert row["FSCR0.143(GT0,GT1)"] == metrics["FSCR0.143(GT0,GT1)_masked_A"]
    consistent = metrics["FSCR0.143(GT,V)_masked_A"] - metrics["FSCR0.143(GT0,GT1)_masked_A"]
    assert row["dFSCR0.143"] == metrics["FSCR0.143(GT,V)_unmasked_A"] - metrics["FSCR0.143(GT0,GT1)_masked_A"]
    assert row["dFSCR0.143"] != pytest.approx(consistent)  # the maps make the two differ
    assert row["dPCC_unmaskedV"] == metrics["PCC(GT0,GT1)_masked"] - metrics["PCC(GT,V)_unmasked"]


def test_missing_key_is_named():
    with pytest.raises(ValueError, match=r"PCC\(V0,V1\)_unmasked"):
        paper_compatible({"MAnE_deg": 1.0, "wMAnE_deg": 1.0})
    assert "PCC(V0,V1)_{f}" in REQUIRED_KEYS and "MAnE_deg" in REQUIRED_KEYS
