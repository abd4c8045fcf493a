"""The torch Fourier accumulator: :class:`FourierAccumulator` (any torch device) and the torch
loop of :func:`cesped.reconstruction.fourier.reconstruct_many` (CUDA, or CPU without numba).

The algorithm is described in :mod:`cesped.reconstruction.fourier`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from cesped.reconstruction._inputs import image_points, read_chunk

__all__ = ["FourierAccumulator", "soft_mask_outside_map", "insert_star_chunks_torch", "torch_threads"]


class FourierAccumulator:
    """Running sums ``Σ CTF·F`` and ``Σ CTF²`` on a padded half Fourier grid.

    Parameters
    ----------
    box : int
        Image side ``n`` (pixels); the output map is ``(n, n, n)``.
    pad : int
        Padding factor of the Fourier grid (RELION's ``--pad``), >= 1.
    symmetry_matrices : torch.Tensor (G, 3, 3), optional
        Point-group operators ``S``; each image is inserted at ``S·R`` for every ``S``.
        Default: the identity only.
    device : str or torch.device
    dtype : torch.dtype
        Accumulator precision (float32 default, float64 for references).
    kernel : {"auto", "torch", "numba"}
        Splat implementation. "torch": eight ``scatter_add_`` calls per batch (any device).
        "numba": a compiled loop with one grid per thread (CPU, float32, needs numba; about
        10x faster than "torch" on CPU). "auto": numba on CPU when it is installed, else torch.
    n_threads : int, optional
        Threads of the numba kernel (each owns a slab of z planes); default ``torch.get_num_threads()``.

    Notes
    -----
    The grid is stored centred along ``z`` and ``y`` (index ``k + c``, ``c = n·pad/2 + 1``) and
    from ``0`` along ``x``, as one flat tensor of ``(re, im, weight)`` triplets, so one
    ``scatter_add_`` per corner accumulates everything. With ``kernel="numba"`` the grid is the
    numpy array of a :class:`cesped.reconstruction.numba_grid.NumbaGrid` (shared memory).
    """

    def __init__(
        self,
        box: int,
        pad: int = 2,
        symmetry_matrices=None,
        device="cpu",
        dtype=torch.float32,
        kernel: str = "auto",
        n_threads: int | None = None,
    ):
        if int(box) != box or box < 4:
            raise ValueError(f"box must be an integer >= 4, got {box}")
        if int(pad) != pad or pad < 1:
            raise ValueError(f"pad must be a positive integer, got {pad}")
        self.box = int(box)
        self.pad = int(pad)
        self.device = torch.device(device)
        self.dtype = dtype
        m = self.box * self.pad
        self.m = m
        self.c = m // 2 + 1
        self.dz = self.dy = 2 * self.c + 1
        self.dx = self.c + 1
        if symmetry_matrices is None:
            symmetry_matrices = torch.eye(3, dtype=torch.float64)[None]
        sym = torch.as_tensor(symmetry_matrices, dtype=torch.float64)
        if sym.ndim != 3 or sym.shape[-2:] != (3, 3):
            raise ValueError(f"symmetry_matrices must be (G, 3, 3), got {tuple(sym.shape)}")
        self.sym = sym.to(self.device)
        self.n_inserted = 0
        self.kernel = _choose_kernel(kernel, self.device, dtype)
        n = self.box
        if self.kernel != "numba":
            self.grid = torch.zeros(self.dz * self.dy * self.dx * 3, dtype=dtype, device=self.device)
            flat, kx, ky, mult = image_points(n)
        else:
            from cesped.reconstruction.numba_grid import NumbaGrid

            nt = torch.get_num_threads() if n_threads is None else int(n_threads)
            self._numba = NumbaGrid(n, self.pad, sym.cpu().numpy(), nt)
            self._n_threads = self._numba.n_threads
            self.grid = torch.from_numpy(self._numba.grids[0])  # shares memory with the grid
            flat, kx, ky, mult = self._numba.flat, self._numba.kx, self._numba.ky, self._numba.mult
        # the inserted image points (see cesped.reconstruction._inputs.image_points)
        self._flat = torch.from_numpy(flat).to(self.device)
        self._kxy = torch.from_numpy(np.stack([kx, ky], 1)).to(self.device)
        self._mult = torch.from_numpy(mult).to(device=self.device, dtype=dtype)

    @property
    def n_points(self) -> int:
        """Number of Fourier points inserted per image and symmetry operator."""
        return int(self._flat.numel())

    def insert(
        self,
        images_ft: torch.Tensor,
        ctf: torch.Tensor | None,
        rotmats: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Insert a batch of centred image transforms.

        Parameters
        ----------
        images_ft : torch.Tensor (B, n, n//2+1) complex
            ``rfft2`` of the images with the particle centred at pixel ``n // 2`` (see
            :func:`cesped.physics.fourier.centered_rfft2`), already translated by the origin.
        ctf : torch.Tensor (B, n, n//2+1) real, optional
            CTF per image, same layout (None: no CTF, i.e. CTF = 1).
        rotmats : torch.Tensor (B, 3, 3)
            Pose labels ``R = Aᵀ``.
        weights : torch.Tensor (B,), optional
            Per-particle weights multiplying both ``CTF·F`` and ``CTF²``.
        """
        b = images_ft.shape[0]
        if b == 0:
            return
        n = self.box
        if images_ft.shape[-2:] != (n, n // 2 + 1):
            raise ValueError(f"images_ft must be (B, {n}, {n // 2 + 1}), got {tuple(images_ft.shape)}")
        rdt = self.dtype
        ft = images_ft.to(self.device).reshape(b, -1)[:, self._flat]
        ft[:, self._flat == 0] = 0.0  # RELION zeroes each image's DC term (its weight stays)
        re = ft.real.to(rdt)
        im = ft.imag.to(rdt)
        if ctf is not None:
            c = ctf.to(device=self.device, dtype=rdt).reshape(b, -1)[:, self._flat]
            re = re * c
            im = im * c
            w = c * c
        else:
            w = torch.ones_like(re)
        scale = self._mult[None, :]
        if weights is not None:
            scale = scale * torch.as_tensor(weights, device=self.device, dtype=rdt).reshape(b, 1)
        re, im, w = re * scale, im * scale, w * scale
        self.insert_values(re, im, w, rotmats)

    def insert_values(self, re, im, w, rotmats) -> None:
        """Insert prepared values at the selected points (``self.n_points`` per image).

        Parameters
        ----------
        re, im, w : torch.Tensor (B, n_points)
            ``CTF·F`` (real, imaginary) and ``CTF²``, already weighted (and multiplied by the
            Friedel multiplicity ``self._mult``).
        rotmats : torch.Tensor (B, 3, 3)
            Pose labels ``R = Aᵀ``.
        """
        b = re.shape[0]
        rdt = self.dtype
        rot = torch.as_tensor(rotmats).to(device=self.device, dtype=torch.float64)
        if rot.shape != (b, 3, 3):
            raise ValueError(f"rotmats must be ({b}, 3, 3), got {tuple(rot.shape)}")
        if self.kernel == "numba":
            self._insert_numba(rot, re, im, w)
            self.n_inserted += b
            return
        # (G, B, 3, 3): S·R; only the first two columns act on (kx, ky, 0)
        full = torch.matmul(self.sym[:, None], rot[None]) * self.pad
        full = full.to(rdt)
        kx = self._kxy[:, 0].to(rdt)
        ky = self._kxy[:, 1].to(rdt)
        for g in range(full.shape[0]):
            cols = full[g]  # (B, 3, 3)
            coords = cols[:, None, :, 0] * kx[None, :, None] + cols[:, None, :, 1] * ky[None, :, None]
            self._splat(coords.reshape(-1, 3), re.reshape(-1), im.reshape(-1), w.reshape(-1))
        self.n_inserted += b

    def _splat(self, xyz: torch.Tensor, re: torch.Tensor, im: torch.Tensor, w: torch.Tensor) -> None:
        """Trilinear scatter of K points ``xyz (K, 3)`` (padded-grid units) with values re/im/w (K,)."""
        neg = xyz[:, 0] < 0
        sign = 1.0 - 2.0 * neg.to(xyz.dtype)
        xyz = xyz * sign[:, None]
        vals = torch.stack([re, im * sign, w], 1)  # (K, 3)
        i0f = torch.floor(xyz)
        frac = xyz - i0f
        i0 = i0f.to(torch.int64)
        sdy = self.dx
        sdz = self.dy * self.dx
        base = (i0[:, 2] + self.c) * sdz + (i0[:, 1] + self.c) * sdy + i0[:, 0]
        base3 = (base[:, None] * 3 + torch.arange(3, device=self.device)).reshape(-1)
        fx, fy, fz = frac[:, 0], frac[:, 1], frac[:, 2]
        gx, gy, gz = 1 - fx, 1 - fy, 1 - fz
        for oz, wz in ((0, gz), (1, fz)):
            for oy, wy in ((0, gy), (1, fy)):
                wzy = wz * wy
                for ox, wx in ((0, gx), (1, fx)):
                    off = 3 * (oz * sdz + oy * sdy + ox)
                    src = (vals * (wzy * wx)[:, None]).reshape(-1)
                    self.grid[off:].scatter_add_(0, base3, src)

    def _insert_numba(self, rot, re, im, w) -> None:
        self._numba.insert_values(re.numpy(), im.numpy(), w.numpy(), rot.numpy())

    def merge_(self, other: FourierAccumulator) -> FourierAccumulator:
        """Add another accumulator of the same geometry (e.g. from another process)."""
        if (other.box, other.pad) != (self.box, self.pad):
            raise ValueError("merge_: accumulators have different box or pad")
        self.grid += other.grid.to(self.grid)
        self.n_inserted += other.n_inserted
        if self.kernel == "numba":
            self._numba.n_inserted = self.n_inserted
        return self

    def finalize(
        self, mask_edge: bool = True, floor_fraction: float = 1e-3, gridding: str = "iterative"
    ) -> torch.Tensor:
        """Divide, invert and correct; returns the ``(n, n, n)`` map (float32, on ``device``).

        Parameters
        ----------
        mask_edge : bool
            Apply RELION's soft spherical mask (radius n/2, 3-voxel cosine edge).
        floor_fraction : float
            ``gridding="skip"`` only: weights below ``floor_fraction × (radial mean of the
            weight)`` are raised to it.
        gridding : {"iterative", "skip"}
            As in :meth:`cesped.reconstruction.numba_grid.NumbaGrid.finalize`: RELION's default
            iterative gridding weights (computed on CPU with numpy), or ``--skip_gridding``.
        """
        if self.n_inserted == 0:
            raise ValueError("finalize: no image was inserted")
        if gridding not in ("iterative", "skip"):
            raise ValueError(f"gridding must be 'iterative' or 'skip', got {gridding!r}")
        if self.kernel == "numba":
            return self._finalize_numba(mask_edge, floor_fraction, gridding)
        acc = self.grid.reshape(self.dz, self.dy, self.dx, 3)
        c, m = self.c, self.m
        # x = 0 plane: add the Friedel mates of the contributions that fell on it (centred layout)
        plane = acc[:, :, 0, :].to(torch.float64)
        mate = torch.flip(plane, dims=(0, 1))
        plane = plane + mate * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64, device=plane.device)
        # crop to the m-periodic DFT grid and reorder to the unshifted layout in one gather
        grid = _centred_to_unshifted(_centred_to_unshifted(acc[:, :, : m // 2 + 1, :], 0, c, m), 1, c, m)
        grid[:, :, 0, :] = _centred_to_unshifted(_centred_to_unshifted(plane, 0, c, m), 1, c, m).to(
            grid.dtype
        )
        data = torch.complex(grid[..., 0], grid[..., 1])
        weight = grid[..., 2]
        del grid
        if gridding == "iterative":
            vol_ft = data * self._iterative_inverse_weights(acc)
            del weight
        else:
            vol_ft = self._divide_skip_gridding(data, weight, floor_fraction)
        vol = torch.fft.irfftn(vol_ft, s=(m, m, m))
        n = self.box
        for dim in range(3):  # centred window, origin at n//2: unshifted indices -n//2 .. n - n//2 - 1
            vol = torch.cat([vol.narrow(dim, m - n // 2, n // 2), vol.narrow(dim, 0, n - n // 2)], dim=dim)
        vol = vol.to(torch.float64)
        # gridding correction of trilinear interpolation
        x = torch.arange(n, device=self.device, dtype=torch.float64) - n // 2
        rr = torch.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
        vol = vol / torch.special.sinc(rr / m) ** 2
        if mask_edge:
            vol = soft_mask_outside_map(vol)
        return vol.to(torch.float32)

    def _iterative_inverse_weights(self, acc: torch.Tensor) -> torch.Tensor:
        """RELION's iterative inverse weights (:func:`cesped.reconstruction.gridding.pipe_menon_weights`)
        of a centred accumulator view ``(dz, dy, dx, 3)``, as an unshifted (m, m, m//2+1) tensor."""
        from cesped.reconstruction.gridding import pipe_menon_weights
        from cesped.reconstruction.numba_grid import complete_x0_plane

        c, m = self.c, self.m
        _, weight = complete_x0_plane(acc.detach().to("cpu", torch.float32).numpy())
        inv = torch.from_numpy(pipe_menon_weights(weight, self.box, self.pad)).to(self.device)
        return _centred_to_unshifted(_centred_to_unshifted(inv[:, :, : m // 2 + 1], 0, c, m), 1, c, m)

    def _divide_skip_gridding(self, data: torch.Tensor, weight: torch.Tensor, floor_fraction: float):
        """``data / max(weight, floor)`` inside the Nyquist sphere (unshifted layout), 0 outside."""
        m = self.m
        # radius (padded-grid voxels) of every unshifted voxel
        kz = torch.fft.fftfreq(m, d=1.0 / m, device=self.device)
        kx = torch.arange(m // 2 + 1, device=self.device, dtype=torch.float32)
        r2 = kz[:, None, None] ** 2 + kz[None, :, None] ** 2 + kx[None, None, :] ** 2
        rmax2 = (m / 2.0) ** 2  # Nyquist of the unpadded box, in padded units
        shell = torch.sqrt(r2).round_().to(torch.int64)
        outside = r2 >= rmax2
        nsh = m // 2 + 2
        shell[outside] = nsh - 1  # a dump bin
        flat_shell = shell.reshape(-1)
        wsum = torch.bincount(flat_shell, weights=weight.reshape(-1), minlength=nsh).to(torch.float64)
        cnt = torch.bincount(flat_shell, minlength=nsh).clamp(min=1)
        den = (floor_fraction * wsum / cnt).to(weight.dtype)[shell]  # the floor
        del shell, r2
        torch.maximum(weight, den, out=den)
        bad = outside | (den <= 0)
        den.masked_fill_(bad, 1.0)
        vol_ft = data.div_(den).masked_fill_(bad, 0.0)
        del weight, den, bad, outside
        return vol_ft

    def _finalize_numba(self, mask_edge: bool, floor_fraction: float, gridding: str) -> torch.Tensor:
        """:meth:`finalize` in compiled passes (:meth:`NumbaGrid.finalize`)."""
        return torch.from_numpy(self._numba.finalize(mask_edge, floor_fraction, gridding))


def _centred_to_unshifted(t: torch.Tensor, dim: int, c: int, m: int) -> torch.Tensor:
    """Frequencies ``k + c`` (centred storage) -> ``k mod m`` (FFT order) along ``dim``, by two slices."""
    pos = t.narrow(dim, c, (m + 1) // 2)  # k = 0 .. (m+1)//2 - 1
    neg = t.narrow(dim, c - m // 2, m // 2)  # k = -m//2 .. -1
    return torch.cat([pos, neg], dim=dim)


def _choose_kernel(kernel: str, device: torch.device, dtype: torch.dtype) -> str:
    if kernel not in ("auto", "torch", "numba"):
        raise ValueError(f"kernel must be 'auto', 'torch' or 'numba', got {kernel!r}")
    if kernel == "torch":
        return "torch"
    from cesped.reconstruction.numba_grid import numba_available

    ok = device.type == "cpu" and dtype == torch.float32 and numba_available()
    if kernel == "numba" and not ok:
        raise ValueError("kernel='numba' needs numba installed, device='cpu' and dtype float32")
    return "numba" if ok else "torch"


def soft_mask_outside_map(vol: torch.Tensor, radius: float | None = None, width: float = 3.0) -> torch.Tensor:
    """RELION's ``softMaskOutsideMap``: keep ``r < radius``, blend to the background over ``width``.

    Parameters
    ----------
    vol : torch.Tensor (n, n, n)
    radius : float, optional
        Voxels; default ``n / 2``.
    width : float
        Cosine edge width (voxels).

    Returns
    -------
    torch.Tensor (n, n, n)
        Outside ``radius + width`` the value is the background: the mean of the voxels beyond
        ``radius`` weighted by the raised cosine.
    """
    n = vol.shape[0]
    radius = n / 2 if radius is None else float(radius)
    x = torch.arange(n, device=vol.device, dtype=vol.dtype) - n // 2
    r = torch.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    rc = torch.where(
        r < radius,
        torch.zeros_like(r),
        torch.where(
            r > radius + width, torch.ones_like(r), 0.5 - 0.5 * torch.cos(math.pi * (r - radius) / width)
        ),
    )
    tot = rc.sum()
    bg = (vol * rc).sum() / tot if tot > 0 else vol.new_zeros(())
    return vol * (1 - rc) + bg * rc


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (``None``: unchanged)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def insert_star_chunks_torch(accs, src, parts, order, variants, batch_size, do_ctf) -> None:
    """Stream the images into the torch accumulators ``accs`` (one per pose set of ``variants``).

    Each chunk is read, moved to the accumulators' device and transformed once; the CTF is
    computed once per chunk; each variant shifts the transform by its origins and inserts it.
    """
    from cesped.physics.ctf import ctf_from_particles
    from cesped.physics.fourier import centered_rfft2, shift_images

    dev = accs[0].device
    box = accs[0].box
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            imgs = torch.as_tensor(read_chunk(src, rows)).to(dev)
            ft0 = centered_rfft2(imgs)
            c = ctf_from_particles(parts.iloc[rows], device=dev) if do_ctf else None
            for a, v in zip(accs, variants, strict=True):
                sh = torch.as_tensor(v.shifts_px[rows], device=dev, dtype=torch.float32)
                ft = shift_images(ft0, sh, n=box)
                ww = None if v.weights is None else torch.as_tensor(v.weights[rows], device=dev)
                a.insert(ft, c, torch.as_tensor(v.rotmats[rows]), ww)
