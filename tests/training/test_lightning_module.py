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


def test_validation_logs_the_epoch_median_not_a_mean_of_batch_medians(tmp_path):
    """A tiny validation run: the logged metrics are those of all the epoch's particles at once."""
    import lightning as L
    import numpy as np

    from cesped.training.lightning_module import Image2SphereModule

    torch.manual_seed(0)
    m = Image2SphereModule(NET, OPT, symmetry="C2")
    g = torch.Generator().manual_seed(1)
    batches = []
    for k, n in enumerate((7, 3, 5)):  # batches of different sizes: their medians' mean is not the median
        conf = torch.rand(n, generator=g) + 0.05
        ids = [f"{k * 10 + i}@x.mrcs" for i in range(n)]
        batches.append(
            (
                ids,
                torch.randn(n, 1, 32, 32, generator=g),
                random_rotations(n, g).float(),
                torch.zeros(n, 2),
                conf,
            )
        )
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None)  # the batches as they are
    trainer.validate(m, dataloaders=loader, verbose=False)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # the reference: every particle's error, recomputed batch by batch, summarised with numpy
    m.eval()
    with torch.no_grad():
        errs = [m._loss_and_error(b)[1].numpy() for b in batches]
    err = np.concatenate(errs)
    w = np.concatenate([b[4].numpy() for b in batches]).astype(np.float64)
    assert logged["val_median_error_degs"] == pytest.approx(
        np.median(err), abs=1e-4
    )  # Lightning logs float32
    assert abs(np.median(err) - np.mean([np.median(e) for e in errs])) > 0.01  # the old figure differs
    assert logged["val_error_degs"] == pytest.approx(err.mean(), abs=1e-4)
    assert logged["val_wmane_degs"] == pytest.approx((w * err).sum() / w.sum(), abs=1e-4)
    for t in (5, 10, 30):
        assert logged[f"val_frac_below_{t}deg"] == pytest.approx(np.mean(err < t))
    assert logged["val_frac_above_150deg"] == pytest.approx(np.mean(err > 150))
