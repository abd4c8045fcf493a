"""Benchmark data: entry registry, Zenodo downloads, on-disk entries, the Dataset, preprocessing,
pose-aware augmentation.

Modules (imported on demand; importing :mod:`cesped.data` does no work):

``entries``     registry of CESPED entries (``get_entry``, ``list_entries``)
``zenodo``      checksummed, resumable downloads (``download_halfset``, ``download_mask``)
``local``       the on-disk layout (``ensure_entry``, ``entry_paths``, ``add_local_entry``)
``columns``     which star columns are pose ground truth (never in a prediction star)
``dataset``     ``ParticlesDataset`` (also ``cesped.particlesDataset.ParticlesDataset``)
``preprocess``  batched normalisation, CTF phase flip / Wiener filter, crop, Fourier resize
``augment``     ``PoseAugmenter``: augmentations that keep the pose labels consistent
``ipc``         how DataLoader workers send batches (small tensors by value)
"""

__all__ = ["entries", "zenodo", "local", "columns", "dataset", "preprocess", "augment", "ipc"]
