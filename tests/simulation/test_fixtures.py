"""The synthetic-entry writer shared by the package, the tests and the benchmarks: round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_synthetic_entry_round_trips_through_the_readers(tmp_path):
    from cesped.data.local import is_available, read_info
    from cesped.io.mrc import read_map
    from cesped.io.stack import ImageSource
    from cesped.io.star import read_star
    from cesped.simulation.fixtures import blob_map, simulate_particles, write_synthetic_entry

    d = write_synthetic_entry(tmp_path, "tiny", "C2", n_per_half=12, box=16, pixel_size=3.0, seed=5)
    assert d == tmp_path / "tiny"
    vol = blob_map(16, n_blobs=8, sigma=1.3, seed=5, symmetry="C2")
    for h in (0, 1):
        assert is_available("tiny", h, tmp_path) and read_info("tiny", h, tmp_path)["symmetry"] == "C2"
        star = read_star(d / f"particles_{h}.star")
        images, parts, _ = simulate_particles(vol, 12, 3.0, snr=3.0, seed=5 + 10 + h)
        assert list(star.particles["rlnImageName"]) == [f"{i:06d}@particles_{h}.mrcs" for i in range(1, 13)]
        np.testing.assert_array_equal(ImageSource.from_star(star).read(slice(0, 12)), images)
        for c in parts.columns:
            np.testing.assert_allclose(
                star.particles[c].to_numpy(float), parts[c].to_numpy(float), rtol=1e-12
            )
        conf = star.particles["rlnMaxValueProbDistribution"].to_numpy()
        assert ((conf >= 0.05) & (conf <= 1.0)).all()
        assert not (d / f"SUCCESSFUL_DOWNLOAD_{h}.txt").exists()
    mask, px = read_map(d / "mask.mrc")
    assert px == pytest.approx(3.0) and mask.shape == (16, 16, 16)
    assert mask[8, 8, 8] == 1.0 and mask[0, 0, 0] == 0.0 and mask.min() >= 0 and mask.max() <= 1


def test_entry_half_from_chunks_equals_entry_half_from_an_array(tmp_path):
    from cesped.io.stack import ImageSource
    from cesped.io.star import read_star
    from cesped.simulation.fixtures import blob_map, simulate_particles, write_entry_half

    images, parts, optics = simulate_particles(blob_map(12, seed=1), 7, 2.0, snr=1.0, seed=2)
    a = write_entry_half(tmp_path / "a", "e", 1, images, parts, optics, "D2", original_marker=True)
    b = write_entry_half(tmp_path / "b", "e", 1, lambda s, e: images[s:e], parts, optics, "D2")
    for d in (a, b):
        star = read_star(d / "particles_1.star")
        np.testing.assert_array_equal(ImageSource.from_star(star).read(slice(0, 7)), images)
        assert json.loads((d / "info_1.json").read_text()) == {"symmetry": "D2"}
    assert (a / "SUCCESSFUL_DOWNLOAD_1.txt").is_file() and not (b / "SUCCESSFUL_DOWNLOAD_1.txt").exists()
    with pytest.raises(ValueError, match="halfset"):
        write_entry_half(tmp_path / "c", "e", 2, images, parts, optics)


def test_old_import_path_is_the_same_writer():
    from cesped.reconstruction import synthetic
    from cesped.simulation import fixtures

    assert synthetic.write_particle_set is fixtures.write_particle_set
    assert synthetic.blob_map is fixtures.blob_map
