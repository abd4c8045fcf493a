"""Predict particle poses with a trained Image2Sphere checkpoint and write a RELION star file.

Example usage
-------------
    python -m cesped.infer ckpt=outputs/synth_6msm/half0/checkpoints/last.ckpt entry=synth_6msm halfset=1
    python -m cesped.infer ckpt=model.ckpt star=/data/particles.star out=predictions.star top_k=5
    python -m cesped.infer ckpt=model.ckpt entry=10280 halfset=0 device=cuda batch_size=256 order=5

Prediction is deterministic (evaluation mode) and batched; ``top_k > 1`` also writes
``<out stem>_topk.npz``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="pkg://cesped.configs", config_name="infer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cesped.training.infer import infer

    print(infer(cfg))


if __name__ == "__main__":
    main()
