"""Command lines turn an unusable path into one line naming it and exit status 2 (issue 13, §4)."""

from __future__ import annotations

import subprocess
import sys

from cesped.particlesDataset import main


def test_preprocess_into_a_path_under_a_file(tiny_entry, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(
        ["preprocess_entry", "-t", "tiny", "-p", "0", "-o", str(blocker / "out"), "-b", str(tiny_entry)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"error: {blocker / 'out'}: Not a directory"]


def test_preprocess_onto_an_existing_file(tiny_entry, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["preprocess_entry", "-t", "tiny", "-p", "0", "-o", str(blocker), "-b", str(tiny_entry)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {blocker}: File exists"]
    assert blocker.read_text() == "x"


def test_simulate_out_under_a_file_fails_first_in_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = ["--structure", "4e43", "--n", "4", "--pixel-size", "4", "--box", "16", "--snr", "1"]
    r = subprocess.run(
        [sys.executable, "-m", "cesped.simulate", *args, "--out", str(blocker / "entry"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {blocker}: Not a directory"]
    assert "Traceback" not in r.stderr
