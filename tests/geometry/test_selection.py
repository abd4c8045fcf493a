"""cesped.geometry.selection.distinct_top against a per-row brute force and its own invariants."""

from __future__ import annotations

import math

import pytest
import torch

from cesped.geometry.rotations import axis_angle_to_matrix, random_rotations
from cesped.geometry.selection import distinct_top


def _angle(a, b):
    c = ((a.T @ b).trace() - 1) / 2
    return math.degrees(math.acos(max(-1.0, min(1.0, float(c)))))


def _brute(scores, rots, k, min_deg, group=None):
    group = [torch.eye(3, dtype=rots.dtype)] if group is None else list(group)
    out = []
    for s, r in zip(scores, rots):
        picks = []
        for j in sorted(range(len(s)), key=lambda j: -float(s[j])):
            if len(picks) < k and all(min(_angle(g @ r[p], r[j]) for g in group) > min_deg for p in picks):
                picks.append(j)
        out.append(picks + [picks[0]] * (k - len(picks)))
    return torch.tensor(out)


def _clustered(n, m, seed):
    """Rotations in a few tight clusters (so that neighbours must be suppressed)."""
    g = torch.Generator().manual_seed(seed)
    centres = random_rotations(n * 3, generator=g).reshape(n, 3, 3, 3)
    which = torch.randint(0, 3, (n, m), generator=g)
    small = axis_angle_to_matrix(
        torch.randn(n * m, 3, generator=g, dtype=torch.float64),
        torch.rand(n * m, generator=g, dtype=torch.float64) * 12,
    )
    rots = small.reshape(n, m, 3, 3) @ centres[torch.arange(n)[:, None], which]
    return torch.rand(n, m, generator=g, dtype=torch.float64), rots


@pytest.mark.parametrize("min_deg", [0.0, 5.0, 20.0, 90.0])
def test_matches_a_per_row_brute_force(min_deg):
    scores, rots = _clustered(12, 30, seed=1)
    got = distinct_top(scores, rots, 4, min_deg)
    assert torch.equal(got, _brute(scores, rots, 4, min_deg))


def test_zero_separation_is_plain_top_k_and_rows_without_enough_modes_repeat_their_best():
    scores, rots = _clustered(6, 20, seed=2)
    assert torch.equal(distinct_top(scores, rots, 5, 0.0), scores.topk(5, dim=1).indices)
    # three clusters of radius <= 12 deg: at 60 deg apart at most three picks, then the best again
    got = distinct_top(scores, rots, 5, 60.0)
    best = scores.argmax(1)
    assert (got[:, 0] == best).all()
    assert (got[:, 3:] == best[:, None]).all()


def test_the_choice_does_not_depend_on_the_frame():
    scores, rots = _clustered(8, 25, seed=3)
    g = torch.Generator().manual_seed(4)
    a, b = random_rotations(2, generator=g)
    assert torch.equal(distinct_top(scores, rots, 3, 15.0), distinct_top(scores, a @ rots @ b, 3, 15.0))


def test_bad_shapes_and_k_are_refused():
    scores, rots = _clustered(2, 5, seed=5)
    with pytest.raises(ValueError, match="rotmats"):
        distinct_top(scores, rots[:, :4], 2, 10.0)
    with pytest.raises(ValueError, match="k must be"):
        distinct_top(scores, rots, 0, 10.0)


def test_fill_next_completes_with_the_best_rotations_not_chosen():
    scores, rots = _clustered(6, 20, seed=6)
    distinct = distinct_top(scores, rots, 5, 60.0)  # at most three distinct (three clusters)
    got = distinct_top(scores, rots, 5, 60.0, fill="next")
    for row in range(6):
        n_distinct = len(set(_brute(scores[row : row + 1], rots[row : row + 1], 5, 60.0)[0].tolist()))
        assert torch.equal(got[row, :n_distinct], distinct[row, :n_distinct])
        rest = [j for j in scores[row].argsort(descending=True).tolist() if j not in got[row, :n_distinct]]
        assert got[row, n_distinct:].tolist() == rest[: 5 - n_distinct]
    assert len(set(got[0].tolist())) == 5
    # enough distinct rotations: both fills agree
    assert torch.equal(distinct_top(scores, rots, 2, 5.0, fill="next"), distinct_top(scores, rots, 2, 5.0))
    with pytest.raises(ValueError, match="fill"):
        distinct_top(scores, rots, 2, 5.0, fill="worst")


@pytest.mark.parametrize("symmetry", ["C2", "D2", "C7"])
def test_symmetry_mates_are_one_choice(symmetry):
    """With a point group the distance is to the nearest mate ``g · S`` (labels ``R = Aᵀ``, as
    :func:`cesped.geometry.errors.symmetry_aware_error`): a per-row brute force over the group
    agrees, and rows made of exact mates of a few poses yield one choice per pose."""
    from cesped.geometry.symmetry import symmetry_matrices

    group = symmetry_matrices(symmetry, dtype=torch.float64)
    scores, rots = _clustered(10, 24, seed=7)
    for min_deg in (5.0, 20.0):
        got = distinct_top(scores, rots, 4, min_deg, group=group)
        assert torch.equal(got, _brute(scores, rots, 4, min_deg, group))
    # every rotation with all its mates: without the group the mates fill the choices
    g = torch.Generator().manual_seed(8)
    base = random_rotations(6 * 3, generator=g).reshape(6, 3, 3, 3)  # 3 poses per row
    mates = (group[None, None] @ base[:, :, None]).reshape(6, -1, 3, 3)  # (6, 3·G)
    sc = torch.rand(6, 3, generator=g, dtype=torch.float64).repeat_interleave(len(group), 1)
    sc = sc + 1e-9 * torch.rand(sc.shape, generator=g, dtype=torch.float64)  # ties broken
    with_group = distinct_top(sc, mates, 3, 10.0, group=group)
    assert (with_group // len(group)).sort(1).values.tolist() == [[0, 1, 2]] * 6
    without = distinct_top(sc, mates, 3, 10.0)
    assert ((without // len(group)).sort(1).values != torch.tensor([0, 1, 2])).any()
    # C1's group is no group
    c1 = symmetry_matrices("C1", dtype=torch.float64)
    assert torch.equal(distinct_top(scores, rots, 4, 20.0, group=c1), distinct_top(scores, rots, 4, 20.0))
    with pytest.raises(ValueError, match="group"):
        distinct_top(scores, rots, 2, 5.0, group=torch.eye(3))
