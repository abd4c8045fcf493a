"""A tiny Image2Sphere and the Hydra overrides of short training runs on the ``tiny`` entry."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback

TINY_NET = [
    "model.net.lmax=3",
    "model.net.s2_fdim=8",
    "model.net.so3_fdim=4",
    "model.net.hp_order_projector=1",
    "model.net.hp_order_s2=1",
    "model.net.hp_order_so3=1",
    "model.net.so3_act_resolution=4",
]


def train_overrides(bench: Path, out: Path, extra=()) -> list[str]:
    """2 epochs of 2 batches of 8 on half 0 of ``<bench>/tiny``, outputs in ``out``; ``extra`` last."""
    return [
        "entry=tiny",
        "halfset=0",
        f"benchmark_dir={bench}",
        f"output_dir={out}",
        "data.batch_size=8",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "prediction.batch_size=16",
        *TINY_NET,
        *extra,
    ]


def compose_train(bench: Path, out: Path, extra=()):
    """The ``train`` config of :func:`train_overrides`, composed as ``python -m cesped.train`` does."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="cesped.configs", version_base="1.3"):
        return compose(config_name="train", overrides=train_overrides(bench, out, extra))


class CrashAt(Callback):
    """Raise ``RuntimeError`` before training step ``step``: a crash, not a signal.

    Referenced from configs as ``+callbacks.crash._target_=tests.training._tiny.CrashAt``.
    """

    def __init__(self, step: int):
        self.step = int(step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash before step {self.step}")


class SigtermAt(Callback):
    """Send SIGTERM to this process after training step ``step`` (as a scheduler would)."""

    def __init__(self, step: int):
        self.step = int(step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
