"""Loss of the Image2Sphere baseline: confidence-weighted cross-entropy with symmetry-expanded labels."""

from __future__ import annotations

import torch

__all__ = ["symmetric_cross_entropy"]


def symmetric_cross_entropy(
    logits: torch.Tensor,
    target_indices: torch.Tensor,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy against a target spread uniformly over symmetry mates (CESPED paper, eq. 11).

    The target distribution of image ``b`` is ``(1-ε)·(1/G) Σ_g δ(n - t[b, g]) + ε/N``; the loss is
    ``Σ_b w_b · CE_b / B`` (plain mean of the confidence-weighted losses).

    Parameters
    ----------
    logits : (B, N)
        Grid logits.
    target_indices : (B, G) int64
        Nearest grid index of each symmetry-expanded label ``S_g·R`` (``G = 1`` for C1).
    weights : (B,), optional
        Per-image confidence (e.g. ``rlnMaxValueProbDistribution``); default 1.
    label_smoothing : float in [0, 1)

    Returns
    -------
    torch.Tensor, scalar
    """
    if logits.ndim != 2 or target_indices.ndim != 2 or target_indices.shape[0] != logits.shape[0]:
        raise ValueError(
            f"logits must be (B, N) and target_indices (B, G); got {tuple(logits.shape)}, "
            f"{tuple(target_indices.shape)}"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    logp = torch.log_softmax(logits, dim=1)
    ce = -logp.gather(1, target_indices).mean(1)
    if label_smoothing > 0:
        ce = (1 - label_smoothing) * ce - label_smoothing * logp.mean(1)
    if weights is not None:
        ce = ce * weights.to(ce.dtype)
    return ce.mean()
