"""Compiled CPU trilinear splat (numba), used by :class:`FourierAccumulator` when numba is installed.

It does exactly what the torch path (``FourierAccumulator._splat``) does, one image point at a
time: rotate ``(kx, ky, 0)``, move points with ``x < 0`` to their Friedel mate (conjugating the
value), and add ``(re, im, weight)`` times the eight trilinear weights into the flat grid. Each
thread owns one grid (``grids[t]``), so no atomics are needed; the grids are summed at the end.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["splat_batch", "available_threads", "set_threads"]


def available_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)


def set_threads(n: int) -> None:
    numba.set_num_threads(max(1, min(int(n), available_threads())))


@numba.njit(parallel=True, cache=True, nogil=True)
def splat_batch(grids, cols, img_of, kx, ky, re, im, w, c, dy, dx):  # pragma: no cover - compiled
    """Accumulate rotated central slices.

    grids : (T, L) float32, flat (z, y, x, channel) grids, one per thread
    cols : (Q, 3, 2) float64, first two columns of ``pad·S·R`` per (operator, image) pair
    img_of : (Q,) int64, the image (row of re/im/w) of each pair
    kx, ky : (P,) float64, image frequencies (unpadded pixels)
    re, im, w : (B, P) float32, ``CTF·F`` real/imaginary parts and ``CTF²`` (weighted)
    c, dy, dx : int, grid centre offset for z/y and strides
    """
    t_count = grids.shape[0]
    q_count = cols.shape[0]
    p_count = kx.shape[0]
    sdz = dy * dx
    for t in numba.prange(t_count):
        g = grids[t]
        for q in range(t, q_count, t_count):
            j = img_of[q]
            a00 = cols[q, 0, 0]
            a01 = cols[q, 0, 1]
            a10 = cols[q, 1, 0]
            a11 = cols[q, 1, 1]
            a20 = cols[q, 2, 0]
            a21 = cols[q, 2, 1]
            for p in range(p_count):
                x = a00 * kx[p] + a01 * ky[p]
                y = a10 * kx[p] + a11 * ky[p]
                z = a20 * kx[p] + a21 * ky[p]
                vi = im[j, p]
                if x < 0:
                    x = -x
                    y = -y
                    z = -z
                    vi = -vi
                vr = re[j, p]
                vw = w[j, p]
                fx0 = math.floor(x)
                fy0 = math.floor(y)
                fz0 = math.floor(z)
                fx = x - fx0
                fy = y - fy0
                fz = z - fz0
                base = (int(fz0) + c) * sdz + (int(fy0) + c) * dx + int(fx0)
                for oz in range(2):
                    wz = fz if oz == 1 else 1.0 - fz
                    for oy in range(2):
                        wzy = wz * (fy if oy == 1 else 1.0 - fy)
                        for ox in range(2):
                            wt = wzy * (fx if ox == 1 else 1.0 - fx)
                            k = 3 * (base + oz * sdz + oy * dx + ox)
                            g[k] += wt * vr
                            g[k + 1] += wt * vi
                            g[k + 2] += wt * vw


def as_numpy_inputs(cols, img_of, kx, ky, re, im, w):
    """Convert torch CPU tensors to the contiguous numpy arrays the kernel expects."""
    return (
        np.ascontiguousarray(cols.numpy(), dtype=np.float64),
        np.ascontiguousarray(img_of.numpy(), dtype=np.int64),
        np.ascontiguousarray(kx.numpy(), dtype=np.float64),
        np.ascontiguousarray(ky.numpy(), dtype=np.float64),
        np.ascontiguousarray(re.numpy(), dtype=np.float32),
        np.ascontiguousarray(im.numpy(), dtype=np.float32),
        np.ascontiguousarray(w.numpy(), dtype=np.float32),
    )


@numba.njit(parallel=True, cache=True, nogil=True)
def prepare_batch(
    ft_re,
    ft_im,
    flat,
    kx,
    ky,
    cos2az,
    sin2az,
    k2,
    mult,
    shifts,
    n,
    dfavg,
    dfdev,
    cos2ang,
    sin2ang,
    k1,
    k2c,
    kconst,
    bfac,
    weight,
    do_ctf,
    out_re,
    out_im,
    out_w,
):  # pragma: no cover - compiled
    """Centre, translate, CTF-weight the selected rfft2 points of a batch of images.

    ft_re, ft_im : (B, L) float32, flat ``rfft2`` of the raw images (no ``ifftshift``)
    flat : (P,) int64, selected points; kx, ky (P,) float64 integer frequencies (cycles/box)
    cos2az, sin2az : (P,) float64, ``cos/sin(2·atan2(ky, kx))``; k2 (P,) float64 ``|k|²`` in Å⁻²
    mult : (P,) float64, Friedel multiplicity weight of each point
    shifts : (B, 2) float64, total translation ``[x, y]`` in px (origin/px − n//2: the centring
        of ``ifftshift`` folded in); content moves by +shift
    dfavg, dfdev : (B,) float64, ``−(U+V)/2`` and ``−(U−V)/2`` (Å); cos2ang, sin2ang (B,) of
        ``2·rlnDefocusAngle``; k1 = πλ, k2c = π/2·Cs·λ³ (Å), kconst = phase shift + atan(Q0/√(1−Q0²));
        bfac (B,) Å²; weight (B,) per-particle weights
    out_re, out_im, out_w : (B, P) float32, ``CTF·F`` and ``CTF²`` times weight·mult
    """
    b_count = ft_re.shape[0]
    p_count = flat.shape[0]
    two_pi_n = 2.0 * math.pi / n
    nx = n // 2 + 1
    for b in numba.prange(b_count):
        sx = shifts[b, 0]
        sy = shifts[b, 1]
        wb = weight[b]
        # separable phase ramp exp(-2πi (kx sx + ky sy) / n): one table per axis and image
        ex_c = np.empty(nx)
        ex_s = np.empty(nx)
        for i in range(nx):
            ex_c[i] = math.cos(-two_pi_n * i * sx)
            ex_s[i] = math.sin(-two_pi_n * i * sx)
        ey_c = np.empty(n)
        ey_s = np.empty(n)
        for i in range(n):
            fy = i if i < (n + 1) // 2 else i - n
            ey_c[i] = math.cos(-two_pi_n * fy * sy)
            ey_s[i] = math.sin(-two_pi_n * fy * sy)
        for p in range(p_count):
            j = flat[p]
            iy = j // nx
            ix = j - iy * nx
            c = ex_c[ix] * ey_c[iy] - ex_s[ix] * ey_s[iy]
            s = ex_s[ix] * ey_c[iy] + ex_c[ix] * ey_s[iy]
            fr = ft_re[b, j]
            fi = ft_im[b, j]
            vr = fr * c - fi * s
            vi = fr * s + fi * c
            if do_ctf:
                deltaf = dfavg[b] + dfdev[b] * (cos2az[p] * cos2ang[b] + sin2az[p] * sin2ang[b])
                kk = k2[p]
                ctf = -math.sin(k1[b] * deltaf * kk + k2c[b] * kk * kk - kconst[b])
                if bfac[b] != 0.0:
                    ctf *= math.exp(-bfac[b] * kk / 4.0)
            else:
                ctf = 1.0
            sc = ctf * wb * mult[p]
            out_re[b, p] = vr * sc
            out_im[b, p] = vi * sc
            out_w[b, p] = ctf * ctf * wb * mult[p]
