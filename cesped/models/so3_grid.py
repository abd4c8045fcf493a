"""HEALPix grids on SO(3), nearest-grid-rotation lookup and factorised Wigner-D output tables.

The grid itself (angles, matrices, nearest rotation; its conventions: e3nn's Euler angles
``Ry(α)·Rx(β)·Ry(γ)``, HEALPix RING pixels, flat index ``n = k·Npix + p``) lives in
:mod:`cesped.geometry.so3_grid` and is re-exported here; this module adds the Wigner-D tables
and the models' output grid.

A signal on SO(3) band-limited to ``lmax`` is stored as e3nn's "flat Wigner" coefficients
``x = concat_l vec_rowmajor(x_l)``, ``x_l`` of shape ``(2l+1, 2l+1)``, and its value at a
rotation is ``f(R) = Σ_l √(2l+1) Σ_ij x_l[i, j] D^l(R)[i, j]``.

Because ``D(α, β, γ) = D(α, β, 0) · D(0, 0, γ)`` and ``D^l(0, 0, γ)`` only has non-zero entries at
``[m, m]`` (``cos``) and ``[m, 2l-m]`` (``±sin``), the logits over the whole grid are computed from
a per-pixel table ``(Npix, Σ(2l+1)²)`` and a per-γ table ``(2(lmax+1)², Nγ)``; the
``(N, Σ(2l+1)²)`` brute-force table (1.1 GB at order 4, 9 GB at order 5 for lmax 8) is never built.
The tables are derived data: they are cached on disk (``cesped.settings.cache_dir()/so3_tables``)
and registered as non-persistent buffers, so they are not stored in checkpoints.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from cesped.geometry.so3_grid import (  # noqa: F401  (re-exported: the models' public names)
    _check_order,
    euler_yxy_to_matrix,
    grid_size,
    healpix_s2_angles,
    healpix_so3_angles,
    nearest_rotation_index,
    so3_grid_matrices,
)
from cesped.io.atomic import atomic_path

__all__ = [
    "grid_size",
    "healpix_so3_angles",
    "euler_yxy_to_matrix",
    "so3_grid_matrices",
    "nearest_rotation_index",
    "flat_wigner",
    "OutputGrid",
    "gamma_table",
    "pixel_features",
    "pixel_features_adjoint",
    "cached_tensor",
]


def flat_wigner(lmax: int, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``concat_l √(2l+1) · vec_rowmajor(D^l(α, β, γ))``, shape ``(..., Σ_l (2l+1)²)`` (e3nn's layout)."""
    from e3nn import o3

    return torch.cat(
        [(2 * l + 1) ** 0.5 * o3.wigner_D(l, alpha, beta, gamma).flatten(-2) for l in range(lmax + 1)], dim=-1
    )


def cached_tensor(name: str, builder, cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Load the tensor ``name`` from the cache directory, or build it with ``builder()`` and store it.

    Parameters
    ----------
    name : str
        File stem (``<cache_dir>/so3_tables/<name>.pt``).
    builder : callable () -> torch.Tensor
    cache_dir : path, optional
        Defaults to :func:`cesped.settings.cache_dir`. ``""`` or ``False``-like values are
        resolved by :func:`cesped.settings.cache_dir` as well.
    """
    from cesped.settings import cache_dir as default_cache_dir

    path = Path(default_cache_dir(cache_dir)) / "so3_tables" / f"{name}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # corrupt or incompatible cache: rebuild
            pass
    value = builder()
    try:
        with atomic_path(path) as tmp:
            torch.save(value, tmp)
    except OSError:  # read-only cache: keep going without it
        pass
    return value


def gamma_table(lmax: int, gammas: torch.Tensor) -> torch.Tensor:
    """Diagonal and anti-diagonal entries of ``D^l(0, 0, γ)``: ``(2·(lmax+1)², Nγ)`` float32.

    Rows per degree ``l``: ``D^l[m, m](γ)`` for ``m = 0..2l``, then ``D^l[m, 2l-m](γ)`` (zero at the
    centre ``m = l``, which the diagonal already holds). These are the only non-zero entries of a
    rotation about e3nn's pole axis y in the real spherical-harmonic basis.
    """
    from e3nn import o3

    g = gammas.to(torch.float64)
    rows = []
    for l in range(lmax + 1):
        d = o3.wigner_D(l, torch.zeros_like(g), torch.zeros_like(g), g)  # (Nγ, 2l+1, 2l+1)
        m = torch.arange(2 * l + 1)
        anti = d[:, m, 2 * l - m].clone()
        anti[:, l] = 0.0
        rows += [d[:, m, m].T, anti.T]
    return torch.cat(rows, 0).float()


def pixel_features(x: torch.Tensor, pix_table: torch.Tensor, lmax: int) -> torch.Tensor:
    """Contract an SO(3) signal with per-pixel ``D(α_p, β_p, 0)`` tables.

    Parameters
    ----------
    x : (N, Σ(2l+1)²) flat Wigner coefficients
    pix_table : (P, Σ(2l+1)²) ``flat_wigner(α_p, β_p, 0)``
    lmax : int

    Returns
    -------
    (N, P, 2(lmax+1)²): per degree, ``Σ_i x_l[i, j] A_l[p, i, m]`` at ``j = m`` then ``j = 2l - m``.
    The signal on the grid is this times :func:`gamma_table`.
    """
    feats, off = [], 0
    for l in range(lmax + 1):
        n = 2 * l + 1
        xl = x[:, off : off + n * n].reshape(-1, n, n)  # (N, i, j)
        al = pix_table[:, off : off + n * n].reshape(-1, n, n)  # (P, i, m)
        xs = torch.stack([xl, xl.flip(-1)], 1)  # (N, 2, i, m)
        feats.append(torch.einsum("bsim,pim->bpsm", xs, al).flatten(2))
        off += n * n
    return torch.cat(feats, -1)


def pixel_features_adjoint(h: torch.Tensor, pix_table: torch.Tensor, lmax: int) -> torch.Tensor:
    """Adjoint of :func:`pixel_features`: ``(N, P, 2(lmax+1)²) -> (N, Σ(2l+1)²)``."""
    out, off, foff = [], 0, 0
    for l in range(lmax + 1):
        n = 2 * l + 1
        al = pix_table[:, off : off + n * n].reshape(-1, n, n)  # (P, i, m)
        hl = h[..., foff : foff + 2 * n].reshape(h.shape[0], h.shape[1], 2, n)  # (N, P, s, m)
        y = torch.einsum("bpsm,pim->bsim", hl, al)  # (N, 2, i, m)
        out.append((y[:, 0] + y[:, 1].flip(-1)).flatten(1))
        off += n * n
        foff += 2 * n
    return torch.cat(out, -1)


class OutputGrid(torch.nn.Module):
    """Evaluates an SO(3) signal (flat Wigner coefficients) on the HEALPix grid of ``order``.

    Parameters
    ----------
    lmax : int
        Band limit of the signal.
    order : int
        Grid order (``72·8**order`` rotations).
    cache_dir : path, optional
        Where the tables are cached (default :func:`cesped.settings.cache_dir`).

    Notes
    -----
    Buffers (all non-persistent): ``pix_table (Npix, dim)`` = ``flat_wigner(α_p, β_p, 0)``,
    ``gamma_table (2·(lmax+1)², Nγ)`` with the diagonal and anti-diagonal entries of
    ``D^l(0, 0, γ_k)``, and the pixel angles. The ``(N, 9)`` matrix table used by :meth:`nearest`
    is built on first use only (training-grid orders), never for prediction.
    """

    def __init__(self, lmax: int, order: int, cache_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.lmax = int(lmax)
        self.order = _check_order(order)
        self.nside = 2**self.order
        self.npix = 12 * self.nside**2
        self.ngamma = 6 * self.nside
        self.size = self.npix * self.ngamma
        lm, od = self.lmax, self.order

        def build_pix():
            a, b = healpix_s2_angles(od)
            return flat_wigner(lm, a, b, torch.zeros_like(a)).float()

        def build_gamma():
            return gamma_table(
                lm, torch.arange(self.ngamma, dtype=torch.float64) * (2 * math.pi / self.ngamma)
            )

        self.register_buffer(
            "pix_table", cached_tensor(f"pix_L{lm}_o{od}", build_pix, cache_dir), persistent=False
        )
        self.register_buffer(
            "gamma_table", cached_tensor(f"gamma_L{lm}_o{od}", build_gamma, cache_dir), persistent=False
        )
        alpha, beta = healpix_s2_angles(od)
        self.register_buffer("pix_alpha", alpha, persistent=False)
        self.register_buffer("pix_beta", beta, persistent=False)
        self._grid_flat: torch.Tensor | None = None

    def _pixel_features(self, x: torch.Tensor, pix: slice) -> torch.Tensor:
        return pixel_features(x, self.pix_table[pix], self.lmax)

    def logits(self, x: torch.Tensor, pix: slice | None = None) -> torch.Tensor:
        """Signal values on the grid.

        Parameters
        ----------
        x : torch.Tensor (B, Σ(2l+1)²)
        pix : slice, optional
            Restrict to a range of pixels (all γ for each); default all pixels.

        Returns
        -------
        torch.Tensor
            ``(B, N)`` in flat grid order for ``pix=None``; ``(B, Nγ, P)`` for a pixel slice.
        """
        sl = slice(None) if pix is None else pix
        f = self._pixel_features(x, sl)  # (B, P, F)
        out = (f @ self.gamma_table.to(f.dtype)).transpose(1, 2)  # (B, Nγ, P)
        return out.reshape(x.shape[0], -1) if pix is None else out

    def topk(self, x: torch.Tensor, k: int = 1, pix_chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k grid values and flat indices, computed in chunks of pixels (order 5 stays small).

        Returns
        -------
        values : (B, k) ; indices : (B, k) int64 (flat grid index ``k_γ·Npix + p``)
        """
        v, i, _ = self.topk_logsumexp(x, k, pix_chunk)
        return v, i

    def logsumexp(self, x: torch.Tensor, pix_chunk: int = 1024) -> torch.Tensor:
        """``log Σ_n exp(f(R_n))`` over the grid, ``(B,)``, computed in pixel chunks."""
        return self.topk_logsumexp(x, 1, pix_chunk)[2]

    def topk_logsumexp(
        self, x: torch.Tensor, k: int = 1, pix_chunk: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-k values, their flat indices and the log-partition function, in one pass over pixel chunks.

        Memory is ``B × Nγ × pix_chunk`` floats, never ``(B, N)``.
        """
        best_v, best_i, lse = None, None, []
        for start in range(0, self.npix, pix_chunk):
            stop = min(start + pix_chunk, self.npix)
            lg = self.logits(x, slice(start, stop)).reshape(x.shape[0], -1)  # (B, Nγ·P), γ-major
            lse.append(torch.logsumexp(lg, 1))
            p = stop - start
            v, i = lg.topk(min(k, lg.shape[1]), dim=1)
            flat = (i // p) * self.npix + (i % p) + start
            if best_v is None:
                best_v, best_i = v, flat
            else:
                cat_v, cat_i = torch.cat([best_v, v], 1), torch.cat([best_i, flat], 1)
                best_v, sel = cat_v.topk(min(k, cat_v.shape[1]), dim=1)
                best_i = cat_i.gather(1, sel)
        return best_v, best_i, torch.logsumexp(torch.stack(lse, 1), 1)

    def rotations(self, index: torch.Tensor) -> torch.Tensor:
        """Grid rotation matrices (network frame) for flat indices, ``(..., 3, 3)`` float32."""
        p, k = index % self.npix, index // self.npix
        gamma = k.to(torch.float64) * (2 * math.pi / self.ngamma)
        return euler_yxy_to_matrix(self.pix_alpha[p], self.pix_beta[p], gamma).float()

    @property
    def grid_flat(self) -> torch.Tensor:
        """``(N, 9)`` row-major grid matrices (float32), built on first use on the buffers' device."""
        dev = self.pix_alpha.device
        if self._grid_flat is None or self._grid_flat.device != dev:
            self._grid_flat = so3_grid_matrices(self.order).reshape(-1, 9).float().to(dev)
        return self._grid_flat

    def nearest(self, rotmats: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
        """Flat index of the nearest grid rotation, see :func:`nearest_rotation_index`."""
        return nearest_rotation_index(rotmats.float(), self.grid_flat, chunk_size)
