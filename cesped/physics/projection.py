"""Projections of a volume (Fourier-slice theorem) and the image formation model.

Convention: a pose is the label ``R = Aᵀ`` (``A`` = RELION's ``Euler_angles2matrix``), and the
projection of ``V`` at that pose is ``P(x, y) = sum_z V(R @ [x, y, z])`` with ``(x, y, z)``
measured from the box centre (index ``d // 2``), exactly what ``relion_project`` computes for
angles ``(rot, tilt, psi)``. Volumes are indexed ``(z, y, x)``, images ``(y, x)``.

Method (as RELION's ``Projector``): the volume is divided by the separable ``sinc²`` of the
trilinear interpolation kernel, zero-padded ``pad`` times, Fourier transformed once; each
projection's transform is the central slice ``F(R @ [kx, ky, 0])`` sampled by trilinear
interpolation at the ``d x (d // 2 + 1)`` frequencies of the output image (Hermitian symmetry
for ``kx < 0`` points). As in RELION, frequencies beyond Nyquist (``|k| > d // 2``, the corners
of the image transform) are zero.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cesped.physics.fourier import centered_irfft2, centered_rfft2, fftfreq_grid_2d, shift_images

__all__ = ["Projector", "project", "apply_ctf_and_shifts"]


class Projector:
    """Fourier-slice projector of one cubic volume (the padded transform is computed once).

    Parameters
    ----------
    volume : numpy.ndarray or torch.Tensor
        ``(d, d, d)`` real volume ``(z, y, x)``, centre at index ``d // 2``; it should decay to
        zero at the box edges (it is zero-padded).
    pad : float
        Padding factor (>= 1); the padded side is ``2 * round(pad * d / 2)``.
    dtype : torch.dtype, optional
        Real dtype of the computation (default: the volume's float dtype, float32 for
        integer input).
    """

    def __init__(
        self,
        volume,
        pad: float = 2.0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        vol = torch.as_tensor(volume)
        if vol.ndim != 3 or len(set(vol.shape)) != 1:
            raise ValueError(f"project: volume must be a cubic (d, d, d) array, got shape {tuple(vol.shape)}")
        if not pad >= 1:
            raise ValueError(f"project: pad must be >= 1, got {pad}")
        if dtype is None:
            dtype = vol.dtype if vol.is_floating_point() else torch.float32
        vol = vol.to(dtype)
        d = vol.shape[0]
        size = max(d, 2 * int(round(pad * d / 2)))
        self.d, self.size, self.pad, self.dtype = d, size, size / d, dtype
        # separable sinc² correction of the trilinear interpolation, on the padded grid
        x = (torch.arange(d, dtype=dtype) - d // 2) / size
        sinc2 = torch.sinc(x) ** 2
        vol = vol / (sinc2[:, None, None] * sinc2[None, :, None] * sinc2[None, None, :])
        lo = size // 2 - d // 2
        padded = torch.zeros((size, size, size), dtype=dtype)
        padded[lo : lo + d, lo : lo + d, lo : lo + d] = vol
        ft = torch.fft.rfftn(torch.fft.ifftshift(padded), dim=(0, 1, 2))
        ft = torch.fft.fftshift(ft, dim=(0, 1))  # (z, y) centred at size // 2
        self._nx = ft.shape[2]
        # real and imaginary parts as two channels: (1, 2, z, y, x) for grid_sample
        self._ft_channels = torch.view_as_real(ft).permute(3, 0, 1, 2).contiguous()[None]
        ky, kx = fftfreq_grid_2d(d, rfft=True, dtype=dtype)
        kx, ky = (kx * d).reshape(-1), (ky * d).reshape(-1)  # integer frequencies of the output image
        # like RELION's projector, only frequencies inside the Nyquist circle are sampled
        self._inside = kx**2 + ky**2 <= (d // 2) ** 2
        self._kx, self._ky = kx[self._inside], ky[self._inside]
        self.device = torch.device("cpu")
        if device is not None:
            self.to(device)

    def to(self, device: torch.device | str) -> Projector:
        """Move the padded transform to ``device`` (in place); returns ``self``."""
        self.device = torch.device(device)
        self._ft_channels = self._ft_channels.to(self.device)
        self._kx, self._ky, self._inside = (t.to(self.device) for t in (self._kx, self._ky, self._inside))
        return self

    def padded_transform(self) -> torch.Tensor:
        """The padded, ``sinc²``-corrected transform: ``(s, s, s // 2 + 1)`` complex, indexed
        ``(z, y, x)`` with ``z`` and ``y`` centred at ``s // 2`` (``s = self.size``); the value at
        ``pad · R @ [kx, ky, 0]`` is what :meth:`slice_values` interpolates."""
        c = self._ft_channels[0]
        return torch.complex(c[0], c[1])

    def slice_values(self, rotmats: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
        """Central-slice values at given image frequencies (trilinear, RELION's projector).

        Parameters
        ----------
        rotmats : torch.Tensor
            ``(B, 3, 3)`` pose labels ``R = Aᵀ``.
        kx, ky : torch.Tensor
            ``(P,)`` image frequencies in cycles per box (integers for the image's own grid),
            inside the Nyquist circle ``kx² + ky² <= (d // 2)²``.

        Returns
        -------
        torch.Tensor
            ``(B, P)`` complex values of the projections' transforms
            (:func:`cesped.physics.fourier.centered_rfft2` layout) at those frequencies.
        """
        rot = rotmats.to(device=self.device, dtype=self.dtype)
        kx = kx.to(device=self.device, dtype=self.dtype)
        ky = ky.to(device=self.device, dtype=self.dtype)
        # 3-D sampling points (x, y, z) in padded-grid units: pad * R @ [kx, ky, 0]
        pts = self.pad * (rot[:, None, :, 0] * kx[None, :, None] + rot[:, None, :, 1] * ky[None, :, None])
        flip = pts[..., 0] < 0
        pts = torch.where(flip[..., None], -pts, pts)
        size, half, nx = self.size, self.size // 2, self._nx
        # trilinear interpolation with grid_sample (align_corners: -1 -> index 0, +1 -> last index);
        # points outside the padded transform read zeros
        f = pts + torch.tensor([0.0, half, half], dtype=self.dtype, device=self.device)
        scale = torch.tensor(
            [2.0 / (nx - 1), 2.0 / (size - 1), 2.0 / (size - 1)], dtype=self.dtype, device=self.device
        )
        grid = (f * scale - 1.0).reshape(1, 1, 1, -1, 3)
        sampled = F.grid_sample(
            self._ft_channels, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        out = torch.complex(sampled[0, 0, 0, 0], sampled[0, 1, 0, 0]).reshape(pts.shape[:-1])
        return torch.where(flip, out.conj(), out)

    def project_rfft(self, rotmats) -> torch.Tensor:
        """Transforms of the projections, :func:`cesped.physics.fourier.centered_rfft2` layout.

        Parameters
        ----------
        rotmats : array-like (B, 3, 3)
            Pose labels ``R = Aᵀ``.

        Returns
        -------
        torch.Tensor
            ``(B, d, d // 2 + 1)`` complex; ``centered_irfft2(out, d)`` gives the images.
        """
        rot = torch.as_tensor(np.asarray(rotmats) if not isinstance(rotmats, torch.Tensor) else rotmats)
        if rot.ndim != 3 or rot.shape[-2:] != (3, 3):
            raise ValueError(f"project: rotmats must have shape (B, 3, 3), got {tuple(rot.shape)}")
        b = rot.shape[0]
        out = self.slice_values(rot, self._kx, self._ky)
        full = torch.zeros((b, self._inside.numel()), dtype=out.dtype, device=self.device)
        full[:, self._inside] = out
        return full.reshape(b, self.d, self.d // 2 + 1)

    def project(self, rotmats) -> torch.Tensor:
        """Real projections ``(B, d, d)`` (line integrals in voxel units)."""
        return centered_irfft2(self.project_rfft(rotmats), self.d)


def project(volume, rotmats, pad: float = 2.0, chunk_size: int = 1024) -> torch.Tensor:
    """Noiseless projections of a cubic volume at the given poses.

    Parameters
    ----------
    volume : numpy.ndarray or torch.Tensor
        ``(d, d, d)`` real volume indexed ``(z, y, x)``, centre at index ``d // 2``.
    rotmats : numpy.ndarray or torch.Tensor
        ``(B, 3, 3)`` (or ``(3, 3)``) rotation matrices ``R = Aᵀ`` (the cesped pose label, equal
        to scipy ``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix()``).
    pad : float
        Zero-padding factor of the volume before its Fourier transform (>= 1).
    chunk_size : int
        Number of slices extracted at once (bounds memory).

    Returns
    -------
    torch.Tensor
        ``(B, d, d)`` (or ``(d, d)``) projections in the volume's float dtype, line integrals in
        voxel units (the sum over ``z`` for the identity).

    Notes
    -----
    Accuracy (pad 2, smooth maps): about 0.5 % relative L2 error against the analytic line
    integral at generic orientations, correlation > 0.999 with ``relion_project``. For
    orientations whose slice falls exactly on the grid (e.g. the identity) the ``sinc²``
    correction of the trilinear interpolation over-corrects by a few per cent at high
    frequency (RELION's projector does the same).
    """
    rot = torch.as_tensor(np.asarray(rotmats) if not isinstance(rotmats, torch.Tensor) else rotmats)
    single = rot.ndim == 2
    if single:
        rot = rot[None]
    projector = Projector(volume, pad=pad)
    if rot.ndim != 3 or rot.shape[-2:] != (3, 3):
        raise ValueError(f"project: rotmats must have shape (B, 3, 3), got {tuple(rot.shape)}")
    out = [projector.project(rot[i : i + chunk_size]) for i in range(0, len(rot), chunk_size)]
    images = torch.cat(out) if out else torch.zeros((0, projector.d, projector.d), dtype=projector.dtype)
    return images[0] if single else images


def apply_ctf_and_shifts(
    images: torch.Tensor,
    ctf: torch.Tensor | None = None,
    shifts_px: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multiply images by a CTF and translate them, in Fourier space.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, n, n)`` real images (centre at ``n // 2``).
    ctf : torch.Tensor, optional
        ``(B, n, n // 2 + 1)`` (or broadcastable) CTF in the :func:`torch.fft.rfft2` layout,
        e.g. from :func:`cesped.physics.ctf.compute_ctf`.
    shifts_px : torch.Tensor, optional
        ``(B, 2)`` translations ``[x, y]`` in pixels; the content moves by ``+shift``. To
        produce a particle with RELION origin ``o`` (Å) pass ``-o / pixel_size``, since RELION
        defines ``image(x) = projection(x + origin)``.

    Returns
    -------
    torch.Tensor
        ``(B, n, n)`` real images ``IFFT(CTF * shift(FFT(images)))``.
    """
    n = images.shape[-1]
    if images.shape[-2] != n:
        raise ValueError(f"apply_ctf_and_shifts: images must be square, got {tuple(images.shape)}")
    ft = centered_rfft2(images)
    if ctf is not None:
        ft = ft * ctf.to(device=ft.device, dtype=images.dtype)
    if shifts_px is not None:
        ft = shift_images(ft, shifts_px, n=n)
    return centered_irfft2(ft, n)
