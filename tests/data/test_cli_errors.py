"""Command lines turn an unusable path into one line naming it and exit status 2 (issue 13, §4)."""

from __future__ import annotations

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


def test_simulate_out_under_a_file_fails_first_in_one_line(tmp_path, capsys, monkeypatch):
    from cesped import simulate
    from cesped.simulation import entry

    def never(*a, **k):  # the check comes before any work
        raise AssertionError("simulate_entry was called")

    monkeypatch.setattr(entry, "simulate_entry", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = ["--structure", "4e43", "--n", "4", "--pixel-size", "4", "--box", "16", "--snr", "1"]
    assert simulate.main([*args, "--out", str(blocker / "entry"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {blocker}: Not a directory"]
