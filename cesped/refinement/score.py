"""Scores of particle images against a map's projections (batched torch; CPU and CUDA).

Image model (the simulator's and RELION's)::

    X(k) = a · CTF(k) · P_R(k) · exp(+2πi k·o / n) + noise(k)

with ``X`` the :func:`cesped.physics.fourier.centered_rfft2` of the image, ``P_R`` the central
slice of the map at the pose label ``R = Aᵀ``, ``o`` the RELION origin in pixels
(``image(x) = projection(x + o)``), ``k`` integer frequencies (cycles per box), ``n`` the box,
``a >= 0`` a free amplitude per particle and complex Gaussian noise of power ``σ²(|k|)``.

Score (the Gaussian log-likelihood maximised over ``a``, relative to ``a = 0``, in nats)::

    cross = Re Σ_k m_k W_k X_c(k) · conj(CTF(k) P_R(k)),   X_c = X · exp(-2πi k·o / n)
    norm  = Σ_k m_k W_k CTF(k)² |P_R(k)|²
    gain  = max(cross, 0)² / (2 · norm)

over the rfft half plane inside the band ``0 < |k| <= radius`` (the DC term is left out), with
``m_k = 2`` for the coefficients whose Hermitian partner is not stored (``0 < kx < n/2``) and 1
otherwise, and whitening ``W_k = 1 / σ²(|k|)``: the noise spectrum estimated from the images
themselves (their mean power per integer shell; at the SNR of cryo-EM images the signal's share
is small). The normalised cross-correlation is ``cross / sqrt(norm) = sqrt(2 · gain)``.

The shift search evaluates ``cross`` for all origins at once: ``Z = W · X · CTF · conj(P)`` on an
``m x m`` rfft grid (``m >= 2 · radius + 2``, so the band-limited correlation is sampled without
aliasing at a step of ``n / m`` pixels), ``cross(o) = m² · irfft2(Z)[q]`` with ``q = -o · m / n``,
restricted to ``|o| <= shift radius``; the peak is then refined below the grid step by a pattern
search of the exact correlation (3 x 3 origins, halving steps).

On CPU the slices and the fused scores run in compiled numba kernels
(:mod:`cesped.refinement._numba_kernels`); on other devices (and on CPU with
``backend="torch"``) in torch (``Projector.slice_values``). Both give the same values up to
float32 rounding.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import numpy as np
import torch

from cesped.physics.fourier import centered_rfft2
from cesped.physics.projection import Projector

__all__ = [
    "Band",
    "band_radius",
    "noise_spectrum",
    "ImageBatch",
    "Reference",
    "gains_from",
    "score_poses",
    "shift_search",
]


@dataclass(frozen=True)
class Band:
    """The rfft half-plane coefficients ``0 < |k| <= radius`` of an ``n``-px image.

    Attributes
    ----------
    n : int
        Box (px).
    radius : float
        Band radius in cycles per box (Fourier pixels); the resolution is ``n · px / radius`` Å.
    kx, ky : torch.Tensor
        ``(P,)`` float32 integer frequencies (cycles per box).
    iy, ix : torch.Tensor
        ``(P,)`` int64 indices into the ``(n, n // 2 + 1)`` rfft2 layout.
    mult : torch.Tensor
        ``(P,)`` float32 Hermitian multiplicity (2 where the partner is not stored, else 1).
    """

    n: int
    radius: float
    kx: torch.Tensor
    ky: torch.Tensor
    iy: torch.Tensor
    ix: torch.Tensor
    mult: torch.Tensor

    @classmethod
    def make(cls, n: int, radius: float, device=None) -> Band:
        """Band of an ``n``-px image up to ``radius`` cycles per box (at most ``n // 2``)."""
        if not radius > 0:
            raise ValueError(f"band radius must be > 0 cycles per box, got {radius}")
        radius = float(min(radius, n // 2))
        ky = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
        kx = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)
        kyg, kxg = torch.meshgrid(ky, kx, indexing="ij")
        r2 = kxg**2 + kyg**2
        sel = (r2 > 0) & (r2 <= radius**2 + 1e-9)
        iy, ix = torch.nonzero(sel, as_tuple=True)
        mult = torch.where((ix == 0) | ((n % 2 == 0) & (ix == n // 2)), 1.0, 2.0)
        to = {"device": device}
        return cls(
            n=n,
            radius=radius,
            kx=kxg[sel].to(torch.float32).to(**to),
            ky=kyg[sel].to(torch.float32).to(**to),
            iy=iy.to(**to),
            ix=ix.to(**to),
            mult=mult.to(torch.float32).to(**to),
        )

    def __len__(self) -> int:
        return int(self.kx.numel())


def band_radius(resolution_A: float, box: int, pixel_size: float) -> float:
    """Band radius (cycles per box) of a resolution in Å, at most Nyquist (``box // 2``)."""
    if not (resolution_A > 0 and math.isfinite(resolution_A)):
        raise ValueError(f"band limit must be a positive resolution in Å, got {resolution_A}")
    return float(min(box * pixel_size / resolution_A, box // 2))


def _shell_index(n: int, device=None) -> torch.Tensor:
    ky = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)
    kx = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)
    return torch.round(torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)).to(torch.int64)


def noise_spectrum(images_ft: torch.Tensor) -> torch.Tensor:
    """Mean power ``E|X(k)|²`` per integer frequency shell, over a batch of image transforms.

    Parameters
    ----------
    images_ft : torch.Tensor
        ``(N, n, n // 2 + 1)`` complex (:func:`centered_rfft2` of the images).

    Returns
    -------
    torch.Tensor
        ``(n_shells,)`` float64 power per shell ``round(|k|)`` (cycles per box), on the input's
        device; the whitening weights are its inverse.
    """
    n = images_ft.shape[-2]
    shell = _shell_index(n, images_ft.device)
    power = (images_ft.abs() ** 2).to(torch.float64).mean(0)
    n_shells = int(shell.max()) + 1
    tot = torch.zeros(n_shells, dtype=torch.float64, device=images_ft.device).index_add_(
        0, shell.reshape(-1), power.reshape(-1)
    )
    cnt = torch.bincount(shell.reshape(-1), minlength=n_shells).to(torch.float64)
    return tot / cnt.clamp_min(1)


class ImageBatch:
    """Particle images prepared for scoring: transforms, CTFs and whitening weights.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        ``(N, n, n)`` real images (centre at ``n // 2``).
    ctf : torch.Tensor
        ``(N, n, n // 2 + 1)`` CTFs (rfft2 layout), e.g. from
        :func:`cesped.physics.ctf.ctf_from_particles`.
    noise : torch.Tensor
        ``(n_shells,)`` noise power per shell (:func:`noise_spectrum`), positive.
    device : str or torch.device
    """

    def __init__(self, images, ctf: torch.Tensor, noise: torch.Tensor, device="cpu"):
        dev = torch.device(device)
        img = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if img.ndim != 3 or img.shape[-1] != img.shape[-2]:
            raise ValueError(f"images must have shape (N, n, n), got {tuple(img.shape)}")
        self.n = int(img.shape[-1])
        self.x = centered_rfft2(img.to(device=dev, dtype=torch.float32))
        self.ctf = torch.as_tensor(ctf).to(device=dev, dtype=torch.float32)
        if self.ctf.shape != self.x.shape:
            raise ValueError(f"ctf has shape {tuple(self.ctf.shape)}, expected {tuple(self.x.shape)}")
        shell = _shell_index(self.n, dev)
        noise = torch.as_tensor(noise).to(device=dev, dtype=torch.float64)
        if noise.numel() <= int(shell.max()) or not bool((noise[1 : int(shell.max()) + 1] > 0).all()):
            raise ValueError("noise spectrum must be positive on every shell of the images")
        self.weight = (1.0 / noise.clamp_min(1e-30))[shell].to(torch.float32)  # (n, n//2+1)
        self.device = dev
        self._bands: dict = {}

    def band_values(self, band: Band):
        """``(x, ctf, w)``: the transforms ``(N, P)``, CTFs ``(N, P)`` and weights ``W·m`` ``(P,)``
        at the band's coefficients (cached per band radius)."""
        key = (band.n, band.radius)
        if key not in self._bands:
            self._bands[key] = (
                self.x[:, band.iy, band.ix],
                self.ctf[:, band.iy, band.ix],
                self.weight[band.iy, band.ix] * band.mult,
            )
        return self._bands[key]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def terms(self, rows: torch.Tensor, origins_px: torch.Tensor, band: Band):
        """Per-row factors of the fixed-shift score: ``a = m W CTF X_c`` and ``b = m W CTF²``.

        Parameters
        ----------
        rows : torch.Tensor
            ``(R,)`` particle indices into this batch.
        origins_px : torch.Tensor
            ``(R, 2)`` RELION origins ``[x, y]`` in pixels.
        band : Band

        Returns
        -------
        a : torch.Tensor ``(R, P)`` complex64 ; b : torch.Tensor ``(R, P)`` float32
        """
        xb, cb, w = self.band_values(band)
        x, c = xb[rows], cb[rows]
        o = origins_px.to(device=self.device, dtype=torch.float32)
        phase = (-2.0 * math.pi / self.n) * (o[:, :1] * band.kx + o[:, 1:] * band.ky)
        a = x * torch.polar(torch.ones_like(phase), phase) * (c * w)
        return a, c * c * w


class Reference:
    """A map ready for projection matching (its padded transform, on a device).

    Parameters
    ----------
    volume : array-like
        ``(n, n, n)`` map ``(z, y, x)``, centre at ``n // 2``.
    device : str or torch.device
    backend : {"auto", "numba", "torch"}
        "auto": compiled numba kernels on CPU when available, torch otherwise.
    pad : float
        Padding of the projector (2, as the simulator and RELION).
    """

    def __init__(self, volume, device="cpu", backend: str = "auto", pad: float = 2.0):
        if backend not in ("auto", "numba", "torch"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
        self.device = torch.device(device)
        on_cpu = self.device.type == "cpu"
        numba_available = importlib.util.find_spec("numba") is not None
        if backend == "numba" and not (on_cpu and numba_available):
            raise ValueError("backend='numba' needs numba and device='cpu'")
        self.backend = "numba" if (backend != "torch" and on_cpu and numba_available) else "torch"
        self.projector = Projector(np.asarray(volume, dtype=np.float32), pad=pad, dtype=torch.float32)
        self.n = self.projector.d
        if self.backend == "numba":
            from cesped.refinement._numba_kernels import bordered

            self._ft = bordered(self.projector.padded_transform().numpy())
        else:
            self.projector.to(self.device)

    def slices(self, rotmats: torch.Tensor, band: Band) -> torch.Tensor:
        """``(M, P)`` complex64 slice values at the band's frequencies for ``(M, 3, 3)`` poses."""
        rot = rotmats.reshape(-1, 3, 3)
        if self.backend == "torch":
            return self.projector.slice_values(rot.to(self.device), band.kx, band.ky)
        from cesped.refinement._numba_kernels import kernels

        out = np.empty((rot.shape[0], len(band)), dtype=np.complex64)
        kernels()["slices"](
            self._ft,
            float(self.projector.pad),
            rot.detach().cpu().to(torch.float64).numpy(),
            band.kx.cpu().numpy().astype(np.float64),
            band.ky.cpu().numpy().astype(np.float64),
            out,
        )
        return torch.from_numpy(out)

    def cross_norm(self, rotmats: torch.Tensor, a: torch.Tensor, b: torch.Tensor, band: Band):
        """``cross`` and ``norm`` (module docstring) of ``(R, J, 3, 3)`` poses against rows ``a, b``.

        Returns
        -------
        cross, norm : torch.Tensor ``(R, J)`` float32
        """
        r, j = rotmats.shape[:2]
        if self.backend == "torch":
            p = self.slices(rotmats.reshape(-1, 3, 3), band).reshape(r, j, -1)
            cross = (a.real[:, None] * p.real + a.imag[:, None] * p.imag).sum(-1)
            norm = (b[:, None] * (p.real**2 + p.imag**2)).sum(-1)
            return cross, norm
        from cesped.refinement._numba_kernels import kernels

        cross = np.empty((r, j), dtype=np.float64)
        norm = np.empty((r, j), dtype=np.float64)
        kernels()["scores"](
            self._ft,
            float(self.projector.pad),
            rotmats.detach().cpu().to(torch.float64).contiguous().numpy(),
            a.detach().cpu().numpy(),
            b.detach().cpu().numpy(),
            band.kx.cpu().numpy().astype(np.float64),
            band.ky.cpu().numpy().astype(np.float64),
            cross,
            norm,
        )
        return torch.from_numpy(cross).to(torch.float32), torch.from_numpy(norm).to(torch.float32)


def gains_from(cross: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Log-likelihood gain (nats) ``max(cross, 0)² / (2 norm)`` (0 where ``norm`` is 0)."""
    c = cross.clamp_min(0)
    return torch.where(norm > 0, c * c / (2.0 * norm.clamp_min(1e-30)), torch.zeros_like(c))


def score_poses(
    ref: Reference, batch: ImageBatch, rows: torch.Tensor, rotmats: torch.Tensor, origins_px, band: Band
) -> torch.Tensor:
    """Gains of ``J`` poses per row at a fixed origin per row.

    Parameters
    ----------
    ref : Reference
    batch : ImageBatch
    rows : torch.Tensor
        ``(R,)`` particle indices into ``batch``.
    rotmats : torch.Tensor
        ``(R, J, 3, 3)`` pose labels ``R = Aᵀ``.
    origins_px : torch.Tensor
        ``(R, 2)`` RELION origins in pixels.
    band : Band

    Returns
    -------
    torch.Tensor
        ``(R, J)`` gains in nats (on the batch's device).
    """
    a, b = batch.terms(rows.to(batch.device), torch.as_tensor(origins_px), band)
    cross, norm = ref.cross_norm(rotmats.to(torch.float32), a, b, band)
    return gains_from(cross.to(batch.device), norm.to(batch.device))


def _grid_size(n: int, radius: float) -> int:
    m = max(2 * int(math.ceil(radius)) + 2, n // 2)
    m += m % 2
    return min(n, m)


def shift_search(
    ref: Reference,
    batch: ImageBatch,
    rows: torch.Tensor,
    rotmats: torch.Tensor,
    band: Band,
    radius_px: float,
    chunk: int = 1024,
    sub_steps: int = 4,
):
    """Best origin of each (row, pose) pair within ``radius_px`` of the box centre, by FFT.

    Parameters
    ----------
    ref, batch, band
    rows : torch.Tensor
        ``(R,)`` particle indices.
    rotmats : torch.Tensor
        ``(R, 3, 3)`` one pose per row.
    radius_px : float
        Largest ``|origin|`` searched (px, >= 0) on the FFT grid.
    sub_steps : int
        Halvings of the sub-grid pattern search (3 x 3 origins around the best, from half the
        grid step): the origin's precision is ``grid step / 2**(sub_steps + 1)``.

    Returns
    -------
    gains : torch.Tensor ``(R,)`` nats at the (sub-grid) peak
    origins_px : torch.Tensor ``(R, 2)`` RELION origins ``[x, y]`` in pixels
    """
    n = batch.n
    m = _grid_size(n, band.radius)
    step = n / m
    q = torch.fft.fftfreq(m, d=1.0 / m, device=batch.device)  # signed grid index
    oy, ox = -q[:, None] * step, -q[None, :] * step  # origin (px) of grid cell [qy, qx]
    inside = (ox**2 + oy**2) <= radius_px**2 + 1e-6
    iy = torch.remainder(band.ky.to(batch.device).long(), m)
    ix = band.kx.to(batch.device).long()
    offsets = torch.stack(
        torch.meshgrid(*(torch.tensor([-1.0, 0.0, 1.0], device=batch.device),) * 2, indexing="xy"), -1
    ).reshape(9, 2)
    gains, origins = [], []
    for s in range(0, len(rows), chunk):
        r = rows[s : s + chunk].to(batch.device)
        p = ref.slices(rotmats[s : s + chunk], band).to(batch.device)
        xb, cb, wm = batch.band_values(band)
        x, c = xb[r], cb[r]
        w = wm / band.mult
        z = torch.zeros((len(r), m, m // 2 + 1), dtype=torch.complex64, device=batch.device)
        z[:, iy, ix] = x * (w * c) * p.conj()
        full = torch.fft.irfft2(z, s=(m, m)) * float(m * m)
        corr = torch.where(inside, full, torch.full_like(full, -torch.inf))
        flat = corr.reshape(len(r), -1).argmax(1)
        qy, qx = flat // m, flat % m
        qs_y = torch.where(qy >= (m + 1) // 2, qy - m, qy).to(torch.float32)
        qs_x = torch.where(qx >= (m + 1) // 2, qx - m, qx).to(torch.float32)
        o = torch.stack([-qs_x * step, -qs_y * step], -1)
        # sub-grid: pattern search of the exact cross-correlation around the grid peak
        q_k = x * (wm * c) * p.conj()  # (R, P), cross(o) = Re Σ q_k exp(-2πi k·o/n)
        d = step / 2
        kx, ky = band.kx.to(batch.device), band.ky.to(batch.device)
        ph = (-2.0 * math.pi / n) * (o[:, :1] * kx + o[:, 1:] * ky)
        cos, sin = torch.cos(ph), torch.sin(ph)
        qr = q_k.real * cos - q_k.imag * sin  # q · exp(i ph(o)), kept up to date as o moves
        qi = q_k.real * sin + q_k.imag * cos
        for _ in range(sub_steps):
            # the 3 x 3 offsets are the same for every row: real (R, P) @ (P, 9) products
            phe = (-2.0 * math.pi / n) * d * (offsets[:, :1] * kx + offsets[:, 1:] * ky)  # (9, P)
            ce, se = torch.cos(phe), torch.sin(phe)
            best = (qr @ ce.T - qi @ se.T).argmax(1)
            o = o + d * offsets[best]
            # move the phase by the chosen offset's factor (a (9, P) table, no (R, P) cos/sin)
            cb, sb = ce[best], se[best]
            qr, qi = qr * cb - qi * sb, qr * sb + qi * cb
            d /= 2
        peak = qr.sum(-1)
        origins.append(o)
        norm = (c * c * wm * (p.real**2 + p.imag**2)).sum(-1)
        gains.append(gains_from(peak, norm))
    if not gains:
        return torch.zeros(0, device=batch.device), torch.zeros((0, 2), device=batch.device)
    return torch.cat(gains), torch.cat(origins)
