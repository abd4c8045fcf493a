"""Checksummed, resumable downloads of CESPED entries from Zenodo (standard library only).

How a record maps onto the entry layout (the same as the original package's, so data downloaded
with it is found and used):

* ``particles_<h>.star`` and ``info_<h>.json`` are stored as they are named in the record;
* ``particles_<h>.mrcs.chunk_<k>`` files are concatenated in increasing ``k`` into
  ``particles_<h>.mrcs`` (each chunk is verified against its own md5 while it streams);
* any other file is stored under its own name;
* a record with dependencies (``consensus_10648`` reuses the 10648 stacks) first downloads the
  dependency into that entry's own directory, then links the files it lacks (all but ``.star``).

Transfers go to ``<final name>.part`` with a small ``<final name>.part.json`` listing the parts
already verified; an interrupted transfer resumes with an HTTP ``Range`` request (and restarts the
part when the server ignores the range). A final file appears, by rename, only once every part of
it verified, and the half-set is marked complete (``.complete_<h>.json``) only once every file of
the record did. The original package's ``SUCCESSFUL_DOWNLOAD_<record>.txt`` marker is accepted too.

Errors: :class:`OfflineError` when the server cannot be reached at all (name resolution, refused
connection): raised at once, with a message saying what to download and where to put it;
:class:`ChecksumError` when a file does not match its md5; :class:`DownloadError` otherwise.
Timeouts, dropped connections and HTTP 5xx/429 during a transfer are retried with exponential
back-off.

Example usage
-------------
>>> from cesped.data.zenodo import download_halfset          # doctest: +SKIP
>>> download_halfset("TEST", 0, benchmark_dir="~/cesped_data")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cesped import settings
from cesped.data.entries import MASK_RECORD_ID, check_halfset, get_entry, record_to_entry
from cesped.io.atomic import atomic_open

__all__ = [
    "DownloadError",
    "ChecksumError",
    "OfflineError",
    "RemoteFile",
    "fetch_record_files",
    "download_files",
    "download_record",
    "download_halfset",
    "download_mask",
    "is_halfset_complete",
    "offline_instructions",
]

_CHUNK_RE = re.compile(r"^(?P<base>.+\.mrcs)\.chunk_(?P<k>\d+)$")
_BLOCK = 1 << 20


class DownloadError(RuntimeError):
    """A download could not be completed."""


class ChecksumError(DownloadError):
    """A downloaded file does not match the md5 checksum of its record."""


class OfflineError(DownloadError, ConnectionError):
    """The server could not be reached at all (no network, unknown host, refused connection)."""


class _Retryable(Exception):
    """Internal: a transient failure worth another attempt."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Zenodo record.

    Attributes
    ----------
    key : str
        File name in the record (validated: relative, no ``..``).
    size : int or None
        Size in bytes.
    md5 : str or None
        Hex md5 digest (the record's ``"md5:<hex>"`` checksum without its prefix).
    url : str
        Where to GET the content.
    """

    key: str
    size: int | None
    md5: str | None
    url: str


# ----------------------------------------------------------------------------------------------
# HTTP helpers
# ----------------------------------------------------------------------------------------------
def _is_unreachable(exc: BaseException) -> bool:
    """True for errors meaning the host cannot be reached at all (do not retry)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, socket.gaierror | ConnectionRefusedError) or (
        isinstance(reason, OSError) and getattr(reason, "errno", None) in (101, 113)  # net/host unreachable
    )


def _open(url: str, headers: dict | None, timeout: float, first_contact: bool = False):
    """GET ``url``; return the response. Raise _Retryable / OfflineError / DownloadError.

    With ``first_contact`` every failure to connect (including a connect timeout) means offline:
    nothing is retried before the server has answered once.
    """
    req = urllib.request.Request(url, headers={"User-Agent": "cesped", **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 429 or e.code >= 500:
            raise _Retryable(f"HTTP {e.code} from {url}") from e
        raise DownloadError(f"HTTP {e.code} {e.reason} for {url}") from e
    except urllib.error.URLError as e:
        if first_contact or _is_unreachable(e):
            raise OfflineError(f"cannot reach {url}: {e.reason}") from e
        raise _Retryable(f"connection error for {url}: {e.reason}") from e
    except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
        if _is_unreachable(e):
            raise OfflineError(f"cannot reach {url}: {e}") from e
        raise _Retryable(f"connection error for {url}: {e}") from e


def _with_retries(fn: Callable, what: str, retries: int, backoff: float, sleep: Callable = time.sleep):
    """Call ``fn()`` until it does not raise _Retryable, at most ``retries + 1`` times."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except _Retryable as e:
            if attempt == retries:
                raise DownloadError(f"{what} failed after {retries + 1} attempts: {e}") from e
            sleep(backoff * (2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


# ----------------------------------------------------------------------------------------------
# Record metadata
# ----------------------------------------------------------------------------------------------
def _safe_key(key) -> str:
    """Validate a file name coming from a record."""
    if not isinstance(key, str) or key == "" or "\\" in key or "\x00" in key:
        raise DownloadError(f"refusing file name {key!r} from the record: not a plain relative name")
    p = PurePosixPath(key)
    if p.is_absolute() or ".." in p.parts or (len(key) > 1 and key[1] == ":"):
        raise DownloadError(f"refusing file name {key!r} from the record: absolute or contains '..'")
    return key


def _parse_files(meta: dict, record_url: str) -> list[RemoteFile]:
    files = meta.get("files")
    if isinstance(files, dict):  # InvenioRDM ".../files" layout
        files = files.get("entries", files)
        if isinstance(files, dict):  # {file name: file entry}: the name is the key
            files = [{"key": k, **v} if isinstance(v, dict) else v for k, v in files.items()]
    if not isinstance(files, list) or not files:
        raise DownloadError(f"record {record_url} lists no files")
    out = []
    for f in files:
        if not isinstance(f, dict):
            raise DownloadError(f"record {record_url}: file entry {f!r} is not an object")
        key = _safe_key(f.get("key", f.get("filename")))
        size = f.get("size", f.get("filesize"))
        checksum = f.get("checksum")
        md5 = None
        if isinstance(checksum, str):
            algo, _, digest = checksum.partition(":")
            md5 = digest.lower() if algo.lower() == "md5" and digest else None
            if not digest and re.fullmatch(r"[0-9a-fA-F]{32}", checksum):
                md5 = checksum.lower()
        links = f.get("links") or {}
        # Zenodo's links.self may name the file by its internal id and not resolve (zenodo#2486);
        # use links.content, a links.self that already ends in /content, or the documented route
        url = links.get("content") or links.get("download")
        if not url and str(links.get("self", "")).endswith("/content"):
            url = links["self"]
        if not url:
            url = f"{record_url}/files/{urllib.parse.quote(key)}/content"
        out.append(RemoteFile(key=key, size=None if size is None else int(size), md5=md5, url=url))
    return out


def fetch_record_files(
    record_id: str, base_url: str | None = None, timeout: float = 10.0, retries: int = 4, backoff: float = 1.0
) -> list[RemoteFile]:
    """Read the file list of a Zenodo record (``GET <base_url><record_id>``).

    Parameters
    ----------
    record_id : str
        Zenodo record id.
    base_url : str, optional
        Records API base; default :func:`cesped.settings.zenodo_url` (env ``CESPED_ZENODO_URL``).
    timeout : float
        Socket timeout in seconds.
    retries, backoff : int, float
        HTTP 5xx/429 and dropped connections are retried ``retries`` times, waiting
        ``backoff * 2**attempt`` seconds. A first attempt that cannot connect (unknown host, refused
        connection, connect timeout) raises :class:`OfflineError` at once.

    Returns
    -------
    list of RemoteFile
    """
    record_url = settings.zenodo_url(base_url) + str(record_id)

    state = {"first": True}

    def attempt():
        first, state["first"] = state["first"], False
        resp = _open(record_url, {"Accept": "application/json"}, timeout, first_contact=first)
        try:
            body = resp.read()
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
            raise _Retryable(f"reading {record_url}: {e}") from e
        finally:
            resp.close()
        try:
            return json.loads(body)
        except ValueError as e:
            raise DownloadError(f"record {record_url} did not return JSON: {body[:200]!r}") from e

    meta = _with_retries(attempt, f"GET {record_url}", retries, backoff)
    return _parse_files(meta, record_url)


# ----------------------------------------------------------------------------------------------
# File transfer
# ----------------------------------------------------------------------------------------------
def _md5_of_range(path: Path, start: int, stop: int):
    h = hashlib.md5()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = stop - start
        while left > 0:
            buf = fh.read(min(_BLOCK, left))
            if not buf:
                break
            h.update(buf)
            left -= len(buf)
    return h


def _load_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _save_state(path: Path, state: dict) -> None:
    with atomic_open(path, "w") as fh:
        json.dump(state, fh)


def _stream_part(part: RemoteFile, part_path: Path, start: int, have: int, timeout: float, pbar) -> None:
    """Append bytes ``have..size`` of ``part`` to ``part_path`` (which must be ``start + have`` long).

    Raises _Retryable when the transfer breaks (the bytes written so far are kept).
    """
    headers = {"Range": f"bytes={have}-"} if have > 0 else {}
    resp = _open(part.url, headers, timeout)
    try:
        status = getattr(resp, "status", 200)
        if have > 0 and status != 206:
            # the server ignored the range: restart this part from its beginning
            with open(part_path, "r+b") as fh:
                fh.truncate(start)
            pbar.update(-have)
            have = 0
        with open(part_path, "ab") as fh:
            while True:
                try:
                    buf = resp.read(_BLOCK)
                except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
                    raise _Retryable(f"transfer of {part.key} broke: {e}") from e
                if not buf:
                    break
                fh.write(buf)
                have += len(buf)
                pbar.update(len(buf))
    finally:
        resp.close()
    if part.size is not None and have < part.size:
        raise _Retryable(f"transfer of {part.key} ended after {have} of {part.size} bytes")
    if part.size is not None and have > part.size:
        with open(part_path, "r+b") as fh:
            fh.truncate(start)
        raise DownloadError(f"{part.url} sent {have} bytes, the record says {part.size}")


def download_files(
    parts: list[RemoteFile],
    dest: str | os.PathLike,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 1.0,
) -> Path:
    """Download ``parts`` concatenated into ``dest``, verifying each part's md5; resume if interrupted.

    Parameters
    ----------
    parts : list of RemoteFile
        One file, or the ordered chunks of one file.
    dest : path
        Final file. Data goes to ``dest + ".part"`` and is renamed onto ``dest`` only when every
        part verified.
    progress : bool
        Show a tqdm progress bar (bytes).
    timeout, retries, backoff
        Socket timeout (s); transient failures (timeouts, dropped connections, HTTP 5xx/429) are
        retried ``retries`` times per part, resuming from the bytes already on disk.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    ChecksumError
        A part does not match its md5 (its bytes are discarded, so a new call downloads it again).
    OfflineError, DownloadError
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part_path = dest.with_name(dest.name + ".part")
    state_path = dest.with_name(dest.name + ".part.json")
    state = _load_state(state_path)
    verified: dict = state.get("verified", {})
    starts, pos = [], 0
    for p in parts:
        starts.append(pos)
        pos += p.size or 0
    sizes_known = all(p.size is not None for p in parts)
    total = pos if sizes_known else None

    on_disk = part_path.stat().st_size if part_path.exists() else 0
    if not sizes_known or (total is not None and on_disk > total):
        on_disk = 0
    if on_disk == 0:
        part_path.write_bytes(b"")
        verified = {}

    with tqdm(
        total=total,
        initial=on_disk,
        unit="B",
        unit_scale=True,
        desc=dest.name,
        disable=not progress,
        leave=False,
    ) as pbar:
        for i, part in enumerate(parts):
            start = starts[i] if sizes_known else part_path.stat().st_size
            stop = start + part.size if part.size is not None else None
            size_now = part_path.stat().st_size
            if stop is not None and size_now >= stop and verified.get(part.key) == part.md5:
                continue  # verified in an earlier call
            if size_now > start and stop is None:
                with open(part_path, "r+b") as fh:
                    fh.truncate(start)
                size_now = start

            def attempt(part=part, start=start):
                have = part_path.stat().st_size - start
                if part.size is not None and have >= part.size:
                    return
                _stream_part(part, part_path, start, have, timeout, pbar)

            _with_retries(attempt, f"download of {part.url}", retries, backoff)

            end = stop if stop is not None else part_path.stat().st_size
            if part.md5 is not None:
                digest = _md5_of_range(part_path, start, end).hexdigest()
                if digest != part.md5:
                    with open(part_path, "r+b") as fh:
                        fh.truncate(start)
                    raise ChecksumError(
                        f"checksum mismatch for {part.url}: md5 {digest}, "
                        f"record says {part.md5}; the bad bytes were discarded"
                    )
            verified[part.key] = part.md5
            _save_state(state_path, {"verified": verified})

    os.replace(part_path, dest)
    state_path.unlink(missing_ok=True)
    return dest


# ----------------------------------------------------------------------------------------------
# Records and entries
# ----------------------------------------------------------------------------------------------
def _group_outputs(files: list[RemoteFile]) -> dict[str, list[RemoteFile]]:
    """Final file name -> ordered parts (chunked stacks are concatenated)."""
    groups: dict[str, list[tuple[int, RemoteFile]]] = {}
    for f in files:
        m = _CHUNK_RE.match(f.key)
        if m:
            groups.setdefault(m["base"], []).append((int(m["k"]), f))
        else:
            if f.key in groups:
                raise DownloadError(f"record lists {f.key!r} both as a file and as chunks")
            groups[f.key] = [(0, f)]
    return {name: [f for _, f in sorted(v, key=lambda t: t[0])] for name, v in groups.items()}


def download_record(
    record_id: str,
    dest_dir: str | os.PathLike,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 1.0,
) -> dict[str, Path]:
    """Download every file of a record into ``dest_dir`` (chunked stacks concatenated).

    A file already under its final name is verified again (its bytes are kept and checked
    against the record's md5s, the rest is resumed): callers reach this only for a half-set
    without a completion marker, whose files may be partial (:func:`_adopt_unverified`).

    Returns
    -------
    dict
        Final file name -> path. Each file exists only once verified.
    """
    dest_dir = Path(dest_dir)
    files = fetch_record_files(
        record_id, base_url, timeout=min(timeout, 10.0), retries=retries, backoff=backoff
    )
    out = {}
    for name, parts in _group_outputs(files).items():
        dest = dest_dir / name
        if dest.is_symlink():  # the original package linked a dependency's file here: fetch our own
            dest.unlink()
        elif dest.exists():
            _adopt_unverified(dest)
        download_files(parts, dest, progress=progress, timeout=timeout, retries=retries, backoff=backoff)
        out[name] = dest
    return out


def _adopt_unverified(dest: Path) -> None:
    """Turn a final-named file of an unfinished half-set into the ``.part`` file of its transfer.

    Such a file was not verified by this package: the original package appended to
    ``particles_<h>.mrcs`` directly and marked the record done only at the end, so an interrupted
    run of it left a truncated stack under the final name. As a ``.part`` file its bytes are
    checked against the record's md5s and the rest is fetched with a ``Range`` request.
    """
    part = dest.with_name(dest.name + ".part")
    if part.exists() and part.stat().st_size >= dest.stat().st_size:
        dest.unlink()  # our own partial transfer holds at least as much
        return
    dest.with_name(dest.name + ".part.json").unlink(missing_ok=True)
    os.replace(dest, part)


def _marker(entry_dir: Path, halfset: int) -> Path:
    return entry_dir / f".complete_{halfset}.json"


def is_halfset_complete(entry_dir: str | os.PathLike, halfset: int, record_id: str | None = None) -> bool:
    """Whether the half-set in ``entry_dir`` finished downloading.

    True when our marker ``.complete_<h>.json`` (for ``record_id`` if given) or the original
    package's ``SUCCESSFUL_DOWNLOAD_<record_id>.txt`` exists, and the star and info files are there.
    """
    entry_dir = Path(entry_dir)
    files_ok = (entry_dir / f"particles_{halfset}.star").exists() and (
        entry_dir / f"info_{halfset}.json"
    ).exists()
    if not files_ok:
        return False
    m = _marker(entry_dir, halfset)
    if m.exists():
        rec = _load_state(m).get("record")
        if record_id is None or rec is None or str(rec) == str(record_id):
            return True
    return record_id is not None and (entry_dir / f"SUCCESSFUL_DOWNLOAD_{record_id}.txt").exists()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(os.path.relpath(src, dst.parent), dst)
    except OSError:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def _page_url(base_url: str, record_id: str) -> str:
    base = settings.zenodo_url(base_url)
    return base.replace("/api/records/", "/records/") + str(record_id)


def offline_instructions(
    name: str, halfset: int, benchmark_dir: str | os.PathLike | None = None, base_url: str | None = None
) -> str:
    """Say what to download by hand for entry ``name`` half ``halfset`` and where to put it."""
    info = get_entry(name)
    h = check_halfset(halfset)
    root = settings.benchmark_dir(benchmark_dir)
    target = root / name
    recs = [info.record_id(h)] + list(info.record_dependencies.get(info.record_id(h), ()))
    lines = [f"To use entry {name!r} half-set {h} without network access, download on another machine:"]
    for rec in recs:
        lines.append(
            f"  - every file of Zenodo record {rec}: {_page_url(base_url, rec)} "
            f"(file list: {settings.zenodo_url(base_url)}{rec})"
        )
    lines += [
        f"and put them in {target}/ as particles_{h}.star, info_{h}.json and particles_{h}.mrcs",
        f"(concatenate the chunks in order: cat particles_{h}.mrcs.chunk_0 particles_{h}.mrcs.chunk_1 ... "
        f"> particles_{h}.mrcs).",
    ]
    for rec in recs[1:]:
        dep_name, _ = record_to_entry(rec)
        lines.append(f"Record {rec} belongs to entry {dep_name!r}; its stack also goes to {target}/.")
    lines.append(
        f"Then mark the half-set complete (files placed by hand are not trusted otherwise): write "
        f'{{"record": "{recs[0]}", "manual": true}} to {target}/.complete_{h}.json.'
    )
    lines.append(
        "Set the benchmark directory with benchmarkDir=... or the environment variable CESPED_BENCHMARK_DIR."
    )
    return "\n".join(lines)


def download_halfset(
    name: str,
    halfset: int,
    benchmark_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 1.0,
) -> Path:
    """Download one half-set of a registered entry into ``<benchmark_dir>/<name>/``; safe to call twice.

    Returns
    -------
    Path
        The entry directory.

    Raises
    ------
    ValueError
        Unknown entry, halfset not 0/1, synthetic entry.
    OfflineError
        The server cannot be reached; the message says what to download and where to put it.
    ChecksumError, DownloadError
    """
    info = get_entry(name)
    h = check_halfset(halfset)
    record_id = info.record_id(h)
    root = settings.benchmark_dir(benchmark_dir)
    entry_dir = root / name
    if is_halfset_complete(entry_dir, h, record_id):
        return entry_dir
    kw = dict(base_url=base_url, progress=progress, timeout=timeout, retries=retries, backoff=backoff)
    try:
        dep_dirs = []
        for dep in info.record_dependencies.get(record_id, ()):
            dep_name, dep_h = record_to_entry(dep)
            dep_dirs.append(download_halfset(dep_name, dep_h, root, **kw))
        got = download_record(record_id, entry_dir, **kw)
    except OfflineError as e:
        raise OfflineError(f"{e}\n{offline_instructions(name, h, root, base_url)}") from e
    for dep_dir in dep_dirs:
        for src in sorted(dep_dir.iterdir()):
            if (
                src.is_file()
                and not src.name.startswith(".")
                and not src.name.endswith((".star", ".json"))
                and not src.name.startswith("SUCCESSFUL_DOWNLOAD")
                and not (entry_dir / src.name).exists()
            ):
                _link_or_copy(src, entry_dir / src.name)
    missing = [f for f in (f"particles_{h}.star", f"info_{h}.json") if not (entry_dir / f).exists()]
    if missing:
        raise DownloadError(
            f"record {record_id} of entry {name!r} did not provide {missing} (it had {sorted(got)})"
        )
    with atomic_open(_marker(entry_dir, h), "w") as fh:
        json.dump({"record": record_id, "files": sorted(got)}, fh)
    return entry_dir


def download_mask(
    name: str,
    dest: str | os.PathLike,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 1.0,
) -> Path:
    """Download the published mask of entry ``name`` (record 11092291, checksummed) to ``dest``.

    Returns ``dest`` (nothing is downloaded when it exists).
    """
    info = get_entry(name)
    dest = Path(dest)
    if dest.exists():
        return dest
    if info.mask_file is None:
        raise ValueError(f"entry {name!r} has no published mask")
    try:
        files = fetch_record_files(
            str(MASK_RECORD_ID), base_url, timeout=min(timeout, 10.0), retries=retries, backoff=backoff
        )
    except OfflineError as e:
        raise OfflineError(f"{e}\nDownload {info.mask_url} by hand and save it as {dest}.") from e
    match = [f for f in files if f.key == info.mask_file]
    if not match:
        raise DownloadError(f"mask record {MASK_RECORD_ID} has no file {info.mask_file!r}")
    return download_files(match, dest, progress=progress, timeout=timeout, retries=retries, backoff=backoff)
