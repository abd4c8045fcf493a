"""Helpers shared by the command-line entry points: one-line errors, output folders checked first.

Example usage
-------------
>>> from cesped._cli import error_line
>>> error_line(NotADirectoryError(20, "Not a directory", "runs/a.txt/out"))
'runs/a.txt/out: Not a directory'
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["error_line", "check_output_dir"]


def error_line(exc: BaseException) -> str:
    """The message of ``exc`` for a command line.

    An ``OSError`` from the system (``exc.filename`` set) becomes ``"<path>: <reason>"``; other
    exceptions keep their own message, which names the file or field.
    """
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        paths = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{paths}: {exc.strerror}"
    return str(exc)


def check_output_dir(path: str | os.PathLike) -> Path:
    """Check, before any work and without creating anything, that ``path`` can become an output folder.

    Raises
    ------
    NotADirectoryError
        ``path`` or its nearest existing ancestor is not a directory.
    PermissionError
        That folder is not writable.
    """
    p = Path(path).expanduser()
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(anc))
    if not os.access(anc, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(anc))
    return p
