"""Interrupted training: a checkpoint on SIGTERM, a non-zero exit, a metrics history kept on resume.

Lightning turns SIGTERM into ``SIGTERMException`` (a ``SystemExit`` with status 0) at the next batch
boundary. :class:`InterruptCheckpoint` writes ``last.ckpt`` at that moment (the file
``resume=true`` continues from), and :func:`cesped.training.train.train` raises
:class:`cesped.training.cli.TrainingInterrupted`, which ``python -m cesped.train`` turns into exit status
``128 + signal`` (143), so that a scheduler never counts an interrupted run as a success.
A run killed outright (SIGKILL, out of memory) keeps the latest of the per-epoch and the
every-few-minutes ``last.ckpt`` (``callbacks.time_checkpoint``).

:class:`ResumableCSVLogger` is Lightning's ``CSVLogger`` whose ``metrics.csv`` is kept on a resume
(the rows logged after the checkpoint's step, which the resumed run logs again, are dropped) and
written to disk at every checkpoint, so that the history and the checkpoint agree.

Example usage
-------------
    python -m cesped.train entry=synth_6msm halfset=0 experiment=demo      # kill -TERM <pid>: exit 143
    python -m cesped.train entry=synth_6msm halfset=0 experiment=demo resume=true
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cesped.io.atomic import atomic_open

__all__ = [
    "InterruptCheckpoint",
    "ResumableCSVLogger",
    "checkpoint_log_step",
]


class InterruptCheckpoint(Callback):
    """Save a checkpoint when Lightning stops training on SIGTERM.

    Unlike Lightning's ``OnExceptionCheckpoint`` the file is kept after the run (it is the file a
    resumed run starts from) and only SIGTERM writes it: a crash on an exception leaves the last
    regular checkpoint, not the state that crashed.

    Parameters
    ----------
    dirpath : path
        Directory of the checkpoint (``<output_dir>/checkpoints``).
    filename : str
        Name without ``.ckpt``; ``"last"``: the file ``resume=true`` reads.
    """

    def __init__(self, dirpath: str | os.PathLike, filename: str = "last") -> None:
        super().__init__()
        if not filename:
            raise ValueError("InterruptCheckpoint: filename must not be empty")
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.saved: str | None = None

    @property
    def ckpt_path(self) -> Path:
        return self.dirpath / f"{self.filename}.ckpt"

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.ckpt_path)  # atomic: a temporary file, then a move
            self.saved = str(self.ckpt_path)


def checkpoint_log_step(ckpt_path: str | os.PathLike) -> int:
    """The logger step of a Lightning checkpoint (the ``step`` column its run wrote last).

    Lightning logs with the training loop's ``_batches_that_stepped``, restored on resume; a
    checkpoint without it (older formats) falls back to ``global_step``.
    """
    import torch

    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    try:
        return int(ck["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"])
    except (KeyError, TypeError):
        return int(ck["global_step"])


class _HistoryWriter(ExperimentWriter):
    """``metrics.csv`` writer that keeps the rows up to ``keep_until`` (a step) of an earlier run."""

    def __init__(self, log_dir: str, keep_until: int | None) -> None:
        self._keep_until = keep_until
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        if self._keep_until is None or not os.path.isfile(self.metrics_file_path):
            return super()._check_log_dir_exists()  # a new run: the old file goes
        with open(self.metrics_file_path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = [r for r in reader if _row_step(r) is not None and _row_step(r) <= self._keep_until]
        with atomic_open(self.metrics_file_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(fields)  # later rows extend this header instead of replacing it


def _row_step(row: dict) -> int | None:
    """The row's integer ``step``; None for a row cut short by a kill (missing or broken fields)."""
    try:
        if None in row or any(v is None for v in row.values()):
            return None
        return int(float(row["step"]))
    except (KeyError, TypeError, ValueError):
        return None


class ResumableCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` that keeps ``metrics.csv`` across a resume and flushes at checkpoints.

    Same parameters as ``lightning.pytorch.loggers.CSVLogger``. Call :meth:`resume_at` with the
    resumed checkpoint's :func:`checkpoint_log_step` before training starts; without it a run
    starts a new file, as Lightning's logger does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume_step: int | None = None

    def resume_at(self, step: int) -> None:
        """Keep the earlier run's rows with ``step <= step`` (called before the first log)."""
        if self._experiment is not None:
            raise RuntimeError("ResumableCSVLogger.resume_at must be called before anything is logged")
        self._resume_step = int(step)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(self.log_dir, self._resume_step)
        return self._experiment

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Write the rows logged so far, so that a kill after this checkpoint loses none of its history."""
        self.save()
