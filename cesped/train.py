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

Exit status: 0 when training (and the prediction) finished; 143 on SIGTERM (``last.ckpt`` written,
``resume=true`` continues from it); 1 with one line on stderr for a file error (naming the path),
a bad value or a bad override (``HYDRA_FULL_ERROR=1``: the traceback instead).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cesped.training.cli import one_line_errors, run_hydra_cli


@hydra.main(config_path="pkg://cesped.configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from cesped.training.train import train

    with one_line_errors("cesped.train"):
        train(cfg)


if __name__ == "__main__":
    run_hydra_cli("cesped.train", main)
