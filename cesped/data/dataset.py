"""``ParticlesDataset``: a PyTorch ``Dataset`` of one half-set of a CESPED entry.

Reads images through memory maps (nothing is loaded up front; memory does not grow with the
number of particles beyond the metadata table), preprocesses them in batches (background
normalisation, CTF phase flip or Wiener filter, centre crop, Fourier resize), and writes pose
predictions back as a RELION star file.

Example usage (the paper's listings)
------------------------------------
>>> from torch.utils.data import DataLoader                               # doctest: +SKIP
>>> from cesped.particlesDataset import ParticlesDataset                  # doctest: +SKIP
>>> ds = ParticlesDataset("TEST", halfset=0, image_size=128)              # doctest: +SKIP
>>> iid, img, (rotMat, xyShiftAngs, confidence), metadata = ds[0]         # doctest: +SKIP
>>> for iid, img, (rotMat, xyShiftAngs, confidence), md in DataLoader(ds, batch_size=32, num_workers=2):
...     predRot, predShiftsAngs, predConf = model(img)                   # doctest: +SKIP
...     ds.updateMd(ids=iid, angles=predRot, shifts=predShiftsAngs, confidence=predConf,
...                 angles_format="rotmat")                               # doctest: +SKIP
>>> ds.saveMd("predictions_0.star")                                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cesped.data.columns import prediction_kept_columns
from cesped.data.entries import check_halfset, list_entries
from cesped.data.local import (
    add_local_entry,
    check_stack_pixel_size,
    ensure_entry,
    entry_paths,
    entry_symmetry,
    locally_available_entries,
    read_info,
)
from cesped.data.preprocess import cropped_size, preprocess_images
from cesped.physics.ctf import compute_ctf, ctf_parameters

__all__ = ["ParticlesDataset", "preprocess_entry"]

_CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
_ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
_SHIFTS = ("rlnOriginXAngst", "rlnOriginYAngst")
_GT_CONFIDENCE = "rlnMaxValueProbDistribution"
_PRED_CONFIDENCE = "rlnParticleFigureOfMerit"
_ANGLE_FORMATS = ("rotmat", "euler", "zyzEulerDegs", "quaternion")


def _label_columns(df, star_path, unlabelled: bool):
    """Angles (n, 3), shifts (n, 2) and confidence (n,) of the entry's star.

    A labelled entry must have every angle and origin column (a ``ValueError`` names the star
    file and the column); ``rlnMaxValueProbDistribution`` is optional (1.0: every label equally
    trusted, as the original package). An unlabelled entry (``info_<h>.json`` has
    ``"labelled": false``, see :func:`cesped.data.local.add_local_entry`) gets NaN labels.
    """
    n = len(df)
    if unlabelled:
        return np.full((n, 3), np.nan), np.full((n, 2), np.nan), np.full(n, np.nan)
    missing = [c for c in _ANGLES + _SHIFTS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{star_path}: the particle table lacks the pose column(s) {', '.join(missing)}; a labelled "
            "entry needs rlnAngleRot/Tilt/Psi and rlnOriginX/YAngst (add data without poses with "
            "ParticlesDataset.addNewEntryLocally(..., labelled=False))"
        )
    angles = df[list(_ANGLES)].to_numpy(dtype=np.float64)
    shifts = df[list(_SHIFTS)].to_numpy(dtype=np.float64)
    conf = df[_GT_CONFIDENCE].to_numpy(dtype=np.float64) if _GT_CONFIDENCE in df.columns else np.ones(n)
    for name, vals in ((" / ".join(_ANGLES), angles), (" / ".join(_SHIFTS), shifts), (_GT_CONFIDENCE, conf)):
        bad = ~np.isfinite(vals.reshape(n, -1)).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{star_path}: non-finite {name} at row {i} ({df['rlnImageName'].iloc[i]})")
    return angles, shifts, conf


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"updateMd: {name} must be numeric, got {type(x).__name__}") from e
    return arr


class ParticlesDataset(Dataset):
    """One half-set of a CESPED entry as a PyTorch ``Dataset`` (downloads on first use).

    Parameters
    ----------
    targetName : str
        Entry name (see :meth:`getCESPEDEntries`) or a local entry added with
        :meth:`addNewEntryLocally`.
    halfset : {0, 1}
    benchmarkDir : path, optional
        Where entries live; default :func:`cesped.settings.benchmark_dir` (env
        ``CESPED_BENCHMARK_DIR``, otherwise the per-user data directory).
    image_size : int, optional
        Side of the returned images in pixels, reached by Fourier resizing the cropped image.
        None keeps the original box size (as the original package does: the cropped centre is
        resampled to the original side).
    apply_perImg_normalization : bool
        Normalise each image with the mean and std of its background (pixels outside the circle
        of radius ``box/2``) so that the background has mean 0 and std 1.
    ctf_correction : {"phase_flip", "wiener", "none"}
        CTF correction with each particle's own CTF (defocus U/V, astigmatism angle, phase shift,
        B-factor and its optics group's voltage, Cs and amplitude contrast).
    image_size_factor_for_crop : float
        Fraction of the box side removed by the centre crop: the central
        ``int(box * (1 - factor))`` pixels are kept (0.25 keeps 75 %).
    download : bool
        Download (or simulate) the entry when it is not on disk; False raises
        ``FileNotFoundError`` with instructions instead. Either way, an entry found only in the
        original package's folder (:func:`cesped.settings.original_benchmark_dir`) raises
        :class:`cesped.data.local.EntryElsewhereError` saying how to use it, before any download.
    wiener_constant : float
        ``k`` of the Wiener filter ``CTF / (CTF² + k)``.
    zenodo_url : str, optional
        Records API base URL (env ``CESPED_ZENODO_URL``).

    Notes
    -----
    ``dataset[i]`` returns ``(iid, img, (rotMat, xyShiftAngs, confidence), metadata)``:
    ``iid`` the ``rlnImageName`` string, ``img`` float32 ``(1, N, N)``, ``rotMat`` float32
    ``(3, 3)`` = ``Aᵀ`` (scipy ``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True)``),
    ``xyShiftAngs`` float32 ``(2,)`` = ``[rlnOriginXAngst, rlnOriginYAngst]``, ``confidence``
    float32 ``(1,)`` = ``rlnMaxValueProbDistribution`` (1.0 when absent) and ``metadata`` the
    particle's star row as a dict. ``DataLoader`` uses :meth:`__getitems__`, which reads and
    preprocesses a whole batch at once. Unlike the original package, ``rotMat`` is not reduced
    to the asymmetric unit.

    A labelled entry's star must have ``rlnAngleRot/Tilt/Psi`` and ``rlnOriginX/YAngst``
    (``ValueError`` naming the file and the column otherwise); an entry added with
    ``addNewEntryLocally(..., labelled=False)`` returns NaN labels.

    The pixel size is the star's ``rlnImagePixelSize`` (RELION's convention). A stack header
    stating another one raises a ``UserWarning`` with both values, recorded in
    :attr:`pixel_size_mismatch` (and in ``repr`` and :func:`preprocess_entry`'s ``info_<h>.json``).

    If :attr:`augmenter` is set (a :class:`cesped.data.augment.PoseAugmenter`), it is applied
    after preprocessing and updates the labels; in ``DataLoader`` workers its generator is
    re-seeded from the worker seed.

    In a ``DataLoader`` worker process the dataset makes that process send the batch's small
    tensors (labels, metadata columns) by value rather than through shared memory
    (:mod:`cesped.data.ipc`): the batches are the same, and receiving them costs the main
    process about 1 ms instead of 5 ms per batch of 32.
    """

    def __init__(
        self,
        targetName: str,
        halfset: int,
        benchmarkDir: str | os.PathLike | None = None,
        image_size: int | None = None,
        apply_perImg_normalization: bool = True,
        ctf_correction: str = "phase_flip",
        image_size_factor_for_crop: float = 0.25,
        download: bool = True,
        wiener_constant: float = 0.1,
        zenodo_url: str | None = None,
    ):
        super().__init__()
        from cesped import settings
        from cesped.io.stack import ImageSource
        from cesped.io.star import particle_optics, pixel_size, read_star, require_columns

        self.halfset = check_halfset(halfset)
        if ctf_correction not in ("phase_flip", "wiener", "none"):
            raise ValueError(
                f"ctf_correction must be 'phase_flip', 'wiener' or 'none', got {ctf_correction!r}"
            )
        if image_size is not None and (
            isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1
        ):
            raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
        cropped_size(1000, image_size_factor_for_crop)  # validates the factor
        self.targetName = str(targetName)
        self.benchmarkDir = settings.benchmark_dir(benchmarkDir)
        self.ctf_correction = ctf_correction
        self.apply_perImg_normalization = bool(apply_perImg_normalization)
        self.image_size_factor_for_crop = float(image_size_factor_for_crop)
        self.wiener_constant = float(wiener_constant)
        self.augmenter = None
        self._aug_pid = os.getpid()
        self._worker_pid = os.getpid()  # see _setup_worker_process
        self._md_columns = None  # (name, values) of the star columns, on first use (_metadata)

        ensure_entry(self.targetName, self.halfset, self.benchmarkDir, download=download, base_url=zenodo_url)
        self._paths = entry_paths(self.targetName, self.halfset, self.benchmarkDir)
        self._info = read_info(self.targetName, self.halfset, self.benchmarkDir)
        star = read_star(self._paths["star"])
        self._star = star
        self._source = ImageSource.from_star(star, root=self._paths["dir"])  # validates stacks and rows
        ny, nx = self._source.image_shape
        if ny != nx:
            raise ValueError(f"{self._paths['star']}: images must be square, got {ny}x{nx}")
        self._box = int(nx)
        self._pixel_size = float(pixel_size(star))
        #: None, or the star's and a stack header's disagreeing pixel sizes (the star's is used)
        self.pixel_size_mismatch = check_stack_pixel_size(self._source, self._pixel_size, self._paths["star"])
        self._crop = cropped_size(self._box, self.image_size_factor_for_crop)
        self._image_size = int(image_size) if image_size is not None else self._box

        df = star.particles
        self._labelled = bool(self._info.get("labelled", True))
        self._angles, self._shifts, self._confidence = _label_columns(
            df, self._paths["star"], unlabelled=not self._labelled
        )
        n = len(df)
        # predictions (updateMd) are kept apart from the ground truth; NaN = not predicted
        self._pred_angles = np.full((n, 3), np.nan)
        self._pred_shifts = np.full((n, 2), np.nan)
        self._pred_conf = np.full(n, np.nan)
        self._ctf_params = None
        if ctf_correction != "none":
            require_columns(star, _CTF_COLUMNS, f"ctf_correction={ctf_correction!r}")
            joined = particle_optics(star)
            try:
                params = ctf_parameters(joined)
            except ValueError as e:
                raise ValueError(
                    f"{self._paths['star']}: {e} (needed for ctf_correction={ctf_correction!r})"
                ) from e
            self._ctf_params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
            # images already phase-flipped or CTF-premultiplied (RELION optics flags): their CTF
            # is taken as |CTF|, so phase flipping leaves them unchanged
            done = np.zeros(len(joined), dtype=bool)
            for flag in ("rlnCtfDataArePhaseFlipped", "rlnCtfDataAreCtfPremultiplied"):
                if flag in joined.columns:
                    done |= joined[flag].fillna(0).to_numpy(dtype=np.int64) != 0
            self._ctf_abs = done
            for k, v in self._ctf_params.items():
                if not np.isfinite(v).all():
                    i = int(np.flatnonzero(~np.isfinite(v))[0])
                    raise ValueError(f"{self._paths['star']}: non-finite CTF parameter {k} at row {i}")
        self._id_to_row = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_md_columns"] = None  # a cache of the star's columns: rebuilt where it is used
        return state

    # ------------------------------------------------------------------ properties
    @property
    def datadir(self) -> Path:
        """The entry directory ``<benchmarkDir>/<targetName>``."""
        return self._paths["dir"]

    @property
    def starFname(self) -> Path:
        """The particles star file of this half-set."""
        return self._paths["star"]

    @property
    def stackFname(self) -> Path:
        """The image stack of this half-set."""
        return self._paths["mrcs"]

    @property
    def particles(self):
        """The entry's particle metadata (:class:`cesped.io.star.StarFile`), ground truth included.

        :meth:`updateMd` does not change it; the predictions are in :meth:`predictions`.
        """
        return self._star

    @property
    def symmetry(self) -> str:
        """Point symmetry from ``info_{0,1}.json`` (which must agree), e.g. ``"C1"``, ``"D2"``."""
        return entry_symmetry(self._paths["dir"])

    @property
    def image_size(self) -> int:
        """Side in pixels of the returned images (after crop and resize)."""
        return self._image_size

    @property
    def original_image_size(self) -> int:
        """Side in pixels of the images on disk."""
        return self._box

    @property
    def sampling_rate(self) -> float:
        """Å/px of the returned images: ``pixel_size * cropped_side / image_size``."""
        return self._pixel_size * self._crop / self._image_size

    @property
    def original_sampling_rate(self) -> float:
        """Å/px of the images on disk."""
        return self._pixel_size

    def __len__(self) -> int:
        return len(self._source)

    def __repr__(self) -> str:
        return (
            f"ParticlesDataset(targetName={self.targetName!r}, halfset={self.halfset}, n={len(self)}, "
            f"symmetry={self.symmetry!r}, image_size={self.image_size}, "
            f"sampling_rate={self.sampling_rate:.4g} Å/px, box={self._box}, crop={self._crop}, "
            f"normalization={self.apply_perImg_normalization}, ctf_correction={self.ctf_correction!r}, "
            f"dir='{self.datadir}'"
            + (
                f", header pixel size {self.pixel_size_mismatch['header_pixel_size']:g} Å/px ignored"
                if self.pixel_size_mismatch
                else ""
            )
            + ")"
        )

    # ------------------------------------------------------------------ reading
    def _rows(self, indices) -> np.ndarray:
        n = len(self)
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = (rows < -n) | (rows >= n)
        if bad.any():
            raise IndexError(f"particle index {int(rows[bad][0])} out of range for {n} particles")
        return np.where(rows < 0, rows + n, rows)

    def _ctf(self, rows: np.ndarray) -> torch.Tensor | None:
        if self._ctf_params is None:
            return None
        p = {k: v[rows] for k, v in self._ctf_params.items()}
        ctf = compute_ctf(
            pixel_size=self._pixel_size, image_size=self._box, rfft=True, dtype=torch.float32, **p
        )
        done = self._ctf_abs[rows]
        if done.any():
            ctf[torch.from_numpy(done)] = ctf[torch.from_numpy(done)].abs()
        return ctf

    def _metadata(self, rows: np.ndarray) -> list[dict]:
        """Star rows as dicts of Python scalars (faster than ``DataFrame.to_dict`` for a batch).

        The columns are converted to NumPy arrays once: ``Series.to_numpy`` of an Arrow-backed
        column (the image names) converts the whole column, which per batch would cost time
        proportional to the number of particles.
        """
        if self._md_columns is None:
            df = self._star.particles
            self._md_columns = [(c, df[c].to_numpy()) for c in df.columns]
        cols = [c for c, _ in self._md_columns]
        values = [v[rows].tolist() for _, v in self._md_columns]
        return [dict(zip(cols, v)) for v in zip(*values)]

    def _setup_worker_process(self) -> None:
        """Once in each ``DataLoader`` worker process: send the small tensors of a batch by value.

        A collated batch holds the images, three label tensors and one tensor per numeric
        metadata column; sent through shared memory each costs about 0.8 ms of CPU between the
        worker and the main process (see :mod:`cesped.data.ipc`), as much as preprocessing the
        batch. Only the worker process's pickler changes; the main process receives the same
        tensors (dtype, shape, values).
        """
        pid = os.getpid()
        if self._worker_pid == pid:
            return
        self._worker_pid = pid
        if torch.utils.data.get_worker_info() is not None:
            from cesped.data.ipc import send_small_tensors_by_value

            send_small_tensors_by_value()

    def _maybe_reseed_augmenter(self) -> None:
        if self.augmenter is None or self._aug_pid == os.getpid():
            return
        info = torch.utils.data.get_worker_info()
        if info is not None:
            self.augmenter.generator.manual_seed(int(info.seed) % (2**63))
        self._aug_pid = os.getpid()

    def get_batch(self, indices: Sequence[int]):
        """Read and preprocess many particles at once.

        Parameters
        ----------
        indices : sequence of int
            Particle rows (negative counts from the end).

        Returns
        -------
        tuple
            ``(ids: list[str], imgs float32 (B, 1, N, N), (rotMats float32 (B, 3, 3),
            xyShiftAngs float32 (B, 2), confidence float32 (B, 1)), metadata: list[dict])``.

        Raises
        ------
        IndexError
            An index out of range.
        ValueError
            An image that is not finite after preprocessing (corrupt data), naming the particle.
        """
        from cesped.geometry.rotations import euler_to_matrix

        self._setup_worker_process()
        rows = self._rows(indices)
        imgs = torch.from_numpy(self._source.read(rows))
        # unmap after each batch: pages touched through the memory map would otherwise stay in this
        # process's resident set, which would then grow with the number of particles read
        self._source.close()
        imgs = preprocess_images(
            imgs,
            self._ctf(rows),
            normalize=self.apply_perImg_normalization,
            ctf_correction=self.ctf_correction,
            crop_factor=self.image_size_factor_for_crop,
            image_size=self._image_size if (self._image_size != self._crop) else None,
            wiener_constant=self.wiener_constant,
        )
        finite = torch.isfinite(imgs.sum(dim=(-2, -1)))  # any NaN/inf pixel makes the sum non-finite
        if not bool(finite.all()):
            i = int(rows[int(torch.nonzero(~finite)[0])])
            raise ValueError(
                f"particle {i} ({self._star.particles['rlnImageName'].iloc[i]}) of "
                f"{self.starFname} has non-finite pixel values (corrupt stack?)"
            )
        rot = euler_to_matrix(torch.from_numpy(self._angles[rows]))
        shifts = torch.from_numpy(self._shifts[rows])
        if self.augmenter is not None:
            self._maybe_reseed_augmenter()
            imgs4, rot, shifts = self.augmenter(imgs[:, None], rot, shifts, pixel_size=self.sampling_rate)
            imgs = imgs4[:, 0]
        conf = torch.from_numpy(self._confidence[rows]).to(torch.float32)[:, None]
        md = self._metadata(rows)
        ids = [m["rlnImageName"] for m in md]
        return (
            ids,
            imgs[:, None].to(torch.float32).contiguous(),
            (rot.to(torch.float32), shifts.to(torch.float32), conf),
            md,
        )

    def __getitems__(self, indices: Sequence[int]) -> list:
        """Per-sample tuples of a batch, computed together (``DataLoader`` calls this)."""
        ids, imgs, (rot, sh, conf), md = self.get_batch(indices)
        return [(ids[i], imgs[i], (rot[i], sh[i], conf[i]), md[i]) for i in range(len(ids))]

    def __getitem__(self, item: int):
        if isinstance(item, (slice, list, tuple, np.ndarray)):
            raise TypeError("ParticlesDataset[i] takes one integer index; use get_batch(indices) for several")
        return self.__getitems__([int(item)])[0]

    # ------------------------------------------------------------------ predictions
    def _id_rows(self, ids) -> np.ndarray:
        if isinstance(ids, str):
            ids = [ids]
        ids = [str(i) for i in ids]
        if self._id_to_row is None:
            names = self._star.particles["rlnImageName"].astype(str).tolist()
            self._id_to_row = {n: i for i, n in enumerate(names)}
        rows, unknown = [], []
        for i in ids:
            r = self._id_to_row.get(i)
            (unknown.append(i) if r is None else rows.append(r))
        if unknown:
            raise ValueError(f"updateMd: {len(unknown)} id(s) not in {self.starFname}, e.g. {unknown[:3]}")
        rows = np.asarray(rows, dtype=np.int64)
        if len(np.unique(rows)) != len(rows):
            raise ValueError("updateMd: ids contain duplicates")
        return rows

    def updateMd(
        self,
        ids: Sequence[str],
        angles=None,
        shifts=None,
        confidence=None,
        angles_format: str = "rotmat",
        shifts_format: str = "Angst",
    ) -> None:
        """Store predicted poses for the particles ``ids`` (kept in memory until :meth:`saveMd`).

        Predictions are kept apart from the entry's ground truth (:attr:`particles` does not
        change); a later call for the same particle replaces what it gives. A particle counts as
        predicted once it has angles; shifts and confidences are optional but, within one saved
        file, given for all predicted particles or for none.

        Parameters
        ----------
        ids : sequence of str
            ``rlnImageName`` of each particle (the ``iid`` the dataset returned).
        angles : array (B, 3, 3) | (B, 3) | (B, 4), optional
            ``"rotmat"``: rotation matrices ``Aᵀ`` (the dataset's label convention);
            ``"euler"`` (alias ``"zyzEulerDegs"``): ``[rot, tilt, psi]`` in degrees;
            ``"quaternion"``: ``[w, x, y, z]`` of the matrix ``Aᵀ``.
        shifts : array (B, 2), optional
            ``[rlnOriginXAngst, rlnOriginYAngst]`` in Å.
        confidence : array (B,) or (B, 1), optional
            Written to ``rlnParticleFigureOfMerit``.
        angles_format : {"rotmat", "euler", "zyzEulerDegs", "quaternion"}
        shifts_format : {"Angst"}

        Raises
        ------
        ValueError
            Unknown or duplicated ids, wrong shapes, non-finite values, matrices that are not
            rotations, unknown formats. Nothing is changed in that case.
        """
        from cesped.geometry.rotations import matrix_to_euler, quaternion_to_euler

        if angles_format not in _ANGLE_FORMATS:
            raise ValueError(
                f"updateMd: angles_format must be one of {_ANGLE_FORMATS}, got {angles_format!r}"
            )
        if shifts_format != "Angst":
            raise ValueError(f"updateMd: shifts_format must be 'Angst', got {shifts_format!r}")
        if angles is None and shifts is None and confidence is None:
            raise ValueError("updateMd: give at least one of angles, shifts, confidence")
        rows = self._id_rows(ids)
        b = len(rows)
        updates = {}
        if angles is not None:
            a = _as_numpy(angles, "angles")
            want = {"rotmat": (b, 3, 3), "quaternion": (b, 4)}.get(angles_format, (b, 3))
            if a.shape != want:
                raise ValueError(
                    f"updateMd: angles with angles_format={angles_format!r} must have shape {want}, "
                    f"got {a.shape}"
                )
            if not np.isfinite(a).all():
                raise ValueError("updateMd: angles contain non-finite values")
            if angles_format == "rotmat":
                err = np.abs(np.einsum("bij,bkj->bik", a, a) - np.eye(3)).max(initial=0.0)
                if err > 1e-3 or (b and np.linalg.det(a).min() < 0):
                    raise ValueError(f"updateMd: angles are not rotation matrices (|RRᵀ - I| = {err:.3g})")
                eul = matrix_to_euler(torch.from_numpy(a)).numpy()
            elif angles_format == "quaternion":
                norm = np.linalg.norm(a, axis=-1)
                if b and np.abs(norm - 1).max() > 1e-3:
                    raise ValueError("updateMd: quaternions must have unit norm")
                eul = quaternion_to_euler(torch.from_numpy(a / norm[:, None])).numpy()
            else:
                eul = a
            updates["angles"] = eul
        if shifts is not None:
            s = _as_numpy(shifts, "shifts")
            if s.shape != (b, 2):
                raise ValueError(f"updateMd: shifts must have shape ({b}, 2), got {s.shape}")
            if not np.isfinite(s).all():
                raise ValueError("updateMd: shifts contain non-finite values")
            updates["shifts"] = s
        if confidence is not None:
            c = _as_numpy(confidence, "confidence")
            if c.shape not in ((b,), (b, 1)):
                raise ValueError(f"updateMd: confidence must have shape ({b},) or ({b}, 1), got {c.shape}")
            if not np.isfinite(c).all():
                raise ValueError("updateMd: confidence contains non-finite values")
            updates["confidence"] = c.reshape(-1)
        if "angles" in updates:
            self._pred_angles[rows] = updates["angles"]
        if "shifts" in updates:
            self._pred_shifts[rows] = updates["shifts"]
        if "confidence" in updates:
            self._pred_conf[rows] = updates["confidence"]

    def predictions(self, allow_partial: bool = False):
        """The prediction star that :meth:`saveMd` writes, as a :class:`cesped.io.star.StarFile`.

        Rows: the particles given angles with :meth:`updateMd`, in the entry's order. Columns:
        ``rlnImageName`` and the entry's other image columns (:func:`prediction_kept_columns`:
        CTF, optics group, micrograph, ...; never its angles, shifts or confidence), then the
        predicted ``rlnAngleRot/Tilt/Psi``, ``rlnOriginX/YAngst`` only if shifts were given and
        ``rlnParticleFigureOfMerit`` only if confidences were given. The optics table is the
        entry's.

        Parameters
        ----------
        allow_partial : bool
            False: every particle must have predicted angles. True: write only those that do.

        Raises
        ------
        ValueError
            Particles without predicted angles (unless ``allow_partial``; the message gives their
            number and the first ids), no prediction at all, or predicted particles of which only
            some were given shifts (or confidences): give them for all or for none.
        """
        from cesped.io.star import StarFile

        names = self._star.particles["rlnImageName"].astype(str)
        n = len(names)
        has_angles = np.isfinite(self._pred_angles).all(axis=1)
        missing = np.flatnonzero(~has_angles)
        if has_angles.sum() == 0:
            raise ValueError(
                f"saveMd: none of the {n} particles of {self.starFname} has predicted angles "
                "(call updateMd(ids=..., angles=...) first)"
            )
        if missing.size and not allow_partial:
            raise ValueError(
                f"saveMd: {missing.size} of the {n} particles of {self.starFname} have no predicted "
                f"angles, e.g. {names.iloc[missing[:5]].tolist()} (a DataLoader with drop_last=True or "
                "a loop stopped early leaves particles out); predict every particle, or pass "
                f"allow_partial=True to write only the {n - missing.size} predicted ones (evaluateEntry "
                "refuses a file with missing particles)"
            )
        rows = np.flatnonzero(has_angles)
        gt = self._star.particles
        parts = gt.iloc[rows][prediction_kept_columns(gt.columns)].reset_index(drop=True)
        for j, c in enumerate(_ANGLES):
            parts[c] = self._pred_angles[rows, j]
        for what, arr, cols in (
            ("shifts", self._pred_shifts, _SHIFTS),
            ("confidence", self._pred_conf[:, None], (_PRED_CONFIDENCE,)),
        ):
            given = np.isfinite(arr[rows]).all(axis=1)
            if given.any() and not given.all():
                lacking = names.iloc[rows[~given][:5]].tolist()
                raise ValueError(
                    f"saveMd: {int((~given).sum())} of the {rows.size} particles with predicted angles "
                    f"were given no {what}, e.g. {lacking}; give {what} for all of them or for none "
                    f"(then the file has no {'/'.join(cols)} column)"
                )
            if given.any():
                for j, c in enumerate(cols):
                    parts[c] = arr[rows, j]
        return StarFile(particles=parts, optics=self._star.optics.copy())

    def saveMd(self, fname: str | os.PathLike, overwrite: bool = True, allow_partial: bool = False) -> None:
        """Write the predictions of :meth:`updateMd` as a RELION 3.1 star file (atomically).

        The file holds only predictions, never the entry's ground truth: see :meth:`predictions`
        for its rows and columns. Shifts that were never given are not written (no
        ``rlnOriginX/YAngst`` columns, which RELION reads as 0 and ``evaluateEntry`` refuses for
        ``SO3xR2``); write zeros explicitly (``shifts=torch.zeros(B, 2)``) to claim 0 shifts.
        ``rlnImageName`` keeps its value relative to the entry directory (as the ground truth
        star), so run RELION from :attr:`datadir` or give it ``--i`` there.

        Parameters
        ----------
        fname : path
            Destination ``*.star``.
        overwrite : bool
            Replace an existing file.
        allow_partial : bool
            Write only the particles with predicted angles instead of raising.

        Raises
        ------
        ValueError
            ``fname`` does not end with ``.star``; particles without predicted angles (unless
            ``allow_partial``); shifts or confidences given for only some particles.
        FileExistsError
            ``fname`` exists and ``overwrite`` is False.
        """
        from cesped.io.star import write_star

        fname = Path(fname)
        if fname.suffix != ".star":
            raise ValueError(f"saveMd: predictions are written as a .star file, got {fname}")
        if fname.exists() and not overwrite:
            raise FileExistsError(f"saveMd: {fname} exists (overwrite=False)")
        write_star(fname, self.predictions(allow_partial=allow_partial))

    # ------------------------------------------------------------------ entries
    @staticmethod
    def getCESPEDEntries() -> list[tuple[str, int]]:
        """All registered ``(targetName, halfset)`` pairs (downloadable or simulated locally)."""
        return list_entries()

    @staticmethod
    def getLocallyAvailableEntries(benchmarkDir: str | os.PathLike | None = None) -> list[tuple[str, int]]:
        """``(targetName, halfset)`` pairs present in ``benchmarkDir``."""
        return locally_available_entries(benchmarkDir)

    @classmethod
    def addNewEntryLocally(
        cls,
        starFname: str | os.PathLike,
        particlesRootDir: str | os.PathLike | None,
        newTargetName: str,
        halfset: int,
        symmetry: str,
        benchmarkDir: str | os.PathLike | None = None,
        copy_images: bool = True,
        labelled: bool = True,
    ) -> Path:
        """Add your own particles (RELION star + stacks) as entry ``newTargetName``.

        The images are copied into ``<benchmarkDir>/<newTargetName>/particles_<h>.mrcs`` (or, with
        ``copy_images=False``, referenced by absolute path) and the star and ``info_<h>.json``
        (with ``symmetry``) written next to them. Returns the entry directory; then
        ``ParticlesDataset(newTargetName, halfset, benchmarkDir)`` loads it.

        The star must hold the pose labels (``rlnAngleRot/Tilt/Psi``, ``rlnOriginX/YAngst``)
        unless ``labelled=False``: then the entry is recorded as unlabelled, its star keeps no
        pose columns and the dataset returns NaN labels (for predicting poses of new data).
        """
        return add_local_entry(
            starFname,
            particlesRootDir,
            newTargetName,
            halfset,
            symmetry,
            benchmark_dir=benchmarkDir,
            copy_images=copy_images,
            labelled=labelled,
        )


def preprocess_entry(
    targetName: str,
    halfset: int,
    outDir,
    benchmarkDir=None,
    image_size=None,
    ctf_correction: str = "none",
    image_size_factor_for_crop: float = 0.0,
    apply_perImg_normalization: bool = True,
    batch_size: int = 256,
    progress: bool = True,
) -> Path:
    """Write the preprocessed images of an entry as a new star + mrcs in ``outDir``.

    The optics table gets the new ``rlnImageSize`` and ``rlnImagePixelSize``; after phase flipping
    ``rlnCtfDataArePhaseFlipped`` is set to 1. Images are processed and written in batches (memory
    does not grow with the number of particles). Returns the star file path.
    """
    import json

    import mrcfile
    from tqdm.auto import tqdm

    from cesped.io.atomic import atomic_open, atomic_path
    from cesped.io.star import write_star

    out = Path(outDir).expanduser()
    out.mkdir(parents=True, exist_ok=True)  # an unusable outDir fails before any work
    ds = ParticlesDataset(
        targetName,
        halfset,
        benchmarkDir=benchmarkDir,
        image_size=image_size,
        apply_perImg_normalization=apply_perImg_normalization,
        ctf_correction=ctf_correction,
        image_size_factor_for_crop=image_size_factor_for_crop,
    )
    h = ds.halfset
    star_path, stack_path = out / f"particles_{h}.star", out / f"particles_{h}.mrcs"
    n, m = len(ds), ds.image_size
    with atomic_path(stack_path) as tmp:
        with mrcfile.new_mmap(tmp, shape=(n, m, m), mrc_mode=2, overwrite=True) as mrc:
            for i in tqdm(range(0, n, batch_size), desc="preprocessing", disable=not progress):
                _, imgs, *_ = ds.get_batch(np.arange(i, min(n, i + batch_size)))
                mrc.data[i : i + len(imgs)] = imgs[:, 0].numpy()
            mrc.set_image_stack()
            mrc.voxel_size = ds.sampling_rate
    star = ds.particles.copy()
    star.particles["rlnImageName"] = [f"{i + 1:06d}@{stack_path.name}" for i in range(n)]
    star.optics["rlnImageSize"] = m
    star.optics["rlnImagePixelSize"] = float(ds.sampling_rate)
    if ctf_correction == "phase_flip":
        star.optics["rlnCtfDataArePhaseFlipped"] = 1
    write_star(star_path, star)
    info = {
        "symmetry": ds.symmetry,
        "source": str(ds.starFname),
        "image_size": m,
        "sampling_rate": ds.sampling_rate,
        "ctf_correction": ctf_correction,
        "image_size_factor_for_crop": image_size_factor_for_crop,
        "normalized": bool(apply_perImg_normalization),
        "labelled": ds._labelled,
        **({"pixel_size_mismatch": ds.pixel_size_mismatch} if ds.pixel_size_mismatch else {}),
    }
    with atomic_open(out / f"info_{h}.json", "w") as fh:
        json.dump(info, fh, indent=1)
    return star_path
