"""Equivariant layers of Image2Sphere: S² convolution, SO(3) convolution and SO(3) activation.

Signals on S² are ``(B, F, (lmax+1)²)`` spherical-harmonic coefficients; signals on SO(3) are
``(B, F, Σ_l (2l+1)²)`` flat Wigner coefficients (row-major ``(i, m)`` blocks per degree ``l``).
With these conventions, rotating the input sphere signal by ``Q`` (``x_l -> D^l(Q) x_l``) changes
the SO(3) output to ``f'(R) = f(R·Q)``.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from cesped.models.so3_grid import cached_tensor, flat_wigner, healpix_s2_angles

__all__ = ["so3_dim", "S2Conv", "SO3Conv", "SO3Activation", "so3_near_identity_grid"]


def so3_dim(lmax: int) -> int:
    """``Σ_{l<=lmax} (2l+1)²``."""
    return sum((2 * l + 1) ** 2 for l in range(lmax + 1))


def so3_near_identity_grid(
    max_beta_deg: float = 22.5, n_alpha: int = 8, n_beta: int = 3, n_gamma: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel support of the SO(3) convolution: rotations whose pole moves by at most ``max_beta``.

    ``R = Ry(α) Rx(β) Ry(γ' - α)`` for α on ``n_alpha`` azimuths, β = ``(1..n_beta)/n_beta · max_beta``
    and γ' on ``n_gamma`` uniform in-plane angles. Returns e3nn angles (radians), each
    ``(n_alpha·n_beta·n_gamma,)``.
    """
    a = torch.arange(n_alpha, dtype=torch.float64) * (2 * math.pi / n_alpha)
    b = torch.arange(1, n_beta + 1, dtype=torch.float64) * (math.radians(max_beta_deg) / n_beta)
    g = torch.arange(n_gamma, dtype=torch.float64) * (2 * math.pi / n_gamma)
    A, B, G = torch.meshgrid(a, b, g, indexing="ij")
    return A.flatten(), B.flatten(), (G - A).flatten()


class S2Conv(nn.Module):
    """S² -> SO(3) convolution with a filter of global support on a HEALPix sphere.

    ``out[b, o, l, (i, m)] = Σ_f ψ[f, o, l, i] · x[b, f, l, m] / √f_in`` with
    ``ψ = Σ_k Y(n_k) w[f, o, k] / √n_k`` (filter values ``w`` on the pixels ``n_k``).
    """

    def __init__(self, f_in: int, f_out: int, lmax: int, kernel_order: int = 2) -> None:
        super().__init__()
        from e3nn import o3

        alpha, beta = healpix_s2_angles(kernel_order)
        y = o3.spherical_harmonics_alpha_beta(list(range(lmax + 1)), alpha, beta, normalization="component")
        self.register_buffer("y", y.float(), persistent=False)  # (n_k, (L+1)²)
        self.weight = nn.Parameter(torch.randn(f_in, f_out, alpha.numel()))
        self.lmax, self.f_in = int(lmax), int(f_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        psi = torch.einsum("kd,fok->fod", self.y, self.weight) / math.sqrt(self.y.shape[0])
        out = []
        for l in range(self.lmax + 1):
            s = slice(l * l, (l + 1) ** 2)
            out.append(torch.einsum("foi,bfm->boim", psi[..., s], x[..., s]).flatten(2))
        return torch.cat(out, -1) / math.sqrt(self.f_in)


class SO3Conv(nn.Module):
    """SO(3) -> SO(3) convolution with a filter supported near the identity.

    ``out[b, o, l, (i, m)] = Σ_f Σ_j ψ[f, o, l, (j, i)] · x[b, f, l, (j, m)] / √(f_in (2l+1))`` with
    ``ψ = Σ_k flat_wigner(R_k) w[f, o, k] / √n_k``.
    """

    def __init__(
        self,
        f_in: int,
        f_out: int,
        lmax: int,
        max_beta_deg: float = 22.5,
        n_alpha: int = 8,
        n_beta: int = 3,
        n_gamma: int = 8,
    ) -> None:
        super().__init__()
        a, b, g = so3_near_identity_grid(max_beta_deg, n_alpha, n_beta, n_gamma)
        self.register_buffer("d", flat_wigner(lmax, a, b, g).float(), persistent=False)  # (n_k, dim)
        self.weight = nn.Parameter(torch.randn(f_in, f_out, a.numel()))
        self.lmax, self.f_in = int(lmax), int(f_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        psi = torch.einsum("kd,fok->fod", self.d, self.weight) / math.sqrt(self.d.shape[0])
        out, off = [], 0
        for l in range(self.lmax + 1):
            n = 2 * l + 1
            pl = psi[..., off : off + n * n].reshape(psi.shape[0], psi.shape[1], n, n)
            xl = x[..., off : off + n * n].reshape(x.shape[0], x.shape[1], n, n)
            out.append(torch.einsum("foji,bfjm->boim", pl, xl).flatten(2) / math.sqrt(self.f_in * n))
            off += n * n
        return torch.cat(out, -1)


class SO3Activation(nn.Module):
    """Pointwise nonlinearity on SO(3): to an (α, β, γ) quadrature grid, activation, back.

    Same computation as ``e3nn.nn.SO3Activation(lmax, lmax, act, resolution)`` (grid
    ``4r × 2r × 4r``, quadrature weights in β, second-moment-normalised activation), but the
    ``(grid, dim)`` Wigner table is a non-persistent buffer cached on disk, so it never enters
    checkpoints. (A factorised ``D(α, β, 0)·D(0, 0, γ)`` evaluation, as in
    :class:`cesped.models.so3_grid.OutputGrid`, needs ~3× fewer operations but its small batched
    matrix products ran slower than this single dense product on CPU.)

    ``resolution`` (default ``lmax + 1``) sets the grid ``4r × 2r × 4r``; ``r = lmax + 1`` is the
    smallest for which ``to_grid`` followed by ``from_grid`` reproduces any band-limited input
    (the original uses 10 for every lmax).
    """

    def __init__(
        self,
        lmax: int,
        resolution: int | None = None,
        act=torch.relu,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        from e3nn.math import normalize2mom

        if resolution is None:
            resolution = lmax + 1

        def build():
            from e3nn.o3 import SO3Grid

            g = SO3Grid(0, resolution)  # angles and quadrature weights (lmax 0: no big table)
            a, b = g.alpha.double(), g.beta.double()
            A, B = torch.meshgrid(a, b, indexing="ij")
            zero = torch.zeros(A.numel(), dtype=torch.float64)
            # D(α, β, γ) = D(α, β, 0) · D(0, 0, γ): one small matrix product per degree instead of
            # three matrix exponentials per grid rotation
            blocks = []
            for l in range(lmax + 1):
                from e3nn import o3

                dab = o3.wigner_D(l, A.flatten(), B.flatten(), zero)  # (na·nb, n, n)
                dg = o3.wigner_D(l, torch.zeros_like(a), torch.zeros_like(a), a)  # (nc, n, n)
                full = torch.einsum("pij,kjm->pkim", dab, dg)  # (na·nb, nc, n, n)
                blocks.append(((2 * l + 1) ** 0.5 * full).flatten(2).flatten(0, 1))
            d = torch.cat(blocks, -1).float()
            qw = g.qw[None, :, None].expand(len(a), len(b), len(a)).reshape(-1, 1).float()
            return torch.cat([d, qw], 1)

        table = cached_tensor(f"so3act_L{lmax}_r{resolution}", build, cache_dir)
        self.register_buffer("d", table[:, :-1].contiguous(), persistent=False)  # (G, dim)
        self.register_buffer("qw", table[:, -1].contiguous(), persistent=False)  # (G,)
        self.act = normalize2mom(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.d.shape[1]
        grid = (x @ self.d.T) / math.sqrt(dim)
        return (self.act(grid) * self.qw) @ self.d * math.sqrt(dim)
