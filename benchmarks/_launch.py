"""Shared helpers of the benchmark scripts: one JSON line per figure, whole-process measurement.

``measure(cmd)`` runs one command as a whole process, from its start to its exit (imports,
compiled-kernel loading and file I/O included, as a user waits for it), and returns its wall
seconds and its own peak resident set size. The peak RSS comes from ``/usr/bin/time`` (GNU
time: a small C program that forks and execs the command) or, where it is missing, from the
same fork/exec done by a small Python launcher. Measuring through a small launcher matters: on
Linux a process forked from a large driver keeps the driver's resident size as its high-water
mark even after ``exec``, so ``wait4()`` on a direct child of the benchmark driver would report
``max(driver, child)``. The figure is the maximum over the command and the descendants it
waited for (e.g. the largest MPI rank under ``mpirun``), never their sum.

Example usage (from a script in ``benchmarks/``)::

    from _launch import emit, measure
    r = measure(["relion_reconstruct", "--i", "p.star", "--o", "m.mrc"], cwd=d)
    emit("relion_seconds", r["wall_s"], "s", peak_rss_mb=r["peak_rss_mb"])
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

__all__ = ["emit", "measure", "load_average", "GNU_TIME"]

GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

# fork/exec launcher used when GNU time is missing: writes the child's ru_maxrss (KiB)
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def emit(name, value, unit, reference=None, ratio=None, **extra) -> dict:
    """Print one figure as a JSON line ``{"name", "value", "unit", "reference", "ratio", ...}``.

    ``reference`` is the same figure of the reference measured in the same run (None: not
    measured, and then ``ratio`` must be None too).
    """
    if reference is None and ratio is not None:
        raise ValueError(f"{name}: a ratio without a measured reference")
    fig = {"name": name, "value": value, "unit": unit, "reference": reference, "ratio": ratio, **extra}
    print(json.dumps(fig), flush=True)
    return fig


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: recorded with each figure)."""
    return [round(x, 2) for x in os.getloadavg()]


def measure(cmd, env=None, cwd=None, timeout: float | None = None, log_tail: int = 3000) -> dict:
    """Run ``cmd`` as a whole process; return its wall seconds and its own peak RSS.

    Parameters
    ----------
    cmd : sequence of str
        The command (the first element is looked up on PATH).
    env : dict, optional
        Its environment (default: this one).
    cwd : path, optional
    timeout : float, optional
        Seconds before it is killed (``subprocess.TimeoutExpired``).

    Returns
    -------
    dict with ``wall_s`` (float, seconds from start to exit, launcher included: a few ms),
    ``peak_rss_mb`` (MiB, the largest resident set of the command or of a descendant it
    waited for), ``rss_tool`` ("gnu time" or "fork/exec launcher"), ``load_1min`` and ``output``
    (its stdout and stderr, interleaved).

    Raises
    ------
    RuntimeError
        The command failed; the message holds the end of its output.
    """
    cmd = [str(c) for c in cmd]
    if shutil.which(cmd[0]) is None and not os.path.isfile(cmd[0]):
        raise FileNotFoundError(f"benchmark command not found: {cmd[0]}")
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "maxrss")
        if GNU_TIME:
            launch = [GNU_TIME, "-f", "%M", "-o", rss_file, *cmd]
            tool = "gnu time"
        else:
            launch = [sys.executable, "-c", _LAUNCHER, rss_file, *cmd]
            tool = "fork/exec launcher"
        t0 = time.perf_counter()
        proc = subprocess.run(launch, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        wall = time.perf_counter() - t0
        log.seek(0)
        output = log.read().decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{output[-log_tail:]}")
        with open(rss_file) as fh:
            maxrss_kb = float(fh.read().split()[-1])
    return {
        "wall_s": wall,
        "peak_rss_mb": maxrss_kb / 1024.0,
        "rss_tool": tool,
        "load_1min": round(os.getloadavg()[0], 2),
        "output": output,
    }
