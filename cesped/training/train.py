"""Train the Image2Sphere baseline on one half-set and predict the other (config: ``configs/train.yaml``)."""

from __future__ import annotations

import errno
import os
import signal
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cesped.io.atomic import atomic_open

__all__ = ["train"]


def _instantiate_group(group) -> list:
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]


def train(cfg: DictConfig) -> dict:
    """Train on ``cfg.halfset`` of ``cfg.entry`` and write ``predictions_{1-halfset}.star``.

    Layout of ``cfg.output_dir``: ``checkpoints/{best-*.ckpt,last.ckpt,config.yaml}``,
    ``tensorboard/``, ``csv/metrics.csv``, ``predictions_{1-h}.star`` and, with ``cfg.refine``,
    ``predictions_{1-h}_refined.star`` (:func:`cesped.refinement.api.refine_star` against the map
    of half ``h``'s ground-truth poses, options ``cfg.refinement``). With ``cfg.resume`` the run
    continues from ``checkpoints/last.ckpt`` when it exists (written after every epoch, every
    ``callbacks.time_checkpoint.train_time_interval`` of training and on SIGTERM), and
    ``csv/metrics.csv`` keeps the earlier rows up to that checkpoint's step.

    Returns
    -------
    dict with ``best_ckpt``, ``last_ckpt``, ``predictions`` (path or None), ``refined`` (path, with
    ``cfg.refine``) and the final callback metrics.

    Raises
    ------
    TrainingInterrupted
        SIGTERM during training: ``last.ckpt`` was written (with ``callbacks.interrupt_checkpoint``)
        and no predictions are made.
    """
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from cesped.training.cli import TrainingInterrupted
    from cesped.training.faults import InterruptCheckpoint, ResumableCSVLogger, checkpoint_log_step
    from cesped.training.infer import predict_dataset, write_predictions
    from cesped.training.lightning_module import Image2SphereModule

    if cfg.halfset not in (0, 1):
        raise ValueError(f"halfset must be 0 or 1, got {cfg.halfset!r}")
    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)  # a bad output_dir fails here, before any work
    if not os.access(ckpt_dir, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "output directory is not writable", str(ckpt_dir))
    L.seed_everything(int(cfg.seed), workers=True)
    datamodule = instantiate(cfg.data)
    module = Image2SphereModule(
        net=OmegaConf.to_container(cfg.model.net, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.optimizer.scheduler, resolve=True)
        if cfg.optimizer.get("scheduler")
        else None,
        symmetry=datamodule.symmetry,
        label_smoothing=float(cfg.model.label_smoothing),
        target=str(cfg.model.get("target", "nearest")),
        use_confidence_weights=bool(cfg.model.use_confidence_weights),
        data_config=OmegaConf.to_container(cfg.data.dataset_kwargs, resolve=True)
        if cfg.data.get("dataset_kwargs")
        else {},
    )
    callbacks = _instantiate_group(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.ProgressBar)]
    loggers = _instantiate_group(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        with atomic_open(ckpt_dir / "config.yaml") as fh:
            saved = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            fh.write(OmegaConf.to_yaml(saved, resolve=True))
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if cfg.get("resume") and last.is_file() else None
    if ckpt_path:
        step = checkpoint_log_step(ckpt_path)
        for lg in loggers:
            if isinstance(lg, ResumableCSVLogger):
                lg.resume_at(step)
    try:
        with warnings.catch_warnings():
            # the directory holds our config.yaml (and last.ckpt on resume): expected, not a problem
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException as exc:  # a SystemExit with status 0: make it an error that names the checkpoint
        saved = [c.saved for c in callbacks if isinstance(c, InterruptCheckpoint) and c.saved]
        raise TrainingInterrupted(
            signal.SIGTERM, saved[0] if saved else None, trainer.current_epoch, trainer.global_step
        ) from exc

    best = None
    for cb in callbacks:
        if isinstance(cb, L.pytorch.callbacks.ModelCheckpoint) and cb.monitor and cb.best_model_path:
            best = cb.best_model_path
    result = {
        "best_ckpt": best,
        "last_ckpt": str(last) if last.is_file() else None,
        "predictions": None,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    if cfg.get("predict_other_half") and trainer.is_global_zero:
        other = 1 - int(cfg.halfset)
        if best:
            module = Image2SphereModule.load_from_checkpoint(best, map_location="cpu")
        pred_cfg = cfg.get("prediction") or {}
        device = pred_cfg.get("device") or (
            "cuda" if trainer.accelerator.__class__.__name__.startswith("CUDA") else "cpu"
        )
        from cesped.training.datamodule import open_particles

        ds = open_particles(
            cfg.entry,
            other,
            benchmark_dir=cfg.get("benchmark_dir"),
            **dict(module.hparams.get("data_config") or {}),
        )
        ids, rot, prob = predict_dataset(
            module.model,
            ds,
            int(pred_cfg.get("batch_size", 64)),
            int(cfg.data.get("num_workers", 0)),
            int(pred_cfg.get("top_k", 1)),
            pred_cfg.get("order"),
            int(pred_cfg.get("refine_steps", 0)),
            device,
            rot90_average=bool(pred_cfg.get("rot90_average", False)),
            min_separation_deg=float(pred_cfg.get("topk_min_separation_deg") or 0.0),
        )
        result["predictions"] = str(write_predictions(ds, ids, rot, prob, out / f"predictions_{other}.star"))
        if cfg.get("refine"):
            result["refined"] = _refine_predictions(cfg, Path(result["predictions"]), other, device)
    return result


def _refine_predictions(cfg: DictConfig, pred: Path, half: int, device: str) -> str:
    """``predictions_{half}_refined.star`` beside ``pred``: projection matching of the predicted
    half against the map of the training half's ground-truth poses (:func:`refine_star`'s default;
    no label of the predicted half is read). Options in ``cfg.refinement``."""
    from cesped.refinement.api import DEFAULT_REFERENCE_MASK, refine_star

    rc = cfg.get("refinement") or {}
    top_k = rc.get("top_k") or (cfg.get("prediction") or {}).get("top_k") or 1
    summary = refine_star(
        str(cfg.entry),
        half,
        pred,
        pred.with_name(f"{pred.stem}_refined.star"),
        reference_from_half=1 - half,
        top_k=int(top_k),
        device=str(rc.get("device") or device),
        band_limit_A=rc.get("band_limit_A"),
        shift_radius_px=rc.get("shift_radius_px"),
        global_top=rc.get("global_top"),
        rounds=rc.get("rounds"),
        weighting=str(rc.get("weighting") or "fsc"),
        reference_mask=str(rc.get("reference_mask") or DEFAULT_REFERENCE_MASK),
        symmetric_search=bool(rc.get("symmetric_search", True)),
        **({"survivors": int(rc["survivors"])} if rc.get("survivors") is not None else {}),
        **(
            {"track_separation_deg": float(rc["track_separation_deg"])}
            if rc.get("track_separation_deg") is not None
            else {}
        ),
        benchmark_dir=cfg.get("benchmark_dir"),
    )
    return summary["out"]
