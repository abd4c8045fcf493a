"""random_pose_reference: the no-skill end of the pose-error scale for an entry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cesped.evaluation.references import random_pose_reference


def test_c1_random_poses_have_the_haar_mean_angle():
    # angle density of a Haar rotation: (1 - cos t) / pi on [0, pi]; mean pi/2 + 2/pi rad
    gt = Rotation.random(20000, random_state=3).as_matrix()
    ref = random_pose_reference(gt, "C1", seed=0)
    assert ref["MAnE_deg"] == pytest.approx(90.0 + 360.0 / np.pi**2, abs=0.6)
    assert ref["n_particles"] == 20000 and "wMAnE_deg" not in ref
    # median: F(t) = (t - sin t) / pi = 1/2
    t = np.linspace(0, np.pi, 200001)
    median = np.degrees(t[np.searchsorted((t - np.sin(t)) / np.pi, 0.5)])
    assert ref["median_angular_error_deg"] == pytest.approx(median, abs=0.8)


def test_symmetry_aware_against_a_scipy_brute_force():
    from cesped.geometry.symmetry import symmetry_matrices_np

    gt = Rotation.random(500, random_state=4).as_matrix()
    w = np.random.default_rng(1).uniform(0.1, 1.0, 500)
    ref = random_pose_reference(gt, "D2", seed=7, weights=w)
    rand = Rotation.random(500, random_state=np.random.default_rng(7))  # the same draw
    errs = np.min(
        [
            np.degrees((Rotation.from_matrix(g @ gt).inv() * rand).magnitude())
            for g in symmetry_matrices_np("D2")
        ],
        axis=0,
    )
    assert ref["MAnE_deg"] == pytest.approx(errs.mean(), rel=1e-9)
    assert ref["wMAnE_deg"] == pytest.approx(np.sum(w * errs) / np.sum(w), rel=1e-9)
    assert ref["MAnE_deg"] < random_pose_reference(gt, "C1", seed=7)["MAnE_deg"] - 20


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="gt_rotmats"):
        random_pose_reference(np.eye(3), "C1")
    with pytest.raises(ValueError, match="weights"):
        random_pose_reference(np.stack([np.eye(3)] * 3), "C1", weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="kind"):
        random_pose_reference(np.stack([np.eye(3)] * 3), "C1", kind="SE3")
