"""Orientation recovery from pairwise angular distances (Banjac, Donati & Defferrard 2021).

A baseline without pose labels on the particles it predicts: a Siamese network estimates the
angular distance ``d(R_i, R_j) = angle(R_iᵀ R_j)`` between two projections (trained, with labels,
on the OTHER half-set of the entry, as every supervised baseline is), and the orientations are
recovered by matching those distances with unit quaternions.

Modules (this layer sits beside :mod:`cesped.models` and :mod:`cesped.training`; nothing below
imports it):

- :mod:`cesped.recovery.quaternions`: quaternion products, distances, quarter turns, O(4) alignment.
- :mod:`cesped.recovery.solve`: gradient descent on unit quaternions over mini-batches of pairs,
  with in-plane (quarter-turn) copies tied to their originals.
- :mod:`cesped.recovery.inplane`: the remaining global in-plane angle found by a cross-validated
  reprojection score (physics, no labels).
- :mod:`cesped.recovery.siamese`: the distance network and its training.

What distances alone determine
------------------------------
``d`` depends only on ``|q_i·q_j|``, so any orthogonal map of R⁴ keeps it: poses recovered from
distances are ``G·R·H`` or ``G·Rᵀ·H`` for unknown ``G, H``. Only ``G`` (the map's frame) is a
legitimate ambiguity. The package's convention makes a quarter turn of an image a KNOWN change
of pose on the right, ``R -> R·Rz(90°·k)`` (:func:`cesped.physics.image_ops.rot90_images`, exact on
the pixel grid): adding each image's three quarter turns, with poses tied to the original, pins
``H`` down to a rotation about z, ``Rz(φ)``, and excludes the transpose branch. ``φ`` is found by
:mod:`cesped.recovery.inplane`; ``φ`` and ``φ + 180°`` are the two hands (``R·Rz(180°)`` is the
pose in the inverted map, see :mod:`cesped.evaluation.frames`), which projections cannot tell:
evaluate with ``allow_mirror``.
"""
