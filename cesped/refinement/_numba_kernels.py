"""Compiled CPU kernels of the projection matching (numba): central slices and fused scores.

Both read the padded, centred transform of :class:`cesped.physics.projection.Projector`
(``Projector.padded_transform()``: ``(s, s, s // 2 + 1)`` complex, ``(z, y, x)``, ``z`` and ``y``
centred at ``s // 2``) by trilinear interpolation at ``pad · R @ [kx, ky, 0]`` with Friedel
symmetry for ``x < 0``, exactly as ``Projector.slice_values`` does with ``grid_sample`` (zeros
outside the padded box). The torch path is the reference; these kernels only make the CPU fast.
Compiled on first call and cached on disk by numba; the module is imported only by the CPU
path of :class:`cesped.refinement.score.Reference`.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", fastmath=True)
def _sample(ft, pad, half, r00, r10, r20, r01, r11, r21, kx, ky):
    # ft: the transform with a zero margin of one voxel (see bordered()); no bounds checks
    x = pad * (r00 * kx + r01 * ky)
    y = pad * (r10 * kx + r11 * ky)
    z = pad * (r20 * kx + r21 * ky)
    sgn = 1.0
    if x < 0.0:
        x, y, z = -x, -y, -z
        sgn = -1.0
    y += half + 1.0
    z += half + 1.0
    x0 = min(max(int(x), 0), ft.shape[2] - 2)
    y0 = min(max(int(np.floor(y)), 0), ft.shape[1] - 2)
    z0 = min(max(int(np.floor(z)), 0), ft.shape[0] - 2)
    fx, fy, fz = x - x0, y - y0, z - z0
    gx, gy, gz = 1.0 - fx, 1.0 - fy, 1.0 - fz
    v000 = ft[z0, y0, x0]
    v001 = ft[z0, y0, x0 + 1]
    v010 = ft[z0, y0 + 1, x0]
    v011 = ft[z0, y0 + 1, x0 + 1]
    v100 = ft[z0 + 1, y0, x0]
    v101 = ft[z0 + 1, y0, x0 + 1]
    v110 = ft[z0 + 1, y0 + 1, x0]
    v111 = ft[z0 + 1, y0 + 1, x0 + 1]
    v = gz * (gy * (gx * v000 + fx * v001) + fy * (gx * v010 + fx * v011)) + fz * (
        gy * (gx * v100 + fx * v101) + fy * (gx * v110 + fx * v111)
    )
    return v.real, sgn * v.imag


@numba.njit(parallel=True, fastmath=True, cache=True)
def slices(ft, pad, rot, kx, ky, out):
    half = float((ft.shape[0] - 3) // 2)
    for b in numba.prange(rot.shape[0]):
        r = rot[b]
        for p in range(kx.shape[0]):
            re, im = _sample(
                ft, pad, half, r[0, 0], r[1, 0], r[2, 0], r[0, 1], r[1, 1], r[2, 1], kx[p], ky[p]
            )
            out[b, p] = complex(re, im)


@numba.njit(parallel=True, fastmath=True, cache=True)
def scores(ft, pad, rot, a, bw, kx, ky, cross, norm):
    # rot (R, J, 3, 3); a (R, P) complex; bw (R, P) real -> cross, norm (R, J)
    half = float((ft.shape[0] - 3) // 2)
    nr, nj = rot.shape[0], rot.shape[1]
    for t in numba.prange(nr * nj):
        i = t // nj
        j = t - i * nj
        r = rot[i, j]
        c = 0.0
        q = 0.0
        for p in range(kx.shape[0]):
            re, im = _sample(
                ft, pad, half, r[0, 0], r[1, 0], r[2, 0], r[0, 1], r[1, 1], r[2, 1], kx[p], ky[p]
            )
            av = a[i, p]
            c += av.real * re + av.imag * im
            q += bw[i, p] * (re * re + im * im)
        cross[i, j] = c
        norm[i, j] = q


def bordered(ft: np.ndarray) -> np.ndarray:
    """The padded transform ``(s, s, s // 2 + 1)`` inside a zero margin: ``(s + 3, s + 3, s // 2 + 3)``
    complex64, the value of voxel ``(z, y, x)`` at ``[z + 1, y + 1, x]`` (reads outside are zeros)."""
    s0, s1, s2 = ft.shape
    out = np.zeros((s0 + 3, s1 + 3, s2 + 2), dtype=np.complex64)
    out[1 : s0 + 1, 1 : s1 + 1, :s2] = ft
    return out


def kernels() -> dict:
    """The compiled kernels ``slices`` and ``scores``."""
    return {"slices": slices, "scores": scores}
