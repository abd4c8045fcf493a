"""Reference-based pose refinement (projection matching after a network) and the image-limited floor.

Modules (import them directly; nothing is loaded here):

* :mod:`cesped.refinement.score` -- log-likelihood gains of images against a map's projections
  (CTF, origin phase ramps, whitening, band limit), fixed-origin and FFT shift search.
* :mod:`cesped.refinement.local` -- coarse-to-fine local refinement from candidate poses and their
  mirror-view / in-plane half-turn hypotheses; posterior confidence.
* :mod:`cesped.refinement.global_search` -- exhaustive SO(3) grid search (the floor).
* :mod:`cesped.refinement.reference` -- the reference map without the refined half's labels
  (the other half's ground-truth reconstruction and its FSC band limit) or a user's map.
* :mod:`cesped.refinement.api` -- whole half-sets: ``refine_star`` and ``image_limited_floor``.

Layer: above physics and reconstruction; nothing below imports it.
"""
