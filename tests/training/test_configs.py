"""Hydra configs compose exactly as the entry points compose them (pkg://cesped.configs)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue


def _compose(name: str, overrides: list[str], hydra_cfg: bool = False):
    with initialize_config_module(config_module="cesped.configs", version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=hydra_cfg)


@pytest.mark.parametrize("experiment", [None, "demo", "paper"])
@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_every_experiment_composes_and_resolves(experiment, trainer):
    ov = [f"trainer={trainer}"] + ([f"experiment={experiment}"] if experiment else [])
    cfg = _compose("train", ov)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["data"]["halfset"] == plain["halfset"] and plain["data"]["entry"] == plain["entry"]
    assert plain["trainer"]["_target_"] == "lightning.pytorch.Trainer"
    assert plain["callbacks"]["model_checkpoint"]["dirpath"].endswith(f"{plain['entry']}/half0/checkpoints")
    last = plain["callbacks"]["last_checkpoint"]
    assert last["filename"] == "last" and last["monitor"] is None
    assert last["dirpath"] == plain["callbacks"]["model_checkpoint"]["dirpath"]
    assert plain["optimizer"]["optimizer"]["_target_"] == "torch.optim.RAdam"
    assert plain["optimizer"]["optimizer"]["weight_decay"] == 1e-5
    if experiment == "demo":  # a fixed epoch budget: warm-up + cosine, stepped per batch
        sched = plain["optimizer"]["scheduler"]
        assert sched["_target_"] == "cesped.training.schedules.warmup_cosine" and sched["interval"] == "step"
        assert sched["total_steps"] is None and plain["trainer"]["max_epochs"] > 0
    else:  # the paper's: lr 1e-3 halved on a validation plateau
        assert plain["optimizer"]["optimizer"]["lr"] == 1e-3
        assert plain["optimizer"]["scheduler"]["factor"] == 0.5
    assert plain["data"]["train_fraction"] == 0.7
    assert plain["trainer"]["gradient_clip_val"] > 0


def test_paper_experiment_has_the_papers_settings():
    """Values from the CESPED paper / original defaultModelConfig.yaml (ResNet-152, 256 px, ...)."""
    cfg = OmegaConf.to_container(_compose("train", ["experiment=paper"]), resolve=True)
    net = cfg["model"]["net"]
    assert net["resnet"] == "resnet152" and net["pretrained"] is True
    assert (net["lmax"], net["s2_fdim"], net["so3_fdim"]) == (8, 512, 16)
    assert (net["hp_order_projector"], net["hp_order_s2"], net["hp_order_so3"]) == (3, 3, 4)
    assert cfg["data"]["dataset_kwargs"]["image_size"] == 256
    assert cfg["data"]["batch_size"] * cfg["data"]["n_augmented_copies"] == 128
    assert cfg["trainer"]["max_epochs"] == 400 and cfg["trainer"]["accelerator"] == "gpu"


def test_demo_model_instantiates_from_config(tmp_path):
    from hydra.utils import instantiate

    cfg = _compose("train", ["experiment=demo", f"cache_dir={tmp_path}"])
    net = instantiate(cfg.model.net)
    assert net.output_grid.size == 72 * 8**cfg.model.net.hp_order_so3


def test_infer_config_and_slurm_launcher_compose():
    cfg = _compose("infer", ["ckpt=model.ckpt", "entry=synth_6msm", "halfset=1"])
    assert cfg.ckpt == "model.ckpt" and cfg.top_k == 1
    with pytest.raises(MissingMandatoryValue):
        OmegaConf.to_container(_compose("infer", []), throw_on_missing=True)  # ckpt is required
    hcfg = _compose("train", ["hydra/launcher=slurm", "halfset=1"], hydra_cfg=True)
    assert hcfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert hcfg.hydra.run.dir == "outputs/synth_6msm/half1"
