"""Predict particle poses with a trained Image2Sphere checkpoint and write a RELION star file.

Example usage
-------------
    python -m cesped.infer ckpt=outputs/synth_6msm/half0/checkpoints/last.ckpt entry=synth_6msm halfset=1
    python -m cesped.infer ckpt=model.ckpt star=/data/particles.star out=predictions.star top_k=5
    python -m cesped.infer ckpt=model.ckpt entry=10280 halfset=0 device=cuda batch_size=256 order=5

Prediction is deterministic (evaluation mode) and batched; ``top_k > 1`` also writes
``<out stem>_topk.npz``. A file error (naming the path), a bad value or a bad override ends
with one line on stderr and exit status 1.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cesped.training.cli import one_line_errors, run_hydra_cli


@hydra.main(config_path="pkg://cesped.configs", config_name="infer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cesped.training.infer import infer

    with one_line_errors("cesped.infer"):
        print(infer(cfg))


if __name__ == "__main__":
    run_hydra_cli("cesped.infer", main)
