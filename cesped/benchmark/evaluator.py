"""In-memory angular evaluation of one half-set: :class:`Evaluator` (``cesped.Evaluator``).

No file is written and no map is reconstructed: the ground-truth poses, their confidences
(``rlnMaxValueProbDistribution``) and the symmetry of the entry are read once, and
:meth:`Evaluator.eval` compares predicted rotation matrices with them. The errors are those of
``evaluateEntry`` (:func:`cesped.geometry.numpy_ops.symmetry_aware_error`, CESPED eq. 5), so on the
same predictions ``MAnE`` equals ``evaluateEntry``'s ``MAnE_half<h>_deg`` (and the mean over the
two halves its ``MAnE_deg``); ``wMAnE`` is weighted by the ground-truth confidence as there.

Example usage::

    import cesped
    ev = cesped.Evaluator("synth_6msm", halfset=1)
    metrics = ev.eval(ids, rotmats)          # ids: rlnImageName of each particle, rotmats (n, 3, 3)
    metrics["MAnE"], metrics["frac_below_10deg"]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cesped._numpy import as_float64
from cesped.geometry.angular_metrics import ANGULAR_KEYS, THRESHOLDS_DEG

__all__ = ["Evaluator", "ANGULAR_KEYS", "THRESHOLDS_DEG"]

ROTATION_TOL = 1e-3
"""Largest accepted ``|Rᵀ R − I|`` and ``|det R − 1|`` of a predicted rotation matrix."""

_IMAGE = "rlnImageName"
_ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
_GT_CONF = "rlnMaxValueProbDistribution"


def _entry_files(target, halfset: int, benchmark_dir) -> tuple[Path, str, str]:
    """(star path, symmetry, label) of one half-set of an entry name or entry directory."""
    p = Path(os.path.expanduser(str(target)))
    if p.is_dir() and (p / f"particles_{halfset}.star").is_file():
        import json

        for h in (halfset, 1 - halfset):
            info = p / f"info_{h}.json"
            if info.is_file():
                try:
                    sym = json.loads(info.read_text())["symmetry"]
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{info}: expected a JSON object with a 'symmetry' field ({e})") from e
                return p / f"particles_{halfset}.star", str(sym), str(p)
        raise FileNotFoundError(f"entry directory {p} has no info_{halfset}.json stating its symmetry")
    from cesped.data.local import ensure_entry, entry_paths, read_info

    ensure_entry(str(target), halfset, benchmark_dir)  # ValueError names an unknown entry
    star = entry_paths(str(target), halfset, benchmark_dir)["star"]
    return star, read_info(str(target), halfset, benchmark_dir)["symmetry"], str(target)


class Evaluator:
    """Angular metrics of predicted poses of one half-set of an entry, in memory.

    Parameters
    ----------
    targetName : str
        Entry name (e.g. ``"10280"``, ``"synth_6msm"``; made available as
        :class:`cesped.ParticlesDataset` does: downloaded or simulated when missing), or the path
        of an entry directory holding ``particles_<h>.star`` and ``info_<h>.json``.
    halfset : {0, 1}
        The half-set whose particles are predicted.
    benchmarkDir : path, optional
        Root of the entries (default :func:`cesped.settings.benchmark_dir`).

    Attributes
    ----------
    symmetry : str
        Point group of the entry (errors are ``min_g d(g·R_true, R_pred)``).
    ids : numpy.ndarray of str (n,)
        ``rlnImageName`` of the half-set's particles (the ``iid`` of ``ParticlesDataset``).
    true_rotmats : numpy.ndarray float64 (n, 3, 3)
        Ground-truth pose labels ``R = Aᵀ`` (see docs/architecture.md).
    gt_confidence : numpy.ndarray float64 (n,)
        ``rlnMaxValueProbDistribution`` (ones when the entry lacks it), the weights of wMAnE.

    Raises
    ------
    ValueError
        Unknown entry, ``halfset`` not 0/1, a star file without poses.
    FileNotFoundError
        An entry directory without ``info_<h>.json``.
    """

    def __init__(self, targetName: str, halfset: int, benchmarkDir=None):
        import pandas as pd

        from cesped.data.entries import check_halfset
        from cesped.geometry.numpy_ops import euler_to_matrix
        from cesped.geometry.symmetry import normalize_symmetry
        from cesped.io.star import read_star, require_columns

        h = check_halfset(halfset)
        star_path, symmetry, label = _entry_files(targetName, h, benchmarkDir)
        star = read_star(star_path)
        require_columns(star, [_IMAGE, *_ANGLES], what="ground-truth poses")
        parts = star.particles
        self.target = label
        self.halfset = h
        self.symmetry = normalize_symmetry(symmetry)
        self.ids = parts[_IMAGE].astype(str).to_numpy(dtype=object)
        self.true_rotmats = euler_to_matrix(parts[_ANGLES].to_numpy(dtype=np.float64))
        self.gt_confidence = (
            pd.to_numeric(parts[_GT_CONF]).to_numpy(dtype=np.float64)
            if _GT_CONF in parts.columns
            else np.ones(len(parts))
        )
        self._index = pd.Index(self.ids)
        self._last_rows = None  # (ids, rows) of the last checked call
        self._arrow_ids = None  # the ids as an Arrow string array, made on the first lookup
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()].unique()
            raise ValueError(f"{star_path}: duplicated rlnImageName in the ground truth: {list(dup[:5])}")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Evaluator({self.target!r}, halfset={self.halfset}, n={len(self)}, symmetry={self.symmetry})"

    # ---------------------------------------------------------------------------- validation

    def _rows(self, ids, complete: bool) -> np.ndarray:
        """Row of each id in the half-set's table, checked: 1-D, known, unique (complete)."""
        if isinstance(ids, (str, bytes)):
            raise ValueError("ids: expected a sequence of rlnImageName strings, got a single string")
        arr = np.asarray(ids.detach().cpu() if hasattr(ids, "detach") else ids)
        if arr.ndim != 1:
            raise ValueError(f"ids: expected a 1-D sequence of rlnImageName strings, got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError("ids: empty, nothing to evaluate")
        if _same(arr, self.ids):
            rows = np.arange(len(self))  # the half-set's own order (e.g. ParticlesDataset without shuffling)
        elif self._last_rows is not None and _same(arr, self._last_rows[0]):
            rows = self._last_rows[1]  # the same ids as the previous call (a validation set every epoch)
        else:
            rows = self._lookup(arr)
            unknown = rows < 0
            if unknown.any():
                raise ValueError(
                    f"ids: {int(unknown.sum())} id(s) not in half-set {self.halfset} of {self.target}: "
                    f"{_examples(arr[unknown])}"
                )
            counts = np.bincount(rows, minlength=len(self))
            if (counts > 1).any():
                dup = self.ids[counts > 1]
                raise ValueError(f"ids: {len(dup)} duplicated id(s): {_examples(dup)}")
            self._last_rows = (arr.copy(), rows)
        if complete and rows.size != len(self):  # ids are unique: fewer than the half-set means missing
            missing = self.ids[np.bincount(rows, minlength=len(self)) == 0]
            raise ValueError(
                f"ids: {len(missing)} particle(s) of half-set {self.halfset} of {self.target} have no "
                f"prediction: {_examples(missing)}"
            )
        return rows

    def _lookup(self, arr: np.ndarray) -> np.ndarray:
        """Row of each id (int64, -1 when unknown): Arrow's hash lookup (C++, about 5x pandas'
        object hash table on 300,000 ids); pandas' ``Index.get_indexer`` without pyarrow or for
        ids that are not strings."""
        try:
            import pyarrow as pa
            import pyarrow.compute as pc
        except ImportError:
            pa = None
        if pa is not None:
            if self._arrow_ids is None:
                self._arrow_ids = pa.array(self.ids, type=pa.string())
            try:
                query = pa.array(arr, type=pa.string())
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                query = None  # not all strings (bytes, numbers): the generic path below
            if query is not None:
                found = pc.index_in(query, value_set=self._arrow_ids).fill_null(-1)
                return found.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if arr.dtype.kind != "O":
            arr = np.array(arr.tolist(), dtype=object)
        return self._index.get_indexer(arr)

    @staticmethod
    def _rotations(rotmats, n: int) -> np.ndarray:
        r = as_float64(rotmats, "rotmats")
        if r.shape != (n, 3, 3):
            raise ValueError(f"rotmats: expected shape ({n}, 3, 3) (one matrix per id), got {r.shape}")
        finite = np.isfinite(r).all(axis=(1, 2))
        if not finite.all():
            raise ValueError(
                f"rotmats: {int((~finite).sum())} matrix(es) with non-finite values, first at position "
                f"{int(np.flatnonzero(~finite)[0])}"
            )
        orth, det = _orthogonality(r)
        bad = (orth > ROTATION_TOL) | (np.abs(det - 1.0) > ROTATION_TOL)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"rotmats: {int(bad.sum())} matrix(es) are not rotations (|RᵀR − I| or |det R − 1| above "
                f"{ROTATION_TOL}), first at position {i} (det {det[i]:.4g}, |RᵀR − I| {orth[i]:.3g})"
            )
        return r

    @staticmethod
    def _confidence(confidence, n: int) -> np.ndarray:
        c = as_float64(confidence, "confidence")
        if c.shape != (n,):
            raise ValueError(f"confidence: expected shape ({n},) (one value per id), got {c.shape}")
        if not np.isfinite(c).all():
            raise ValueError("confidence: non-finite values")
        if (c < 0).any():
            raise ValueError(f"confidence: negative values at positions {np.flatnonzero(c < 0)[:5].tolist()}")
        return c

    # ------------------------------------------------------------------------------ metrics

    def errors(self, ids: Sequence[str], rotmats, complete: bool = False) -> np.ndarray:
        """Symmetry-aware angular error of each prediction, degrees (n,), in the order of ``ids``.

        Parameters and errors as :meth:`eval`.
        """
        from cesped.geometry.numpy_ops import symmetry_aware_error

        rows = self._rows(ids, complete)
        r = self._rotations(rotmats, rows.size)
        return symmetry_aware_error(np.take(self.true_rotmats, rows, axis=0), r, self.symmetry)

    def eval(self, ids: Sequence[str], rotmats, confidence=None, complete: bool = False) -> dict:
        """Angular metrics of the predictions ``rotmats`` of the particles ``ids``.

        Parameters
        ----------
        ids : sequence of str (n,)
            ``rlnImageName`` of each predicted particle (the ``iid`` of ``ParticlesDataset``), each
            at most once, all of this half-set. A subset is accepted (e.g. a validation split)
            unless ``complete``; ``evaluateEntry`` always evaluates the whole half-set.
        rotmats : array-like or torch.Tensor (n, 3, 3)
            Predicted pose labels ``R = Aᵀ`` (the convention of ``ParticlesDataset``'s ``rotMat``).
        confidence : array-like (n,), optional
            Predicted confidences (non-negative). They do not change the metrics above (wMAnE is
            weighted by the ground-truth confidence, as in ``evaluateEntry``); when given, the
            result also holds ``predconf_weighted_MAnE`` (``Σ c·err / Σ c``: below MAnE when the
            confident predictions are the accurate ones).
        complete : bool
            Require a prediction for every particle of the half-set.

        Returns
        -------
        dict
            ``MAnE``, ``wMAnE``, ``median`` (degrees), ``frac_below_5deg``, ``frac_below_10deg``,
            ``frac_below_30deg``, ``frac_above_150deg`` (fractions of the n predictions), ``n``
            and ``gt_weight_sum`` (``Σ`` of the ground-truth confidences of these particles, to
            pool wMAnE over half-sets), plus ``predconf_weighted_MAnE`` when ``confidence`` is given.

        Raises
        ------
        ValueError
            ids not 1-D, empty, unknown to the half-set, duplicated, or missing with ``complete``;
            ``rotmats`` not ``(n, 3, 3)``, non-finite or not rotations; ``confidence`` not ``(n,)``,
            non-finite or negative. Each message names the argument.
        """
        from cesped.geometry.angular_metrics import angular_metrics
        from cesped.geometry.numpy_ops import symmetry_aware_error

        rows = self._rows(ids, complete)
        r = self._rotations(rotmats, rows.size)
        conf = None if confidence is None else self._confidence(confidence, rows.size)
        err = symmetry_aware_error(np.take(self.true_rotmats, rows, axis=0), r, self.symmetry)
        return angular_metrics(err, self.gt_confidence[rows], conf)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two 1-D id arrays are equal, the first and last ids compared before the rest."""
    if a.shape != b.shape or a[0] != b[0] or a[-1] != b[-1]:
        return False
    return bool(np.array_equal(a, b))


def _orthogonality(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``max |RᵀR − I|`` and ``det R`` of each matrix of ``r`` (n, 3, 3), from its columns."""
    c = [r[:, :, j] for j in range(3)]
    orth = np.zeros(len(r))
    for i in range(3):
        for j in range(i, 3):
            d = np.einsum("ni,ni->n", c[i], c[j])
            if i == j:
                d -= 1.0
            np.maximum(orth, np.abs(d), out=orth)
    det = np.einsum("ni,ni->n", c[0], np.cross(c[1], c[2]))  # triple product
    return orth, det


def _examples(values, k: int = 5) -> str:
    vals = [str(v) for v in values]
    more = f" (and {len(vals) - k} more)" if len(vals) > k else ""
    return ", ".join(vals[:k]) + more
