"""cesped.physics: image formation in RELION's conventions.

Modules (import them directly; nothing is loaded here):

* :mod:`cesped.physics.fourier` -- frequency grids (rfft2 layout), centred FFTs, Fourier shifts.
* :mod:`cesped.physics.ctf` -- ``compute_ctf`` / ``ctf_from_particles`` (RELION ``ctf.h``).
* :mod:`cesped.physics.projection` -- ``project`` / ``Projector`` (Fourier slices, ``R = Aᵀ``)
  and ``apply_ctf_and_shifts``.
* :mod:`cesped.physics.image_ops` -- exact pixel-grid operations (``rot90_images``), shared by
  data augmentation and the models.
* :mod:`cesped.physics.potential` -- Peng (1996) atomic potential voxelised from PDB/mmCIF
  models (``potential_from_model``) or taken from a map (``potential_from_map``).
"""
