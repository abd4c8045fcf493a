"""Rotation formulas written once for numpy arrays and torch tensors alike (plain arithmetic
and indexing only), shared by :mod:`cesped.geometry.rotations` / :mod:`cesped.geometry.errors`
(torch) and :mod:`cesped.geometry.numpy_ops` (numpy, no torch import)."""

from __future__ import annotations


def relion_matrix_rows(ca, cb, cg, sa, sb, sg):
    """Elements of RELION's ``Euler_angles2matrix(rot, tilt, psi)`` (``src/euler.cpp``).

    Parameters
    ----------
    ca, cb, cg, sa, sb, sg : arrays (...)
        Cosines and sines of rot (alpha), tilt (beta) and psi (gamma).

    Returns
    -------
    tuple of 3 tuples of 3 arrays (...)
        Rows of ``A`` (volume -> image coordinates).
    """
    cc = cb * ca
    cs = cb * sa
    sc = sb * ca
    ss = sb * sa
    return (
        (cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb),
        (-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb),
        (sc, ss, cb),
    )


def rotation_angle_parts(M):
    """``2 sin θ · axis`` (three components) and ``2 cos θ`` of rotation matrices ``M (..., 3, 3)``.

    The angle is ``atan2(|(sx, sy, sz)|, two_cos)``: accurate near 0 and 180 degrees, exactly 0
    for symmetric ``M``, unlike ``arccos((tr - 1) / 2)``.
    """
    sx = M[..., 2, 1] - M[..., 1, 2]
    sy = M[..., 0, 2] - M[..., 2, 0]
    sz = M[..., 1, 0] - M[..., 0, 1]
    two_cos = M[..., 0, 0] + M[..., 1, 1] + M[..., 2, 2] - 1.0
    return sx, sy, sz, two_cos
