"""Train the Image2Sphere baseline on one half-set of an entry and predict the other half.

Example usage
-------------
    python -m cesped.train entry=synth_6msm halfset=0 experiment=demo
    python -m cesped.train -m entry=synth_6msm halfset=0,1 experiment=demo     # both halves
    python -m cesped.train entry=10280 halfset=1 experiment=paper trainer=gpu
    python -m cesped.train entry=synth_6msm halfset=0 experiment=demo resume=true
    python -m cesped.train --cfg job                                          # print the config

Outputs go to ``output_dir`` (default ``outputs/<entry>/half<halfset>``): checkpoints and the
composed config in ``checkpoints/``, TensorBoard and CSV logs, ``predictions_<1-halfset>.star``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="pkg://cesped.configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cesped.training.train import train

    train(cfg)


if __name__ == "__main__":
    main()
