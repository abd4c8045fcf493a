"""Exact operations on the pixel grid of particle images (batched torch).

Here so that :mod:`cesped.models` (test-time averaging) and :mod:`cesped.data` (augmentation)
share them without one importing the other. Conventions: image axes ``x = column``,
``y = row``, centre at pixel ``n // 2``; a content rotation by ``a`` degrees is
``Q(x, y) = P(Rz(-a)·(x, y))`` (counter-clockwise from +x towards +y), which changes the cesped
pose label ``R -> R·Rz(-a)`` (``psi' = psi - a``; see :mod:`cesped.data.augment`).

Example usage
-------------
>>> import torch
>>> from cesped.physics.image_ops import rot90_images
>>> rot90_images(torch.randn(2, 1, 8, 8), 1).shape
torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

import torch

__all__ = ["rot90_images"]


def rot90_images(images: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Rotate ``(B, C, n, n)`` images by ``k`` quarter turns about the pixel ``n // 2`` (exact).

    Equals ``torch.rot90(img, k, dims=(-2, -1))`` for odd ``n``; for even ``n`` the result is
    rolled so that the centre pixel ``n // 2`` stays put (edge rows/columns wrap around).
    The content turns by ``a = -90°·k`` (so the pose label becomes ``R·Rz(90°·k)``,
    ``psi' = psi + 90k``).

    Parameters
    ----------
    images : torch.Tensor (B, C, n, n)
    k : int or torch.Tensor (B,)
        Quarter turns per image (any integer; taken modulo 4).

    Returns
    -------
    torch.Tensor (B, C, n, n), a new tensor.
    """
    b, n = images.shape[0], images.shape[-1]
    k = torch.as_tensor(k, device=images.device).expand(b) % 4
    out = images.clone()
    for kk in (1, 2, 3):
        sel = torch.nonzero(k == kk).flatten()
        if len(sel) == 0:
            continue
        x = images[sel]
        for _ in range(kk):
            x = torch.rot90(x, 1, dims=(-2, -1))
            if n % 2 == 0:
                x = torch.roll(x, 1, dims=-2)
        out[sel] = x
    return out
