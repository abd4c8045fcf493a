"""Default locations of the benchmark data and of derived caches.

Every default can be overridden by an argument of the function that uses it, by a config
value, or by an environment variable:

``CESPED_BENCHMARK_DIR``
    where entries live (``<dir>/<target>/particles_{0,1}.star`` ...). Default: the per-user
    data directory, e.g. ``~/.local/share/cesped/benchmark`` on Linux.
``CESPED_CACHE_DIR``
    derived data that can be rebuilt (Wigner-D tables, ground-truth reconstructions).
    Default: the per-user cache directory, e.g. ``~/.cache/cesped``.
``CESPED_ORIGINAL_BENCHMARK_DIR``
    the original cesped package's data folder, looked at only to say that an entry missing
    here is there (never read as an entry). Default: the original's own default,
    ``<home>/tmp/cryoSupervisedDataset`` (its ``configs/defaultDataConfig.yaml``); an empty
    value: do not look.
``CESPED_ZENODO_URL``
    base URL of the records API, default ``https://zenodo.org/api/records/``.
``OMP_NUM_THREADS``
    CPU threads of the compiled reconstruction and the metrics' FFTs when no count is given
    (default: the CPUs the process may use).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["benchmark_dir", "cache_dir", "default_threads", "original_benchmark_dir", "zenodo_url"]

DEFAULT_ZENODO_URL = "https://zenodo.org/api/records/"


def _platform_dirs():
    import platformdirs

    return platformdirs.PlatformDirs(appname="cesped", appauthor=False)


def benchmark_dir(override: str | os.PathLike | None = None) -> Path:
    """Directory that holds the benchmark entries.

    Parameters
    ----------
    override : path, optional
        Returned (expanded) when given; otherwise ``$CESPED_BENCHMARK_DIR``, otherwise the
        per-user data directory ``<user_data_dir>/cesped/benchmark``.
    """
    if override is not None and str(override) != "":
        return Path(os.path.expanduser(str(override)))
    env = os.environ.get("CESPED_BENCHMARK_DIR")
    if env:
        return Path(os.path.expanduser(env))
    return Path(_platform_dirs().user_data_dir) / "benchmark"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Directory for derived data that can be rebuilt at any time (tables, cached maps)."""
    if override is not None and str(override) != "":
        return Path(os.path.expanduser(str(override)))
    env = os.environ.get("CESPED_CACHE_DIR")
    if env:
        return Path(os.path.expanduser(env))
    return Path(_platform_dirs().user_cache_dir)


def original_benchmark_dir() -> Path | None:
    """The original cesped package's data folder, or None when not to look there.

    ``$CESPED_ORIGINAL_BENCHMARK_DIR`` when set (empty: None), otherwise the original's default,
    ``tmp/cryoSupervisedDataset`` in the user's home directory.
    """
    env = os.environ.get("CESPED_ORIGINAL_BENCHMARK_DIR")
    if env is not None:
        return Path(os.path.expanduser(env)) if env.strip() else None
    return Path.home() / "tmp" / "cryoSupervisedDataset"


def default_threads() -> int:
    """CPU threads when none are given: ``OMP_NUM_THREADS`` if set, else the CPUs this process
    may use (its affinity mask)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def zenodo_url(override: str | None = None) -> str:
    """Base URL of the Zenodo records API, ending with a slash."""
    url = override or os.environ.get("CESPED_ZENODO_URL") or DEFAULT_ZENODO_URL
    return url if url.endswith("/") else url + "/"
