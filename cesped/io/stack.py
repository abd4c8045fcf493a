"""Particle image stacks (.mrcs): memory-mapped reads by particle index, atomic writes.

``rlnImageName`` is ``"<n>@<path>"`` with a 1-based slice number ``n``; the path is relative to
the directory of the star file (or to a given root). :class:`ImageSource` maps particle rows to
(file, slice) once, validates every stack header (existence, size, index range), and reads
images through ``numpy`` memory maps opened lazily in each process, so it can be pickled to
``DataLoader`` workers and never loads a whole stack.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from cesped.io.atomic import atomic_path
from cesped.io.mrc import clear_labels, write_mrc_array
from cesped.io.star import StarFile, require_columns

__all__ = ["parse_image_name", "ImageSource", "write_stack", "stack_info", "StackWriter"]

_MAX_OPEN = 64  # memory maps kept open per process (LRU)


def parse_image_name(name: str) -> tuple[int, str]:
    """Split a RELION image name into a 0-based slice index and a path.

    Parameters
    ----------
    name : str
        ``"000012@stacks/a.mrcs"`` (1-based slice number) or a bare path (one image).

    Returns
    -------
    (int, str)
        ``(11, "stacks/a.mrcs")``; a bare path gives index 0.

    Raises
    ------
    ValueError
        Malformed name (empty path, non-integer or < 1 slice number).
    """
    if not isinstance(name, str):
        raise ValueError(f"rlnImageName: expected a string like '12@stack.mrcs', got {name!r}")
    s = name.strip()
    if "@" not in s:
        if not s:
            raise ValueError("rlnImageName: empty image name")
        return 0, s
    num, path = s.split("@", 1)
    try:
        n = int(num)
    except ValueError:
        raise ValueError(f"rlnImageName {name!r}: slice number {num!r} is not an integer") from None
    if n < 1:
        raise ValueError(f"rlnImageName {name!r}: slice numbers are 1-based, got {n}")
    if not path:
        raise ValueError(f"rlnImageName {name!r}: empty path")
    return n - 1, path


def _stack_header(path: str | os.PathLike) -> tuple[int, int, int, np.dtype, int, float]:
    """:func:`stack_info` plus the header's pixel size ``cella.x / mx`` (Å/px, 0 when unset)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image stack not found: {path}")
    try:
        with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
            h = mrc.header
            nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
            dtype = mrcfile.utils.data_dtype_from_header(h)
            offset = 1024 + int(h.nsymbt)
            mx, cella_x = int(h.mx), float(h.cella.x)
            px = cella_x / mx if mx > 0 and np.isfinite(cella_x) and cella_x > 0 else 0.0
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a readable MRC file: {exc}") from exc
    if min(nx, ny, nz) < 1:
        raise ValueError(f"{path}: invalid MRC dimensions nx={nx} ny={ny} nz={nz}")
    expected = offset + nx * ny * nz * dtype.itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise ValueError(
            f"{path}: truncated MRC stack: header says {nz} images of {ny}x{nx} ({expected} bytes) "
            f"but the file has {actual} bytes"
        )
    return nz, ny, nx, dtype, offset, px


def stack_info(path: str | os.PathLike) -> tuple[int, int, int, np.dtype, int]:
    """Header facts of an MRC stack, after checking that the file is complete.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    (nz, ny, nx, dtype, data_offset)
        Number of images, image shape, on-disk dtype (with byte order) and byte offset of the
        data block.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Not a readable MRC file, or shorter than its header says (truncated).
    """
    return _stack_header(path)[:5]


def _stack_candidates(rel: str, root: Path, star_dir: Path | None) -> list[Path]:
    """Where the stack named ``rel`` in ``rlnImageName`` may be, in the order tried."""
    p = Path(rel)
    out = [p if p.is_absolute() else root / p]
    for d in (root, star_dir):
        if d is not None and (d / p.name) not in out:
            out.append(d / p.name)
    return out


def _locate_stack(rel: str, root: Path, star_dir: Path | None) -> Path | None:
    """The stack of ``rlnImageName`` path ``rel``: ``root/rel`` (or ``rel`` if absolute), else
    ``root/<basename>``, else ``<star dir>/<basename>`` (as the original package's loader: a
    project's ``Extract/job012/`` prefix when the stacks were moved next to the star); None if
    none exists."""
    for c in _stack_candidates(rel, root, star_dir):
        if c.is_file():
            return c
    return None


class ImageSource:
    """Random access to the particle images of a star file, memory-mapped.

    Parameters
    ----------
    files : sequence of str
        Absolute stack paths, one per distinct file.
    file_index : array (n,) int
        For each particle row, its index into ``files``.
    slice_index : array (n,) int
        For each particle row, its 0-based slice within the stack.

    Notes
    -----
    Build it with :meth:`from_star`. Pickling drops open memory maps; each process opens its
    own on first read (at most 64 at a time).
    """

    def __init__(
        self, files: Sequence[str], file_index, slice_index, shape: tuple[int, int], dtypes, offsets, counts
    ):
        self.files = [str(f) for f in files]
        self.file_index = np.asarray(file_index, dtype=np.int64)
        self.slice_index = np.asarray(slice_index, dtype=np.int64)
        self._shape = (int(shape[0]), int(shape[1]))
        self._dtypes = [np.dtype(d) for d in dtypes]
        self._offsets = [int(o) for o in offsets]
        self._counts = [int(c) for c in counts]
        self._maps: OrderedDict[int, np.memmap] = OrderedDict()
        self._pid = os.getpid()
        self.header_pixel_sizes: list[float] = [0.0] * len(self.files)  # Å/px per file, 0 = unset

    @classmethod
    def from_star(cls, star: StarFile, root: str | os.PathLike | None = None) -> ImageSource:
        """Index the images of ``star.particles`` (column ``rlnImageName``).

        Parameters
        ----------
        star : StarFile
        root : path-like, optional
            Directory that relative image paths start from; default: the star file's directory
            (the current directory for an in-memory star). A stack not found there is looked
            for by its base name in ``root`` and then in the star file's directory (RELION
            project paths such as ``Extract/job012/a.mrcs`` of stacks moved next to the star).

        Raises
        ------
        ValueError
            Missing ``rlnImageName`` column, malformed names, an index past the end of its stack
            (names row, file and index), images of different sizes, truncated stacks.
        FileNotFoundError
            A stack does not exist (names the file and the first row using it).
        """
        require_columns(star, ["rlnImageName"], "reading images")
        if root is None:
            root = star.path.parent if star.path is not None else Path.cwd()
        root = Path(root)
        names = star.particles["rlnImageName"].astype(str).to_numpy()
        parsed = [parse_image_name(n) for n in names]
        slices = np.fromiter((p[0] for p in parsed), dtype=np.int64, count=len(parsed))
        rel = pd.Series([p[1] for p in parsed], dtype=object)
        codes, uniques = pd.factorize(rel, sort=False)
        files, dtypes, offsets, counts, pixel_sizes, shape = [], [], [], [], [], None
        order = np.argsort(codes, kind="stable")  # rows grouped by file, in row order
        starts = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        star_dir = star.path.parent if star.path is not None else None
        for k, r in enumerate(uniques):
            rows = order[starts[k] : starts[k + 1]]
            first_row = int(rows[0])
            full = _locate_stack(r, root, star_dir)
            if full is None:
                tried = _stack_candidates(r, root, star_dir)
                raise FileNotFoundError(
                    f"image stack not found: {tried[0]} (rlnImageName of row {first_row}: "
                    f"{names[first_row]!r}; paths are relative to {root}"
                    + (f"; also tried {', '.join(map(str, tried[1:]))}" if len(tried) > 1 else "")
                    + ")"
                )
            nz, ny, nx, dt, off, px = _stack_header(full)
            over = rows[slices[rows] >= nz]
            if over.size:
                i = int(over[0])
                raise ValueError(
                    f"row {i} (0-based) of {star.path or 'the star file'}: rlnImageName {names[i]!r} "
                    f"asks for image {slices[i] + 1} but {full} has {nz} images"
                )
            if shape is None:
                shape = (ny, nx)
            elif shape != (ny, nx):
                raise ValueError(
                    f"{full}: images are {ny}x{nx} but earlier stacks have {shape[0]}x{shape[1]}"
                )
            files.append(str(full.resolve()))
            dtypes.append(dt)
            offsets.append(off)
            counts.append(nz)
            pixel_sizes.append(px)
        if shape is None:
            raise ValueError(f"{star.path or 'star file'}: data_particles has no rows")
        src = cls(files, codes, slices, shape, dtypes, offsets, counts)
        src.header_pixel_sizes = pixel_sizes
        return src

    def __len__(self) -> int:
        return int(self.file_index.shape[0])

    def pixel_size_mismatch(self, pixel_size: float, rtol: float = 1e-3) -> tuple[str, float] | None:
        """The first stack whose header pixel size disagrees with ``pixel_size`` (Å/px).

        Headers without a pixel size (0) are not compared. Returns ``(file, header_pixel_size)``
        or None when every set header agrees within the relative tolerance ``rtol``.
        """
        for f, px in zip(self.files, self.header_pixel_sizes):
            if px > 0 and abs(px - pixel_size) > rtol * pixel_size:
                return f, px
        return None

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(ny, nx)`` in pixels."""
        return self._shape

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def close(self) -> None:
        """Drop this process's memory maps."""
        self._maps.clear()

    def _map(self, k: int) -> np.memmap:
        if self._pid != os.getpid():  # forked: do not share the parent's maps
            self._maps = OrderedDict()
            self._pid = os.getpid()
        m = self._maps.get(k)
        if m is None:
            shape = (self._counts[k], *self._shape)
            m = np.memmap(
                self.files[k], dtype=self._dtypes[k], mode="r", offset=self._offsets[k], shape=shape
            )
            self._maps[k] = m
            if len(self._maps) > _MAX_OPEN:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(k)
        return m

    def _rows(self, indices) -> np.ndarray:
        n = len(self)
        if isinstance(indices, slice):
            return np.arange(n)[indices]
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            bad = rows[(rows < -n) | (rows >= n)][0]
            raise IndexError(f"ImageSource.read: row {int(bad)} out of range for {n} particles")
        return np.where(rows < 0, rows + n, rows)

    def read(self, indices: Sequence[int] | slice | np.ndarray, via_maps: bool = True) -> np.ndarray:
        """Images of the given particle rows.

        Parameters
        ----------
        indices : sequence of int, integer array or slice
            Rows of ``star.particles`` (negative values count from the end).
        via_maps : bool
            True (default): copy from memory maps of the stacks (kept open, fast for many
            small random reads). False: plain file reads, one per run of consecutive slices,
            and no map: the page cache's pages are never mapped into this process, whose
            resident memory then does not grow with the stack (a memory map of scattered
            images can add about 1 MiB of mapped pages per image read).

        Returns
        -------
        np.ndarray float32 (n, ny, nx)
            Images in the order requested.

        Raises
        ------
        ValueError
            ``via_maps=False`` and a stack is shorter than its header says.
        """
        rows = self._rows(indices)
        out = np.empty((rows.size, *self._shape), dtype=np.float32)
        if rows.size == 0:
            return out
        fidx = self.file_index[rows]
        sidx = self.slice_index[rows]
        read_into = self._read_into if via_maps else self._pread_into
        if len(self.files) == 1:  # fast path: one stack
            read_into(out, np.arange(rows.size), 0, sidx)
            return out
        order = np.argsort(fidx, kind="stable")
        bounds = np.flatnonzero(np.diff(fidx[order])) + 1
        for grp in np.split(order, bounds):
            read_into(out, grp, int(fidx[grp[0]]), sidx[grp])
        return out

    def _pread_into(self, out: np.ndarray, pos: np.ndarray, k: int, sidx: np.ndarray) -> None:
        srt = np.argsort(sidx, kind="stable")  # read the file front to back
        sl, ps = sidx[srt], pos[srt]
        dt = self._dtypes[k]
        img_bytes = dt.itemsize * self._shape[0] * self._shape[1]
        runs = np.split(np.arange(sl.size), np.flatnonzero(np.diff(sl) != 1) + 1)
        with open(self.files[k], "rb", buffering=0) as fh:
            for run in runs:
                count = run.size
                buf = bytearray(count * img_bytes)
                fh.seek(self._offsets[k] + int(sl[run[0]]) * img_bytes)
                got = fh.readinto(buf)
                if got != len(buf):
                    raise ValueError(
                        f"{self.files[k]}: truncated stack (image {int(sl[run[0]]) + 1} onwards: "
                        f"{got} of {len(buf)} bytes)"
                    )
                out[ps[run]] = np.frombuffer(buf, dtype=dt).reshape(count, *self._shape)

    def _read_into(self, out: np.ndarray, pos: np.ndarray, k: int, sidx: np.ndarray) -> None:
        m = self._map(k)
        if sidx.size > 1 and np.all(np.diff(sidx) == 1):  # contiguous: one slice copy
            out[pos] = m[sidx[0] : sidx[-1] + 1]
        else:
            srt = np.argsort(sidx, kind="stable")  # read the file front to back
            out[pos[srt]] = m[sidx[srt]]


def write_stack(path: str | os.PathLike, images, pixel_size: float) -> None:
    """Write images as an MRC stack (float32, mode 2), atomically.

    Parameters
    ----------
    path : path-like
        Destination, normally ``*.mrcs``.
    images : np.ndarray or torch.Tensor (n, ny, nx)
        Images; converted to float32.
    pixel_size : float
        Å/px, stored as the voxel size (x, y and z).

    Raises
    ------
    ValueError
        Wrong dimensionality, empty stack, non-positive pixel size.
    """
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(
            f"write_stack({path}): images must be (n, ny, nx) with n >= 1, got shape {arr.shape}"
        )
    px = float(pixel_size)
    if not (np.isfinite(px) and px > 0):
        raise ValueError(f"write_stack({path}): pixel_size must be positive, got {pixel_size}")
    write_mrc_array(path, arr, px, stack=True)


class StackWriter:
    """Write a large MRC stack in batches through a memory map, atomically.

    Parameters
    ----------
    path : path-like
        Destination ``*.mrcs``.
    n : int
        Number of images.
    shape : (ny, nx)
        Image shape in pixels.
    pixel_size : float
        Å/px, stored as the voxel size.

    Examples
    --------
    >>> with StackWriter("p.mrcs", n=1000, shape=(128, 128), pixel_size=1.5) as w:  # doctest: +SKIP
    ...     for start in range(0, 1000, 100):
    ...         w.write(start, batch)                       # (100, 128, 128)

    Notes
    -----
    The file appears under ``path`` only when the ``with`` block ends without error and every
    image was written; otherwise the temporary file is removed. Header statistics (min, max,
    mean, rms) are accumulated from the batches.
    """

    def __init__(self, path: str | os.PathLike, n: int, shape: tuple[int, int], pixel_size: float):
        self.path = Path(path)
        self.n = int(n)
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size = float(pixel_size)
        if self.n < 1 or min(self.shape) < 1:
            raise ValueError(f"StackWriter({path}): need n >= 1 and a positive shape, got {n}, {shape}")
        if not (np.isfinite(self.pixel_size) and self.pixel_size > 0):
            raise ValueError(f"StackWriter({path}): pixel_size must be positive, got {pixel_size}")
        self._ctx = None
        self._mrc = None

    def __enter__(self) -> StackWriter:
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        try:
            self._mrc = mrcfile.new_mmap(tmp, shape=(self.n, *self.shape), mrc_mode=2, overwrite=True)
        except BaseException as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._written = np.zeros(self.n, dtype=bool)
        return self

    def write(self, start: int, images) -> None:
        """Store ``images`` (m, ny, nx) at slices ``start .. start+m-1`` (0-based)."""
        if hasattr(images, "detach"):
            images = images.detach().cpu().numpy()
        arr = np.asarray(images, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[1:] != self.shape:
            ny, nx = self.shape
            raise ValueError(f"StackWriter({self.path}): images must be (m, {ny}, {nx}), got {arr.shape}")
        start = int(start)
        if start < 0 or start + arr.shape[0] > self.n:
            last = start + arr.shape[0] - 1
            raise ValueError(f"StackWriter({self.path}): slices {start}..{last} outside 0..{self.n - 1}")
        self._mrc.data[start : start + arr.shape[0]] = arr
        self._written[start : start + arr.shape[0]] = True

    def read(self, start: int, count: int) -> np.ndarray:
        """Copy of slices ``start .. start+count-1`` as written so far, float32 (count, ny, nx).

        Lets a writer make several passes (e.g. write signals, then scale and add noise in place).
        """
        start = int(start)
        return np.array(self._mrc.data[start : start + int(count)], dtype=np.float32)

    def __exit__(self, exc_type, exc, tb):
        error = exc
        if error is None:
            try:
                if not self._written.all():
                    missing = int(np.flatnonzero(~self._written)[0])
                    raise ValueError(f"StackWriter({self.path}): image {missing} (0-based) was never written")
                self._finish_header()
            except Exception as e:  # noqa: BLE001 - handed to the atomic context below
                error = e
        try:
            self._mrc.close()
        except Exception as e:  # noqa: BLE001
            error = error if error is not None else e
        if error is None:
            self._ctx.__exit__(None, None, None)  # rename onto the destination
            return False
        self._ctx.__exit__(type(error), error, error.__traceback__)  # removes the temporary file
        if error is not exc:
            raise error
        return False

    def _finish_header(self) -> None:
        m = self._mrc
        m.set_image_stack()
        m.voxel_size = self.pixel_size
        # header statistics from the final data, in chunks (memory independent of the stack size)
        lo, hi, s, s2 = np.inf, -np.inf, 0.0, 0.0
        step = max(1, (64 << 20) // (4 * self.shape[0] * self.shape[1]))
        for start in range(0, self.n, step):
            a64 = np.asarray(m.data[start : start + step], dtype=np.float64)
            lo, hi = min(lo, float(a64.min())), max(hi, float(a64.max()))
            s += float(a64.sum())
            s2 += float((a64 * a64).sum())
        count = self.n * self.shape[0] * self.shape[1]
        mean = s / count
        m.header.dmin, m.header.dmax, m.header.dmean = lo, hi, mean
        m.header.rms = float(np.sqrt(max(s2 / count - mean * mean, 0.0)))
        clear_labels(m)
