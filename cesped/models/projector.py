"""Orthographic projection of a 2-D feature map onto a HEALPix hemisphere, expanded in spherical harmonics."""

from __future__ import annotations

import math

import torch
from torch import nn

from cesped.models.so3_grid import healpix_s2_angles

__all__ = ["hemisphere_points", "HemisphereProjector"]


def hemisphere_points(order: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """HEALPix pixel centres of ``order`` on the closed northern hemisphere (β ≤ 90°).

    Returns
    -------
    alpha, beta : torch.Tensor (P,)
        e3nn angles (radians); north (β = 0) is e3nn's +y axis, which faces the image.
    """
    alpha, beta = healpix_s2_angles(order, dtype)
    keep = beta <= math.pi / 2 + 1e-9
    return alpha[keep], beta[keep]


class HemisphereProjector(nn.Module):
    """Feature map ``(B, C, h, w)`` -> spherical-harmonic coefficients ``(B, F, (lmax+1)²)``.

    A 1×1 convolution maps C to F channels. Every hemisphere point ``p`` with e3nn coordinates
    ``(x, y, z) = (sinβ sinα, cosβ, sinβ cosα)`` looks at the image location
    ``row = extent·z/r_max``, ``col = extent·x/r_max`` (map coordinates in [-1, 1]) through a fixed,
    normalised Gaussian window of width ``sigma``; its magnitude tapers linearly to 0 between
    ``taper_start_deg`` and 90°. The point features are expanded as
    ``c = Σ_p f_p Y(p) / √P`` (e3nn "component" normalisation).

    The sampling is symmetric under 90° rotations of the map about its centre, so
    ``torch.rot90(fmap, 1, dims=(-2, -1))`` rotates the coefficients exactly by ``Ry(+90°)``.

    Training-time regularisation: with ``subset_fraction < 1`` a random subset of the points is
    used in training mode only, rescaled by ``P/|subset|`` (inverted dropout) so that its expectation
    equals the deterministic evaluation-mode output, which uses all points.

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
    order : int
        HEALPix order of the hemisphere points (order 2: 104 points, order 3: 400).
    sigma : float
        Window width in map coordinates (the map spans [-1, 1]).
    extent : float
        Radius of the projected disc in map coordinates.
    subset_fraction : float in (0, 1]
    activation : {"none", "relu", "gelu"}
        Applied to the point features before the harmonic expansion.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        lmax: int,
        order: int = 2,
        sigma: float = 0.2,
        extent: float = 0.9,
        taper_start_deg: float = 75.0,
        subset_fraction: float = 1.0,
        activation: str = "none",
    ) -> None:
        super().__init__()
        from e3nn import o3

        if not 0 < subset_fraction <= 1:
            raise ValueError(f"subset_fraction must be in (0, 1], got {subset_fraction}")
        acts = {"none": nn.Identity(), "relu": nn.ReLU(), "gelu": nn.GELU()}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.act = acts[activation]
        self.lmax, self.sigma, self.extent = int(lmax), float(sigma), float(extent)
        alpha, beta = hemisphere_points(order)
        x, z = torch.sin(beta) * torch.sin(alpha), torch.sin(beta) * torch.cos(alpha)
        r_max = torch.sqrt(x**2 + z**2).max()
        self.register_buffer("row", (extent * z / r_max).float(), persistent=False)
        self.register_buffer("col", (extent * x / r_max).float(), persistent=False)
        t0, t1 = math.radians(taper_start_deg), math.pi / 2
        taper = ((t1 - beta) / (t1 - t0)).clamp(0.0, 1.0)
        self.register_buffer("taper", taper.float(), persistent=False)
        sh = o3.spherical_harmonics_alpha_beta(
            list(range(self.lmax + 1)), alpha, beta, normalization="component"
        )
        self.register_buffer("sh", sh.float(), persistent=False)
        self.n_points = alpha.numel()
        self.n_subset = max(1, min(self.n_points, int(round(subset_fraction * self.n_points))))

    def sampling_weights(self, h: int, w: int) -> torch.Tensor:
        """``(h·w, P)`` Gaussian windows (each column sums to the point's taper)."""
        rows = torch.linspace(-1, 1, h, device=self.row.device)
        cols = torch.linspace(-1, 1, w, device=self.row.device)
        d2 = (rows[:, None, None] - self.row) ** 2 + (cols[None, :, None] - self.col) ** 2  # (h, w, P)
        wgt = torch.exp(-0.5 * d2 / self.sigma**2).reshape(h * w, -1)
        return wgt / wgt.sum(0, keepdim=True) * self.taper

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        b, _, h, w = fmap.shape
        f = self.conv(fmap).flatten(2)  # (B, F, hw)
        wgt = self.sampling_weights(h, w).to(f.dtype)
        sh = self.sh.to(f.dtype)
        scale = 1.0 / math.sqrt(self.n_points)
        if self.training and self.n_subset < self.n_points:
            idx = torch.randperm(self.n_points, device=f.device)[: self.n_subset]
            wgt, sh = wgt[:, idx], sh[idx]
            scale *= self.n_points / self.n_subset
        pts = self.act(f @ wgt)  # (B, F, P)
        return (pts @ sh) * scale  # (B, F, (lmax+1)²)
