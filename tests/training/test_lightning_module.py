"""Image2SphereModule's two training targets on one C2 batch (no Trainer)."""

from __future__ import annotations

import math

import pytest
import torch

from cesped.geometry.rotations import random_rotations

NET = dict(
    _target_="cesped.models.image2sphere.Image2Sphere",
    resnet="resnet18",
    width=8,
    lmax=3,
    s2_fdim=8,
    so3_fdim=4,
    hp_order_projector=1,
    hp_order_s2=1,
    hp_order_so3=1,
    so3_act_resolution=4,
)
OPT = dict(_target_="torch.optim.RAdam", _partial_=True, lr=1e-3)


def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    return (
        [f"{i}@x.mrcs" for i in range(n)],
        torch.randn(n, 1, 32, 32, generator=g),
        random_rotations(n, g).float(),
        torch.zeros(n, 2),
        torch.ones(n),
    )


@pytest.mark.parametrize("target", ["nearest", "exact"])
def test_both_targets_give_a_finite_loss_near_ln_n_and_gradients(target):
    from cesped.training.lightning_module import Image2SphereModule

    torch.manual_seed(0)
    m = Image2SphereModule(NET, OPT, symmetry="C2", target=target)
    n_grid = m.model.output_grid.size
    for training in (True, False):
        m.train(training)
        loss, err = m._loss_and_error(_batch())
        # the head starts close to uniform: the loss is close to ln N for either target
        assert abs(float(loss) - math.log(n_grid)) < 0.5
        assert err.shape == (4,) and float(err.max()) <= 180.0
    m.train()
    m.zero_grad()
    m._loss_and_error(_batch())[0].backward()
    assert float(m.model.head.so3_conv.weight.grad.abs().max()) > 0


def test_unknown_target_is_refused():
    from cesped.training.lightning_module import Image2SphereModule

    with pytest.raises(ValueError, match="target"):
        Image2SphereModule(NET, OPT, target="soft")
