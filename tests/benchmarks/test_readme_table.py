"""benchmarks/readme_table.py rewrites only the README's marked performance block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._scripts import BENCH, load_script

SCRIPT = BENCH / "readme_table.py"


def _module(path: Path = SCRIPT, name: str = "readme_table"):
    return load_script(path, name)


TABLE = (
    "| figure | cesped | reference | ratio | unit | command |\n"
    "|---|---|---|---|---|---|\n"
    "| a | 1 | 2 | 2 | s | `x` |\n"
)


def test_only_the_marked_block_changes(tmp_path):
    mod = _module()
    head = "# cesped\n\nSome text.\n\n## Performance\n"
    tail = "\n\n## Troubleshooting\nkeep me\n"
    readme = tmp_path / "README.md"
    readme.write_text(head + mod.START + "\nold table\n" + mod.END + tail)
    results = tmp_path / "latest.md"
    results.write_text(TABLE)
    files = ["--results", str(results), "--readme", str(readme), "--large", str(tmp_path / "none.md")]
    assert mod.main(files) == 0
    text = readme.read_text()
    assert text.startswith(head + mod.START) and text.endswith(mod.END + tail)
    assert "old table" not in text and "| a | 1 | 2 | 2 | s | `x` | `latest.json` |" in text
    assert mod.main([*files, "--check"]) == 0
    results.write_text(TABLE.replace("| 1 |", "| 3 |"))
    assert mod.main([*files, "--check"]) == 1


@pytest.mark.parametrize("body", ["no markers\n", "<!-- perf-table:end -->\n<!-- perf-table:start -->\n"])
def test_missing_or_misordered_markers_are_clear_errors(tmp_path, body):
    mod = _module()
    readme = tmp_path / "README.md"
    readme.write_text(body)
    results = tmp_path / "latest.md"
    results.write_text(TABLE)
    with pytest.raises(ValueError, match="perf-table"):
        mod.main(["--results", str(results), "--readme", str(readme)])
    assert readme.read_text() == body  # untouched


def test_missing_results_file(tmp_path):
    mod = _module()
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(FileNotFoundError, match="make bench"):
        mod.main(["--results", str(tmp_path / "nope.md"), "--readme", str(tmp_path / "README.md")])


def _figures(prefix: str, rng) -> list[dict]:
    """Synthetic figures as the scripts print them (random values over several magnitudes)."""
    out = []
    for i, scale in enumerate((1e-3, 0.5, 37.0, 4321.0, 2.5e5)):
        value, ref = float(rng.uniform(1, 10) * scale), float(rng.uniform(1, 10) * scale)
        command = f"python benchmarks/bench_{prefix}.py --n {i}"
        out.append({"name": f"{prefix}_{i}", "value": value, "unit": "s", "reference": ref,
                    "ratio": ref / value, "bench_command": command})  # fmt: skip
    out.append({"name": f"{prefix}_alone", "value": 3.25, "unit": "MiB", "reference": None, "ratio": None,
                "bench_command": f"python benchmarks/bench_{prefix}.py"})  # fmt: skip
    return out


def _rows(text: str) -> dict[str, list[str]]:
    cells = {}
    for line in text.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(parts) == 7 and parts[0] not in ("figure",):
            cells[parts[0]] = parts
    return cells


def _number(cell: str) -> float:
    return float(cell.split(" ")[0].replace(",", ""))


def test_round_trip_latest_and_large(tmp_path):
    """run_all's tables -> README: every number equals its JSON figure (to the 3 digits shown),
    each row names its command and raw file, and the rest of the README is untouched."""
    import numpy as np

    run_all = _module(BENCH / "run_all.py", "run_all")
    mod = _module()
    rng = np.random.default_rng(0)
    res = tmp_path / "results"
    res.mkdir()
    figs = {"latest": _figures("evaluate", rng), "large": _figures("reconstruction", rng)}
    for stem, f in figs.items():
        (res / f"{stem}.json").write_text(json.dumps({"figures": f}))
        (res / f"{stem}.md").write_text(run_all.markdown_table(f, "test machine"))
    head, tail = "# cesped\n\n## Performance\n\n", "\n\n## Troubleshooting\n\nkeep | me\n"
    readme = tmp_path / "README.md"
    readme.write_text(head + mod.START + "\nhand-written\n" + mod.END + tail)
    args = ["--results", str(res / "latest.md"), "--large", str(res / "large.md"), "--readme", str(readme)]
    assert mod.main(args) == 0
    text = readme.read_text()
    assert text.startswith(head + mod.START) and text.endswith(mod.END + tail)
    assert "hand-written" not in text
    rows = _rows(text)
    for stem in figs:
        for fig in json.loads((res / f"{stem}.json").read_text())["figures"]:
            name, value, ref, ratio, unit, command, raw = rows[fig["name"]]
            assert _number(value) == pytest.approx(fig["value"], rel=5e-3)
            assert _number(ratio) == pytest.approx(fig["ratio"], rel=5e-3) if fig["ratio"] else ratio == ""
            if fig["reference"] is None:
                assert ref == "not measured"
            else:
                assert _number(ref) == pytest.approx(fig["reference"], rel=5e-3)
            assert (unit, command) == (fig["unit"], f"`{fig['bench_command']}`")
            assert raw == f"`{stem}.json`"
    assert mod.main([*args, "--check"]) == 0
    (res / "large.md").write_text(run_all.markdown_table(figs["large"][:2], "test machine"))
    assert mod.main([*args, "--check"]) == 1  # a changed large table makes the README stale


def test_headline_rows_name_their_figures_commands_and_raw_file(tmp_path):
    """The headline table has a readable label for the figures it knows, their values, reference
    and ratio, and the full table stays below it in a fold; the run's commit and date are shown."""
    run_all = _module(BENCH / "run_all.py", "run_all")
    mod = _module()
    figs = [
        {"name": "reconstruct_seconds_8000x128px_2cpu", "value": 4.648, "unit": "s", "reference": 18.697,
         "reference_name": "mpirun -np 2 relion_reconstruct_mpi", "ratio": 4.02,
         "bench_command": "python benchmarks/bench_reconstruction.py"},
        {"name": "dataloading_images_per_s_workers2", "value": 3428.8, "unit": "images/s", "reference": None,
         "ratio": None, "bench_command": "python benchmarks/bench_dataloading.py"},
        {"name": "something_new", "value": 1.5, "unit": "s", "reference": None, "ratio": None,
         "bench_command": "python benchmarks/bench_new.py"},
    ]  # fmt: skip
    res = tmp_path / "results"
    res.mkdir()
    record = {"figures": figs, "machine": "test machine", "commit": "0123456789abcdef", "date": "2026-12-04"}
    (res / "latest.json").write_text(json.dumps(record))
    (res / "latest.md").write_text(run_all.markdown_table(figs, "test machine"))
    readme = tmp_path / "README.md"
    readme.write_text(mod.START + "\n" + mod.END + "\n")
    args = ["--results", str(res / "latest.md"), "--large", str(res / "no.md"), "--readme", str(readme)]
    assert mod.main(args) == 0
    text = readme.read_text()
    head, fold = text.split("<details>", 1)
    assert "commit `0123456789ab`" in head and "2026-12-04" in head
    assert (
        "| reconstruct 8,000 x 128 px, whole process, 2 CPUs | 4.65 s | 18.7 s (mpirun -np 2 "
        "relion_reconstruct_mpi) | 4.02x | `python benchmarks/bench_reconstruction.py` | `latest.json` |"
    ) in head
    assert "2 workers | 3,429 images/s | not measured |  |" in head
    assert "something_new" not in head and "| something_new | 1.5 |" in fold  # only in the full table
