"""Simulated entries: layout, metadata, determinism, SNR, label corruption, bad input."""

import json

import mrcfile
import numpy as np
import pytest
import torch

from cesped.geometry.errors import angular_distance
from cesped.geometry.rotations import euler_to_matrix
from cesped.io.stack import ImageSource
from cesped.io.star import read_star
from cesped.simulation import ENTRY_FILES, simulate_entry

SMALL = dict(structure="4e43", n_particles=120, pixel_size=3.0, box=32, snr=0.5, progress=False)


@pytest.fixture(scope="module")
def small_entry(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "entry"
    return simulate_entry(out, **SMALL, symmetry="C2", seed=3)


def test_layout_and_metadata(small_entry):
    for name in ENTRY_FILES:
        assert (small_entry / name).is_file(), name
    sizes = []
    all_ids = set()
    for h in (0, 1):
        info = json.loads((small_entry / f"info_{h}.json").read_text())
        assert info["symmetry"] == "C2"
        star = read_star(small_entry / f"particles_{h}.star")
        p = star.particles
        sizes.append(len(p))
        assert (p["rlnRandomSubset"] == h + 1).all()
        assert (p["rlnMaxValueProbDistribution"] == 1.0).all()
        assert float(star.optics["rlnImagePixelSize"].iloc[0]) == 3.0
        assert int(star.optics["rlnImageSize"].iloc[0]) == 32
        assert float(star.optics["rlnVoltage"].iloc[0]) == 300.0
        # defocus in Å within 1.0-2.5 µm (mean of U and V), U - V <= astigmatism max
        mean_df = (p["rlnDefocusU"] + p["rlnDefocusV"]) / 2
        assert mean_df.between(10000, 25000).all()
        assert ((p["rlnDefocusU"] - p["rlnDefocusV"]).abs() <= 1000).all()
        assert p["rlnOriginXAngst"].abs().max() <= 9.0 and p["rlnOriginYAngst"].abs().max() <= 9.0
        assert p["rlnAngleTilt"].between(0, 180).all()
        src = ImageSource.from_star(star)
        assert len(src) == len(p) and src.image_shape == (32, 32)
        imgs = src.read(slice(0, 5))
        assert imgs.shape == (5, 32, 32) and np.isfinite(imgs).all()
        all_ids |= {f"{h}:{n}" for n in p["rlnImageName"]}
    assert sorted(sizes) == [60, 60]
    gen = json.loads((small_entry / "generation.json").read_text())
    assert gen["seed"] == 3 and gen["snr"] == 0.5 and gen["symmetry"] == "C2"
    assert gen["structure"] == "4e43" and gen["model"]["aligned"] is True
    with mrcfile.open(small_entry / "gt_map.mrc") as m:
        assert m.data.shape == (32, 32, 32) and m.voxel_size.x == pytest.approx(3.0)
    with mrcfile.open(small_entry / "mask.mrc") as m:
        mask = np.asarray(m.data)
    assert mask.min() >= 0 and mask.max() <= 1 and mask[16, 16, 16] == 1.0 and mask[0, 0, 0] == 0.0


def test_random_halves_cover_all_particles(small_entry):
    # two random half-sets: the same angles never appear in both
    a = read_star(small_entry / "particles_0.star").particles["rlnAngleRot"].to_numpy()
    b = read_star(small_entry / "particles_1.star").particles["rlnAngleRot"].to_numpy()
    assert len(set(a.round(9)) & set(b.round(9))) == 0


def test_snr_from_image_variance(small_entry):
    """Noise variance is 1 by construction, so mean(var(image)) = SNR + 1 (SNR over the box)."""
    gen = json.loads((small_entry / "generation.json").read_text())
    var = []
    for h in (0, 1):
        star = read_star(small_entry / f"particles_{h}.star")
        var.append(ImageSource.from_star(star).read(slice(0, len(star))).reshape(len(star), -1).var(axis=1))
    measured = float(np.concatenate(var).mean()) - 1.0
    assert measured == pytest.approx(gen["snr"], rel=0.1)


def test_same_seed_same_bytes(tmp_path):
    a = simulate_entry(tmp_path / "a", **{**SMALL, "n_particles": 40}, seed=11)
    b = simulate_entry(tmp_path / "b", **{**SMALL, "n_particles": 40}, seed=11)
    c = simulate_entry(tmp_path / "c", **{**SMALL, "n_particles": 40}, seed=12)
    for name in ENTRY_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "particles_0.mrcs").read_bytes() != (c / "particles_0.mrcs").read_bytes()
    assert (a / "particles_0.star").read_bytes() != (c / "particles_0.star").read_bytes()


def test_existing_entry_and_overwrite(tmp_path):
    simulate_entry(tmp_path / "e", **{**SMALL, "n_particles": 10})
    with pytest.raises(FileExistsError):
        simulate_entry(tmp_path / "e", **{**SMALL, "n_particles": 10})
    simulate_entry(tmp_path / "e", **{**SMALL, "n_particles": 12}, overwrite=True)
    assert json.loads((tmp_path / "e" / "generation.json").read_text())["n_particles"] == 12


def test_noiseless_images_are_ctf_modulated_projections(tmp_path):
    """snr=None: the image variance (over the box, mean over particles) is exactly 1."""
    d = simulate_entry(tmp_path / "e", **{**SMALL, "snr": None, "n_particles": 20})
    star = read_star(d / "particles_0.star")
    imgs = ImageSource.from_star(star).read(slice(0, len(star)))
    star1 = read_star(d / "particles_1.star")
    imgs = np.concatenate([imgs, ImageSource.from_star(star1).read(slice(0, len(star1)))])
    assert float(imgs.reshape(len(imgs), -1).var(axis=1).mean()) == pytest.approx(1.0, rel=1e-4)


def test_label_corruption(tmp_path):
    d = simulate_entry(
        tmp_path / "e",
        **{**SMALL, "n_particles": 200},
        jitter_fraction=0.3,
        jitter_deg=10.0,
        random_fraction=0.2,
        jitter_confidence=0.6,
        random_confidence=0.05,
    )
    kinds, errors, conf = [], [], []
    for h in (0, 1):
        lab = read_star(d / f"particles_{h}.star").particles
        true = read_star(d / f"true_poses_{h}.star").particles
        assert (lab["rlnImageName"] == true["rlnImageName"]).all()
        cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
        r_lab = euler_to_matrix(torch.tensor(lab[cols].to_numpy()))
        r_true = euler_to_matrix(torch.tensor(true[cols].to_numpy()))
        errors.append(angular_distance(r_lab, r_true).numpy())
        kinds.append(true["cespedLabelCorruption"].to_numpy())
        conf.append(lab["rlnMaxValueProbDistribution"].to_numpy())
    kinds, errors, conf = np.concatenate(kinds), np.concatenate(errors), np.concatenate(conf)
    assert (kinds == "jitter").sum() == 60 and (kinds == "random").sum() == 40
    assert errors[kinds == "none"].max() < 1e-6
    assert errors[kinds == "jitter"].max() <= 10.0 + 1e-6 and errors[kinds == "jitter"].mean() > 2.0
    assert errors[kinds == "random"].mean() > 60.0
    assert (conf[kinds == "none"] == 1.0).all() and (conf[kinds == "jitter"] == 0.6).all()
    assert (conf[kinds == "random"] == 0.05).all()


def test_given_rotations_are_used(tmp_path):
    rots = np.tile(np.eye(3), (10, 1, 1))
    d = simulate_entry(tmp_path / "e", **{**SMALL, "n_particles": 10}, rotations=rots)
    p = read_star(d / "particles_0.star").particles
    assert np.allclose(p["rlnAngleTilt"], 0.0)


@pytest.mark.parametrize(
    "override, match",
    [
        ({"snr": 0.0}, "snr"),
        ({"snr": -1.0}, "snr"),
        ({"n_particles": 1}, "n_particles"),
        ({"box": 33}, "box"),
        ({"pixel_size": 0}, "pixel_size"),
        ({"box": 16}, r"box too small.*at least \d+ px"),
        ({"defocus_range": (2e4, 1e4)}, "defocus_range"),
        ({"jitter_fraction": 0.8, "random_fraction": 0.5}, "jitter_fraction"),
        ({"symmetry": "C7v"}, "unsupported symmetry"),
        ({"symmetry": "D2"}, "alignment supports only"),
        ({"symmetry": "C3"}, "C3"),
    ],
)
def test_bad_inputs(tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        simulate_entry(tmp_path / "e", **{**SMALL, **override})
    assert not (tmp_path / "e" / "generation.json").exists()


def test_unknown_structure(tmp_path):
    with pytest.raises(FileNotFoundError, match="built-in"):
        simulate_entry(tmp_path / "e", **{**SMALL, "structure": "no_such_model"})


def test_map_source(tmp_path, small_entry):
    d = simulate_entry(
        tmp_path / "e", **{**SMALL, "structure": small_entry / "gt_map.mrc", "n_particles": 20}
    )
    with mrcfile.open(d / "gt_map.mrc") as a, mrcfile.open(small_entry / "gt_map.mrc") as b:
        np.testing.assert_allclose(a.data, b.data, atol=1e-5 * float(b.data.max()))
    flat = tmp_path / "flat.mrc"
    with mrcfile.new(str(flat)) as m:
        m.set_data(np.zeros((16, 32, 32), dtype=np.float32))
        m.voxel_size = 3.0
    with pytest.raises(ValueError, match="cubic"):
        simulate_entry(tmp_path / "f", **{**SMALL, "structure": flat})
