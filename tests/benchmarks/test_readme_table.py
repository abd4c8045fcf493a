"""benchmarks/readme_table.py rewrites only the README's marked performance block."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "readme_table.py"


def _module():
    spec = importlib.util.spec_from_file_location("readme_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    assert mod.main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(head + mod.START) and text.endswith(mod.END + tail)
    assert "old table" not in text and "| a | 1 | 2 | 2 | s | `x` |" in text
    assert mod.main(["--results", str(results), "--readme", str(readme), "--check"]) == 0
    results.write_text(TABLE.replace("| 1 |", "| 3 |"))
    assert mod.main(["--results", str(results), "--readme", str(readme), "--check"]) == 1


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
