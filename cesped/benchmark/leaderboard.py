"""The leaderboard: results records aggregated per entry and method, as Markdown and HTML.

For each entry, one row per method: mean ± standard deviation (``ddof=1``) over seeds of MAnE,
wMAnE, PCC(GT,V), FSCR0.143(GT,V), FSCR0.5(GT,V) and their differences to the ground-truth
maps (``dPCC = PCC(GT0,GT1) − PCC(GT,V)``, ``dFSCR = FSCR(GT,V) − FSCR(GT0,GT1)``; the paper's
columns of :func:`cesped.evaluation.evaluate.evaluate`), the number of seeds and the time
(training + prediction + evaluation, minutes). Reference rows: random poses (the entry's
``random poses`` record, or computed when missing and the entry is on disk), the image-limited
floor (records of kind ``floor``, when present) and the CESPED paper's published Image2Sphere
row for real entries (``data/cesped_paper_image2sphere.json``; its dPCC/dFSCR are derived from
the published columns).

Checks: every record is validated (corrupt JSON, another schema: refused); all records of an
entry must carry the same entry checksum, equal to the checksum of the entry on disk when it is
there (else refused); records of different cesped major versions are refused unless
``allow_mixed_versions`` (then flagged); methods with fewer seeds than :data:`MIN_SEEDS` and
entries whose records used different masks are flagged.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cesped.benchmark import records as rec

__all__ = ["MIN_SEEDS", "COLUMNS", "Row", "Leaderboard", "load_records", "build_leaderboard", "paper_rows"]

MIN_SEEDS = 3
"""The protocol's minimum number of seeds per method and entry."""

# (metric key in the records' metrics, header, number format)
COLUMNS = (
    ("MAnE", "MAnE (°)", ".2f"),
    ("wMAnE", "wMAnE (°)", ".2f"),
    ("PCC(GT,V)", "PCC(GT,V)", ".3f"),
    ("dPCC", "ΔPCC", ".3f"),
    ("FSCR0.143(GT,V)", "FSCR0.143(GT,V) (Å)", ".2f"),
    ("dFSCR0.143", "ΔFSCR0.143 (Å)", ".2f"),
    ("FSCR0.5(GT,V)", "FSCR0.5(GT,V) (Å)", ".2f"),
    ("dFSCR0.5", "ΔFSCR0.5 (Å)", ".2f"),
)
_PAPER_FILE = Path(__file__).with_name("data") / "cesped_paper_image2sphere.json"


@dataclass
class Row:
    """One line of an entry's table.

    Attributes
    ----------
    method : str
    kind : str
        ``trained``, ``predictions``, ``reference``, ``floor`` or ``published``.
    seeds : list of int
    stats : dict
        Metric key -> (mean, std or None, number of values); std is None for one value.
    time_min : (mean, std or None) or None
        Training + prediction + evaluation minutes; None when a part is unknown.
    flags : list of str
    """

    method: str
    kind: str
    seeds: list[int]
    stats: dict
    time_min: tuple | None
    flags: list[str] = field(default_factory=list)


@dataclass
class Leaderboard:
    """Rows per entry (``tables``), the entries' checksums, and the table-wide notes."""

    tables: dict[str, list[Row]]
    checksums: dict[str, str]
    notes: list[str]

    def markdown(self) -> str:
        return render_markdown(self)

    def html(self) -> str:
        return render_html(self)


# ------------------------------------------------------------------------------------ inputs


def load_records(paths) -> list[tuple[Path, dict]]:
    """Read the records named by ``paths`` (files, or directories searched for ``seed*.json``).

    Raises
    ------
    FileNotFoundError
        A path does not exist, or a directory holds no record.
    ValueError
        A corrupt or foreign record (named); the same (entry, method, seed) twice.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("seed*.json"))
            if not found:
                raise FileNotFoundError(f"{p}: no results record (seed*.json) below this directory")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"results record {p} not found")
    out, seen = [], {}
    for f in files:
        r = rec.read_record(f)
        key = (r["entry"], r["method"]["name"], r["seed"])
        if key in seen:
            raise ValueError(
                f"{f}: entry {key[0]}, method {key[1]!r}, seed {key[2]} also in {seen[key]}; give each once"
            )
        seen[key] = f
        out.append((f, r))
    return out


def paper_rows() -> dict:
    """The published Image2Sphere table (``{"method", "source", "rows": {entry: {column: value}}}``)."""
    return json.loads(_PAPER_FILE.read_text())


# ------------------------------------------------------------------------------ aggregation


def _stat(values) -> tuple | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None
    return (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None, len(v))


def _time_min(r: dict) -> float | None:
    t = r["timings_s"]
    parts = [t.get("train"), t.get("predict"), t.get("evaluate")]
    if r["method"]["kind"] in ("reference", "floor"):
        parts = [t.get("evaluate")]
    if any(p is None for p in parts):
        return None
    return sum(parts) / 60.0


def _row(method: str, recs: list[dict], min_seeds: int) -> Row:
    kind = recs[0]["method"]["kind"]
    stats = {key: _stat([r["metrics"].get(key) for r in recs]) for key, _, _ in COLUMNS}
    times = [_time_min(r) for r in recs]
    tstat = None if any(t is None for t in times) else _stat(times)
    row = Row(method, kind, sorted(r["seed"] for r in recs), stats, tstat and tstat[:2])
    if kind in ("trained", "predictions") and len(recs) < min_seeds:
        row.flags.append(f"{len(recs)} seed(s), fewer than the protocol's minimum of {min_seeds}")
    if len({r["method"]["kind"] for r in recs}) > 1:
        row.flags.append("records of different method kinds under one name")
    return row


def _as_refined(r: dict) -> dict:
    """A record seen through its refined poses (``run ... refine=true``): the refined metrics, and
    the time of training + prediction + refinement + evaluation of the refined poses."""
    t = dict(r["timings_s"])
    pred, refine = t.get("predict"), t.get("refine")
    t["predict"] = None if pred is None or refine is None else pred + refine
    t["evaluate"] = t.get("evaluate_refined")
    return {**r, "metrics": r["refined"]["metrics"], "timings_s": t}


def _entry_checksum_on_disk(entry: str, benchmark_dir) -> str | None:
    from cesped.data.local import entry_paths, is_available

    if not (is_available(entry, 0, benchmark_dir) and is_available(entry, 1, benchmark_dir)):
        return None
    return rec.entry_checksum(entry_paths(entry, 0, benchmark_dir)["dir"])


def build_leaderboard(
    paths,
    benchmark_dir=None,
    verify_entries: bool = True,
    compute_random: bool = True,
    allow_mixed_versions: bool = False,
    min_seeds: int = MIN_SEEDS,
    n_cpus: int = 2,
) -> Leaderboard:
    """Aggregate the records under ``paths`` into a :class:`Leaderboard`.

    Parameters
    ----------
    paths : iterable of path
        Record files or directories (searched for ``seed*.json``).
    benchmark_dir : path, optional
        Where the entries are (to verify checksums and compute random-poses rows).
    verify_entries : bool
        Compare each entry's checksum with the entry on disk (when it is there).
    compute_random : bool
        Compute the random-poses row of an entry without one (when the entry is on disk).
    allow_mixed_versions : bool
        Accept records of different cesped major versions (flagged) instead of refusing them.
    min_seeds : int
        Rows of methods with fewer seeds are flagged.

    Raises
    ------
    ValueError
        Corrupt/foreign records; records of one entry with different checksums, or a checksum
        different from the entry on disk; mixed cesped major versions (unless allowed).
    """
    loaded = load_records(paths)
    notes: list[str] = []
    versions: dict[str, list[Path]] = {}
    for f, r in loaded:
        versions.setdefault(rec.major_version(r["cesped"]["version"]), []).append(f)
    if len(versions) > 1:
        desc = "; ".join(f"major {v}: {', '.join(map(str, fs[:3]))}" for v, fs in sorted(versions.items()))
        msg = f"records of different cesped major versions ({desc})"
        if not allow_mixed_versions:
            raise ValueError(msg + "; compare results of one version, or pass allow_mixed_versions")
        notes.append("⚠ " + msg + ": rows may not be comparable")
    by_entry: dict[str, list[tuple[Path, dict]]] = {}
    for f, r in loaded:
        by_entry.setdefault(r["entry"], []).append((f, r))
    tables, checksums = {}, {}
    paper = paper_rows()
    for entry in sorted(by_entry):
        items = by_entry[entry]
        sums = {}
        for f, r in items:
            sums.setdefault(r["entry_checksum"], []).append(f)
        if len(sums) > 1:
            desc = "; ".join(f"{c[:19]}…: {', '.join(map(str, fs[:3]))}" for c, fs in sums.items())
            raise ValueError(f"entry {entry}: records of different entry versions (checksums {desc})")
        checksum = next(iter(sums))
        if verify_entries:
            local = _entry_checksum_on_disk(entry, benchmark_dir)
            if local is not None and local != checksum:
                raise ValueError(
                    f"entry {entry}: records {', '.join(str(f) for f, _ in items[:3])} were made on entry "
                    f"version {checksum}, the entry on disk is {local}; rerun them or point benchmark_dir "
                    "at the matching entry"
                )
        checksums[entry] = checksum
        masks = {r["metrics"].get("paper_columns_use") for _, r in items}
        if len(masks) > 1:
            notes.append(f"⚠ {entry}: records mix masked and unmasked metrics ({sorted(map(str, masks))})")
        methods: dict[str, list[dict]] = {}
        for _, r in items:
            methods.setdefault(r["method"]["name"], []).append(r)
        rows = [_row(m, rs, min_seeds) for m, rs in methods.items()]
        for m, rs in methods.items():
            n_refined = sum(1 for r in rs if r.get("refined"))
            if n_refined == len(rs):
                rows.append(_row(f"{m} + refinement", [_as_refined(r) for r in rs], min_seeds))
            elif n_refined:
                notes.append(f"⚠ {entry}: {m}: only {n_refined} of {len(rs)} records refined, no refined row")
        main = sorted(
            (r for r in rows if r.kind in ("trained", "predictions")),
            key=lambda r: (r.stats["MAnE"] or (math.inf,))[0],
        )
        refs = [r for r in rows if r.kind in ("reference", "floor")]
        if not any(r.method == _random_name() for r in refs):
            rrow = _random_row(entry, benchmark_dir, checksum, compute_random, n_cpus)
            if rrow is None:
                notes.append(f"{entry}: no random-poses row (no record, and the entry is not on disk)")
            else:
                refs.append(rrow)
        if entry in paper["rows"]:
            refs.append(_paper_row(paper, entry))
        tables[entry] = main + refs
    return Leaderboard(tables, checksums, notes)


def _random_name() -> str:
    from cesped.benchmark.protocol import RANDOM_METHOD

    return RANDOM_METHOD


def _random_row(entry, benchmark_dir, checksum, compute: bool, n_cpus: int) -> Row | None:
    if not compute:
        return None
    from cesped.data.local import is_available

    if not (is_available(entry, 0, benchmark_dir) and is_available(entry, 1, benchmark_dir)):
        return None
    from cesped.benchmark.protocol import random_poses_record

    r = random_poses_record(entry, benchmark_dir, None, 0, n_cpus, "cpu", checksum)
    row = _row(r["method"]["name"], [r], 0)
    row.flags.append("computed for this table (no record)")
    return row


def _paper_row(paper: dict, entry: str) -> Row:
    v = paper["rows"][entry]

    def one(x):
        return None if x is None else (float(x), None, 1)

    stats = {key: one(v.get(key)) for key, _, _ in COLUMNS}
    if v.get("PCC(GT0,GT1)") is not None and v.get("PCC(GT,V)") is not None:
        stats["dPCC"] = one(v["PCC(GT0,GT1)"] - v["PCC(GT,V)"])
    for t in ("0.143", "0.5"):
        a, b = v.get(f"FSCR{t}(GT,V)"), v.get(f"FSCR{t}(GT0,GT1)")
        if a is not None and b is not None:
            stats[f"dFSCR{t}"] = one(a - b)
    return Row(paper["method"], "published", [], stats, None, ["published values; Δ derived from them"])


# --------------------------------------------------------------------------------- rendering


def format_stat(stat, fmt: str) -> str:
    """``mean ± std`` (``mean`` alone for one value, ``n/a`` without values)."""
    if stat is None:
        return "n/a"
    mean, std = stat[0], stat[1]
    return f"{mean:{fmt}}" if std is None else f"{mean:{fmt}} ± {std:{fmt}}"


def _cells(row: Row) -> list[str]:
    kind = {"reference": " (reference)", "floor": " (floor)", "published": ""}.get(row.kind, "")
    seeds = str(len(row.seeds)) if row.seeds else "—"
    if any("fewer than the protocol's minimum" in f for f in row.flags):
        seeds += " ⚠"
    vals = [format_stat(row.stats.get(k), f) for k, _, f in COLUMNS]
    return [row.method + kind, seeds, *vals, format_stat(row.time_min, ".1f")]


HEADERS = ["method", "seeds", *[h for _, h, _ in COLUMNS], "time (min)"]


def render_markdown(board: Leaderboard) -> str:
    """The leaderboard as Markdown: one table per entry, then the flags and notes."""
    lines = ["# cesped leaderboard", ""]
    lines.append(
        "Mean ± standard deviation over seeds (ddof=1). Δ: differences to the ground-truth maps "
        "(ΔPCC = PCC(GT0,GT1) − PCC(GT,V), ΔFSCR = FSCR(GT,V) − FSCR(GT0,GT1); 0 is the best). "
        "Time: training + prediction + evaluation."
    )
    for entry, rows in board.tables.items():
        lines += ["", f"## {entry}", "", f"Entry checksum `{board.checksums[entry]}`.", ""]
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|")
        for row in rows:
            lines.append("| " + " | ".join(_cells(row)) + " |")
        flags = [f"- {row.method}: {f}" for row in rows for f in row.flags]
        if flags:
            lines += [""] + flags
    if board.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in board.notes]
    paper = paper_rows()
    lines += ["", f"Published Image2Sphere rows: {paper['source']}", ""]
    return "\n".join(lines)


def render_html(board: Leaderboard) -> str:
    """The leaderboard as one self-contained HTML page in the evaluation report's style."""
    from cesped.evaluation.style import page_head

    e = html.escape
    parts = [
        page_head("cesped leaderboard") + "<h1>cesped leaderboard</h1>",
        "<p>Mean ± standard deviation over seeds (ddof=1). Δ: differences to the ground-truth maps "
        "(ΔPCC = PCC(GT0,GT1) − PCC(GT,V), ΔFSCR = FSCR(GT,V) − FSCR(GT0,GT1)). "
        "Time: training + prediction + evaluation.</p>",
    ]
    for entry, rows in board.tables.items():
        parts.append(f"<h2>{e(entry)}</h2><p>Entry checksum <code>{e(board.checksums[entry])}</code></p>")
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADERS) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(row)) + "</tr>")
        parts.append("</table>")
        flags = [f"<li>{e(row.method)}: {e(f)}</li>" for row in rows for f in row.flags]
        if flags:
            parts.append("<ul>" + "".join(flags) + "</ul>")
    if board.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in board.notes) + "</ul>")
    parts.append(f"<p>Published Image2Sphere rows: {e(paper_rows()['source'])}</p></body></html>")
    return "\n".join(parts)


def write_leaderboard(board: Leaderboard, outdir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``leaderboard.md`` and ``leaderboard.html`` into ``outdir`` (atomically)."""
    from cesped.io.atomic import atomic_open

    out = Path(outdir)
    md, page = out / "leaderboard.md", out / "leaderboard.html"
    with atomic_open(md) as fh:
        fh.write(board.markdown())
    with atomic_open(page) as fh:
        fh.write(board.html())
    return md, page
