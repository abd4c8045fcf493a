"""The exact-label target: the SO(3) signal read at the labels, normalised on a randomly turned grid."""

from __future__ import annotations

import math

import pytest
import torch

from cesped.geometry.errors import angular_distance
from cesped.geometry.symmetry import symmetry_matrices
from cesped.models.image2sphere import Image2Sphere
from cesped.models.so3_grid import OutputGrid
from cesped.training.losses import exact_label_cross_entropy, symmetric_cross_entropy

SMALL = dict(
    resnet="resnet18",
    width=8,
    lmax=4,
    s2_fdim=8,
    so3_fdim=4,
    hp_order_projector=1,
    hp_order_s2=1,
    hp_order_so3=2,
    so3_act_resolution=6,
)
DIM = 165  # Σ_{l<=4} (2l+1)²


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Image2Sphere(**SMALL).eval()


def test_label_values_equal_grid_logits_at_grid_rotations_and_expand_symmetry(model):
    torch.manual_seed(1)
    c = torch.randn(4, DIM)
    idx = torch.tensor([3, 777, 2048, 4600])
    R = model.to_data_frame(model.output_grid.rotations(idx))
    v = model.label_values(c, R)
    assert v.shape == (4, 1)
    torch.testing.assert_close(v[:, 0], model.grid_logits(c)[torch.arange(4), idx], rtol=1e-4, atol=1e-4)
    # the C2 mate's value is the signal at S·R (read through a one-image label)
    sym = symmetry_matrices("C2").float()
    v2 = model.label_values(c, R, sym)
    assert v2.shape == (4, 2)
    torch.testing.assert_close(v2[:, 1], model.label_values(c, sym[1] @ R)[:, 0], rtol=1e-4, atol=1e-4)


def test_exact_loss_on_grid_labels_is_the_grid_cross_entropy(model):
    torch.manual_seed(2)
    c = torch.randn(5, DIM)
    idx = torch.randint(0, model.output_grid.size, (5,))
    R = model.to_data_frame(model.output_grid.rotations(idx))
    w = torch.rand(5)
    lg = model.grid_logits(c)
    for eps in (0.0, 0.2):
        torch.testing.assert_close(
            exact_label_cross_entropy(model.label_values(c, R), lg, w, eps),
            symmetric_cross_entropy(lg, idx[:, None], w, eps),
            rtol=1e-4,
            atol=1e-4,
        )
    # a uniform output costs ln N whatever the labels
    zero = torch.zeros(2, DIM)
    loss = exact_label_cross_entropy(model.label_values(zero, R[:2]), model.jittered_grid_logits(zero))
    assert abs(float(loss) - math.log(model.output_grid.size)) < 1e-4
    with pytest.raises(ValueError, match="label_values"):
        exact_label_cross_entropy(lg, lg[:3])
    with pytest.raises(ValueError, match="label_smoothing"):
        exact_label_cross_entropy(lg[:, :1], lg, label_smoothing=1.0)


def test_jittered_grid_is_an_unbiased_quadrature_of_the_partition_function(model):
    """Mean of exp(f) over the randomly turned order-2 grid = mean over the 8x finer order-3 grid."""
    torch.manual_seed(3)
    c = 0.3 * torch.randn(1, DIM)
    fine = OutputGrid(4, 3)
    ref = torch.exp(fine.logits(c)).mean()
    draws = torch.stack([torch.exp(model.jittered_grid_logits(c.expand(64, -1))).mean(1) for _ in range(4)])
    est = draws.mean()
    assert abs(float(est / ref) - 1) < 0.01
    # per-image angles turn each image by its own rotation, as the one-rotation call does
    c3 = torch.randn(3, DIM)
    ang = [torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64) * k for k in (1.0, 0.7, -0.4)]
    batched = model.right_rotate_coeffs(c3, ang)
    for i in range(3):
        one = model.right_rotate_coeffs(c3[i : i + 1], tuple(float(v[i]) for v in ang))
        torch.testing.assert_close(batched[i : i + 1], one)
    # and the turned grid really moves: two draws of one image differ
    a, b = model.jittered_grid_logits(c.expand(2, -1))
    assert float((a - b).abs().max()) > 1e-2


def test_exact_target_puts_the_peak_on_the_label_not_on_its_grid_cell(model):
    """A free SO(3) signal trained on one label halfway between grid rotations: with the exact
    target its refined maximum lands on the label; with the nearest-cell target, on the cell."""
    grid = model.output_grid
    g = grid.rotations(torch.tensor([1000, 1001]))  # two neighbouring grid rotations (network frame)
    # geodesic midpoint: g0 · exp(½ log(g0ᵀ g1))
    rel = g[0].T @ g[1]
    ang = math.acos(max(-1.0, min(1.0, (float(rel.trace()) - 1) / 2)))
    skew = (rel - rel.T) * (ang / (2 * math.sin(ang)))
    mid = g[0] @ torch.linalg.matrix_exp(0.5 * skew)
    label = model.to_data_frame(mid)[None].float()
    off_grid = float(angular_distance(label, model.to_data_frame(g[:1]))[0])
    assert off_grid > 3.0

    def train(target: str) -> float:
        x = torch.zeros(1, DIM, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.05)
        torch.manual_seed(4)
        for _ in range(300):
            opt.zero_grad()
            if target == "exact":
                loss = exact_label_cross_entropy(model.label_values(x, label), model.jittered_grid_logits(x))
            else:
                loss = symmetric_cross_entropy(model.grid_logits(x), model.target_indices(label))
            loss.backward()
            opt.step()
        pred, _ = model.predict_from_coeffs(x.detach(), order=3, refine_steps=5)
        return float(angular_distance(pred[:, 0], label)[0])

    err_exact, err_nearest = train("exact"), train("nearest")
    assert err_exact < 3.0, (err_exact, err_nearest, off_grid)
    assert err_nearest > 0.5 * off_grid, (err_exact, err_nearest, off_grid)
