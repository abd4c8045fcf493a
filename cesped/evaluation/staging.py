"""The output directory of an evaluation: built beside ``outdir``, swapped in when complete.

A reader of ``outdir`` sees either the previous complete result or the new complete result,
never a mix of two runs nor a half-written one:

* before any work, ``outdir`` is checked (:func:`check_outdir`): it must not be an existing
  file, its parent must be creatable and writable, and an existing ``outdir`` must hold nothing
  but outputs of an evaluation (:data:`OUTPUT_FILES`, or temporary files of an interrupted
  earlier run) -- **the whole directory is replaced by the new result**, so a directory with
  other files (your notes, other results) is refused rather than emptied: give a new or empty
  directory;
* the outputs are written into a hidden directory beside it, ``.<name>.cesped-stage-<pid>-*``;
* at the end the two directories are exchanged atomically (``renameat2(RENAME_EXCHANGE)`` on
  Linux; elsewhere two renames, the previous directory kept until the new one is in place)
  and the previous result is deleted;
* on an error, ``KeyboardInterrupt`` or SIGTERM (a handler is installed for the duration when
  the process has none) the hidden directory is removed and ``outdir`` is untouched; SIGTERM
  then exits with status 143. After SIGKILL the hidden directory stays; the next evaluation
  into the same ``outdir`` removes it (once its process is gone).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path

__all__ = ["OUTPUT_FILES", "check_outdir", "StagedOutdir"]

_MAPS = ("gt_0", "gt_1", "gt", "pred_0", "pred_1", "pred")
_STAGE = ".{name}.cesped-stage-"


def _output_files() -> frozenset:
    from cesped.evaluation.report import CONFIDENCE_PNG, COVERAGE_PNG

    return frozenset(
        {
            "metrics.json",
            "metrics.csv",
            "fsc_curves.csv",
            "report.html",
            "fsc.png",
            "angular_errors.png",
            "central_slices.png",
            COVERAGE_PNG,
            CONFIDENCE_PNG,
            *(f"{m}.mrc" for m in _MAPS),
        }
    )


OUTPUT_FILES = _output_files()
"""Names of the files an evaluation writes into ``outdir``."""


def _is_output(name: str, known) -> bool:
    if name in known:
        return True
    # temporary file of an interrupted atomic write of an earlier version (".<name>.<rand>.tmp<ext>")
    m = re.fullmatch(r"\.(.+?)\.[^.]+\.tmp(\.\w+)?", name)
    return bool(m and m.group(1) in known)


def check_outdir(outdir, extra_names=()) -> Path:
    """Check ``outdir`` before any work (see the module docstring); return it as a Path.

    Parameters
    ----------
    outdir : path-like
    extra_names : iterable of str
        Further file names accepted in an existing ``outdir``.

    Raises
    ------
    NotADirectoryError
        ``outdir`` (or a parent) is an existing file.
    PermissionError
        ``outdir`` or its parent is not writable.
    ValueError
        ``outdir`` holds files that are not outputs of an evaluation (named).
    """
    p = Path(os.path.expanduser(str(outdir)))
    if p.is_symlink():
        p = p.resolve()  # replace the directory it points to, not the link
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"outdir {p} exists and is not a directory")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"outdir {p}: {parent} is not a directory")
            break
    if p.is_dir():
        known = OUTPUT_FILES | set(extra_names)
        foreign = sorted(e.name for e in p.iterdir() if not (e.is_file() and _is_output(e.name, known)))
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" (and {len(foreign) - 5} more)" if len(foreign) > 5 else "")
            raise ValueError(
                f"outdir {p} holds files that are not outputs of an evaluation ({shown}); the "
                "evaluation replaces the whole directory: give a new or empty directory"
            )
        if not os.access(p, os.W_OK | os.X_OK):
            raise PermissionError(f"outdir {p} is not writable")
    return p


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(outdir: Path) -> None:
    """Remove staging directories of earlier runs into ``outdir`` whose process is gone."""
    prefix = _STAGE.format(name=outdir.name)
    for d in outdir.parent.glob(prefix + "*"):
        m = re.match(r"(\d+)-", d.name[len(prefix) :])
        if d.is_dir() and m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot exchange
            return False
        raise OSError(err, os.strerror(err), str(b))
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class StagedOutdir:
    """Context manager: a hidden directory beside ``outdir`` that :meth:`commit` swaps in.

    Parameters
    ----------
    outdir : path-like
        Checked with :func:`check_outdir` on construction.

    Examples
    --------
    >>> with StagedOutdir("evaluation/") as stage:      # doctest: +SKIP
    ...     (stage.path / "metrics.json").write_text("{}")
    ...     stage.commit()
    """

    def __init__(self, outdir):
        self.outdir = check_outdir(outdir)
        self.path: Path | None = None
        self._old_handler = None

    def __enter__(self) -> StagedOutdir:
        parent = self.outdir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _remove_stale(self.outdir)
            prefix = _STAGE.format(name=self.outdir.name) + f"{os.getpid()}-"
            self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        except OSError as e:
            raise type(e)(f"outdir {self.outdir}: cannot create a directory in {parent}: {e}") from e
        mode = self.outdir.stat().st_mode & 0o7777 if self.outdir.is_dir() else 0o777 & ~_umask()
        os.chmod(self.path, mode)
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
        return self

    def commit(self) -> Path:
        """Replace ``outdir`` by the staged directory; return ``outdir``."""
        check_outdir(self.outdir, extra_names=[e.name for e in self.path.iterdir()])
        staged, dest = self.path, self.outdir
        if not dest.exists():
            os.rename(staged, dest)
        elif _exchange(staged, dest):
            shutil.rmtree(staged)  # now the previous result
        else:
            backup = Path(
                tempfile.mkdtemp(prefix=_STAGE.format(name=dest.name) + f"{os.getpid()}-", dir=dest.parent)
            )
            os.rmdir(backup)
            os.rename(dest, backup)
            try:
                os.rename(staged, dest)
            except BaseException:
                os.rename(backup, dest)
                raise
            shutil.rmtree(backup)
        self.path = None
        return dest

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.path)
            self.path = None
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)
