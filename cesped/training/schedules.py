"""Learning-rate schedules that Lightning steps per optimisation step."""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine"]


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 50,
    min_factor: float = 0.02,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the optimiser's learning rate, then a cosine decay to ``min_factor`` of it.

    ``factor(s) = min(1, (s+1)/warmup) · (min + (1 - min)·(1 + cos(π·s/total))/2)`` for step ``s``
    (clamped at ``total``). Meant for a fixed budget of epochs: ``total_steps`` is then
    ``trainer.estimated_stepping_batches`` (filled in by the training module when left ``null``).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    total_steps : int
        Optimisation steps of the whole run (> 0).
    warmup_steps : int
        Steps of the linear warm-up (>= 0).
    min_factor : float in [0, 1]
        Final learning rate as a fraction of the initial one.
    """
    if int(total_steps) <= 0:
        raise ValueError(f"warmup_cosine: total_steps must be > 0, got {total_steps}")
    if int(warmup_steps) < 0:
        raise ValueError(f"warmup_cosine: warmup_steps must be >= 0, got {warmup_steps}")
    if not 0.0 <= min_factor <= 1.0:
        raise ValueError(f"warmup_cosine: min_factor must be in [0, 1], got {min_factor}")
    total, warm, lo = int(total_steps), int(warmup_steps), float(min_factor)

    def factor(step: int) -> float:
        s = min(step, total)
        ramp = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
        return ramp * (lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * s / total)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
