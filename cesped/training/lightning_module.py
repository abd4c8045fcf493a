"""LightningModule of the Image2Sphere baseline: loss, metrics, optimiser and prediction."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from cesped.training.losses import exact_label_cross_entropy, symmetric_cross_entropy

__all__ = ["Image2SphereModule"]


def _instantiate(cfg: dict, **kwargs):
    from hydra.utils import instantiate

    return instantiate(cfg, **kwargs)


class Image2SphereModule(L.LightningModule):
    """Trains an :class:`~cesped.models.image2sphere.Image2Sphere` on one half-set.

    Parameters
    ----------
    net : dict
        Hydra config of the network (``_target_: cesped.models.image2sphere.Image2Sphere`` + arguments).
    optimizer : dict
        Hydra config of the optimiser (partial: ``params`` is added), e.g. ``torch.optim.RAdam``.
    scheduler : dict, optional
        Hydra config of a scheduler (``optimizer`` is added): ``ReduceLROnPlateau`` (monitored on
        ``monitor``) or :func:`cesped.training.schedules.warmup_cosine`. An ``interval`` key
        (``epoch``, default, or ``step``) says how often it steps; ``total_steps: null`` is filled
        with the trainer's step budget.
    symmetry : str
        Point group of the entry (``"C1"``, ``"C2"``, ``"D2"`` ...): labels are expanded to ``S_g·R``.
    label_smoothing : float
    target : {"nearest", "exact"}
        ``"nearest"``: cross-entropy against the nearest output-grid cells of the labels (the
        paper's eq. 11). ``"exact"``: the signal read at the exact labels, normalised over the
        output grid turned by a random rotation per image during training (the fixed grid in
        validation), :func:`cesped.training.losses.exact_label_cross_entropy`.
    use_confidence_weights : bool
        Weight each image's loss by its ground-truth confidence (eq. 11).
    monitor : str
        Metric driving the scheduler (``val_error_degs``: mean symmetry-aware angular error, degrees).
    data_config : dict, optional
        Preprocessing arguments of the dataset the model was trained with (stored for inference).

    Batches are ``(ids, images (B, 1, N, N), rotmats (B, 3, 3), shifts (B, 2) Å, confidence (B,))``
    as produced by :func:`cesped.training.datamodule.collate_particles` (augmented by the data module
    during training).
    """

    def __init__(
        self,
        net: dict,
        optimizer: dict,
        scheduler: dict | None = None,
        symmetry: str = "C1",
        label_smoothing: float = 0.0,
        target: str = "nearest",
        use_confidence_weights: bool = True,
        monitor: str = "val_error_degs",
        data_config: dict | None = None,
    ) -> None:
        super().__init__()
        if target not in ("nearest", "exact"):
            raise ValueError(f"target must be 'nearest' or 'exact', got {target!r}")
        self.save_hyperparameters()
        from cesped.geometry.symmetry import symmetry_matrices

        self.model = _instantiate(dict(net))
        self.symmetry = symmetry
        self.register_buffer("sym_mats", symmetry_matrices(symmetry).float(), persistent=False)

    # --------------------------------------------------------------------------------- steps
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def _loss_and_error(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        from cesped.geometry.errors import symmetry_aware_error

        _, images, rotmats, _, conf = batch
        coeffs = self.model(images)
        weights = conf if self.hparams.use_confidence_weights else None
        if self.hparams.get("target", "nearest") == "exact":
            values = self.model.label_values(coeffs, rotmats, self.sym_mats)
            if self.training:
                quad = self.model.jittered_grid_logits(coeffs)
                logits = self.model.grid_logits(coeffs.detach())
            else:
                quad = logits = self.model.grid_logits(coeffs)
            loss = exact_label_cross_entropy(values, quad, weights, self.hparams.label_smoothing)
        else:
            logits = self.model.grid_logits(coeffs)
            targets = self.model.target_indices(rotmats, self.sym_mats)
            loss = symmetric_cross_entropy(logits, targets, weights, self.hparams.label_smoothing)
        with torch.no_grad():
            pred = self.model.to_data_frame(self.model.output_grid.rotations(logits.argmax(1)))
            err = symmetry_aware_error(rotmats.double(), pred.double(), self.symmetry)
        return loss, err

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, err = self._loss_and_error(batch)
        b = batch[1].shape[0]
        self.log("train_loss", loss, prog_bar=True, batch_size=b)
        self.log("train_error_degs", err.mean(), prog_bar=True, batch_size=b)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_errors: list[tuple[torch.Tensor, torch.Tensor]] = []

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, err = self._loss_and_error(batch)
        b = batch[1].shape[0]
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=b)
        self._val_errors.append((err.detach(), batch[4].detach().double()))

    def on_validation_epoch_end(self) -> None:
        """The epoch's angular metrics over all its validation particles at once, as
        :class:`cesped.Evaluator` computes them (:func:`cesped.geometry.angular_metrics.angular_metrics`):
        ``val_error_degs`` (MAnE), ``val_median_error_degs`` (the median of every particle's
        error, not a mean of batch medians), ``val_wmane_degs`` (weighted by the ground-truth
        confidence), ``val_frac_below_{5,10,30}deg`` and ``val_frac_above_150deg``.

        Across processes (DDP) the errors are gathered first; the distributed sampler's padding
        repeats at most ``world_size - 1`` particles.
        """
        from cesped.geometry.angular_metrics import LARGE_ERROR_DEG, THRESHOLDS_DEG, angular_metrics

        parts = getattr(self, "_val_errors", None)
        if not parts:
            return
        err = torch.cat([e for e, _ in parts])
        w = torch.cat([c for _, c in parts])
        self._val_errors = []
        if self._trainer is not None and self.trainer.world_size > 1:
            err, w = (self.all_gather(x).reshape(-1) for x in (err, w))
        m = angular_metrics(err.cpu().numpy(), w.cpu().numpy())
        self.log("val_error_degs", m["MAnE"], prog_bar=True)
        self.log("val_median_error_degs", m["median"])
        self.log("val_wmane_degs", m["wMAnE"])
        for t in THRESHOLDS_DEG:
            self.log(f"val_frac_below_{t:g}deg", m[f"frac_below_{t:g}deg"])
        self.log(f"val_frac_above_{LARGE_ERROR_DEG:g}deg", m[f"frac_above_{LARGE_ERROR_DEG:g}deg"])

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        ids, images = batch[0], batch[1]
        rot, prob = self.model.predict(images)
        return {"ids": ids, "rotmats": rot, "probs": prob}

    # --------------------------------------------------------------------------------- optim
    def configure_optimizers(self):
        opt = _instantiate(dict(self.hparams.optimizer), params=self.parameters())
        if not self.hparams.scheduler:
            return opt
        sched_cfg = dict(self.hparams.scheduler)
        interval = sched_cfg.pop("interval", "epoch")
        if interval not in ("epoch", "step"):
            raise ValueError(f"scheduler.interval must be 'epoch' or 'step', got {interval!r}")
        if "total_steps" in sched_cfg and sched_cfg["total_steps"] is None:
            total = self.trainer.estimated_stepping_batches if self._trainer is not None else None
            if total is None or not math.isfinite(total):
                raise ValueError(
                    "scheduler.total_steps is null but the run has no finite step budget: "
                    "set trainer.max_epochs"
                )
            sched_cfg["total_steps"] = int(total)
        sched = _instantiate(sched_cfg, optimizer=opt)
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": sched, "monitor": self.hparams.monitor, "interval": interval},
        }
