"""Loss of the Image2Sphere baseline: confidence-weighted cross-entropy with symmetry-expanded labels."""

from __future__ import annotations

import torch

__all__ = ["symmetric_cross_entropy", "exact_label_cross_entropy"]


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
    _check(("logits", "(B, N)", logits), ("target_indices", "(B, G)", target_indices), label_smoothing)
    logp = torch.log_softmax(logits, dim=1)
    ce = -logp.gather(1, target_indices).mean(1)
    if label_smoothing > 0:
        ce = (1 - label_smoothing) * ce - label_smoothing * logp.mean(1)
    return _weighted_mean(ce, weights)


def exact_label_cross_entropy(
    label_values: torch.Tensor,
    grid_logits: torch.Tensor,
    weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy with the signal read at the exact labels instead of their nearest grid cells.

    The network's distribution is ``p(R) ∝ exp f(R)``; with the grid's ``N`` rotations as the
    quadrature of its normaliser, image ``b`` contributes
    ``-(1-ε)·(1/G) Σ_g f(S_g·R_b) - ε·(1/N) Σ_n f(R_n) + log Σ_n exp f(R_n)``: the same scale as
    :func:`symmetric_cross_entropy` (``ln N`` for a uniform output) but without quantising the
    label to the grid (half the grid spacing, 7.5° at order 2).

    Parameters
    ----------
    label_values : (B, G)
        ``f(S_g·R_b)`` (:meth:`cesped.models.image2sphere.Image2Sphere.label_values`).
    grid_logits : (B, N)
        ``f`` on the quadrature grid (e.g.
        :meth:`~cesped.models.image2sphere.Image2Sphere.jittered_grid_logits`).
    weights : (B,), optional
        Per-image confidence; default 1.
    label_smoothing : float in [0, 1)

    Returns
    -------
    torch.Tensor, scalar
    """
    _check(("label_values", "(B, G)", label_values), ("grid_logits", "(B, N)", grid_logits), label_smoothing)
    lse = torch.logsumexp(grid_logits, dim=1)
    ce = lse - label_values.mean(1)
    if label_smoothing > 0:
        ce = (1 - label_smoothing) * ce + label_smoothing * (lse - grid_logits.mean(1))
    return _weighted_mean(ce, weights)


def _check(first: tuple, second: tuple, label_smoothing: float) -> None:
    """Both ``(name, shape text, tensor)`` are 2-D with the same batch; ``ε`` in [0, 1)."""
    (n1, s1, a), (n2, s2, b) = first, second
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"{n1} must be {s1} and {n2} {s2}; got {tuple(a.shape)}, {tuple(b.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")


def _weighted_mean(ce: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``Σ_b w_b · ce_b / B`` (plain mean of the confidence-weighted losses)."""
    if weights is not None:
        ce = ce * weights.to(ce.dtype)
    return ce.mean()
