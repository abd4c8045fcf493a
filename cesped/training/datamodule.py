"""LightningDataModule over one half-set of an entry: seeded train/validation split, batched augmentation."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

__all__ = ["collate_particles", "open_particles", "ParticlesDataModule"]


def collate_particles(items) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate ``ParticlesDataset`` items, dropping the per-particle metadata dicts.

    Returns
    -------
    ids : list[str] ; images (B, 1, N, N) float32 ; rotmats (B, 3, 3) float32 ;
    shifts (B, 2) float32 Å ; confidence (B,) float32
    """
    ids = [it[0] for it in items]
    images = torch.stack([torch.as_tensor(it[1]) for it in items]).float()
    rot = torch.stack([torch.as_tensor(it[2][0]) for it in items]).float()
    shifts = torch.stack([torch.as_tensor(it[2][1]) for it in items]).float()
    conf = torch.as_tensor([float(it[2][2]) for it in items], dtype=torch.float32)
    return ids, images, rot, shifts, conf


def open_particles(
    entry: str | None = None,
    halfset: int | None = None,
    star: str | os.PathLike | None = None,
    benchmark_dir: str | os.PathLike | None = None,
    **dataset_kwargs,
):
    """Open a :class:`cesped.data.dataset.ParticlesDataset` for an entry half-set or a RELION star file.

    Parameters
    ----------
    entry, halfset : benchmark entry name and half-set (0 or 1)
    star : path, optional
        Any RELION particle star file instead of an entry (its images are resolved relative to it).
    benchmark_dir : path, optional
    **dataset_kwargs
        Preprocessing arguments (``image_size``, ``ctf_correction``, ...).
    """
    from cesped.data.dataset import ParticlesDataset

    if star is not None:
        return _dataset_from_star(star, **dataset_kwargs)
    if entry is None or halfset not in (0, 1):
        raise ValueError(
            f"give either star=<file> or entry=<name> and halfset=0|1 (got entry={entry!r}, "
            f"halfset={halfset!r})"
        )
    return ParticlesDataset(entry, int(halfset), benchmarkDir=benchmark_dir, **dataset_kwargs)


def _dataset_from_star(star, **dataset_kwargs):
    """Register ``star`` as a local entry (images referenced in place, not copied).

    The registration lives in ``<cache>/star_entries/<key>/`` with ``key`` a hash of the star
    file's resolved path, size and modification time: predicting the same file again reuses it
    instead of adding a directory per call, and an edited file gets a new one. It is written
    under a temporary name and renamed, so concurrent calls never see half a registration.
    """
    import hashlib
    import shutil
    import tempfile
    from pathlib import Path

    from cesped.data.dataset import ParticlesDataset
    from cesped.settings import cache_dir

    star = Path(star)
    if not star.is_file():
        raise FileNotFoundError(f"star file not found: {star}")
    st = star.stat()
    key = hashlib.sha1(f"{star.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    root = Path(cache_dir()) / "star_entries"
    root.mkdir(parents=True, exist_ok=True)
    bench, name = root / key, star.stem
    if not (bench / name).is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}_", dir=root))
        ParticlesDataset.addNewEntryLocally(  # for prediction: poses in the star are neither needed nor used
            star, star.parent, name, 0, "C1", benchmarkDir=tmp, copy_images=False, labelled=False
        )
        if bench.exists() and not (bench / name).is_dir():  # stale, e.g. an interrupted older layout
            shutil.rmtree(bench, ignore_errors=True)
        try:
            tmp.rename(bench)
        except OSError:  # registered meanwhile by another process
            shutil.rmtree(tmp, ignore_errors=True)
            if not (bench / name).is_dir():
                raise RuntimeError(f"could not register {star} under {bench}") from None
    return ParticlesDataset(name, 0, benchmarkDir=bench, download=False, **dataset_kwargs)


class ParticlesDataModule(L.LightningDataModule):
    """Train on a seeded ``train_fraction`` of one half-set, validate on the rest.

    Parameters
    ----------
    entry : str
        Benchmark entry (e.g. ``"synth_6msm"``).
    halfset : int
        Half-set used for training (0 or 1).
    benchmark_dir : path, optional
    batch_size : int
        Particles per batch (each is augmented ``n_augmented_copies`` times during training).
    num_workers : int
    train_fraction : float
        Fraction of the half-set used for training (CESPED: 0.7).
    split_seed : int
        Seed of the random split (CESPED: 113).
    n_augmented_copies : int
        Augmented copies per particle in a training batch.
    augmentation : dict, optional
        Overrides of :class:`cesped.data.augment.AugmentationConfig`; ``None`` disables augmentation.
    dataset_kwargs : dict, optional
        Preprocessing arguments for ``ParticlesDataset`` (``image_size``, ``ctf_correction`` ...).
    seed : int
        Seed of the augmentation generator (offset by the process rank).
    """

    def __init__(
        self,
        entry: str,
        halfset: int,
        benchmark_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        train_fraction: float = 0.7,
        split_seed: int = 113,
        n_augmented_copies: int = 2,
        augmentation: dict | None = None,
        dataset_kwargs: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if halfset not in (0, 1):
            raise ValueError(f"halfset must be 0 or 1, got {halfset!r}")
        if not 0 < train_fraction < 1:
            raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
        if n_augmented_copies < 1:
            raise ValueError(f"n_augmented_copies must be >= 1, got {n_augmented_copies}")
        self.entry, self.halfset, self.benchmark_dir = entry, int(halfset), benchmark_dir
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.train_fraction, self.split_seed = float(train_fraction), int(split_seed)
        self.n_augmented_copies = int(n_augmented_copies)
        self.augmentation = None if augmentation is None else dict(augmentation)
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.seed = int(seed)
        self._dataset = None
        self._augmenter = None
        self.train_set = self.val_set = None

    # ------------------------------------------------------------------------------ datasets
    @property
    def dataset(self):
        """The training half-set (opened on first use)."""
        if self._dataset is None:
            self._dataset = open_particles(
                self.entry, self.halfset, benchmark_dir=self.benchmark_dir, **self.dataset_kwargs
            )
        return self._dataset

    @property
    def symmetry(self) -> str:
        return self.dataset.symmetry

    def split_indices(self, n: int) -> tuple[list[int], list[int]]:
        """Seeded permutation split of ``range(n)`` into train and validation indices."""
        g = torch.Generator().manual_seed(self.split_seed)
        perm = torch.randperm(n, generator=g).tolist()
        n_train = int(round(self.train_fraction * n))
        return sorted(perm[:n_train]), sorted(perm[n_train:])

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            tr, va = self.split_indices(len(self.dataset))
            self.train_set, self.val_set = Subset(self.dataset, tr), Subset(self.dataset, va)

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_particles,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(ds) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    # ------------------------------------------------------------------------------ augmentation
    def augment(self, batch):
        """Repeat each particle ``n_augmented_copies`` times and augment (labels follow the images)."""
        from cesped.data.augment import PoseAugmenter

        ids, images, rot, shifts, conf = batch
        k = self.n_augmented_copies
        if k > 1:
            ids = [i for i in ids for _ in range(k)]
            images, rot = images.repeat_interleave(k, 0), rot.repeat_interleave(k, 0)
            shifts, conf = shifts.repeat_interleave(k, 0), conf.repeat_interleave(k, 0)
        if self.augmentation is not None:
            if self._augmenter is None:
                rank = self.trainer.global_rank if self.trainer is not None else 0
                self._augmenter = PoseAugmenter(seed=self.seed + 1000 * rank, **self.augmentation)
            pix = float(getattr(self.dataset, "sampling_rate", 1.0) or 1.0)
            images, rot, shifts = self._augmenter(images, rot, shifts, pixel_size=pix)
        return ids, images.contiguous(), rot.float(), shifts.float(), conf

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            return self.augment(batch)
        return batch
