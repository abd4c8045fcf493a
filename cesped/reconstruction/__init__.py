"""Reconstruction of maps from particle images with known poses.

Modules (imported on use; nothing heavy happens at import):

* :mod:`cesped.reconstruction.fourier` -- native direct Fourier inversion (``reconstruct``),
  the equivalent of ``relion_reconstruct --ctf --pad 2``, on CPU or CUDA;
* :mod:`cesped.reconstruction.relion` -- the external RELION backend (``reconstruct_relion``);
* :mod:`cesped.reconstruction.synthetic` -- small synthetic particle sets for tests/benchmarks.
"""
