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

from cesped.models._so3_fourier import FourierActivation, block_size, fourier_tables
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

    Same function as ``e3nn.nn.SO3Activation(lmax, lmax, act, resolution)`` (grid
    ``4r × 2r × 4r``, quadrature weights in β, second-moment-normalised activation), computed with
    a separable Fourier transform instead of e3nn's dense ``(grid, dim)`` Wigner table.

    Parameters
    ----------
    lmax : int
        Band limit of the input and output signals.
    resolution : int, optional
        ``r`` of the grid ``4r (α) × 2r (β) × 4r (γ)``, default ``lmax + 1``: the smallest for which
        the grid transform followed by the quadrature projection reproduces any band-limited input
        (the original uses 10 for every lmax).
    act : callable
        Elementwise activation, normalised to unit second moment (``e3nn.math.normalize2mom``).
        ``torch.relu`` (the default), ``F.relu`` and ``nn.ReLU`` take an in-place path with a
        hand-written backward; any other elementwise function works through autograd per block.
    cache_dir : path, optional
        Where the dense reference's table is cached (``method="dense"`` only).
    method : {"fourier", "dense"}
        ``"fourier"`` (default): ``D^l(α, β, γ) = D^l_y(α) D^l_x(β) D^l_y(γ)`` and
        ``D^l_y(θ) = Σ_s φ_s(θ) M^l_s`` over the real Fourier functions ``1, cos kθ, sin kθ``
        (``k <= lmax``), so the signal on the grid is
        ``f(α, β, γ) = Σ_{s,t} φ_s(α) φ_t(γ) A[β, s, t]`` with ``A`` a sparse linear function of the
        coefficients; the α and γ sums are dense ``(4r, 2·lmax+1)`` inverse real DFTs and the
        projection back is their exact transpose (see :mod:`cesped.models._so3_fourier`).
        ``"dense"``: the reference, e3nn's ``(32 r³, Σ(2l+1)²)`` Wigner table multiplied in and
        out, cached on disk. Measured on 2 CPU cores, one thread, forward + backward: 13-14×
        slower at lmax 6, r 10 (512 signals), ~4-6× at lmax 4, r 5 (1024 signals)
        (``benchmarks/bench_so3_activation.py``).

    Notes
    -----
    Input and output: ``(..., Σ_{l<=lmax} (2l+1)²)`` flat Wigner coefficients (row-major ``(i, m)``
    blocks per degree). All tables are non-persistent buffers (never in checkpoints); the Fourier
    tables (a few hundred kB) are built in float64 in milliseconds at construction and stored in
    float32. On CPU the signals go through in blocks whose grid (``32 r³`` values per signal) stays
    in cache, so the grid of the whole batch is never materialised; the backward recomputes each
    block's pre-activation grid instead of saving it. Double backward is not supported.
    """

    block_values = 1 << 19  # grid values per block of signals on CPU (2 MB in float32)
    # intra-op threads on CPU (None: torch's setting). The blocks' ~25 small products per pass each
    # pay an OpenMP barrier: on a shared, oversubscribed 2-core machine 2 threads ran the lmax 6
    # activation 3-100× slower than 1 (0.3-10 s instead of 0.1 s); when idle, 2 threads gained ~25 %.
    cpu_threads: int | None = 1

    def __init__(
        self,
        lmax: int,
        resolution: int | None = None,
        act=torch.relu,
        cache_dir: str | os.PathLike | None = None,
        *,
        method: str = "fourier",
    ) -> None:
        super().__init__()
        from e3nn.math import normalize2mom

        if resolution is None:
            resolution = lmax + 1
        if method not in ("fourier", "dense"):
            raise ValueError(f"method must be 'fourier' or 'dense', got {method!r}")
        self.lmax, self.resolution, self.method = int(lmax), int(resolution), method
        self.dim = so3_dim(lmax)
        self.act = normalize2mom(act)
        if method == "dense":
            table = _dense_table(self.lmax, self.resolution, cache_dir)
            self.register_buffer("d", table[:, :-1].contiguous(), persistent=False)  # (G, dim)
            self.register_buffer("qw", table[:, -1].contiguous(), persistent=False)  # (G,)
            return
        from e3nn.o3 import SO3Grid

        g = SO3Grid(0, self.resolution)  # angles and quadrature weights (lmax 0: no big table)
        index, t_beta, t_beta_qw, phi = fourier_tables(self.lmax, g.alpha, g.beta, g.qw)
        # the dense reference's 1/√dim (to the grid) and √dim (back) are folded into the β tables
        self.register_buffer("index", index, persistent=False)  # (S², K)
        self.register_buffer("t_beta", (t_beta / math.sqrt(self.dim)).float(), persistent=False)
        self.register_buffer("t_beta_qw", (t_beta_qw * math.sqrt(self.dim)).float(), persistent=False)
        self.register_buffer("phi", phi.float(), persistent=False)  # (4r, S)
        # ReLU gets an in-place forward and a mask-free backward (threshold on the recomputed grid)
        self._relu = act in (torch.relu, nn.functional.relu) or isinstance(act, nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "dense":
            grid = (x @ self.d.T) / math.sqrt(self.dim)
            return (self.act(grid) * self.qw) @ self.d * math.sqrt(self.dim)
        lead, dt = x.shape[:-1], x.dtype
        x2 = x.reshape(-1, self.dim)
        n_grid = self.phi.shape[0] ** 2 * self.t_beta.shape[1]
        # CPU: blocks of signals whose grid stays in cache; GPU: the whole batch at once
        block = block_size(n_grid, x2.shape[0], self.block_values) if x.device.type == "cpu" else x2.shape[0]
        # normalize2mom's constant, folded into the projection table
        scale = 1.0 if getattr(self.act, "_is_id", False) else float(self.act.cst)
        out = FourierActivation.apply(
            x2,
            self.index,
            self.t_beta.to(dt),
            self.t_beta_qw.to(dt) * scale,
            self.phi.to(dt),
            self.act.f,
            self._relu,
            max(block, 1),
            self.cpu_threads if x.device.type == "cpu" else None,
        )
        return out.reshape(lead + (self.dim,))


def _dense_table(lmax: int, resolution: int, cache_dir) -> torch.Tensor:
    """Reference table ``[flat_wigner(α, β, γ) | qw(β)]`` over the grid, ``(32 r³, dim + 1)`` float32."""

    def build():
        from e3nn import o3
        from e3nn.o3 import SO3Grid

        g = SO3Grid(0, resolution)  # angles and quadrature weights (lmax 0: no big table)
        a, b = g.alpha.double(), g.beta.double()
        A, B = torch.meshgrid(a, b, indexing="ij")
        zero = torch.zeros(A.numel(), dtype=torch.float64)
        # D(α, β, γ) = D(α, β, 0) · D(0, 0, γ): one small matrix product per degree instead of
        # three matrix exponentials per grid rotation
        blocks = []
        for l in range(lmax + 1):
            dab = o3.wigner_D(l, A.flatten(), B.flatten(), zero)  # (na·nb, n, n)
            dg = o3.wigner_D(l, torch.zeros_like(a), torch.zeros_like(a), a)  # (nc, n, n)
            full = torch.einsum("pij,kjm->pkim", dab, dg)  # (na·nb, nc, n, n)
            blocks.append(((2 * l + 1) ** 0.5 * full).flatten(2).flatten(0, 1))
        d = torch.cat(blocks, -1).float()
        qw = g.qw[None, :, None].expand(len(a), len(b), len(a)).reshape(-1, 1).float()
        return torch.cat([d, qw], 1)

    return cached_tensor(f"so3act_L{lmax}_r{resolution}", build, cache_dir)
