"""Compiled CPU trilinear splat (numba), used by :class:`cesped.reconstruction.numba_grid.NumbaGrid`.

It does exactly what the torch path (``FourierAccumulator._splat``) does, one image point at a
time: rotate ``(kx, ky, 0)``, move points with ``x < 0`` to their Friedel mate (conjugating the
value), and add ``(re, im, weight)`` times the eight trilinear weights into the flat grid (in
float32, the grid's precision). Each thread owns a slab of z planes of the one grid, so no
atomics are needed. The per-image preparation (centring phase ramp, RELION's CTF with a
vectorisable sine, weights) is compiled here too; the finalisation (division, inverse FFT,
gridding correction, soft mask) is numpy, in :mod:`cesped.reconstruction.numba_grid`.
Nothing is compiled at import: each kernel on its first call (or loaded from numba's cache).
"""

from __future__ import annotations

import functools
import math
import os

import numba
import numpy as np

__all__ = ["splat_batch", "prepare_batch", "ctf_row", "available_threads", "set_threads"]

# Explicit signatures: exactly one specialisation of each kernel is compiled (or loaded from
# numba's on-disk cache), never another for a different array layout. The kernels are serial
# (no ``parallel=True``: its parfor passes about double the compile time and slow the cache
# load); they release the GIL (``nogil``) and run in several Python threads at once, each on its
# own z slab (splat) or range of images (preparation).
_SPLAT_SIG = (
    "void(float32[::1], int64, int64, float64[:, :, ::1], int64[::1], float64[::1], float64[::1], "
    "float32[:, ::1], float32[:, ::1], float32[:, ::1], int64, int64, int64, int64)"
)
_SHELL_SIG = "void(int64, int64, float32[:, :, :, ::1], int64, int64, float64[:, ::1], float64[:, ::1])"
_DIVIDE_SIG = "void(int64, int64, float32[:, :, :, ::1], int64, int64, float32[::1], complex64[:, :, ::1])"
_PREPARE_SIG = (
    "void(int64, int64, float32[:, :, ::1], int64[::1], float64[::1], float64[::1], float64[::1], "
    "float64[::1], float64[::1], float64[::1], float64[:, ::1], int64, "
    + ", ".join(["float64[::1]"] * 9)
    + ", boolean, float32[:, ::1], float32[:, ::1], float32[:, ::1])"
)


def available_threads() -> int:
    """Threads the kernels may use: the usable CPUs."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def set_threads(n: int) -> None:  # kept for callers of the former parallel kernels
    """No-op: the number of threads is an argument of :func:`splat_batch` / :func:`prepare_batch`."""


@functools.cache
def _pool(n_threads: int):
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="cesped-splat")


def _run_parts(fn, parts, n_threads: int) -> None:
    """Call ``fn(*part)`` for every part, on up to ``n_threads`` threads (``fn`` releases the GIL)."""
    if n_threads <= 1 or len(parts) <= 1:
        for part in parts:
            fn(*part)
        return
    for fut in [_pool(int(n_threads)).submit(fn, *part) for part in parts]:
        fut.result()


@functools.cache
def _kernel(name: str):
    """The compiled kernel ``name`` (compiled, or loaded from numba's cache, on first use)."""
    if name == "splat":
        return numba.njit(_SPLAT_SIG, cache=True, nogil=True)(_splat_slab)
    if name == "prepare":
        return numba.njit(_PREPARE_SIG, cache=True, nogil=True)(_prepare_rows)
    if name == "shell":
        return numba.njit(_SHELL_SIG, cache=True, nogil=True)(_shell_sums_rows)
    if name == "divide":
        return numba.njit(_DIVIDE_SIG, cache=True, nogil=True)(_divide_rows)
    raise KeyError(name)


def splat_batch(grid, slabs, cols, img_of, kx, ky, re, im, w, c, dy, dx, block=256):
    """Accumulate rotated central slices into ``grid``, one thread per z slab.

    grid : (L,) float32, flat (z, y, x, channel) grid
    slabs : (T + 1,) int64, z-plane bounds: thread ``t`` adds only to planes ``slabs[t] <= z <
        slabs[t+1]`` (so threads never write the same voxel: no atomics, one grid in memory); each
        thread transforms every point and skips those outside its slab
    cols : (Q, 3, 2) float64, first two columns of ``pad·S·R`` per (operator, image) pair
    img_of : (Q,) int64, the image (row of re/im/w) of each pair
    kx, ky : (P,) float64, image frequencies (unpadded pixels)
    re, im, w : (B, P) float32, ``CTF·F`` real/imaginary parts and ``CTF²`` (weighted)
    c, dy, dx : int, grid centre offset for z/y and strides
    block : int, points per block (see :func:`_splat_slab`)
    """
    kern = _kernel("splat")
    parts = [
        (grid, int(slabs[t]), int(slabs[t + 1]), cols, img_of, kx, ky, re, im, w, c, dy, dx, block)
        for t in range(len(slabs) - 1)
    ]
    _run_parts(kern, parts, len(parts))


def prepare_batch(*args, n_threads: int = 1):
    """Centre, translate and CTF-weight a batch of images (see :func:`_prepare_rows` for the
    arguments, less its first two), images split over ``n_threads`` threads."""
    kern = _kernel("prepare")
    b_count = args[0].shape[0]
    nt = max(1, min(int(n_threads), b_count))
    bounds = np.linspace(0, b_count, nt + 1).astype(np.int64)
    parts = [(int(bounds[i]), int(bounds[i + 1]), *args) for i in range(nt) if bounds[i + 1] > bounds[i]]
    _run_parts(kern, parts, nt)


def _row_parts(m: int, n_threads: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, m, max(1, int(n_threads)) + 1).astype(np.int64)
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]]


def shell_weight_sums(grid, c: int, m: int, nsh: int, n_threads: int = 1):
    """Per-shell sums of the Hermitian-completed weight over the unshifted half grid.

    grid : (dz, dy, dx, 3) float32 accumulator (centred z/y, index ``k + c``).
    Returns (nsh,) float64 sums and (nsh,) float64 voxel counts per shell ``round(|k|)``
    (padded voxels) inside ``|k| < m/2`` (Nyquist); the last bin (outside) stays empty.
    """
    parts = _row_parts(m, n_threads)
    part = np.zeros((len(parts), nsh))
    pcnt = np.zeros((len(parts), nsh))
    args = [(lo, hi, grid, c, m, part[i : i + 1], pcnt[i : i + 1]) for i, (lo, hi) in enumerate(parts)]
    _run_parts(_kernel("shell"), args, len(parts))
    return part.sum(axis=0), pcnt.sum(axis=0)


def divide_to_unshifted(grid, c: int, m: int, floor_per_shell, n_threads: int = 1) -> np.ndarray:
    """Complete the ``x = 0`` plane and divide by ``max(W, floor)``, into the unshifted half spectrum.

    grid : (dz, dy, dx, 3) float32; floor_per_shell (nsh,) float32.
    Returns (m, m, m//2+1) complex64, FFT order, zero outside Nyquist or where the denominator
    is not positive.
    """
    out = np.empty((m, m, m // 2 + 1), dtype=np.complex64)
    floor = np.ascontiguousarray(floor_per_shell, dtype=np.float32)
    parts = _row_parts(m, n_threads)
    _run_parts(_kernel("divide"), [(lo, hi, grid, c, m, floor, out) for lo, hi in parts], len(parts))
    return out


def _shell_sums_rows(uz_lo, uz_hi, grids, c, m, part, pcnt):  # pragma: no cover - compiled
    """Kernel of :func:`shell_weight_sums` for the unshifted z rows ``uz_lo <= uz < uz_hi``
    (adds into ``part[0]`` and ``pcnt[0]``)."""
    hx = m // 2 + 1
    rmax2 = (m / 2.0) ** 2
    for uz in range(uz_lo, uz_hi):
        kz = uz - m * (2 * uz >= m + 1)
        for uy in range(m):
            ky = uy - m * (2 * uy >= m + 1)
            for kx in range(hx):
                r2 = kz * kz + ky * ky + kx * kx
                if r2 >= rmax2:
                    continue
                wv = np.float64(grids[kz + c, ky + c, kx, 2])
                if kx == 0:
                    wv += grids[c - kz, c - ky, 0, 2]
                sh = int(math.floor(math.sqrt(r2) + 0.5))
                part[0, sh] += wv
                pcnt[0, sh] += 1.0


def _divide_rows(uz_lo, uz_hi, grids, c, m, floor_per_shell, out):  # pragma: no cover - compiled
    """Kernel of :func:`divide_to_unshifted` for the unshifted z rows ``uz_lo <= uz < uz_hi``."""
    hx = m // 2 + 1
    rmax2 = (m / 2.0) ** 2
    for uz in range(uz_lo, uz_hi):
        kz = uz - m * (2 * uz >= m + 1)
        for uy in range(m):
            ky = uy - m * (2 * uy >= m + 1)
            for kx in range(hx):
                r2 = kz * kz + ky * ky + kx * kx
                if r2 >= rmax2:
                    out[uz, uy, kx] = 0.0
                    continue
                vr = np.float64(grids[kz + c, ky + c, kx, 0])
                vi = np.float64(grids[kz + c, ky + c, kx, 1])
                wv = np.float64(grids[kz + c, ky + c, kx, 2])
                if kx == 0:  # Friedel mate of the x = 0 plane
                    vr += grids[c - kz, c - ky, 0, 0]
                    vi -= grids[c - kz, c - ky, 0, 1]
                    wv += grids[c - kz, c - ky, 0, 2]
                den = max(np.float32(wv), floor_per_shell[int(math.floor(math.sqrt(r2) + 0.5))])
                if den <= 0:
                    out[uz, uy, kx] = 0.0
                else:
                    out[uz, uy, kx] = complex(vr / den, vi / den)


def _splat_slab(grid, lo, hi, cols, img_of, kx, ky, re, im, w, c, dy, dx, block):  # pragma: no cover
    """Kernel of :func:`splat_batch` for the z planes ``lo <= z < hi`` (compiled by numba).

    The loop runs over blocks of ``block`` points, then over the images: with the points
    ordered by radius (``image_points`` does) and the images by slice normal (``reconstruct``
    does), one block of all images lands on a thin band of the grid that stays in cache (about
    1.5x faster than image by image: the splat is memory-bound).
    """
    q_count = cols.shape[0]
    p_count = kx.shape[0]
    sdz = dy * dx
    # float32 coordinates and weights (the grid's precision): |coordinate| <= pad·n/2, so the
    # rounding (< 1e-5 voxel) never moves a point across the grid's edge
    kxf = kx.astype(np.float32)
    kyf = ky.astype(np.float32)
    one = np.float32(1.0)
    for p0 in range(0, p_count, block):
        p1 = min(p0 + block, p_count)
        for q in range(q_count):
            j = img_of[q]
            a00 = np.float32(cols[q, 0, 0])
            a01 = np.float32(cols[q, 0, 1])
            a10 = np.float32(cols[q, 1, 0])
            a11 = np.float32(cols[q, 1, 1])
            a20 = np.float32(cols[q, 2, 0])
            a21 = np.float32(cols[q, 2, 1])
            for p in range(p0, p1):
                x = a00 * kxf[p] + a01 * kyf[p]
                y = a10 * kxf[p] + a11 * kyf[p]
                z = a20 * kxf[p] + a21 * kyf[p]
                vi = im[j, p]
                if x < 0:  # Friedel mate: (x, y, z) -> -(x, y, z), value conjugated
                    x = -x
                    y = -y
                    z = -z
                    vi = -vi
                iz0 = np.int64(np.floor(z))
                iz = iz0 + c
                if iz + 1 < lo or iz >= hi:
                    continue
                vr = re[j, p]
                vw = w[j, p]
                ix0 = np.int64(np.floor(x))
                iy0 = np.int64(np.floor(y))
                fx = x - np.float32(ix0)
                fy = y - np.float32(iy0)
                fz = z - np.float32(iz0)
                gx = one - fx
                gy = one - fy
                w00 = gy * gx
                w01 = gy * fx
                w10 = fy * gx
                w11 = fy * fx
                base = (iy0 + c) * dx + ix0
                # the two z planes of the 2x2x2 corners, each within this thread's slab
                for oz in range(2):
                    zz = iz + oz
                    if zz < lo or zz >= hi:
                        continue
                    wz = fz if oz == 1 else one - fz
                    k = 3 * (zz * sdz + base)
                    a = wz * w00
                    grid[k] += a * vr
                    grid[k + 1] += a * vi
                    grid[k + 2] += a * vw
                    a = wz * w01
                    grid[k + 3] += a * vr
                    grid[k + 4] += a * vi
                    grid[k + 5] += a * vw
                    k += 3 * dx
                    a = wz * w10
                    grid[k] += a * vr
                    grid[k + 1] += a * vi
                    grid[k + 2] += a * vw
                    a = wz * w11
                    grid[k + 3] += a * vr
                    grid[k + 4] += a * vi
                    grid[k + 5] += a * vw


def _prepare_rows(
    b_lo,
    b_hi,
    ft_ri,
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
    """Centre, translate, CTF-weight the selected rfft2 points of images ``b_lo <= b < b_hi``.

    ft_ri : (B, L, 2) float32, flat ``rfft2`` of the raw images (no ``ifftshift``), real and
        imaginary parts interleaved (a complex64 array viewed as float32)
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
    p_count = flat.shape[0]
    two_pi_n = 2.0 * math.pi / n
    nx = n // 2 + 1
    for b in range(b_lo, b_hi):
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
        ctf = np.empty(p_count)
        if do_ctf:
            ctf_row(
                ctf,
                cos2az,
                sin2az,
                k2,
                dfavg[b],
                dfdev[b],
                cos2ang[b],
                sin2ang[b],
                k1[b],
                k2c[b],
                kconst[b],
                bfac[b],
            )
        else:
            ctf[:] = 1.0
        for p in range(p_count):
            j = flat[p]
            iy = j // nx
            ix = j - iy * nx
            c = ex_c[ix] * ey_c[iy] - ex_s[ix] * ey_s[iy]
            s = ex_s[ix] * ey_c[iy] + ex_c[ix] * ey_s[iy]
            fr = ft_ri[b, j, 0]
            fi = ft_ri[b, j, 1]
            cm = ctf[p] * wb * mult[p]
            out_re[b, p] = (fr * c - fi * s) * cm
            out_im[b, p] = (fr * s + fi * c) * cm
            out_w[b, p] = ctf[p] * cm


@numba.njit(cache=True, nogil=True, fastmath=True)
def ctf_row(
    out, cos2az, sin2az, k2, dfavg, dfdev, cos2ang, sin2ang, k1, k2c, kconst, bfac
):  # pragma: no cover
    """RELION's CTF of one image at the selected points, into ``out`` (P,) float64.

    ``CTF = -sin(chi)·exp(-B k²/4)``, ``chi = πλ Δf k² + π/2 Cs λ³ k⁴ − kconst`` (arguments as in
    :func:`prepare_batch`, scalars for this image). The sine is computed by reduction to
    ``[-π/2, π/2]`` and its odd Taylor polynomial to degree 15 (|error| < 1e-11), which
    vectorises (numba's ``math.sin`` does not without SVML): about 3x faster than ``math.sin``.
    """
    p_count = out.shape[0]
    for p in range(p_count):
        deltaf = dfavg + dfdev * (cos2az[p] * cos2ang + sin2az[p] * sin2ang)
        kk = k2[p]
        x = k1 * deltaf * kk + k2c * kk * kk - kconst
        r = x - np.floor(x * 0.15915494309189535 + 0.5) * 6.283185307179586  # in [-π, π]
        if r > 1.5707963267948966:  # sin(r) = sin(π − r)
            r = 3.141592653589793 - r
        elif r < -1.5707963267948966:
            r = -3.141592653589793 - r
        r2 = r * r
        poly = -7.647163731819816e-13
        poly = 1.6059043836821613e-10 + r2 * poly
        poly = -2.505210838544172e-08 + r2 * poly
        poly = 2.7557319223985893e-06 + r2 * poly
        poly = -1.984126984126984e-04 + r2 * poly
        poly = 8.333333333333333e-03 + r2 * poly
        poly = -1.6666666666666666e-01 + r2 * poly
        out[p] = -r * (1.0 + r2 * poly)
    if bfac != 0.0:
        for p in range(p_count):
            out[p] *= math.exp(-bfac * k2[p] / 4.0)
