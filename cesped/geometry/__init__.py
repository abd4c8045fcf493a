"""cesped.geometry: RELION-convention rotations, point-symmetry groups and angular errors.

Modules: ``rotations`` (Euler angles, matrices, quaternions), ``symmetry`` (C_n, D_n, T, O, I),
``errors`` (geodesic and symmetry-aware errors, MAnE, wMAnE), ``so3_grid`` (HEALPix SO(3) grids).
Import the submodules directly; this package does no work at import time.
"""
