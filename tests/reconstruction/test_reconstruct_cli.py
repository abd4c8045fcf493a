"""python -m cesped.reconstruct: bad input and unwritable outputs are one line and exit 2."""

from __future__ import annotations

from cesped.reconstruct import main
from cesped.simulation.fixtures import blob_map, write_particle_set


def test_missing_star_and_unwritable_output_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope.star"), "--out", str(tmp_path / "m.mrc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.star" in err[0]
    star = write_particle_set(tmp_path / "set", blob_map(16), n_particles=8, pixel_size=2.0)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main([str(star), "--out", str(blocker / "m.mrc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a_file" in err[0]
    assert main([str(star), "--out", str(tmp_path / "m.mrc")]) == 0 and (tmp_path / "m.mrc").is_file()
