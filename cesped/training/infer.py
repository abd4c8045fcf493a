"""Inference with a trained Image2Sphere checkpoint: deterministic, batched, writes a RELION star file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from cesped.io.atomic import atomic_path
from cesped.training.datamodule import collate_particles, open_particles

__all__ = ["load_module", "predict_dataset", "write_predictions", "infer"]


def load_module(ckpt: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load an :class:`~cesped.training.lightning_module.Image2SphereModule` checkpoint in eval mode."""
    from cesped.training.lightning_module import Image2SphereModule

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    module = Image2SphereModule.load_from_checkpoint(ckpt, map_location=torch.device(device))
    return module.to(device).eval()


@torch.no_grad()
def predict_dataset(
    model,
    dataset,
    batch_size: int = 64,
    num_workers: int = 0,
    top_k: int = 1,
    order: int | None = None,
    refine_steps: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    rot90_average: bool = False,
    min_separation_deg: float = 0.0,
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Predict the poses of every particle of ``dataset`` (in dataset order).

    Parameters
    ----------
    model : Image2Sphere
        Put in eval mode here (deterministic).
    dataset : ParticlesDataset-like
    top_k, order, refine_steps, rot90_average, min_separation_deg : see :meth:`Image2Sphere.predict`

    Returns
    -------
    ids : list[str] ; rotmats : (n, top_k, 3, 3) float32 labels ``R = Aᵀ`` ; probs : (n, top_k)
    """
    from tqdm.auto import tqdm

    model = model.to(device).eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_particles
    )
    ids, rots, probs = [], [], []
    for batch in tqdm(loader, desc="predicting", disable=not progress):
        r, p = model.predict(
            batch[1].to(device),
            top_k=top_k,
            order=order,
            refine_steps=refine_steps,
            rot90_average=rot90_average,
            min_separation_deg=min_separation_deg,
        )
        ids += batch[0]
        rots.append(r.float().cpu())
        probs.append(p.float().cpu())
    return ids, torch.cat(rots), torch.cat(probs)


def write_predictions(
    dataset, ids: list[str], rotmats: torch.Tensor, probs: torch.Tensor, out: str | os.PathLike
) -> Path:
    """Write the best pose per particle into a copy of the dataset's star file.

    Angles go to ``rlnAngleRot/Tilt/Psi`` (RELION convention, degrees), the probability of the
    predicted cell to ``rlnParticleFigureOfMerit``. No shift columns are written: the network does not
    predict shifts (evaluate with ``predictionType="SO3"``, which uses the entry's shifts; ``SO3xR2``
    refuses such a file instead of scoring invented zeros).
    With ``top_k > 1`` all poses also go to ``<out stem>_topk.npz`` (``ids``, ``rotmats``, ``probs``).
    """
    out = Path(out)
    best = rotmats[:, 0].double()
    dataset.updateMd(
        ids=ids,
        angles=best,
        confidence=probs[:, 0].double(),
        angles_format="rotmat",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset.saveMd(str(out))
    if rotmats.shape[1] > 1:
        with atomic_path(out.with_name(out.stem + "_topk.npz")) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=np.asarray(ids), rotmats=rotmats.numpy(), probs=probs.numpy())
    return out


def infer(cfg) -> Path:
    """Predict an entry half-set or a star file with a checkpoint (config: ``configs/infer.yaml``).

    ``cfg`` is a DictConfig or a plain dict.

    Required keys: ``ckpt`` and either ``star`` or ``entry`` + ``halfset``. Optional: ``out``
    (default ``<ckpt dir>/../predictions_<halfset>.star`` or ``<star stem>_predictions.star``),
    ``batch_size``, ``num_workers``, ``top_k``, ``topk_min_separation_deg``, ``order``,
    ``refine_steps``, ``rot90_average``, ``device``, ``benchmark_dir``.
    """
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    if not cfg.get("ckpt"):
        raise ValueError("infer: ckpt=<path to a .ckpt file> is required")
    device = cfg.get("device") or "cpu"
    module = load_module(cfg.ckpt, device)
    data_cfg = dict(module.hparams.get("data_config") or {})
    star = cfg.get("star")
    ds = open_particles(
        cfg.get("entry"), cfg.get("halfset"), star=star, benchmark_dir=cfg.get("benchmark_dir"), **data_cfg
    )
    if cfg.get("out"):
        out = Path(cfg.out)
    elif star:
        out = Path(star).with_name(Path(star).stem + "_predictions.star")
    else:
        out = Path(cfg.ckpt).resolve().parent.parent / f"predictions_{int(cfg.halfset)}.star"
    ids, rot, prob = predict_dataset(
        module.model,
        ds,
        int(cfg.get("batch_size") or 64),
        int(cfg.get("num_workers") or 0),
        int(cfg.get("top_k") or 1),
        cfg.get("order"),
        int(cfg.get("refine_steps") or 0),
        device,
        bool(cfg.get("progress", True)),
        bool(cfg.get("rot90_average", False)),
        float(cfg.get("topk_min_separation_deg") or 0.0),
    )
    return write_predictions(ds, ids, rot, prob, out)
