"""The refinement's CPU thread setting changes its speed, never its poses, and is restored."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from cesped.io.star import read_star
from cesped.refinement.api import cpu_threads, refine_star

from ._helpers import ANGLES, ORIGINS, perturbed_star


def test_threads_do_not_change_the_refined_poses(tiny_entry, tmp_path):
    root, name = tiny_entry
    e = root / name
    pred = perturbed_star(e, 1, tmp_path / "pred.star", jitter_deg=10.0)
    before = (torch.get_num_threads(), numba.get_num_threads())
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"refined_{threads}.star"
        refine_star(
            name,
            1,
            pred,
            out,
            reference=e / "gt_map.mrc",
            band_limit_A=6.0,
            benchmark_dir=root,
            threads=threads,
        )
        outs.append(read_star(out).particles[ANGLES + ORIGINS].to_numpy(np.float64))
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    # the same poses up to float32 summation order of the parallel kernels
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-3)


def test_cpu_threads_sets_and_restores_both_pools():
    before = (torch.get_num_threads(), numba.get_num_threads())
    with cpu_threads(1):
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    with pytest.raises(ValueError, match="--threads"):
        with cpu_threads(0):
            pass
