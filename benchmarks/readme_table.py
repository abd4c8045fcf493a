"""Regenerate the README's performance table from ``benchmarks/results/latest.md`` (+ ``large.md``).

Only the text between the markers ``<!-- perf-table:start -->`` and ``<!-- perf-table:end -->``
in README.md is rewritten (atomically); everything else is left byte for byte. Each row of the
table names the command that measured it and its raw output file (``latest.json`` beside the
table; ``large.json`` for the rows of ``make bench-large``, added when ``large.md`` exists).

Example usage::

    make bench                                 # writes benchmarks/results/latest.{json,md}
    make bench-large                           # writes benchmarks/results/large.{json,md}
    python benchmarks/readme_table.py          # README.md <- latest.md (+ large.md)
    python benchmarks/readme_table.py --check  # exit 1 if README.md is not up to date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
START = "<!-- perf-table:start -->"
END = "<!-- perf-table:end -->"


def with_raw_column(table_md: str, raw: str) -> str:
    """``table_md`` with a last column ``raw output`` naming ``raw`` on every row of its table."""
    out, in_table = [], False
    for line in table_md.strip().splitlines():
        if line.startswith("|") and line.rstrip().endswith("|"):
            if not in_table:
                line, in_table = line.rstrip() + " raw output |", True
            elif set(line.replace("|", "").strip()) <= {"-", ":"}:
                line = line.rstrip() + "---|"
            else:
                line = line.rstrip() + f" `{raw}` |"
        else:
            in_table = False
        out.append(line)
    return "\n".join(out) + "\n"


# The headline rows, in this order: (pattern of a figure's name, label; {0}, {1}... are the pattern's
# groups). A figure matching no pattern is still in the full table under the headline.
HEADLINE: list[tuple[str, str]] = [
    (r"reconstruct_seconds_(\d+)x(\d+)px_(\d+)cpu", "reconstruct {0} x {1} px, whole process, {2} CPUs"),
    (r"reconstruct_peak_rss_(\d+)x(\d+)px_(\d+)cpu", "  same, peak memory of the measured process ({1} px)"),
    (
        r"reconstruct_peak_rss_flat_(\d+)px",
        "  same, peak memory with all vs 1/8 of the particles ({0} px; ratio = 1/8 / all)",
    ),
    (
        r"reconstruct_first_run_seconds_(\d+)x(\d+)px_(\d+)cpu",
        "  same, first run after install vs warm ({1} px; ratio = first / warm)",
    ),
    (
        r"fsc_cesped_vs_relion_min_to_0.8nyquist_(\d+)x(\d+)px_(\d+)cpu",
        "  same, FSC of the two maps (min to 0.8 Nyquist, {1} px)",
    ),
    (
        r"evaluateEntry_seconds_(\d+)x(\d+)px_(\d+)cpu",
        "evaluateEntry, {0} particles of {1} px (both halves), whole process",
    ),
    (
        r"evaluateEntry_seconds_vs_relion_backend_(\d+)x(\d+)px_(\d+)cpu",
        "evaluateEntry, {0} particles of {1} px, vs cesped's own `--backend relion` (RELION reconstructs)",
    ),
    (r"evaluateEntry_peak_rss_(\d+)x(\d+)px_(\d+)cpu", "  same, peak memory of the measured process"),
    (
        r"evaluateEntry_peak_rss_vs_relion_backend_(\d+)x(\d+)px_(\d+)cpu",
        "  same, peak memory of the measured process vs `--backend relion`",
    ),
    (
        r"evaluateEntry_first_run_seconds_(\d+)x(\d+)px_(\d+)cpu",
        "  same, first run after install vs warm (ratio = first / warm, goal <= 1.5)",
    ),
    (
        r"dataloading_images_per_s_workers(\d+)",
        "`ParticlesDataset` + DataLoader, paper defaults, 128 px, batch 32, {0} workers",
    ),
    (r"dataloading_peak_rss_main_mb_workers(\d+)", "  same, peak memory of the main process ({0} workers)"),
    (r"i2s_train_throughput", "Image2Sphere training, the original's configuration"),
    (r"i2s_inference_throughput", "Image2Sphere inference, the original's configuration"),
    (r"i2s_peak_rss", "Image2Sphere peak memory, the original's configuration"),
    (r"simulate_synth_6msm_seconds", "simulate synth_6msm (whole process)"),
    (r"i2s_paper_build_time_cold_cache", "build the paper's Image2Sphere model (empty cache)"),
    (
        r"simulate_synth_(adk_\w+)_wall",
        "simulate synth_{0}, 8,000 x 64 px (goal < 30 s; ratio = time / one structure's)",
    ),
    (
        r"refine_(\d+)_particles_top(\d+)_global(\d+)_seconds",
        "local refinement, {0} particles, top-{1} candidates + {2} global starts",
    ),
    (
        r"refined_global(\d+)_MAnE",
        "  its MAnE with {0} global starts (reference: the image-limited floor; ratio = refined / floor)",
    ),
    (
        r"refined_global(\d+)_frac_above_150",
        "  its fraction above 150° with {0} global starts (reference: floor)",
    ),
    (r"floor_shifts_searched_seconds", "image-limited floor, shifts searched"),
    (r"floor_shifts_searched_MAnE_deg", "  its MAnE"),
    (r"demo_after_training_seconds", "`make demo`'s steps after training (stand-in predictions)"),
    (r"Evaluator.eval (\d+) predictions (\w+)", "`Evaluator.eval`, {0} predictions, {1} (goal < 1 s)"),
    (
        r"frame_free_metrics_time",
        "frame-free evaluation, 8,000 poses (goal < 2 s; ratio = its time / plain MAnE's time)",
    ),
    (r"(gpu_\w+)", "GPU: {0}"),
]


def _fmt_value(x, unit: str = "") -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        x = f"{x:.4g}" if abs(x) < 1 else f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x} {unit}".strip()


def _group(g: str | None) -> str:
    """A label's group as shown: integers of 4+ digits with thousands separators."""
    return f"{int(g):,}" if g and g.isdigit() and len(g) >= 4 else (g or "")


def headline_rows(figures: list[dict], raw: str) -> list[str]:
    """Markdown rows of the :data:`HEADLINE` figures found in ``figures`` (each once, in that order)."""
    rows, used = [], set()
    for pattern, label in HEADLINE:
        for i, f in enumerate(figures):
            m = re.fullmatch(pattern, str(f.get("name", "")))
            if i in used or m is None:
                continue
            used.add(i)
            ref = "not measured"
            if f.get("reference") is not None:
                ref = _fmt_value(f["reference"], f.get("unit", ""))
                if f.get("reference_name"):
                    ref += f" ({f['reference_name']})"
            ratio = f"{f['ratio']:.3g}x" if isinstance(f.get("ratio"), (int, float)) else ""
            cmd = f.get("bench_command") or f.get("command", "")
            text = label.format(*map(_group, m.groups())) if m.groups() else label
            if text.startswith("  "):
                text = "&nbsp;&nbsp;" + text.strip()
            cells = [text, _fmt_value(f.get("value"), f.get("unit", "")), ref, ratio, f"`{cmd}`", f"`{raw}`"]
            rows.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return rows


def _headline(json_path: Path | None, raw: str) -> str:
    """The headline table made from ``json_path`` (run_all's record), or "" when it is absent."""
    if json_path is None or not json_path.is_file():
        return ""
    try:
        record = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{json_path}: not a run_all.py record ({e})") from e
    rows = headline_rows(record.get("figures", []), raw)
    if not rows:
        return ""
    meta = []
    if record.get("machine"):
        meta.append(f"measured on {record['machine']}")
    if record.get("commit"):
        meta.append(f"commit `{record['commit'][:12]}`")
    if record.get("date"):
        meta.append(record["date"])
    if record.get("minutes") is not None:
        meta.append(f"the whole run took {record['minutes']} min")
    for u in record.get("updates", []):
        meta.append(
            f"then `{u['command']}` ({u['date']}, commit `{str(u['commit'])[:12]}`) replaced the figures of "
            + ", ".join(f"`{s}`" for s in u["scripts"])
        )
    head = (
        (
            "Headline figures (" + "; ".join(meta) + "). Ratio > 1: cesped faster or smaller than the "
            "reference, measured in the same run the same way.\n\n"
        )
        + "| figure | cesped | reference (same run) | ratio | command | raw output |\n"
        + "|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows) + "\n"


def render(
    table_md: str,
    source: str,
    large_md: str | None = None,
    large_source: str | None = None,
    results_json: Path | None = None,
    large_json: Path | None = None,
) -> str:
    """The block put between the markers: a note naming its sources, the headline table(s), then
    every figure in a fold.

    ``source`` / ``large_source``: the Markdown files' paths as shown; the raw output of each row
    is the ``.json`` file of the same stem (``run_all.py`` writes both); ``results_json`` /
    ``large_json``: those files, read for the headline rows (absent: no headline)."""
    raw = source.rsplit(".", 1)[0] + ".json"
    note = (
        f"<!-- generated by benchmarks/readme_table.py from {source}"
        + (f" and {large_source}" if large_md is not None else "")
        + "; edit the benchmarks, not this -->\n"
        f"Raw figures: `{raw}`; regenerate with `make bench` (which runs "
        f"`python benchmarks/readme_table.py`).\n\n"
    )
    block = note + _headline(results_json, raw)
    large_raw = (large_source or "large.md").rsplit(".", 1)[0] + ".json"
    if large_md is not None:
        large_head = _headline(large_json, large_raw)
        if large_head:
            block += "\nAt the sizes users run (`make bench-large`): " + large_head
    block += (
        f"\n<details><summary>Every figure of the run ({source})</summary>\n\n"
        + with_raw_column(table_md, raw)
        + "\n</details>\n"
    )
    if large_md is not None:
        block += (
            "\n<details><summary>Every figure at the sizes users run (`make bench-large`, "
            f"`python benchmarks/run_all.py --large`; raw figures `{large_raw}`)</summary>\n\n"
            + with_raw_column(large_md, large_raw)
            + "\n</details>\n"
        )
    return "\n" + block


def replace_block(readme: str, block: str, readme_name: str = "README.md") -> str:
    """``readme`` with the text between the markers replaced by ``block``.

    Raises
    ------
    ValueError
        A marker is missing, repeated, or the end comes before the start.
    """
    n_start, n_end = readme.count(START), readme.count(END)
    if n_start != 1 or n_end != 1:
        raise ValueError(
            f"{readme_name}: needs exactly one '{START}' and one '{END}' marker "
            f"(found {n_start} and {n_end}); add them around the performance table"
        )
    i, j = readme.index(START) + len(START), readme.index(END)
    if j < i:
        raise ValueError(f"{readme_name}: '{END}' comes before '{START}'")
    return readme[:i] + block + readme[j:]


def _shown(path: Path) -> str:
    """``path`` relative to the repository (no machine path in the README), else its name."""
    try:
        return path.resolve().relative_to(HERE.parent.resolve()).as_posix()
    except ValueError:
        return path.name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(HERE / "results" / "latest.md"), help="table made by run_all.py")
    ap.add_argument(
        "--large",
        default=str(HERE / "results" / "large.md"),
        help="table made by run_all.py --large (used when the file exists)",
    )
    ap.add_argument("--readme", default=str(HERE.parent / "README.md"))
    ap.add_argument("--check", action="store_true", help="only check that the README is up to date")
    args = ap.parse_args(argv)
    results, readme = Path(args.results), Path(args.readme)
    if not results.is_file():
        raise FileNotFoundError(f"{results} not found: run `make bench` (benchmarks/run_all.py) first")
    if not readme.is_file():
        raise FileNotFoundError(f"{readme} not found")
    large = Path(args.large)
    text = readme.read_text()
    large_md = large.read_text() if large.is_file() else None
    block = render(
        results.read_text(),
        _shown(results),
        large_md,
        _shown(large),
        results.with_suffix(".json"),
        large.with_suffix(".json") if large_md is not None else None,
    )
    new = replace_block(text, block, readme.name)
    if args.check:
        if new != text:
            print(f"{readme} is not up to date with {results}", file=sys.stderr)
            return 1
        return 0
    if new != text:
        sys.path.insert(0, str(HERE.parent))
        from cesped.io.atomic import atomic_open

        with atomic_open(readme) as fh:
            fh.write(new)
    print(
        f"{readme.name}: performance table from {_shown(results)}"
        + (" and " + _shown(large) if large_md else "")
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as e:
        print(f"readme_table: {e}", file=sys.stderr)
        sys.exit(2)
