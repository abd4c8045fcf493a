"""Atomic file writes: write to a temporary name in the target directory, rename when complete.

A reader never sees a half-written file, and an interrupted write leaves the previous file
(if any) untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_open"]


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        Final destination. Its parent directory is created when missing.
    suffix : str, optional
        Suffix of the temporary file (default: the suffix of ``path``, so that libraries that
        choose a format by extension, e.g. ``mrcfile``, behave as for the final name).

    Notes
    -----
    On any exception inside the block the temporary file is removed and the exception
    propagates; ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes[-1:])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates the file with mode 0600; give the result the permissions a plain open()
    # would (those of the file it replaces, else 0666 minus the umask)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_current_umask()
    os.chmod(tmp_path, mode)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file for writing and rename it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        Final destination.
    mode : str
        ``"w"`` (text) or ``"wb"`` (binary); other keyword arguments go to :func:`open`.
    """
    if "r" in mode or "a" in mode or "+" in mode:
        raise ValueError(f"atomic_open: mode must be a write mode ('w' or 'wb'), got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
