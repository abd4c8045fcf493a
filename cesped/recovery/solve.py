"""Orientation recovery: unit quaternions whose pairwise distances match estimated ones.

Minimises ``E[(d̂(a, b) − d(q_a, q_b))²]`` over random mini-batches of pairs by Adam, where
``a = (i, k)`` is particle ``i`` turned by ``k`` quarter turns and its pose is TIED to the
particle's: ``q_a = q_i ⊗ qz(90°·k)`` (the pose of an image turned by ``rot90_images(x, k)`` is
``R·Rz(90°·k)``). Only the ``n`` quaternions ``q_i`` are free, so memory and time per step do not
depend on ``n``: tens of thousands of particles are fine.

The result is defined up to a rotation of the map's frame on the left, a global in-plane angle
``Rz(φ)`` on the right and the hand (see :mod:`cesped.recovery`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cesped.recovery.quaternions import qmul, quarter_turns, quat_distance

__all__ = ["RecoveryResult", "recover_orientations", "exact_distance_fn"]

#: ``distance_fn(i, ki, j, kj) -> d̂`` : index tensors ``(B,)`` -> estimated distances ``(B,)``, radians.
DistanceFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RecoveryResult:
    """Recovered unit quaternions ``(n, 4)`` ``[w, x, y, z]`` and the loss history (rad², per step)."""

    quaternions: np.ndarray
    losses: np.ndarray

    def rotmats(self) -> np.ndarray:
        """Poses ``(n, 3, 3)`` (cesped label convention, up to the ambiguities above)."""
        from cesped.geometry.rotations import quaternion_to_matrix

        return quaternion_to_matrix(torch.from_numpy(self.quaternions)).numpy()


def exact_distance_fn(rotmats) -> DistanceFn:
    """The oracle: exact distances between the quarter-turned copies of known poses ``(n, 3, 3)``.

    For tests and for checking the recovery alone (a perfect distance network).
    """
    from cesped.geometry.rotations import matrix_to_quaternion

    q = matrix_to_quaternion(torch.as_tensor(np.asarray(rotmats), dtype=torch.float64))
    if q.ndim != 2:
        raise ValueError(f"exact_distance_fn: rotmats must be (n, 3, 3), got {tuple(np.shape(rotmats))}")

    def fn(i, ki, j, kj):
        return quat_distance(qmul(q[i], quarter_turns(ki)), qmul(q[j], quarter_turns(kj)), eps=0.0)

    return fn


def recover_orientations(
    n: int,
    distance_fn: DistanceFn,
    steps: int = 3000,
    batch_size: int = 2048,
    lr: float = 0.05,
    inplane_copies: bool = True,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> RecoveryResult:
    """Recover ``n`` orientations from a pairwise distance estimator.

    Parameters
    ----------
    n : int
        Number of particles (>= 3).
    distance_fn : callable
        ``distance_fn(i, ki, j, kj)`` -> ``(B,)`` estimated distances (radians) between particle
        ``i`` turned by ``ki`` quarter turns and particle ``j`` turned by ``kj`` (int64 tensors).
    steps, batch_size, lr : int, int, float
        Adam steps, pairs per step, learning rate (on unnormalised 4-vectors).
    inplane_copies : bool
        Draw ``ki, kj`` uniformly in ``0..3`` (the in-plane tie). ``False`` uses the originals
        only, as Banjac et al.: the result is then defined only up to O(4).
    seed : int
        Seeds the initial quaternions and the pair sampling.
    progress : callable, optional
        ``progress(step, mean loss of the last 100 steps)`` every 500 steps.

    Returns
    -------
    RecoveryResult
    """
    if int(n) != n or n < 3:
        raise ValueError(f"recover_orientations: n must be an integer >= 3, got {n}")
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if int(v) != v or v < 1:
            raise ValueError(f"recover_orientations: {name} must be a positive integer, got {v}")
    if not lr > 0:
        raise ValueError(f"recover_orientations: lr must be > 0, got {lr}")
    gen = torch.Generator().manual_seed(int(seed))
    q = torch.randn(int(n), 4, dtype=torch.float64, generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([q], lr=lr)
    losses = np.empty(int(steps))
    zeros = torch.zeros(int(batch_size), dtype=torch.int64)
    for step in range(int(steps)):
        i = torch.randint(0, n, (batch_size,), generator=gen)
        j = torch.randint(0, n, (batch_size,), generator=gen)
        if inplane_copies:
            ki = torch.randint(0, 4, (batch_size,), generator=gen)
            kj = torch.randint(0, 4, (batch_size,), generator=gen)
        else:
            ki = kj = zeros
        with torch.no_grad():
            target = torch.as_tensor(distance_fn(i, ki, j, kj), dtype=torch.float64)
        if target.shape != (batch_size,) or not torch.isfinite(target).all():
            raise ValueError(
                f"recover_orientations: distance_fn must return {batch_size} finite distances, "
                f"got shape {tuple(target.shape)}"
            )
        qn = q / q.norm(dim=-1, keepdim=True)
        d = quat_distance(qmul(qn[i], quarter_turns(ki)), qmul(qn[j], quarter_turns(kj)))
        loss = ((d - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses[step] = loss.item()
        if progress is not None and (step + 1) % 500 == 0:
            progress(step + 1, float(losses[max(0, step - 99) : step + 1].mean()))
    qn = (q / q.norm(dim=-1, keepdim=True)).detach().numpy()
    return RecoveryResult(qn, losses)
