"""Results records of the benchmark protocol: one JSON file per (entry, seed, method).

Schema ``cesped.benchmark.record`` version :data:`SCHEMA_VERSION` (every key is always present;
``null`` where a value is unknown)::

    {
      "schema": "cesped.benchmark.record", "schema_version": 1,
      "entry": "synth_6msm", "seed": 0,
      "entry_checksum": "sha256:…",            # entry_checksum() of the entry's files
      "entry_checksum_method": "cesped-entry-v1",
      "method": {"name": "Image2Sphere[demo]", "kind": "trained" | "predictions" | "reference" | "floor",
                 "config": {…}},               # the composed training config, or the user's
      "cesped": {"version": "26.11.0", "git_commit": "…" | null, "git_dirty": true | false | null},
      "command": ["python", "-m", "cesped.benchmark", …], "created": "2026-12-03T16:40:00+00:00",
      "hardware": {"cpu_model", "cpu_count", "cpus_available", "gpus": [names], "platform", "python"},
      "timings_s": {"train": s | null, "predict": s | null, "evaluate": s,
                    "train_half0", "train_half1", "predict_half0", "predict_half1"},
      "predictions": {"half0": path, "half1": path},   # under the run's outdir: relative to it
      "metrics": {…},                          # cesped.evaluation.evaluate.evaluate's dict
      "angular": {"half0": {…}, "half1": {…}}, # cesped.Evaluator.eval of each half
      "refined": null | {"metrics": {…}, "angular": {…},   # the same, of the refined poses
                         "predictions": {"half0", "half1"}, "refinement": {"half0": {…}, "half1": {…}}}
    }

``refined`` (``run ... refine=true``: the predictions refined by
:func:`cesped.refinement.api.refine_star`, with its summaries) is optional when reading, so the
records written before it existed stay valid; :func:`new_record` always writes it.

Entry checksum (``cesped-entry-v1``): SHA-256 over, for half-sets 0 and 1 in turn, the bytes of
``particles_<h>.star`` and ``info_<h>.json``, then for each image stack the star file names
(sorted, by name relative to the entry directory): its size in bytes, its first 1024 bytes (the
MRC header: shape, mode, pixel size) and three 64 KiB samples (at the start of the data, the
middle and the end). It is cheap (the star files are read whole, the stacks only sampled; a
300,000-particle entry takes well under a second), independent of modification times and of
where the entry lives, and changes when the poses, CTFs, particle list, symmetry, image
geometry or (almost surely) the image contents change. The mask is not part of it: the
evaluation records which mask it used (``metrics["mask"]``, ``metrics["paper_columns_use"]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "CHECKSUM_METHOD",
    "entry_checksum",
    "hardware_info",
    "cesped_info",
    "new_record",
    "record_path",
    "write_record",
    "read_record",
    "slug",
]

SCHEMA = "cesped.benchmark.record"
SCHEMA_VERSION = 1
CHECKSUM_METHOD = "cesped-entry-v1"
METHOD_KINDS = ("trained", "predictions", "reference", "floor")
_REQUIRED = (
    "schema",
    "schema_version",
    "entry",
    "seed",
    "entry_checksum",
    "entry_checksum_method",
    "method",
    "cesped",
    "command",
    "created",
    "hardware",
    "timings_s",
    "predictions",
    "metrics",
    "angular",
)
_SAMPLE = 64 * 1024
_HEADER = 1024


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``.``, ``_``, ``-``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    if not s:
        raise ValueError(f"cannot make a file name from {text!r}")
    return s


# ------------------------------------------------------------------------------- entry checksum


def _stack_files(star_path: Path) -> list[str]:
    from cesped.io.stack import parse_image_name
    from cesped.io.star import read_star

    names = read_star(star_path).particles["rlnImageName"].astype(str).unique()
    return sorted({parse_image_name(n)[1] for n in names})


def _hash_stack(h, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"size={size};".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_HEADER))
        for off in (_HEADER, max(_HEADER, size // 2 - _SAMPLE // 2), max(_HEADER, size - _SAMPLE)):
            fh.seek(off)
            h.update(fh.read(_SAMPLE))


def entry_checksum(entry_dir: str | os.PathLike) -> str:
    """The ``cesped-entry-v1`` checksum of an entry directory (module docstring), ``"sha256:<hex>"``.

    Raises
    ------
    FileNotFoundError
        A star, info or stack file of the entry is missing (named).
    """
    d = Path(entry_dir)
    h = hashlib.sha256(CHECKSUM_METHOD.encode())
    for half in (0, 1):
        for name in (f"particles_{half}.star", f"info_{half}.json"):
            p = d / name
            if not p.is_file():
                raise FileNotFoundError(f"entry checksum: {p} not found")
            h.update(f"{name};".encode())
            h.update(p.read_bytes())
        for rel in _stack_files(d / f"particles_{half}.star"):
            p = (d / rel) if not Path(rel).is_absolute() else Path(rel)
            if not p.is_file():
                raise FileNotFoundError(
                    f"entry checksum: image stack {p} (of particles_{half}.star) not found"
                )
            h.update(f"stack={rel};".encode())
            _hash_stack(h, p)
    return "sha256:" + h.hexdigest()


# ----------------------------------------------------------------------------- provenance


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware_info() -> dict:
    """CPU model and counts, GPU names (only when torch is already imported), platform, Python."""
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        avail = os.cpu_count()
    gpus: list[str] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # a broken driver must not lose the results
            gpus = []
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": avail,
        "gpus": gpus,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def cesped_info() -> dict:
    """cesped's version, and the git commit (and whether the tree is dirty) of its source, if in git."""
    import cesped

    root = Path(cesped.__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        r = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if r.returncode == 0:
            commit = r.stdout.strip()
            s = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            dirty = bool(s.stdout.strip()) if s.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": cesped.__version__, "git_commit": commit, "git_dirty": dirty}


def major_version(version: str) -> str:
    """The major component of a cesped version string (``"26.11.0"`` -> ``"26"``)."""
    return str(version).split(".", 1)[0]


# ------------------------------------------------------------------------------- records


def new_record(
    entry: str,
    seed: int,
    method_name: str,
    method_kind: str,
    method_config: dict | None,
    entry_checksum_value: str,
    metrics: dict,
    angular: dict,
    timings_s: dict,
    predictions: dict,
    command: list[str] | None = None,
    refined: dict | None = None,
) -> dict:
    """A complete record (module docstring), provenance filled in from this process.

    ``refined``: None, or ``{"metrics", "angular", "predictions", "refinement"}`` of the refined poses.
    """
    if refined is not None:
        missing = [k for k in ("metrics", "angular", "predictions", "refinement") if k not in refined]
        if missing:
            raise ValueError(f"refined: lacks {', '.join(missing)}")
    if method_kind not in METHOD_KINDS:
        raise ValueError(f"method kind must be one of {METHOD_KINDS}, got {method_kind!r}")
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "entry": str(entry),
        "seed": int(seed),
        "entry_checksum": entry_checksum_value,
        "entry_checksum_method": CHECKSUM_METHOD,
        "method": {"name": str(method_name), "kind": method_kind, "config": method_config or {}},
        "cesped": cesped_info(),
        "command": list(sys.argv if command is None else command),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "hardware": hardware_info(),
        "timings_s": dict(timings_s),
        "predictions": dict(predictions),
        "metrics": dict(metrics),
        "angular": dict(angular),
        "refined": None if refined is None else dict(refined),
    }


def record_path(results_dir: str | os.PathLike, method_name: str, entry: str, seed: int) -> Path:
    """``<results_dir>/<method slug>/<entry>/seed<seed>.json``."""
    return Path(results_dir) / slug(method_name) / slug(entry) / f"seed{int(seed)}.json"


def write_record(path: str | os.PathLike, record: dict) -> Path:
    """Validate ``record`` and write it atomically as JSON (NaN written as ``null``)."""
    from cesped.io.atomic import atomic_open

    validate_record(record, str(path))
    with atomic_open(path) as fh:
        json.dump(_finite(record), fh, indent=1, allow_nan=False)
        fh.write("\n")
    return Path(path)


def _finite(x):
    import math

    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def validate_record(rec, where: str) -> dict:
    """Check the schema of a record; return it.

    Raises
    ------
    ValueError
        Not a JSON object, another schema or schema version, or a required key missing; the
        message names ``where`` (the file) and the key.
    """
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: not a results record (expected a JSON object)")
    if rec.get("schema") != SCHEMA:
        raise ValueError(f"{where}: not a {SCHEMA} (schema field is {rec.get('schema')!r})")
    if rec.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{where}: schema_version {rec.get('schema_version')!r}, "
            f"this cesped reads version {SCHEMA_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise ValueError(f"{where}: record lacks {', '.join(missing)}")
    m = rec["method"]
    if not isinstance(m, dict) or not m.get("name") or m.get("kind") not in METHOD_KINDS:
        raise ValueError(f"{where}: method must hold a name and a kind in {METHOD_KINDS}, got {m!r}")
    if not isinstance(rec["metrics"], dict):
        raise ValueError(f"{where}: metrics must be a JSON object")
    refined = rec.get("refined")
    if refined is not None and not (isinstance(refined, dict) and isinstance(refined.get("metrics"), dict)):
        raise ValueError(f"{where}: refined must be null or a JSON object with a metrics object")
    if rec["entry_checksum_method"] != CHECKSUM_METHOD:
        raise ValueError(
            f"{where}: entry checksum method {rec['entry_checksum_method']!r}, "
            f"this cesped uses {CHECKSUM_METHOD}"
        )
    return rec


def read_record(path: str | os.PathLike) -> dict:
    """Read and validate one record.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Corrupt JSON or a schema mismatch (the message names the file).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"results record {p} not found") from None
    try:
        rec = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{p}: corrupt results record (not valid JSON: {e})") from e
    return validate_record(rec, str(p))
